//! The main job end to end: `cargo xtask start` on a fresh project name brings every
//! service up healthy with locally built images (local stand-ins for the third-party ones:
//! no registry here); a document uploaded through the frontend's `/api` proxy is parsed and
//! found, and the web interface does the same in headless Chromium; a question is answered
//! through the frontend as a stream, from the passages alone and then by a tenant's model (a
//! stand-in on the host) whose pieces nginx passes on as they come; `restart app` keeps the
//! data; backups hold no secret, the model's API key included; `stop --volumes --yes` leaves
//! nothing of the project behind; in between, an ingest of 200 documents survives each
//! service crashing in turn (faults/). Then the development compose file starts too (app-dev compiles the
//! mounted source in its container, and an edit of it is served without a restart), and
//! `pull` fetches the third-party images the stack names from a registry on loopback, and
//! `upgrade` moves a stack of "older" images to this checkout, `rollback` brings back the
//! images and the data of before, and a failed upgrade rolls back by itself.
//!
//! Needs what `cargo xtask doctor --fix` installs. `cargo xtask ci` runs it, one test at a time
//! (nextest's `stack` group, .config/nextest.toml).

mod browser;
mod faults;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{docker, xtask};
use weknora_testkit::{Need, require};
use weknora_testkit::{Phases, S3Server, free_port};

struct Project {
    name: String,
    env: Vec<(String, String)>,
    /// Removed with the project; the shared stack's folder stays under target/.
    _dir: Option<tempfile::TempDir>,
    /// The shared stack outlives the test's process: nothing is stopped on drop.
    shared: bool,
}

impl Project {
    fn new(tag: &str, extra_ports: &[&str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("wk{tag}{}", std::process::id());
        let mut env = vec![
            ("WEKNORA_ENV_FILE".to_string(), dir.path().join(".env").display().to_string()),
            ("COMPOSE_PROJECT_NAME".to_string(), name.clone()),
            ("FRONTEND_PORT".to_string(), free_port().to_string()),
            ("APP_PORT".to_string(), free_port().to_string()),
        ];
        for var in extra_ports {
            env.push((var.to_string(), free_port().to_string()));
        }
        env.push(("BACKUP_DIR".to_string(), dir.path().join("backups").display().to_string()));
        Project { name, env, _dir: Some(dir), shared: false }
    }

    /// The stack the `e2e_*` tests share (`Shared`), from its recorded variables.
    fn shared(env: Vec<(String, String)>) -> Project {
        let name = env.iter().find(|(k, _)| k == "COMPOSE_PROJECT_NAME").expect("a project name").1.clone();
        Project { name, env, _dir: None, shared: true }
    }

    fn get(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn xtask(&self, args: &[&str]) -> (bool, String, String) {
        xtask(args, &self.env)
    }

    fn env_file(&self) -> String {
        std::fs::read_to_string(self.get("WEKNORA_ENV_FILE")).unwrap()
    }

    fn admin_key(&self) -> String {
        self.env_file().lines().find_map(|l| l.strip_prefix("ADMIN_API_KEY=")).unwrap().to_string()
    }

    /// Nothing of the project left: containers, networks, volumes.
    fn leftovers(&self) -> String {
        let label = format!("label=com.docker.compose.project={}", self.name);
        ["ps -aq", "network ls -q", "volume ls -q"]
            .iter()
            .map(|what| {
                let mut args: Vec<&str> = what.split(' ').collect();
                args.extend(["--filter", &label]);
                let out = Command::new("docker").args(&args).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if !self.shared && !self.leftovers().is_empty() {
            let _ = self.xtask(&["stop", "--volumes", "--yes"]);
        }
    }
}

/// curl against the frontend: (status, JSON body).
fn curl(port: &str, key: &str, args: &[&str], path: &str) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H", &format!("X-API-Key: {key}")])
        .args(args)
        .arg(&url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

/// Creates knowledge base `name` through the frontend, uploads DOC into it, waits until it
/// is parsed and checks a keyword search finds it; returns the knowledge base's and the
/// document's ids.
fn upload_and_search(front: &str, key: &str, name: &str) -> (String, String) {
    let body = serde_json::json!({ "name": name }).to_string();
    let (status, kb) = curl(
        front,
        key,
        &["-X", "POST", "-H", "content-type: application/json", "-d", &body],
        "/api/v1/knowledge-bases",
    );
    assert_eq!(status, 201, "{kb}");
    let kb_id = kb["data"]["id"].as_str().unwrap().to_string();
    let file = tempfile::Builder::new().suffix(".md").tempfile().unwrap();
    std::fs::write(file.path(), DOC).unwrap();
    let form = format!("file=@{};filename=recovery.md", file.path().display());
    let (status, doc) = curl(front, key, &["-F", &form], &format!("/api/v1/knowledge-bases/{kb_id}/knowledge/file"));
    assert!(status == 200 || status == 201 || status == 202, "{status}: {doc}");
    let doc_id = doc["data"]["id"].as_str().unwrap().to_string();
    wait_completed(front, key, &doc_id);
    assert_keyword_search_finds(front, key, &kb_id);
    (kb_id, doc_id)
}

/// `POST /api/v1/knowledge-search` of `query` in knowledge base `kb_id`: (status, answer).
fn knowledge_search(front: &str, key: &str, kb_id: &str, query: &str) -> (u16, Value) {
    let body = serde_json::json!({ "query": query, "knowledge_base_ids": [kb_id] }).to_string();
    curl(front, key, &["-X", "POST", "-H", "content-type: application/json", "-d", &body], "/api/v1/knowledge-search")
}

/// A keyword search of knowledge base `kb_id` finds DOC.
fn assert_keyword_search_finds(front: &str, key: &str, kb_id: &str) {
    let search = format!("/api/v1/knowledge-bases/{kb_id}/hybrid-search?query=restore%20drill&top_k=3");
    let (status, hits) = curl(front, key, &[], &search);
    assert_eq!(status, 200, "{hits}");
    assert!(hits.to_string().contains("restore drill"), "{hits}");
}

/// Waits until a document's `field` (parse_status, vector_status) is `completed`; fails at
/// once when it is `failed`.
fn wait_status(port: &str, key: &str, doc_id: &str, field: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, k) = curl(port, key, &[], &format!("/api/v1/knowledge/{doc_id}"));
        match k["data"][field].as_str() {
            Some("completed") => return,
            Some("failed") => panic!("{field} failed: {k}"),
            _ if Instant::now() > deadline => panic!("{field} not completed after 120 s: {k}"),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Asks `POST /api/v1/knowledge-chat/{session}` through the frontend and reads the answer as
/// it streams (curl -N): `on_frame` sees each `data:` frame the moment it arrives. Returns
/// the frames; fails with everything curl printed when there are none.
fn ask(port: &str, key: &str, session: &str, body: Value, mut on_frame: impl FnMut(&Value)) -> Vec<Value> {
    use std::io::BufRead;
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "180", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-H", &format!("X-API-Key: {key}"), "-d", &body.to_string()])
        .arg(format!("http://127.0.0.1:{port}/api/v1/knowledge-chat/{session}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut frames, mut printed) = (Vec::new(), String::new());
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(data) = line.strip_prefix("data:") {
            let frame: Value = serde_json::from_str(data.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
            on_frame(&frame);
            frames.push(frame);
        }
    }
    child.wait().unwrap();
    assert!(!frames.is_empty(), "no answer frames:\n{printed}");
    frames
}

/// The answer the `answer` frames of a chat stream spell, and the last frame.
fn answer_of(frames: &[Value]) -> (String, &Value) {
    let answer = || frames.iter().filter(|f| f["response_type"] == "answer");
    let text = answer().map(|f| f["content"].as_str().unwrap_or_default()).collect();
    (text, answer().rfind(|f| f["done"] == true).expect("the answer's last frame"))
}

/// The references frame, after upstream's `agent_query`.
fn references_of(frames: &[Value]) -> &Value {
    assert_eq!(frames[0]["response_type"], "agent_query", "{frames:?}");
    assert_eq!(frames[1]["response_type"], "references", "{frames:?}");
    &frames[1]
}

/// Stands in for the language model, which no registry here provides: an OpenAI-compatible
/// `POST /v1/chat/completions` on the host (all interfaces: the app reaches it as
/// host.docker.internal) streaming `text/event-stream` chunks. The first answer sends its
/// first piece, then waits for `go` before the rest: whoever streams it to the test must pass
/// that piece on alone. Each request (head and body) goes to `requests`.
struct StandInModel {
    port: u16,
    requests: std::sync::mpsc::Receiver<String>,
    go: std::sync::mpsc::Sender<()>,
}

const FIRST_PIECE: &str = "The nightly backup runs at 02:00 ";
const LAST_PIECE: &str = "[1].";

impl StandInModel {
    /// On `port` (0: any free one).
    fn start(port: u16) -> StandInModel {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (requests_tx, requests) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let (mut head, mut length) = (String::new(), 0);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = requests_tx.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
                let piece = |text: &str| {
                    format!("data: {}\n\n", serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}}]}))
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                     Connection: close\r\n\r\n{}",
                    piece(FIRST_PIECE)
                );
                let _ = stream.flush();
                // Until the test has read the first piece through nginx. Never told: the
                // answer is cut short, and the test fails on the missing rest.
                if n == 0 && go_rx.recv_timeout(Duration::from_secs(150)).is_err() {
                    continue;
                }
                let _ = write!(stream, "{}data: [DONE]\n\n", piece(LAST_PIECE));
            }
        });
        StandInModel { port, requests, go }
    }
}

fn wait_completed(port: &str, key: &str, doc_id: &str) {
    wait_status(port, key, doc_id, "parse_status");
}

fn wait_vectors(port: &str, key: &str, doc_id: &str) {
    wait_status(port, key, doc_id, "vector_status");
}

fn assert_all_healthy(p: &Project, expected: &[&str]) {
    let (ok, out, err) = p.xtask(&["ps", "--json"]);
    assert!(ok, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut services: Vec<&str> = list.iter().map(|c| c["service"].as_str().unwrap()).collect();
    services.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(services, want, "{out}");
    for c in &list {
        assert_eq!((c["state"].as_str(), c["health"].as_str()), (Some("running"), Some("healthy")), "{c}");
    }
}

/// What each running container runs as and with (docs/operations.md, "Security"): ours as
/// an unprivileged user on a read-only root with no capabilities; every service without
/// privilege gain and with memory and CPU limits; the app's API on loopback only.
fn assert_least_privilege(project: &str) {
    for service in ["app", "docreader", "embedder", "frontend", "postgres", "prometheus", "redis"] {
        let id = container_of(project, service);
        let c: Value = serde_json::from_str(&docker(&["inspect", &id])).unwrap();
        let (host, config) = (&c[0]["HostConfig"], &c[0]["Config"]);
        let ours = !["postgres", "prometheus", "redis"].contains(&service);
        assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{service}: {host}");
        assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges:true"]), "{service}: {host}");
        assert!(host["Memory"].as_i64().unwrap() > 0 && host["NanoCpus"].as_i64().unwrap() > 0, "{service}: {host}");
        if ours {
            assert_eq!(host["ReadonlyRootfs"], true, "{service}");
            assert_eq!(host["CapAdd"], Value::Null, "{service}");
            let user = config["User"].as_str().unwrap();
            assert!(
                !user.is_empty() && !user.starts_with("0") && !user.starts_with("root"),
                "{service} runs as {user:?}"
            );
        }
    }
    let app = container_of(project, "app");
    let bindings: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", &app])).unwrap();
    assert_eq!(bindings["8080/tcp"][0]["HostIp"], "127.0.0.1", "the API is published beyond this host: {bindings}");
}

/// The monitoring profile: Prometheus scrapes the app, docreader and itself, every target
/// up, and holds the alert rules, which its own promtool finds valid.
fn assert_monitoring(p: &Project) {
    let port = p.get("PROMETHEUS_PORT");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, targets) = curl(port, "", &[], "/api/v1/targets");
        let health: std::collections::BTreeMap<&str, &str> = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (t["labels"]["job"].as_str().unwrap_or(""), t["health"].as_str().unwrap_or("")))
            .collect();
        let jobs: Vec<&str> = health.keys().copied().collect();
        if status == 200 && jobs == ["app", "docreader", "prometheus"] && health.values().all(|h| *h == "up") {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus's targets are not all up after 90 s: {targets}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let (status, rules) = curl(port, "", &[], "/api/v1/rules");
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(status == 200 && names.contains(&"WeknoraTargetDown") && names.len() == 9, "{rules}");
    let prometheus = container_of(&p.name, "prometheus");
    let check = Command::new("docker")
        .args(["exec", &prometheus, "promtool", "check", "config", "/etc/prometheus/prometheus.yml"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && said.contains("9 rules found"), "{said}");
}

/// A knowledge base named `name` (its id).
fn new_knowledge_base(front: &str, key: &str, name: &str) -> String {
    let body = serde_json::json!({ "name": name }).to_string();
    let headers = ["-X", "POST", "-H", "content-type: application/json", "-d", &body];
    let (status, kb) = curl(front, key, &headers, "/api/v1/knowledge-bases");
    assert_eq!(status, 201, "{kb}");
    kb["data"]["id"].as_str().unwrap().to_string()
}

fn knowledge_base_names(front: &str, key: &str) -> Vec<String> {
    let (status, list) = curl(front, key, &[], "/api/v1/knowledge-bases");
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().iter().map(|kb| kb["name"].as_str().unwrap().to_string()).collect()
}

/// The sample `series` of the app's /metrics (name and labels as rendered).
fn app_metric(p: &Project, series: &str) -> Option<f64> {
    let out = Command::new("curl").args(["-s", &format!("http://127.0.0.1:{}/metrics", p.get("APP_PORT"))]).output();
    let text = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// An archive encrypted to one age key: it holds .env, only that key's identity opens it,
/// and the drill is recorded (the app's /metrics). Then point-in-time recovery: data written
/// before and after a noted time, the database volume destroyed, the database recovered to
/// that time from the base backup `backup` took and the archived WAL.
fn encrypted_backups_and_point_in_time_recovery(p: &Project, front: &str, key: &str, kb_id: &str) {
    use age::secrecy::ExposeSecret;
    let keys = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let right = keys.path().join("backup-key.txt");
    std::fs::write(&right, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    let wrong = keys.path().join("other-key.txt");
    std::fs::write(&wrong, format!("{}\n", age::x25519::Identity::generate().to_string().expose_secret())).unwrap();
    let recipient = identity.to_public().to_string();

    let started = weknora_operator::utc::now();
    let (ok, out, err) = p.xtask(&["backup", "--encrypt", &recipient, "--json"]);
    assert!(ok, "encrypted backup failed:\n{err}");
    let backup: Value = serde_json::from_str(&out).unwrap();
    let archive = backup["archive"].as_str().unwrap().to_string();
    assert!(archive.ends_with(".tar.age"), "{backup}");
    assert!(backup["base_backup"].as_str().is_some(), "WAL archiving is on: a base backup too: {backup}");
    let bytes = std::fs::read(&archive).unwrap();
    for (name, secret) in
        SECRETS.map(|k| (k, p.env_file().lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().to_string()))
    {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{name} is in clear in the archive");
    }
    let (ok, _, err) = p.xtask(&["backup", "verify", &archive]);
    assert!(!ok && err.contains("is encrypted") && err.contains("--identity"), "{err}");
    let (ok, _, err) = p.xtask(&["backup", "verify", &archive, "--identity", wrong.to_str().unwrap()]);
    assert!(!ok && err.contains("other-key.txt does not open"), "{err}");
    let (ok, _, err) = p.xtask(&["restore", &archive, "--identity", wrong.to_str().unwrap(), "--yes"]);
    assert!(!ok && err.contains("does not open"), "{err}");
    let (ok, out, err) = p.xtask(&["backup", "verify", &archive, "--identity", right.to_str().unwrap(), "--json"]);
    assert!(ok, "verify with the right identity failed:\n{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(report["manifest"]["entries"]["config/.env"].is_object(), "the settings are in it: {report}");
    assert_eq!(report["drill"]["files_checked"], 1, "{report}");
    // The app reports the backup and its drill, for the alerts on missing backups.
    for kind in ["archive", "base", "verified"] {
        let at = app_metric(p, &format!("weknora_backup_last_success_timestamp_seconds{{kind=\"{kind}\"}}"));
        assert!(at.is_some_and(|t| t >= started as f64 - 1.0), "{kind}: {at:?}");
    }

    // Point-in-time recovery.
    new_knowledge_base(front, key, "written-before-the-time");
    std::thread::sleep(Duration::from_millis(1500));
    // In UTC, as an operator types it.
    let noted = weknora_operator::utc::rfc3339(weknora_operator::utc::now()).replace('T', " ").replace('Z', "");
    std::thread::sleep(Duration::from_millis(1500));
    new_knowledge_base(front, key, "written-after-the-time");
    // What the hourly archive_timeout would do: the segment holding both goes to the archive.
    let segment = faults::sql(&p.name, "SELECT pg_walfile_name(pg_switch_wal())").remove(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while faults::sql(&p.name, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[0] < segment {
        assert!(Instant::now() < deadline, "{segment} was not archived in 30 s");
        std::thread::sleep(Duration::from_millis(300));
    }
    let count = || faults::sql(&p.name, "SELECT count(*) FROM knowledge_bases")[0].parse::<u64>().unwrap();
    let rows_then = count();
    // The drill first: the archive recovered to the noted time in a throwaway container.
    let (ok, out, err) = p.xtask(&["backup", "verify", "--to-time", &noted, "--json"]);
    assert!(ok, "drill to {noted} failed:\n{err}");
    let drill: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(drill["drill"]["rows"]["knowledge_bases"], rows_then - 1, "{drill}");
    // Before the oldest base backup: refused, nothing changed.
    let (ok, _, err) = p.xtask(&["restore", "--to-time", "2001-01-01 00:00", "--yes"]);
    assert!(!ok && err.contains("no base backup was finished before"), "{err}");

    let postgres = container_of(&p.name, "postgres");
    docker(&["rm", "-f", &postgres]);
    docker(&["volume", "rm", &format!("{}_postgres_data", p.name)]);
    let (ok, out, err) = p.xtask(&["restore", "--to-time", &noted, "--yes", "--json"]);
    assert!(ok, "restore --to-time {noted} failed:\n{err}");
    let restored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["replaced"], Value::Null, "the data volume was empty: {restored}");
    assert_eq!(restored["rows"], drill["drill"]["rows"], "the drill and the restore disagree");
    let names = knowledge_base_names(front, key);
    assert!(names.iter().any(|n| n == "written-before-the-time"), "{names:?}");
    assert!(!names.iter().any(|n| n == "written-after-the-time"), "{names:?}");
    assert_eq!(count(), rows_then - 1);
    assert_keyword_search_finds(front, key, kb_id);
    assert_all_healthy(p, &["app", "docreader", "embedder", "frontend", "postgres", "prometheus", "redis"]);
}

/// BACKUP_AT switches the stack's own backup service on: with no archive of the last day it
/// takes one at once, verifies it with a restore drill (recorded in the database), encrypts
/// it to BACKUP_ENCRYPT_TO, adds a base backup, prunes by the policy (here: the newest of one
/// day) in the backup folder, the archive volume and the copy folder, and copies the archive
/// to BACKUP_COPY_TO. What it writes belongs to the folder's owner, and the host's `backup
/// verify` opens it with the identity; it holds .env.
/// Returns the folders it made: .env names them until the stack is stopped.
fn the_stacks_backup_service_takes_verifies_prunes_and_copies(p: &Project) -> tempfile::TempDir {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::MetadataExt;
    let dirs = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dirs.path().join("backup-key.txt");
    std::fs::write(&identity_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    let (backups, copies) = (dirs.path().join("nightly"), dirs.path().join("offsite"));
    std::fs::create_dir_all(&copies).unwrap();
    std::fs::create_dir_all(&backups).unwrap();
    // Archives of 2020: the policy keeps neither that one nor its copy, and leaves the labelled one.
    let old = format!("weknora-{}-20200106T020000Z.tar", p.name);
    let labelled = format!("weknora-{}-20200106T020000Z-before-upgrade.tar", p.name);
    for path in [backups.join(&old), copies.join(&old), backups.join(&labelled)] {
        std::fs::write(path, b"an old archive").unwrap();
    }
    let now = weknora_operator::utc::now();
    // Twelve hours away: the run seen here is the one a start with no recent archive takes.
    let at = format!("{:02}:00", (weknora_operator::utc::civil(now)[3] + 12) % 24);
    let mut settings = std::fs::OpenOptions::new().append(true).open(p.get("WEKNORA_ENV_FILE")).unwrap();
    let lines = format!(
        "BACKUP_AT={at}\nBACKUP_COPY_TO={}\nBACKUP_KEEP_DAILY=1\nBACKUP_KEEP_WEEKLY=0\nBACKUP_ENCRYPT_TO={}\n",
        copies.display(),
        identity.to_public()
    );
    std::io::Write::write_all(&mut settings, lines.as_bytes()).unwrap();
    let mut env = p.env.clone();
    env.retain(|(k, _)| k != "BACKUP_DIR");
    env.push(("BACKUP_DIR".into(), backups.display().to_string()));
    let (ok, _, err) = xtask(&["start", "--profile", "monitoring", "--timeout", "300"], &env);
    assert!(ok, "start with the backup service failed:\n{err}");

    let ours = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("weknora-{}-", p.name)) && !n.contains("2020") && !n.contains("failed"))
            .collect();
        names.sort();
        names
    };
    let service = container_of(&p.name, "backup");
    // The service reports on stderr.
    let log_of = |args: &[&str]| {
        let out = Command::new("docker").arg("logs").args(args).arg(&service).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    // The database `check --deep` was shown has orphan chunks: its dump does not restore.
    // The first run (at once: no archive of the last day) fails its drill, so the archive
    // does not count, nothing is pruned or copied, and no plain archive is left.
    let deadline = Instant::now() + Duration::from_secs(300);
    let logs = loop {
        let logs = log_of(&[]);
        if logs.contains("error:") {
            break logs;
        }
        assert!(Instant::now() < deadline, "no run after 300 s; the service's log:\n{logs}");
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        logs.contains("did not pass its restore drill") && logs.contains("chunks_knowledge_id_fkey"),
        "the failed drill is not what the log says:\n{logs}"
    );
    let listed = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let failed: Vec<String> = listed(&backups).into_iter().filter(|n| n.contains("failed-drill")).collect();
    assert!(failed.len() == 1 && failed[0].ends_with("-failed-drill.tar.age"), "{:?}", listed(&backups));
    assert!(ours(&backups).is_empty() && ours(&copies).is_empty(), "nothing else was written");
    assert!(backups.join(&old).exists() && copies.join(&old).exists(), "nothing was pruned");
    let sql = format!("SELECT count(*) FROM backup_runs WHERE name = '{}'", failed[0]);
    assert_eq!(faults::sql(&p.name, &sql), ["0"], "a backup that failed its drill was recorded");

    // The fixes `check --deep` names (the orphans deleted; the document whose file is gone
    // too: the next drill would name it), then a run now, by hand.
    for table in ["chunks", "ingest_jobs"] {
        let sql =
            format!("DELETE FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM knowledge k WHERE k.id = t.knowledge_id)");
        faults::sql(&p.name, &sql);
    }
    faults::sql(&p.name, "DELETE FROM knowledge WHERE object_key = 'gone/never-stored.md'");
    let run =
        Command::new("docker").args(["exec", &service, "weknora", "backup", "schedule", "--once"]).output().unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && said.contains("taken and verified"), "{said}");
    assert!(said.contains("copied to") && said.contains("base backup"), "{said}");
    let db_password = p.env_file().lines().find_map(|l| l.strip_prefix("DB_PASSWORD=")).unwrap().to_string();
    assert!(!(said + &log_of(&[])).contains(&db_password), "the database password is in the service's output");
    let name = ours(&copies).remove(0);
    assert!(name.ends_with(".tar.age"), "{name}");
    assert_eq!(ours(&backups), std::slice::from_ref(&name), "one archive, the same in both folders");
    assert!(backups.join(&failed[0]).exists(), "the archive that failed its drill is left alone (labelled)");
    let archive = backups.join(&name);
    assert_eq!(std::fs::read(&archive).unwrap(), std::fs::read(copies.join(&name)).unwrap());
    for path in [&archive, &copies.join(&name)] {
        let (file, folder) = (std::fs::metadata(path).unwrap(), std::fs::metadata(path.parent().unwrap()).unwrap());
        assert_eq!(
            (file.uid(), file.gid()),
            (folder.uid(), folder.gid()),
            "{} is not its folder owner's",
            path.display()
        );
    }
    assert!(!backups.join(&old).exists() && !copies.join(&old).exists(), "the policy keeps one day's newest only");
    assert!(backups.join(&labelled).exists(), "a labelled archive is the undo of a command: left alone");
    let sql = format!("SELECT count(*) FROM backup_runs WHERE name = '{name}' AND verified_at IS NOT NULL");
    assert_eq!(faults::sql(&p.name, &sql), ["1"], "the drill is recorded");
    // The base backups taken before are pruned: recovery now starts at the service's.
    let before = weknora_operator::utc::rfc3339(now).replace('T', " ").replace('Z', "");
    let (ok, _, err) = p.xtask(&["restore", "--to-time", &before, "--dry-run"]);
    assert!(!ok && err.contains("no base backup was finished before"), "{err}");
    let verify = ["backup", "verify", archive.to_str().unwrap(), "--identity", identity_file.to_str().unwrap()];
    let (ok, out, err) = p.xtask(&verify);
    assert!(ok && out.starts_with("ok:"), "the host's verify refused the service's archive:\n{out}\n{err}");
    // Encrypted, it holds the settings (as `backup --encrypt` does).
    let key = weknora_operator::backup::Key::load(&identity_file).unwrap();
    let opened = weknora_operator::backup::Archive { path: archive.clone(), key: Some(&key) };
    let env = opened.read_entry("config/.env").unwrap();
    assert_eq!(env.as_deref(), Some(p.env_file().as_bytes()), "the encrypted archive does not hold .env");
    dirs
}

/// `check --deep` on the stack the faults left (every document indexed): each fault it
/// looks for is injected, and it names each with a fix.
fn deep_check_names_each_fault(p: &Project, front: &str, key: &str) {
    let deep = |p: &Project| {
        let (ok, out, err) = p.xtask(&["check", "--deep", "--json", "--long-query-secs", "2"]);
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        let by_id: std::collections::BTreeMap<String, Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c.clone()))
            .collect();
        (ok, by_id)
    };
    let (_, before) = deep(p);
    for id in ["long-queries", "lock-waits", "queue", "orphan-chunks", "missing-vectors", "connections", "backups"] {
        assert_eq!(before[id]["status"], "ok", "before any fault: {}", before[id]);
    }
    assert_eq!(before["containers"]["status"], "warn", "the crashes are counted: {}", before["containers"]);
    // Files without documents: how many there were (an upload cut by a crash may leave one).
    let orphans = |f: &Value| -> usize {
        let detail = f["detail"].as_str().unwrap();
        detail.split_once("names, ").and_then(|(_, n)| n.split(':').next()?.parse().ok()).unwrap_or(0)
    };
    let orphans_before = orphans(&before["orphan-files"]);

    let sql = |q: &str| faults::sql(&p.name, q);
    let docs = sql("SELECT id FROM knowledge WHERE vector_status = 'completed' AND coalesce(object_key, '') <> '' \
         ORDER BY created_at LIMIT 3");
    let [gone, unvectored, fileless] = [&docs[0], &docs[1], &docs[2]];
    // An error in the app's log: a query on a table that is not there for a moment.
    sql("ALTER TABLE knowledge_bases RENAME TO knowledge_bases_away");
    let (status, _) = curl(front, key, &[], "/api/v1/knowledge-bases");
    sql("ALTER TABLE knowledge_bases_away RENAME TO knowledge_bases");
    assert_eq!(status, 500, "the database error did not reach the app");
    // A document deleted without its chunks (foreign keys off for the session): orphan
    // chunks, and its file orphaned too.
    sql(&format!("SET session_replication_role = replica; DELETE FROM knowledge WHERE id = '{gone}'"));
    // A document marked indexed whose vectors are gone; one whose file is gone.
    sql(&format!(
        "DELETE FROM chunk_embeddings WHERE chunk_id IN (SELECT id FROM chunks WHERE knowledge_id = '{unvectored}')"
    ));
    sql(&format!("UPDATE knowledge SET object_key = 'gone/never-stored.md' WHERE id = '{fileless}'"));
    // No worker: the app stopped, and a job due an hour ago.
    let app = container_of(&p.name, "app");
    docker(&["stop", &app]);
    sql(&format!(
        "INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts, kind, next_attempt_at) \
         SELECT tenant_id, id, 1, 'parse', now() - interval '1 hour' FROM knowledge WHERE id = '{fileless}'"
    ));
    // A long statement, and a session waiting for the lock another holds.
    let pg = container_of(&p.name, "postgres");
    let detached = |q: &str| {
        let psql = format!("psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -c \"{q}\"");
        docker(&["exec", "-d", &pg, "sh", "-c", &psql]);
    };
    detached("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT");
    std::thread::sleep(Duration::from_secs(1));
    detached("SELECT count(*) FROM tenants");
    std::thread::sleep(Duration::from_secs(3));

    let (ok, after) = deep(p);
    assert!(!ok, "a stopped app is a failure: {:?}", after["containers"]);
    let expect = |id: &str, status: &str, says: &str| {
        let f = &after[id];
        assert_eq!(f["status"], status, "{id}: {f}");
        assert!(f["detail"].as_str().unwrap().contains(says), "{id} does not say {says:?}: {f}");
        assert!(f["fix"].as_str().is_some_and(|fix| fix.len() > 10), "{id} has no fix: {f}");
    };
    expect("containers", "fail", "app exited");
    expect("long-queries", "warn", "running");
    expect("lock-waits", "warn", "waits");
    expect("queue", "warn", "1 stuck");
    expect("orphan-chunks", "warn", "chunks belong to no document");
    expect("missing-vectors", "warn", "1 documents");
    expect("missing-files", "warn", "gone/never-stored.md");
    expect("orphan-files", "warn", "files in app_data no document names");
    assert_eq!(orphans(&after["orphan-files"]), orphans_before + 2, "{}", after["orphan-files"]);
    expect("log-errors", "warn", "app");
    assert!(after["volumes"]["detail"].as_str().unwrap().contains("postgres_data"), "{}", after["volumes"]);
    assert_eq!(after["connections"]["status"], "ok", "{}", after["connections"]);

    // Back to a running app; the sessions ended.
    sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
    );
    docker(&["start", &app]);
}

/// The secrets `start` generates into `.env`.
const SECRETS: [&str; 4] = ["DB_PASSWORD", "REDIS_PASSWORD", "ADMIN_API_KEY", "MODELS_ENCRYPTION_KEY"];

const DOC: &str = "# Disaster recovery\n\nThe nightly backup of the vault runs at 02:00 and is verified by a restore drill \
                   every Friday. Keep the offsite copies for ninety days.\n";

/// The stack the `e2e_*` tests share, one test per phase, so that a failing phase hides none
/// of the others. Under nextest each test is a process of its own, so the stack outlives
/// them: its variables are recorded in `target/e2e-stack/env` and what the phases leave for
/// later ones (the document, the chat model, which phases ran) in `state.json`. A file lock
/// keeps two tests off it at once; a test reuses it while every service is healthy and starts
/// it afresh otherwise (after a phase stopped or broke it). A phase that needs what an earlier
/// one left runs that one first when it did not run on this stack. The last phase stops it;
/// `cargo xtask ci` stops what a failed run left (`SHARED_STACK_DIR`).
struct Shared {
    p: Project,
    state: Value,
    dir: std::path::PathBuf,
    _lock: std::fs::File,
}

/// Under the checkout's `target/`; `cargo xtask ci` reads `env` there to stop what is left.
const SHARED_STACK_DIR: &str = "target/e2e-stack";

/// The services of the shared stack (`start --profile monitoring`).
const SERVICES: [&str; 7] = ["app", "docreader", "embedder", "frontend", "postgres", "prometheus", "redis"];

impl Shared {
    fn get() -> Shared {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(SHARED_STACK_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        lock.lock().unwrap();
        if let Some(env) = std::fs::read_to_string(dir.join("env")).ok().map(|text| parse_env(&text)) {
            let p = Project::shared(env);
            let state = std::fs::read_to_string(dir.join("state.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            if state.is_object() && is_healthy(&p) {
                return Shared { p, state, dir, _lock: lock };
            }
            if let Some(made) = state["backup_service_dir"].as_str() {
                let _ = std::fs::remove_dir_all(made);
            }
            // Stopped or broken by an earlier phase, or left half-started: from scratch.
            let _ = p.xtask(&["stop", "--volumes", "--yes"]);
        }
        for old in ["env", "state.json", ".env"] {
            let _ = std::fs::remove_file(dir.join(old));
        }
        let _ = std::fs::remove_dir_all(dir.join("backups"));
        let env = vec![
            ("WEKNORA_ENV_FILE".to_string(), dir.join(".env").display().to_string()),
            ("COMPOSE_PROJECT_NAME".to_string(), format!("wke2e{}", std::process::id())),
            ("FRONTEND_PORT".to_string(), free_port().to_string()),
            ("APP_PORT".to_string(), free_port().to_string()),
            ("PROMETHEUS_PORT".to_string(), free_port().to_string()),
            ("BACKUP_DIR".to_string(), dir.join("backups").display().to_string()),
        ];
        // Recorded first: what a start cut short leaves is found and stopped.
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join("env"), text).unwrap();
        let p = Project::shared(env);
        let mut phases = Phases::start("e2e");
        let (ok, out, err) = p.xtask(&["start", "--profile", "monitoring", "--timeout", "600"]);
        assert!(ok, "start failed:\n{err}");
        phases.done("start");
        let state = serde_json::json!({ "start": { "out": out, "err": err }, "done": [] });
        let shared = Shared { p, state, dir, _lock: lock };
        shared.save();
        shared
    }

    fn save(&self) {
        std::fs::write(self.dir.join("state.json"), self.state.to_string()).unwrap();
    }

    fn has(&self, phase: &str) -> bool {
        self.state["done"].as_array().is_some_and(|d| d.iter().any(|p| p == phase))
    }

    fn done(&mut self, phase: &str) {
        if !self.has(phase) {
            self.state["done"].as_array_mut().unwrap().push(phase.into());
        }
        self.save();
    }

    fn forget(&mut self, phase: &str) {
        self.state["done"].as_array_mut().unwrap().retain(|p| p != phase);
        self.save();
    }

    fn text(&self, key: &str) -> String {
        self.state[key].as_str().unwrap_or_else(|| panic!("{key} is not recorded: {}", self.state)).to_string()
    }

    /// A recorded text by its path (`["start", "out"]`).
    fn text_at(&self, path: &[&str]) -> String {
        let value = path.iter().fold(&self.state, |v, k| &v[*k]);
        value.as_str().unwrap_or_else(|| panic!("{path:?} is not recorded: {}", self.state)).to_string()
    }

    fn front(&self) -> String {
        self.p.get("FRONTEND_PORT").to_string()
    }

    /// The knowledge base "ops" and its document (the upload phase's).
    fn document(&mut self) -> (String, String) {
        if !self.has("upload") {
            upload_search_reindex(self);
        }
        (self.text("kb_id"), self.text("doc_id"))
    }

    /// The chat phase's session and the tenant's model (its API key), run first if needed.
    fn chat(&mut self) -> (String, String, String) {
        if !self.has("chat") {
            chat_extractive_then_by_a_tenants_model(self);
        }
        (self.text("session_id"), self.text("model_id"), self.text("model_key"))
    }
}

fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every service of the shared stack running and healthy (the backup service, which a later
/// phase adds, has no healthcheck). A service that is starting again (after the faults phase
/// crashed it, or `check --deep` stopped the app) is waited for, up to two minutes.
fn is_healthy(p: &Project) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, out, _) = p.xtask(&["ps", "--json"]);
        let Some(list) = serde_json::from_str::<Vec<Value>>(&out).ok().filter(|_| ok) else { return false };
        if !SERVICES.iter().all(|s| list.iter().any(|c| c["service"] == *s)) {
            return false;
        }
        let settled = |c: &Value| c["service"] == "backup" || c["health"] != "starting";
        if list.iter().all(settled) || Instant::now() > deadline {
            let healthy = |c: &Value| c["state"] == "running" && (c["service"] == "backup" || c["health"] == "healthy");
            return list.iter().all(healthy);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The question the chat phase asks, with the tenant's model when given.
fn backup_question(model_id: Option<&str>) -> Value {
    let mut question = serde_json::json!({"query": "When does the nightly backup run?"});
    if let Some(model_id) = model_id {
        question["summary_model_id"] = model_id.into();
    }
    question
}

#[test]
fn e2e_01_start_brings_every_service_up_healthy() {
    require!(Need::DockerEngine, Need::StackTier);
    let s = Shared::get();
    let out = s.text_at(&["start", "out"]);
    assert!(out.contains("is up"), "{out}");
    assert_all_healthy(&s.p, &SERVICES);
}

#[test]
fn e2e_02_secrets_are_generated_private_and_never_printed_least_privilege_and_check() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let s = Shared::get();
    let p = &s.p;
    let (out, err) = (s.text_at(&["start", "out"]), s.text_at(&["start", "err"]));
    // .env was created with generated secrets, private, and none of them was printed.
    let env_path = p.get("WEKNORA_ENV_FILE").to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env_path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let env_text = p.env_file();
    assert!(!env_text.lines().any(|l| l.ends_with("=<generated>")), "{env_text}");
    for key in SECRETS {
        let secret = env_text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap();
        assert_eq!(secret.len(), 64, "{key}");
        assert!(!out.contains(secret) && !err.contains(secret), "{key} was printed");
    }
    assert_least_privilege(&p.name);
    // `check` on the running stack: its own containers hold the ports, and that is fine.
    let (ok, out, err) = p.xtask(&["check", "--json"]);
    assert!(ok, "check failed on a healthy stack:\n{out}\n{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], true, "{out}");
    phases.done("secrets, least privilege, check");
}

#[test]
fn e2e_03_a_document_uploaded_through_the_frontend_is_found_by_meaning_and_reindexed() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    upload_search_reindex(&mut Shared::get());
    phases.done("upload, semantic search, reindex");
}

fn upload_search_reindex(s: &mut Shared) {
    let p = &s.p;
    // A knowledge base and a document, through the frontend's /api proxy.
    let front = s.front();
    let key = p.admin_key();
    let (kb_id, doc_id) = upload_and_search(&front, &key, "ops");
    // Semantic search out of the box: the bundled embedder gave the chunks vectors, and a
    // question in other words (and in Chinese) finds them through the frontend.
    wait_vectors(&front, &key, &doc_id);
    // Neither question shares a word with the document: only its vectors can match.
    for question in ["How long do we retain duplicates stored elsewhere?", "异地副本保留多久？"] {
        let (status, hits) = knowledge_search(&front, &key, &kb_id, question);
        assert_eq!((status, hits["retrieval"].as_str()), (200, Some("hybrid")), "{hits}");
        assert!(hits["data"][0]["content"].as_str().unwrap().contains("offsite copies"), "{question}: {hits}");
        assert_eq!(hits["data"][0]["match_kind"], "vector", "{question}: {hits}");
    }
    // The operator's reindex queues the vectors again; the app's workers make them.
    let (ok, out, err) = p.xtask(&["reindex", "--kb", &kb_id]);
    assert!(ok && out.contains(&format!("{kb_id} ops: 1 documents queued")), "{out}\n{err}");
    wait_vectors(&front, &key, &doc_id);
    let (ok, _, err) = p.xtask(&["reindex", "--kb", "00000000-0000-0000-0000-000000000000"]);
    assert!(!ok && err.contains("no knowledge base has the id"), "{err}");
    s.state["kb_id"] = kb_id.into();
    s.state["doc_id"] = doc_id.into();
    s.done("upload");
}

#[test]
fn e2e_04_prometheus_scrapes_every_target_and_holds_the_alert_rules() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    assert_monitoring(&Shared::get().p);
    phases.done("monitoring");
}

#[test]
fn e2e_05_the_web_interface_walks_through_in_a_real_browser() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let s = Shared::get();
    browser::walk_through_the_ui(&s.front(), &s.p.admin_key());
    phases.done("browser");
}

#[test]
fn e2e_06_chat_answers_from_the_passages_then_through_a_tenants_model_streamed_by_nginx() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    chat_extractive_then_by_a_tenants_model(&mut Shared::get());
    phases.done("chat");
}

fn chat_extractive_then_by_a_tenants_model(s: &mut Shared) {
    let (kb_id, _) = s.document();
    let (front, key) = (s.front(), s.p.admin_key());
    // Chat without a chat model: the answer is the passages themselves, each cited.
    let json = ["-H", "content-type: application/json"];
    let (status, session) = curl(
        &front,
        &key,
        &[&["-X", "POST"][..], &json, &["-d", &serde_json::json!({"knowledge_base_id": kb_id}).to_string()]].concat(),
        "/api/v1/sessions",
    );
    assert_eq!(status, 201, "{session}");
    let session_id = session["data"]["id"].as_str().unwrap().to_string();
    let frames = ask(&front, &key, &session_id, backup_question(None), |_| {});
    let references = references_of(&frames);
    assert!(references["knowledge_references"][0]["content"].as_str().unwrap().contains("02:00"), "{frames:?}");
    let (text, done) = answer_of(&frames);
    assert!(text.contains("02:00") && text.contains("[1]"), "{text}");
    assert!(frames.iter().filter(|f| f["response_type"] == "answer").all(|f| f["data"]["answer_kind"] == "extractive"));
    assert_eq!(
        (done["done"].as_bool(), done["data"]["answer_kind"].as_str()),
        (Some(true), Some("extractive")),
        "{done}"
    );

    // A tenant's model on the host, its API key stored encrypted and never answered.
    let model = StandInModel::start(0);
    let model_key = format!("sk-e2e-{}-{}", std::process::id(), free_port());
    let spec = serde_json::json!({"name": "stand-in-llm", "type": "KnowledgeQA", "source": "remote", "parameters": {
        "base_url": format!("http://host.docker.internal:{}/v1", model.port), "api_key": model_key, "provider": "openai"}});
    let (status, created) =
        curl(&front, &key, &[&["-X", "POST"][..], &json, &["-d", &spec.to_string()]].concat(), "/api/v1/models");
    assert_eq!((status, created["data"]["parameters"]["api_key"].as_str()), (201, Some("***")), "{created}");
    let model_id = created["data"]["id"].as_str().unwrap().to_string();
    let (_, listed) = curl(&front, &key, &[], "/api/v1/models");
    assert!(!created.to_string().contains(&model_key) && !listed.to_string().contains(&model_key));
    // nginx passes each piece on as it comes: the model holds back the rest of its answer
    // until the first piece has come out of the frontend. A buffering proxy would hold that
    // piece too, and both would wait until the deadlines ran out.
    let mut released = false;
    let frames = ask(&front, &key, &session_id, backup_question(Some(&model_id)), |frame| {
        if frame["response_type"] == "answer" && !released {
            assert_eq!(frame["content"], FIRST_PIECE, "{frame}");
            model.go.send(()).unwrap();
            released = true;
        }
    });
    assert!(released, "no answer piece came through: {frames:?}");
    let (text, done) = answer_of(&frames);
    assert_eq!(text, format!("{FIRST_PIECE}{LAST_PIECE}"), "{frames:?}");
    references_of(&frames);
    assert_eq!((done["done"].as_bool(), done["data"]["answer_kind"].as_str()), (Some(true), Some("model")), "{done}");
    assert_eq!(
        (done["data"]["model"].as_str(), done["data"]["status"].as_str()),
        (Some("stand-in-llm"), Some("completed"))
    );
    // The model got the question, the passage and the decrypted key.
    let request = model.requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(request.starts_with("POST /v1/chat/completions "), "{request}");
    assert!(
        request.to_ascii_lowercase().contains(&format!("authorization: bearer {}", model_key.to_ascii_lowercase()))
    );
    assert!(
        request.contains("nightly backup") && request.contains("02:00") && request.contains("stand-in-llm"),
        "{request}"
    );
    s.state["session_id"] = session_id.into();
    s.state["model_id"] = model_id.into();
    s.state["model_key"] = model_key.into();
    s.state["model_port"] = model.port.into();
    s.done("chat");
}

#[test]
fn e2e_07_a_second_start_is_a_no_op_and_restart_app_keeps_the_data() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let mut s = Shared::get();
    let (kb_id, doc_id) = s.document();
    let (p, front, key) = (&s.p, s.front(), s.p.admin_key());
    // A second start is a quick no-op.
    let (ok, out, err) = p.xtask(&["start"]);
    assert!(ok && out.contains("is up"), "{err}");

    // restart app: rebuilt image (same commit: same ID), recreated container, data kept.
    let (ok, _, err) = p.xtask(&["restart", "app"]);
    assert!(ok, "restart app failed:\n{err}");
    assert_all_healthy(p, &SERVICES);
    let (_, k) = curl(&front, &key, &[], &format!("/api/v1/knowledge/{doc_id}"));
    assert_eq!(k["data"]["parse_status"], "completed", "{k}");
    assert_keyword_search_finds(&front, &key, &kb_id);
    phases.done("second start, restart app");
}

#[test]
fn e2e_08_backup_holds_no_secret_verify_finds_damage_and_restore_brings_back_the_data() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let mut s = Shared::get();
    let (kb_id, doc_id) = s.document();
    let (session_id, model_id, model_key) = s.chat();
    // The tenant's model answers again (the chat phase's ran in its own process).
    let port = s.state["model_port"].as_u64().unwrap() as u16;
    let model = StandInModel::start(port);
    model.go.send(()).unwrap();
    let (p, front, key) = (&s.p, s.front(), s.p.admin_key());
    // Every document is in the archive, each with its file.
    let documents: u64 = faults::sql(&p.name, "SELECT count(*) FROM knowledge")[0].parse().unwrap();
    // Backup: one private archive with the database and the document, no secret in it.
    let (ok, out, err) = p.xtask(&["backup", "--json"]);
    assert!(ok, "backup failed:\n{err}");
    let backup: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let archive = backup["archive"].as_str().unwrap().to_string();
    assert!(archive.starts_with(p.get("BACKUP_DIR")), "BACKUP_DIR not used: {archive}");
    assert_eq!(backup["files"], documents, "{backup}");
    assert_eq!(backup["rows"]["knowledge"], documents, "{backup}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&archive).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the archive holds every document: owner only");
    let bytes = std::fs::read(&archive).unwrap();
    let secrets = SECRETS.map(|key| {
        let value = p.env_file().lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap().to_string();
        (key, value)
    });
    for (key, secret) in
        secrets.iter().map(|(k, v)| (*k, v.as_str())).chain([("the model's API key", model_key.as_str())])
    {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{key} is in the archive");
        assert!(!out.contains(secret) && !err.contains(secret), "{key} was printed");
    }
    let (_, logs, _) = p.xtask(&["logs", "app", "--tail", "all"]);
    assert!(!logs.contains(&model_key), "the model's API key is in the app's log");

    // verify: checksums, then a restore drill that finds the document's original intact.
    let (ok, out, err) = p.xtask(&["backup", "verify", &archive, "--json"]);
    assert!(ok, "verify failed:\n{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["drill"]["files_checked"], documents, "{report}");
    assert_eq!(report["drill"]["rows"]["knowledge"], documents, "{report}");
    // One changed byte in the document: verify names it, restore refuses to touch anything.
    let at = bytes.windows(12).position(|w| w == b"ninety days.").expect("the document is stored as it was");
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x20;
    let damaged_path = format!("{archive}.damaged.tar");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let (ok, out, _) = p.xtask(&["backup", "verify", &damaged_path]);
    assert!(!ok && out.contains("files/") && out.contains("corrupt"), "{out}");
    let (ok, _, err) = p.xtask(&["restore", &damaged_path, "--yes"]);
    assert!(!ok && err.contains("damaged, nothing was changed"), "{err}");

    // A dump pg_restore refuses (with checksums that match): the database in use stays as it was.
    let unrestorable = with_garbage_dump(&archive);
    let (ok, _, err) = p.xtask(&["restore", &unrestorable, "--yes", "--no-safety-backup"]);
    assert!(!ok && err.contains("the database in use was left as it was"), "{err}");
    let (_, k) = curl(&front, &key, &[], &format!("/api/v1/knowledge/{doc_id}"));
    assert_eq!(k["data"]["parse_status"], "completed", "after a failed restore: {k}");

    // Lose the knowledge base, then restore: refused without --yes, --dry-run only tells.
    let (status, _) = curl(&front, &key, &["-X", "DELETE"], &format!("/api/v1/knowledge-bases/{kb_id}"));
    assert!(status == 200 || status == 204, "{status}");
    let (ok, _, err) = p.xtask(&["restore", &archive]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = p.xtask(&["restore", &archive, "--dry-run"]);
    assert!(ok && out.contains("would replace database"), "{out}\n{err}");
    let (status, _) = curl(&front, &key, &[], &format!("/api/v1/knowledge/{doc_id}"));
    assert_eq!(status, 404, "--dry-run changed something");
    let dangling = || docker(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    let dangling_before = dangling();
    let (ok, out, err) = p.xtask(&["restore", &archive, "--yes", "--json"]);
    assert!(ok, "restore failed:\n{err}");
    assert_eq!(dangling(), dangling_before, "restore left a volume behind");
    let restored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["rows"]["knowledge"], documents, "{restored}");
    let safety = restored["safety_backup"].as_str().expect("a backup of the state before").to_string();
    assert!(safety.contains("before-restore") && Path::new(&safety).exists(), "{restored}");
    assert_keyword_search_finds(&front, &key, &kb_id);
    // The restored model still opens its API key (same MODELS_ENCRYPTION_KEY) and answers.
    let frames = ask(&front, &key, &session_id, backup_question(Some(&model_id)), |_| {});
    assert_eq!(answer_of(&frames).0, format!("{FIRST_PIECE}{LAST_PIECE}"), "after restore: {frames:?}");
    // The original is back where the app reads it: parsing it again works.
    let (status, _) = curl(&front, &key, &["-X", "POST"], &format!("/api/v1/knowledge/{doc_id}/reparse"));
    assert!((200..300).contains(&status), "reparse: {status}");
    wait_completed(&front, &key, &doc_id);
    s.done("backup");
    phases.done("backup, verify, restore");
}

#[test]
fn e2e_09_encrypted_backups_and_point_in_time_recovery() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let mut s = Shared::get();
    let (kb_id, _) = s.document();
    encrypted_backups_and_point_in_time_recovery(&s.p, &s.front(), &s.p.admin_key(), &kb_id);
    s.done("backup");
    phases.done("encrypted backup, point-in-time recovery");
}

#[test]
fn e2e_10_an_ingest_survives_each_service_crashing_in_turn() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    ingest_through_crashes(&mut Shared::get());
    phases.done("faults");
}

fn ingest_through_crashes(s: &mut Shared) {
    // The same stack through crashes of each service under an ingest of 200 documents.
    faults::ingest_survives_each_service_crashing_in_turn(&s.p.name, &s.front(), s.p.get("APP_PORT"), &s.p.admin_key());
    s.done("faults");
}

#[test]
fn e2e_11_check_deep_names_each_fault() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    check_deep(&mut Shared::get());
    phases.done("check --deep");
}

/// On the stack the faults left (crashes counted, every document indexed) and backed up.
fn check_deep(s: &mut Shared) {
    if !s.has("faults") {
        ingest_through_crashes(s);
    }
    if !s.has("backup") {
        let (ok, _, err) = s.p.xtask(&["backup"]);
        assert!(ok, "backup failed:\n{err}");
        s.done("backup");
    }
    deep_check_names_each_fault(&s.p, &s.front(), &s.p.admin_key());
    // It leaves the faults it injected (orphan chunks, a missing file) for the backup service.
    s.done("check --deep");
}

#[test]
fn e2e_12_the_stacks_backup_service_takes_verifies_prunes_and_copies() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let mut s = Shared::get();
    // Its first drill fails on the faults `check --deep` left.
    if !s.has("check --deep") {
        check_deep(&mut s);
    }
    // (The folders stay while the stack runs: .env names them.)
    let dirs = the_stacks_backup_service_takes_verifies_prunes_and_copies(&s.p).keep();
    s.state["backup_service_dir"] = dirs.display().to_string().into();
    // It fixed those faults.
    s.forget("check --deep");
    phases.done("backup service");
}

#[test]
fn e2e_13_logs_a_broken_start_and_stop_leave_nothing_behind() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("e2e");
    let s = Shared::get();
    let (p, key) = (&s.p, s.p.admin_key());
    // Logs name the service; a wrong service name is an error naming the choices.
    let (ok, out, err) = p.xtask(&["logs", "app", "--tail", "5"]);
    assert!(ok && !(out.clone() + &err).trim().is_empty(), "{err}");
    let (ok, _, err) = p.xtask(&["restart", "nosuch"]);
    assert!(!ok && err.contains("no service `nosuch`") && err.contains("postgres"), "{err}");

    // A service that cannot start: start names it, with its health output and last log lines.
    let mut broken = p.env.clone();
    // (A setting that `weknora-app migrate` does not read: the app itself must fail.)
    broken.push(("STORAGE_TYPE".into(), "minio".into()));
    let (ok, _, err) = xtask(&["start", "--timeout", "120"], &broken);
    assert!(!ok, "start with a broken app configuration succeeded");
    assert!(err.contains("service `app`") && err.contains("last log lines") && err.contains("STORAGE_TYPE"), "{err}");
    assert!(!err.contains(&key), "the admin key was printed");

    // stop --volumes needs --yes; with it, nothing of the project is left.
    let (ok, _, err) = p.xtask(&["stop", "--volumes"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert!(!p.leftovers().is_empty(), "a refused stop removed something");
    let (ok, _, err) = p.xtask(&["stop", "--volumes", "--yes"]);
    assert!(ok, "{err}");
    assert_eq!(p.leftovers(), "", "containers, networks or volumes of {} are left", p.name);
    phases.done("logs, a broken start, stop");
}

#[test]
fn the_development_stack_starts_with_app_dev_on_the_mounted_source_and_reloads_it() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("dev");
    // app-dev compiles a copy of this checkout, so the test can edit it.
    let source = tempfile::tempdir().unwrap();
    copy_checkout(source.path());
    let mut p = Project::new("dev", &["DB_PORT", "REDIS_PORT", "DOCREADER_PORT"]);
    p.env.push(("WEKNORA_SOURCE_DIR".into(), source.path().display().to_string()));
    let (ok, out, err) = p.xtask(&["start", "--dev", "--timeout", "1200"]);
    assert!(ok, "start --dev failed:\n{err}");
    assert!(out.contains("is up"), "{out}");
    assert_all_healthy(&p, &["app-dev", "docreader", "embedder", "frontend", "postgres", "redis"]);
    phases.done("start --dev (app-dev compiles the app)");
    // The app answers through the frontend under the name `app` (app-dev's alias).
    let (status, _) = curl(p.get("FRONTEND_PORT"), &p.admin_key(), &[], "/api/v1/knowledge-bases");
    assert_eq!(status, 200);
    // Development publishes the database on 127.0.0.1.
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.get("DB_PORT").parse::<u16>().unwrap())).is_ok());

    // Hot reload: an edit of the mounted source is compiled and served, nobody restarts anything.
    let server = source.path().join("services/app/src/api/system.rs");
    let text = std::fs::read_to_string(&server).unwrap();
    let edited = text.replace(r#"Json(Status { status: "ok" })"#, r#"Json(Status { status: "reloaded" })"#);
    assert_ne!(text, edited, "the app's /health answer changed: update this test");
    std::fs::write(&server, edited).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, health) = curl(p.get("APP_PORT"), "", &[], "/health");
        if status == 200 && health["status"] == "reloaded" {
            break;
        }
        if Instant::now() > deadline {
            let (_, logs, _) = p.xtask(&["logs", "app-dev", "--tail", "40"]);
            panic!("the edit was not served after 600 s: {status} {health}\n{logs}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    phases.done("an edit rebuilt and served");
    let (_, logs, err) = p.xtask(&["logs", "app-dev", "--tail", "400"]);
    assert!((logs + &err).contains("change detected, rebuilding"), "the watcher did not say why it rebuilt");
    let (ok, _, err) = p.xtask(&["stop", "--volumes", "--yes"]);
    assert!(ok, "{err}");
    assert_eq!(p.leftovers(), "");
    assert!(Path::new(p.get("WEKNORA_ENV_FILE")).exists(), "stop never touches .env");
}

#[test]
fn pull_fetches_the_third_party_images_the_stack_names() {
    require!(Need::DockerEngine, Need::StackTier, Need::DockerRegistry);
    let p = Project::new("pull", &[]);
    let (ok, _, err) = xtask(&["build-images", "--local-deps"], &[]);
    assert!(ok, "building the local stand-ins failed:\n{err}");
    // A registry on loopback serves the stand-ins under the names the stack is told to use.
    let registry = weknora_testkit::Registry::start();
    let postgres = format!("{}/weknora-test/postgres:17", registry.addr());
    let redis = format!("{}/weknora-test/redis:7.0", registry.addr());
    for (local, remote) in [("weknora/postgres-local:17", &postgres), ("weknora/redis-local:7.0", &redis)] {
        docker(&["tag", local, remote]);
        docker(&["push", remote]);
        docker(&["rmi", remote]);
    }
    let mut env = p.env.clone();
    env.push(("POSTGRES_IMAGE".into(), postgres.clone()));
    env.push(("REDIS_IMAGE".into(), redis.clone()));
    let (ok, _, err) = xtask(&["pull"], &env);
    assert!(ok, "pull failed:\n{err}");
    assert!(Path::new(p.get("WEKNORA_ENV_FILE")).exists(), "pull did not create .env");
    for image in [&postgres, &redis] {
        assert_ne!(docker(&["images", "-q", image]), "", "{image} was not pulled");
        docker(&["rmi", image]);
    }
    // Our own images are never pulled: they are built here (the embedder's too).
    assert!(!err.contains("weknora/app") && !err.contains("embedder"), "{err}");

    // A registry that does not answer: the error says so and names the way out.
    let dead = format!("127.0.0.1:{}/weknora-test/postgres:17", free_port());
    let mut env = p.env.clone();
    env.push(("POSTGRES_IMAGE".into(), dead));
    let (ok, _, err) = xtask(&["pull"], &env);
    assert!(!ok, "pulling from a dead registry succeeded");
    assert!(err.contains("pulling failed") && err.contains("stand-ins"), "{err}");
}

/// A copy of `archive` whose database dump is garbage, with a manifest that agrees with it
/// (made with tar and sha256sum, as someone might by hand).
fn with_garbage_dump(archive: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("tar").args(["xf", archive, "-C"]).arg(work.path()));
    let dump = work.path().join("database.dump");
    std::fs::write(&dump, b"not a pg_dump archive\n".repeat(100)).unwrap();
    let sum = Command::new("sha256sum").arg(&dump).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap().to_string();
    let manifest_path = work.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["entries"]["database.dump"] = serde_json::json!({ "bytes": 2200, "sha256": sum });
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = format!("{archive}.unrestorable.tar");
    run(Command::new("tar").args(["cf", &out, "-C"]).arg(work.path()).args([
        "database.dump",
        "files",
        "manifest.json",
    ]));
    out
}

/// The tracked files of this checkout (as they are in the working tree), copied to `to`.
fn copy_checkout(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("git").args(["ls-files", "-z"]).current_dir(root).output().unwrap();
    assert!(out.status.success(), "git ls-files failed");
    for file in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let file = Path::new(std::str::from_utf8(file).unwrap());
        if !root.join(file).exists() {
            continue; // deleted in the working tree
        }
        let dest = to.join(file);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), dest).unwrap();
    }
}

/// The README's first command where a new user runs it: a fresh clone, on a machine with
/// no registry, no debootstrap and a local image to make from a Debian base Docker lacks.
/// `start` sets up what that path needs by itself and comes up healthy, and so puts the
/// machine back as it was: debootstrap and the images.
/// (The clone's build reuses the checkout's compiled dependencies, hard-linked: what a
/// first build costs is `cargo xtask bench first-run`'s to measure, not this test's.)
#[test]
fn a_fresh_clone_starts_healthy_without_debootstrap_or_the_local_images() {
    require!(Need::DockerEngine, Need::StackTier, Need::RootAndApt);
    let mut phases = Phases::start("fresh clone");
    ensure_images_of_this_commit();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    let removed = Command::new("apt-get")
        .args(["remove", "-y", "-qq", "debootstrap"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    // One Debian base and the stand-in on it take the path; the other bases and stand-ins
    // are made the same way, and rebuilding them all (the embedder's above all) would only
    // add minutes to CI.
    let local = ["weknora/debian-base:bookworm", weknora_operator::third_party::REDIS_LOCAL];
    for image in local {
        let _ = Command::new("docker").args(["rmi", image]).output();
        assert!(!Command::new("docker").args(["image", "inspect", image]).output().unwrap().status.success());
    }
    let clone = tempfile::tempdir().unwrap();
    let src = clone.path().join("weknora");
    run(Command::new("git").args(["clone", "--quiet"]).arg(root).arg(&src));
    let debug = src.join("target/debug");
    std::fs::create_dir_all(&debug).unwrap();
    for compiled in ["deps", "build", ".fingerprint"] {
        run(Command::new("cp").arg("-al").arg(root.join("target/debug").join(compiled)).arg(&debug));
    }
    phases.done("a machine without them, a clone");

    let p = Project::new("fresh", &[]);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["xtask", "start", "--timeout", "600"])
        .current_dir(&src)
        .env_remove("CARGO_TARGET_DIR")
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "start from a fresh clone failed:\n{err}");
    assert!(err.contains("debootstrap is missing: installing Debian's debootstrap"), "{err}");
    assert!(!err.contains("--dev"), "running the stack never needs the developer's set-up:\n{err}");
    assert!(p.env_file().lines().any(|l| l == "IMAGE_SOURCE=local"), "{}", p.env_file());
    assert_all_healthy(&p, &["app", "docreader", "embedder", "frontend", "postgres", "redis"]);
    assert!(Path::new("/usr/sbin/debootstrap").exists(), "start installed debootstrap back");
    for image in local {
        assert!(Command::new("docker").args(["image", "inspect", image]).output().unwrap().status.success(), "{image}");
    }
    phases.done("start from the clone");
    let (ok, _, err) = p.xtask(&["stop", "--volumes", "--yes"]);
    assert!(ok, "{err}");
}

#[test]
fn upgrade_moves_to_this_checkout_and_a_failed_one_rolls_back_to_the_data_of_before() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut p = Project::new("upg", &[]);
    // Through standalone compose v1 (the other stack tests use the v2 plugin): sites that
    // still have only `docker-compose` start, upgrade and roll back the same way.
    p.env.push(("WEKNORA_COMPOSE".into(), "docker-compose".into()));
    let mut phases = Phases::start("upgrade");
    ensure_images_of_this_commit();
    let version = env!("CARGO_PKG_VERSION"); // xtask shares the workspace version
    // "Before": this checkout's images under another version and revision, as a release
    // built elsewhere would be, run with WEKNORA_VERSION pinned to them.
    let old = "0.0.9-old";
    for service in ["app", "docreader", "frontend"] {
        let dockerfile = format!(
            "FROM weknora/{service}:{version}\nLABEL org.opencontainers.image.version=0.0.9 \
             org.opencontainers.image.revision=0ld0000000000000000000000000000000000000\n"
        );
        support::docker_build(&format!("weknora/{service}:{old}"), &dockerfile);
    }
    p.env.push(("WEKNORA_VERSION".into(), old.into()));
    phases.done("images");
    let (ok, _, err) = p.xtask(&["start", "--timeout", "600"]);
    assert!(ok, "start of the old version failed:\n{err}");
    phases.done("start the old version");
    let versions = |p: &Project| -> Vec<String> {
        let (_, out, _) = p.xtask(&["ps", "--json"]);
        let list: Vec<Value> = serde_json::from_str(&out).unwrap();
        ["app", "docreader", "frontend"]
            .iter()
            .map(|s| list.iter().find(|c| c["service"] == *s).unwrap()["version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(versions(&p), ["0.0.9"; 3]);
    let front = p.get("FRONTEND_PORT").to_string();
    let key = p.admin_key();
    let create = |name: &str| {
        let body = format!(r#"{{"name":"{name}"}}"#);
        let (status, _) = curl(
            &front,
            &key,
            &["-X", "POST", "-H", "content-type: application/json", "-d", &body],
            "/api/v1/knowledge-bases",
        );
        assert_eq!(status, 201);
    };
    let names = || -> Vec<String> {
        let (_, list) = curl(&front, &key, &[], "/api/v1/knowledge-bases");
        let mut names: Vec<String> =
            list["data"].as_array().unwrap().iter().map(|kb| kb["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    create("before");

    // Nothing to roll back before any upgrade.
    let (ok, _, err) = p.xtask(&["rollback", "--yes"]);
    assert!(!ok && err.contains("no upgrade to roll back"), "{err}");

    // Upgrade: refused while WEKNORA_VERSION pins the old images; --dry-run only tells.
    let (ok, _, err) = p.xtask(&["upgrade", "--yes"]);
    assert!(!ok && err.contains("WEKNORA_VERSION=0.0.9-old"), "{err}");
    p.env.retain(|(k, _)| k != "WEKNORA_VERSION");
    let (ok, out, err) = p.xtask(&["upgrade", "--dry-run"]);
    assert!(ok && out.contains("back up the database"), "{out}\n{err}");
    assert_eq!(versions(&p), ["0.0.9"; 3], "--dry-run changed something");

    // An upgrade that does not become healthy in time rolls back by itself: the old images,
    // the data of before, and `.env` pinned to them (the bundle test covers `rollback`).
    // (The app's first healthcheck runs 5 s after it starts: 2 s is never enough.)
    let (ok, _, err) = p.xtask(&["upgrade", "--yes", "--timeout", "2"]);
    assert!(!ok && err.contains("rolled back to 0ld000000000"), "{err}");
    assert_eq!(versions(&p), ["0.0.9"; 3]);
    assert_all_healthy(&p, &["app", "docreader", "embedder", "frontend", "postgres", "redis"]);
    assert_eq!(names(), ["before"]);
    let pinned = |p: &Project| p.env_file().lines().any(|l| l == "WEKNORA_VERSION=pre-upgrade");
    assert!(pinned(&p), "{}", p.env_file());
    phases.done("a failed upgrade rolls back");

    // Upgrading again moves to this checkout, and takes the pin away.
    let (ok, out, err) = p.xtask(&["upgrade", "--yes"]);
    assert!(ok && out.contains("upgraded project"), "{out}\n{err}");
    assert_eq!(versions(&p), [version; 3]);
    assert_all_healthy(&p, &["app", "docreader", "embedder", "frontend", "postgres", "redis"]);
    assert!(!p.env_file().lines().any(|l| l.starts_with("WEKNORA_VERSION=")), "{}", p.env_file());
    assert_eq!(names(), ["before"]);
    let (ok, out, _) = p.xtask(&["upgrade", "--yes"]);
    assert!(ok && out.contains("nothing to upgrade"), "{out}");
    let (ok, out, _) = p.xtask(&["rollback", "--dry-run"]);
    assert!(ok && out.contains("data written since is lost"), "{out}");
    phases.done("upgrade");

    let (ok, _, err) = p.xtask(&["stop", "--volumes", "--yes"]);
    assert!(ok, "{err}");
    for service in ["app", "docreader", "frontend"] {
        for tag in [old, "pre-upgrade"] {
            let _ = Command::new("docker").args(["rmi", &format!("weknora/{service}:{tag}")]).output();
        }
    }
}

/// This commit's images, built only when Docker lacks them (images_live leaves them; the
/// stack tests before this one do not rebuild them).
fn ensure_images_of_this_commit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(root).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (head, clean) = (git(&["rev-parse", "HEAD"]), git(&["status", "--porcelain"]).is_empty());
    let version = env!("CARGO_PKG_VERSION");
    let revision = |service: &str| {
        let label = "{{index .Config.Labels \"org.opencontainers.image.revision\"}}";
        let out = Command::new("docker")
            .args(["image", "inspect", "-f", label, &format!("weknora/{service}:{version}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if !(clean && ["app", "docreader", "frontend"].iter().all(|s| revision(s) == head)) {
        let (ok, _, err) = xtask(&["build-images"], &[]);
        assert!(ok, "build-images failed:\n{err}");
    }
}

/// `weknora` and its arguments, run from an unpacked bundle with a PATH that has no cargo
/// or rustc (Docker's CLI only), and the test project's environment.
fn weknora(dir: &Path, env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(dir.join("weknora"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `cargo xtask dist <args> --json`: the bundles it wrote.
fn dist(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dist", "--json"];
    all.extend(args);
    let (ok, out, err) = xtask(&all, &[]);
    assert!(ok, "dist {args:?} failed:\n{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
// Named to run last (libtest starts tests in name order, and these run one at a time): its
// bundle B recompiles this workspace's release binaries from a changed tree, which any
// later test that builds images would have to recompile back.
fn where_there_is_no_checkout_a_release_bundle_runs_the_stack() {
    require!(Need::DockerEngine, Need::StackTier);
    let mut phases = Phases::start("bundle");
    // The arm64 bundle: made twice, the same bytes; its binary runs (under qemu here).
    let arm = dist(&["--platform", "linux/arm64"]);
    let again = dist(&["--platform", "linux/arm64"]);
    assert_eq!(arm[0]["sha256"], again[0]["sha256"], "two bundles of one commit differ");
    let arm_dir = tempfile::tempdir().unwrap();
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("tar").args(["xzf", arm[0]["path"].as_str().unwrap(), "-C"]).arg(arm_dir.path()));
    let arm_top = std::fs::read_dir(arm_dir.path()).unwrap().next().unwrap().unwrap().path();
    let (ok, out, err) = weknora(&arm_top, &[], &["--version"]);
    assert!(ok && out.starts_with("weknora "), "{out}\n{err}");

    phases.done("the arm64 bundle, twice");
    // This machine's bundle, with its images, unpacked where there is no checkout.
    let bundle = dist(&["--images"]);
    let tarball = bundle[0]["path"].as_str().unwrap().to_string();
    let install = tempfile::tempdir().unwrap();
    run(Command::new("tar").args(["xzf", &tarball, "-C"]).arg(install.path()));
    let dir = std::fs::read_dir(install.path()).unwrap().next().unwrap().unwrap().path();
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    let version = manifest["version"].as_str().unwrap().to_string();
    let (ok, out, err) = weknora(&dir, &[], &["bundle", "verify"]);
    assert!(ok, "{out}\n{err}");

    // A damaged archive is refused, naming it, before anything is imported.
    let archive = dir.join("images/redis.tar");
    let original = std::fs::read(&archive).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&archive, &damaged).unwrap();
    let (ok, _, err) = weknora(&dir, &[], &["bundle", "verify"]);
    assert!(!ok && err.contains("images/redis.tar is damaged"), "{err}");
    std::fs::write(&archive, &original).unwrap();

    phases.done("this machine's bundle, verify");
    // Without our images in Docker: start imports them and brings the stack up healthy.
    for service in ["app", "docreader", "frontend"] {
        let _ = Command::new("docker").args(["rmi", "-f", &format!("weknora/{service}:{version}")]).output();
    }
    // The uploads go to an S3 bucket (the S3 server the app's tests use, on the Docker
    // bridge's gateway, which containers reach), and the stack backs itself up (BACKUP_AT:
    // twelve hours away; the run seen here is the one a start with no recent archive takes).
    let s3 = S3Server::start(support::docker_host_address(), "weknora");
    let at = format!("{:02}:00", (weknora_operator::utc::civil(weknora_operator::utc::now())[3] + 12) % 24);
    let name = format!("wkbundle{}", std::process::id());
    let front = free_port().to_string();
    let mut env = vec![
        ("COMPOSE_PROJECT_NAME".to_string(), name.clone()),
        ("FRONTEND_PORT".to_string(), front.clone()),
        ("APP_PORT".to_string(), free_port().to_string()),
        ("BACKUP_AT".to_string(), at),
    ];
    env.extend(s3.env("weknora", S3Server::SECRET_KEY));
    let running = Running { dir: dir.clone(), env: env.clone() };
    let (ok, out, err) = weknora(&dir, &env, &["start", "--timeout", "600"]);
    assert!(ok, "start from the bundle failed:\n{out}\n{err}");
    assert!(err.contains("importing weknora/app:"), "{err}");
    let env_file = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(env_file.lines().any(|l| l.starts_with("IMAGE_SOURCE=")), "{env_file}");
    let key = env_file.lines().find_map(|l| l.strip_prefix("ADMIN_API_KEY=")).unwrap().to_string();
    let service = container_of(&name, "backup");
    let log = || {
        let out = Command::new("docker").args(["logs", &service]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while !log().contains("taken and verified") {
        assert!(!log().contains("error:") && Instant::now() < deadline, "the service's first run:\n{}", log());
        std::thread::sleep(Duration::from_secs(2));
    }

    phases.done("start from the bundle");
    // Upload, search; the service's archive holds the bucket's objects, its drill checked
    // them against the database; back up from the bundle's binary.
    let (kb_id, _) = upload_and_search(&front, &key, "bundle");
    let objects = s3.objects("weknora");
    assert_eq!(objects.len(), 1, "the upload is an object in the bucket");
    let run =
        Command::new("docker").args(["exec", &service, "weknora", "backup", "schedule", "--once"]).output().unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && said.contains("taken and verified (documents: 1)"), "{said}");
    assert!(!(said + &log()).contains(S3Server::SECRET_KEY), "the bucket's secret is in the service's output");
    let newest = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .unwrap();
    let mut archived: Vec<(String, Vec<u8>)> = tar::Archive::new(std::fs::File::open(&newest).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type().is_file())
        .filter_map(|mut e| {
            let key = e.path().unwrap().to_string_lossy().strip_prefix("files/")?.to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            Some((key, bytes))
        })
        .collect();
    archived.sort();
    assert_eq!(archived, objects, "{} does not hold the bucket's objects", newest.display());
    let (ok, out, err) = weknora(&dir, &env, &["backup"]);
    assert!(ok, "backup from the bundle failed:\n{err}");
    assert!(out.contains(&dir.join("backups").display().to_string()), "{out}");

    // Development mode needs a checkout.
    let (ok, _, err) = weknora(&dir, &env, &["start", "--dev"]);
    assert!(!ok && err.contains("checkout"), "{err}");
    // A production host is no developer's machine: with no Rust on PATH, doctor checks what
    // running the stack needs and passes; its fixes say `./weknora`; `--dev` is xtask's only.
    let (ok, out, err) = weknora(&dir, &env, &["doctor", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert!(ok && report["ok"] == true, "{out}\n{err}");
    let ids: Vec<&str> = report["checks"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"docker-daemon") && !ids.contains(&"toolchain") && !ids.contains(&"dev-tools"), "{ids:?}");
    let mut dead = env.clone();
    dead.push(("DOCKER_HOST".into(), "unix:///nonexistent/docker.sock".into()));
    let (ok, out, _) = weknora(&dir, &dead, &["doctor", "--json"]);
    assert!(!ok && out.contains("\"./weknora doctor --fix\"") && !out.contains("cargo xtask"), "{out}");
    let (ok, _, err) = weknora(&dir, &env, &["doctor", "--dev"]);
    assert!(!ok && err.contains("unexpected argument '--dev'"), "{err}");

    // Bundle B: a later state of this code with one more migration (added for the build,
    // removed right after, whatever happens).
    let a_revision = manifest["revision"].as_str().unwrap().to_string();
    assert!(!a_revision.ends_with("-dirty"), "commit first: bundle B is this checkout plus a migration");
    let b_tarball = install.path().join("b.tar.gz");
    {
        let _migration = ProbeMigration::add();
        let b = dist(&["--images"]);
        std::fs::copy(b[0]["path"].as_str().unwrap(), &b_tarball).unwrap();
    }
    phases.done("bundle B (one more migration)");
    // Docker holds B's images now (dist built them): untag them, so that the upgrade imports.
    for service in ["app", "docreader", "frontend"] {
        let _ = Command::new("docker").args(["rmi", &format!("weknora/{service}:{version}")]).output();
    }
    let b_tarball = b_tarball.to_str().unwrap();
    let (ok, out, err) = weknora(&dir, &env, &["upgrade", "--bundle", b_tarball, "--dry-run"]);
    assert!(ok && out.contains("install weknora") && out.contains("migrate from schema"), "{out}\n{err}");
    let (ok, out, err) = weknora(&dir, &env, &["upgrade", "--bundle", b_tarball, "--yes"]);
    assert!(ok && out.contains("upgraded project"), "upgrade to bundle B failed:\n{out}\n{err}");
    assert!(err.contains("importing weknora/app:"), "{err}");
    let b_manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    assert_ne!(b_manifest["revision"], manifest["revision"], "bundle.json is still A's");
    let a_kept: Value = serde_json::from_slice(&std::fs::read(dir.join("previous/bundle.json")).unwrap()).unwrap();
    assert_eq!(a_kept["revision"], manifest["revision"]);
    assert_eq!(image_of(&name, "app"), archive_id(&b_manifest, "app"));
    assert_eq!(probe_table(&name), "bundle_upgrade_probe", "B's migration did not run");
    assert_keyword_search_finds(&front, &key, &kb_id);
    // An object that appears after the upgrade (the rollback's restore removes it).
    std::fs::create_dir_all(s3.root.path().join("weknora/after")).unwrap();
    std::fs::write(s3.root.path().join("weknora/after/upgrade.md"), b"written after the upgrade").unwrap();
    let (status, after) = curl(
        &front,
        &key,
        &["-X", "POST", "-H", "content-type: application/json", "-d", r#"{"name":"after-upgrade"}"#],
        "/api/v1/knowledge-bases",
    );
    assert_eq!(status, 201, "{after}");

    phases.done("upgrade to B");
    // Rollback: A's files, A's images, the data of before (not what came after), pinned.
    let (ok, _, err) = weknora(&dir, &env, &["rollback", "--yes"]);
    assert!(ok, "rollback failed:\n{err}");
    let back: Value = serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(back["revision"], manifest["revision"], "rollback did not put A's files back");
    assert_eq!(image_of(&name, "app"), archive_id(&manifest, "app"));
    assert_eq!(probe_table(&name), "", "the schema of before was not restored");
    assert_keyword_search_finds(&front, &key, &kb_id);
    let (_, list) = curl(&front, &key, &[], "/api/v1/knowledge-bases");
    assert!(!list.to_string().contains("after-upgrade"), "data written after the upgrade survived: {list}");
    assert_eq!(s3.objects("weknora"), objects, "the bucket does not hold exactly the objects of before");
    let env_file = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(env_file.lines().any(|l| l == "WEKNORA_VERSION=pre-upgrade"), "{env_file}");
    let (ok, _, err) = weknora(&dir, &env, &["start", "--timeout", "300"]);
    assert!(ok, "start after the rollback failed:\n{err}");
    assert_eq!(image_of(&name, "app"), archive_id(&manifest, "app"), "start after a rollback upgraded again");
    phases.done("rollback to A");
    drop(running);
    // Docker is left with this commit's images under their usual tags, as it was found: A is
    // this commit (built from a clean tree, the same bytes as build-images makes), and the
    // next test's `start` would otherwise build them all again.
    for service in ["app", "docreader", "frontend"] {
        docker(&["tag", &archive_id(&manifest, service), &format!("weknora/{service}:{version}")]);
        let _ = Command::new("docker").args(["rmi", &format!("weknora/{service}:pre-upgrade")]).output();
    }
}

/// A stack started from a bundle, stopped with its volumes at the end.
struct Running {
    dir: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let (ok, _, err) = weknora(&self.dir, &self.env, &["stop", "--volumes", "--yes"]);
        assert!(ok || std::thread::panicking(), "stop from the bundle failed:\n{err}");
    }
}

/// One more migration in this checkout, for as long as it lives.
struct ProbeMigration(std::path::PathBuf);

impl ProbeMigration {
    fn add() -> ProbeMigration {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("migrations");
        let base = dir.join("29991231000000_bundle_upgrade_probe");
        std::fs::write(base.with_extension("up.sql"), "CREATE TABLE bundle_upgrade_probe (id int);\n").unwrap();
        std::fs::write(base.with_extension("down.sql"), "DROP TABLE bundle_upgrade_probe;\n").unwrap();
        ProbeMigration(base)
    }
}

impl Drop for ProbeMigration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.with_extension("up.sql"));
        let _ = std::fs::remove_file(self.0.with_extension("down.sql"));
    }
}

/// The running container of a service of a compose project.
fn container_of(project: &str, service: &str) -> String {
    let project = format!("label=com.docker.compose.project={project}");
    let service = format!("label=com.docker.compose.service={service}");
    docker(&["ps", "-q", "--filter", &project, "--filter", &service])
}

/// The image ID a service of a compose project runs.
fn image_of(project: &str, service: &str) -> String {
    docker(&["inspect", "-f", "{{.Image}}", &container_of(project, service)])
}

/// The image ID a bundle's manifest gives a service's archive.
fn archive_id(manifest: &Value, service: &str) -> String {
    let file = format!("images/{service}.tar");
    let archive = manifest["images"].as_array().unwrap().iter().find(|a| a["file"] == file.as_str()).unwrap();
    archive["id"].as_str().unwrap().to_string()
}

/// `bundle_upgrade_probe` when the probe migration's table exists, else empty.
fn probe_table(project: &str) -> String {
    let id = container_of(project, "postgres");
    let sql = "SELECT coalesce(to_regclass('bundle_upgrade_probe')::text, '')";
    docker(&["exec", &id, "sh", "-c", &format!("psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -tAc \"{sql}\"")])
}
