//! `deploy swarm` on a one-node swarm of this machine's engine (made by the test when the
//! engine is in none, and left again after): the stack from the compose description with
//! 2 app and 2 docreader replicas, secrets as Docker secrets, the migration job. Then, on that
//! one stack: 50 documents ingested by both app replicas; a rolling update of the app under a
//! search load that loses no request; an update whose image fails its healthcheck, rolled
//! back by Swarm by itself.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{docker, docker_build, xtask};
use weknora_testkit::{Need, require};
use weknora_testkit::{Phases, free_port};

/// This engine in swarm mode for the test; left again if the test made it a swarm.
struct SwarmMode {
    made: bool,
}

impl SwarmMode {
    fn join() -> SwarmMode {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        if state == "active" {
            return SwarmMode { made: false };
        }
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        SwarmMode { made: true }
    }
}

impl Drop for SwarmMode {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
            // Leaving keeps the gateway bridge; the next init makes it again.
            let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
        }
    }
}

/// The test's stack: its own project name, .env and published port; removed on drop with
/// its volumes.
struct Stack {
    name: String,
    env: Vec<(String, String)>,
    port: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn new() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("wksw{}", std::process::id());
        let port = free_port().to_string();
        let env = vec![
            ("WEKNORA_ENV_FILE".to_string(), dir.path().join(".env").display().to_string()),
            ("COMPOSE_PROJECT_NAME".to_string(), name.clone()),
            ("FRONTEND_PORT".to_string(), port.clone()),
        ];
        Stack { name, env, port, _dir: dir }
    }

    fn deploy(&self, extra: &[(&str, &str)]) -> (bool, String, String) {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // Virtual IPs and the ingress need IPVS, which some kernels (this project's CI
        // machines') lack: DNS round robin there.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let ipvs = std::path::Path::new("/proc/net/ip_vs").exists()
            || std::path::Path::new(&format!("/lib/modules/{}/kernel/net/netfilter/ipvs", release.trim())).exists();
        let mode = if ipvs { "vip" } else { "dnsrr" };
        xtask(&["deploy", "swarm", "--json", "--timeout", "600", "--endpoint-mode", mode], &env)
    }

    fn key(&self) -> String {
        let text = std::fs::read_to_string(&self.env[0].1).unwrap();
        text.lines().find_map(|l| l.strip_prefix("ADMIN_API_KEY=")).unwrap().to_string()
    }

    fn env_value(&self, var: &str) -> String {
        let text = std::fs::read_to_string(&self.env[0].1).unwrap();
        text.lines().find_map(|l| l.strip_prefix(&format!("{var}="))).unwrap().to_string()
    }

    /// The running containers of one service.
    fn containers(&self, service: &str) -> Vec<String> {
        let filter = format!("label=com.docker.swarm.service.name={}_{service}", self.name);
        docker(&["ps", "-q", "--filter", &filter]).lines().map(str::to_string).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["stack", "rm", &self.name]).output();
        // Task containers are named <stack>_<service>.<slot>.<task>; Swarm removes them a
        // while after the stack (and keeps ended ones): waited for, then removed, so that the
        // volumes can go.
        let ours = || {
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("name=^{}_", self.name)])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ours().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
        }
        for id in ours() {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let volumes = Command::new("docker").args(["volume", "ls", "-q", "--filter", &label]).output().unwrap();
            let volumes = String::from_utf8_lossy(&volumes.stdout).to_string();
            if volumes.trim().is_empty() || Instant::now() > deadline {
                break;
            }
            for v in volumes.lines() {
                let _ = Command::new("docker").args(["volume", "rm", v]).output();
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Images the test builds, removed after the stack that runs them.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            // Swarm keeps ended tasks' containers for a while: they hold the image. A child
            // image left behind would stop `build-images --clean` from removing ours.
            let users = Command::new("docker").args(["ps", "-aq", "--filter", &format!("ancestor={image}")]).output();
            for id in users.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default().lines() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
            let _ = Command::new("docker").args(["rmi", image]).output();
        }
    }
}

/// An HTTP request to 127.0.0.1:port through curl: (status, JSON body).
fn call(port: &str, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", "-X", method, "-H", &format!("X-API-Key: {key}")]);
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &body.to_string()]);
    }
    let out = cmd.arg(format!("http://127.0.0.1:{port}{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

fn states(out: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn running(states: &[Value], service: &str) -> (u64, u64) {
    let s = states.iter().find(|s| s["service"] == service).unwrap_or_else(|| panic!("no {service}: {states:?}"));
    (s["running"].as_u64().unwrap(), s["desired"].as_u64().unwrap())
}

/// The image a service of the stack runs now (Swarm's spec).
fn service_image(stack: &Stack, service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &format!("{}_{service}", stack.name),
    ])
}

#[test]
fn the_swarm_stack_scales_rolls_out_without_losing_requests_and_rolls_back_a_broken_update() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("swarm");
    let _swarm = SwarmMode::join();
    let version = env!("CARGO_PKG_VERSION");
    let _images = Images(vec![format!("weknora/app-rolled:{version}"), format!("weknora/app-broken:{version}")]);
    let stack = Stack::new();

    let (ok, out, err) = stack.deploy(&[]);
    assert!(ok, "deploy swarm failed:\n{err}");
    let deployed = states(&out);
    for (service, replicas) in [("app", 2), ("docreader", 2), ("embedder", 1), ("frontend", 1), ("postgres", 1)] {
        assert_eq!(running(&deployed, service), (replicas, replicas), "{service}: {out}");
    }
    assert!(err.contains("migrating the database"), "{err}");
    phases.done("deploy");

    // Secrets are Docker secrets: not in the services' specs, the stack file or the output.
    let password = stack.env_value("DB_PASSWORD");
    let inspect = docker(&["service", "inspect", &format!("{}_app", stack.name), &format!("{}_postgres", stack.name)]);
    assert!(inspect.contains("DB_PASSWORD_FILE") && !inspect.contains(&password), "a secret in a service spec");
    let stack_file =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/swarm-stack.json"))
            .unwrap();
    assert!(!stack_file.contains(&password) && !out.contains(&password) && !err.contains(&password));

    // 50 documents: both app replicas take ingest jobs.
    let (port, key) = (stack.port.clone(), stack.key());
    let (status, kb) = call(&port, &key, "POST", "/api/v1/knowledge-bases", Some(&json!({"name": "swarm"})));
    assert_eq!(status, 201, "{kb}");
    let kb = kb["data"]["id"].as_str().unwrap().to_string();
    for i in 0..50 {
        let doc = json!({"title": format!("note {i}"), "content": format!("Swarm note {i}: replica kestrel{i} keeps the lighthouse log.")});
        let (status, body) =
            call(&port, &key, "POST", &format!("/api/v1/knowledge-bases/{kb}/knowledge/manual"), Some(&doc));
        assert_eq!(status, 201, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, list) =
            call(&port, &key, "GET", &format!("/api/v1/knowledge-bases/{kb}/knowledge?page_size=100"), None);
        let docs = list["data"].as_array().cloned().unwrap_or_default();
        let done =
            docs.iter().filter(|d| d["parse_status"] == "completed" && d["vector_status"] == "completed").count();
        assert!(!docs.iter().any(|d| d["parse_status"] == "failed"), "{list}");
        if done == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of 50 documents done after 300 s");
        std::thread::sleep(Duration::from_secs(2));
    }
    let apps = stack.containers("app");
    assert_eq!(apps.len(), 2);
    let completed: Vec<usize> = apps
        .iter()
        .map(|c| {
            let logs = Command::new("docker").args(["logs", c]).output().unwrap();
            let text = String::from_utf8_lossy(&logs.stdout).to_string() + &String::from_utf8_lossy(&logs.stderr);
            text.lines().filter(|l| l.contains("ingest: completed")).count()
        })
        .collect();
    assert!(completed.iter().all(|n| *n > 0), "a replica took no ingest job: {completed:?}");
    assert!(completed.iter().sum::<usize>() >= 100, "50 parse and 50 embed jobs: {completed:?}");
    phases.done("ingest on both replicas");

    // A rolling update of the app under a search load: no request lost.
    docker_build(
        &format!("weknora/app-rolled:{version}"),
        &format!("FROM weknora/app:{version}\nLABEL org.weknora.test=rolled\n"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|i| {
            let (port, key, kb, stop) = (port.clone(), key.clone(), kb.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/api/v1/knowledge-bases/{kb}/hybrid-search?query=kestrel{}&top_k=3", i * 7);
                    statuses.push(call(&port, &key, "GET", &path, None).0);
                }
                statuses
            })
        })
        .collect();
    let (ok, out, err) = stack.deploy(&[("APP_IMAGE", "weknora/app-rolled")]);
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(ok, "the rolling update failed:\n{err}");
    assert_eq!(running(&states(&out), "app"), (2, 2));
    assert_eq!(service_image(&stack, "app"), format!("weknora/app-rolled:{version}"));
    let lost: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() >= 20, "too few searches during the update to tell: {}", statuses.len());
    assert!(lost.is_empty(), "{} of {} searches failed during the update: {lost:?}", lost.len(), statuses.len());
    phases.done(&format!("rolling update, {} searches, none lost", statuses.len()));

    // An image that fails its healthcheck: Swarm rolls the app back by itself.
    docker_build(
        &format!("weknora/app-broken:{version}"),
        &format!(
            "FROM weknora/app:{version}\nHEALTHCHECK --interval=2s --timeout=2s --start-period=1s --retries=2 \
             CMD [\"/usr/local/bin/weknora-app\", \"healthcheck\", \"--addr\", \"127.0.0.1:1\"]\n"
        ),
    );
    let (ok, _, err) = stack.deploy(&[("APP_IMAGE", "weknora/app-broken")]);
    assert!(!ok, "a broken update succeeded");
    assert!(err.contains("the update of app failed and was rolled back"), "{err}");
    assert_eq!(service_image(&stack, "app"), format!("weknora/app-rolled:{version}"), "not rolled back");
    let (status, _) =
        call(&port, &key, "GET", &format!("/api/v1/knowledge-bases/{kb}/hybrid-search?query=kestrel3"), None);
    assert_eq!(status, 200, "the rolled-back app answers");
    phases.done("broken update rolled back");
}
