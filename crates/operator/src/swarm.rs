//! The stack on Docker Swarm, made from the compose description: [`plan`] turns what
//! `docker compose config` renders into a `docker stack deploy` file (replicas, rolling
//! updates that start the new task first and roll back when it fails its healthcheck,
//! resources, Docker secrets, an overlay network, the migration job); the rest deploys it and
//! waits for the services to converge, through bollard.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{SecretSpec, TaskState};
use bollard::query_parameters::{ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::poll::poll;

/// Our services: built here, several replicas, updated one task at a time.
pub const SCALED: [&str; 4] = ["app", "docreader", "embedder", "frontend"];
/// The one-shot service that migrates before the app is updated.
pub const MIGRATE: &str = "migrate";
/// Seconds a stopping app keeps serving while Swarm's load balancer drops it.
const APP_DRAIN_SECS: u64 = 5;

/// Replicas of each of our services.
pub fn default_replicas() -> BTreeMap<String, u64> {
    [("app", 2), ("docreader", 2), ("embedder", 1), ("frontend", 1)].into_iter().map(|(s, n)| (s.into(), n)).collect()
}

/// A secret of the stack: the variable it holds, and its Docker name, which carries a hash
/// of the value (a Docker secret cannot change: a new value is a new secret).
#[derive(Clone, PartialEq)]
pub struct Secret {
    pub var: String,
    pub name: String,
    pub value: String,
}

/// Never the value, wherever a secret is printed.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("var", &self.var).field("name", &self.name).finish_non_exhaustive()
    }
}

/// What [`plan`] makes: the stack file, and the secrets it refers to.
#[derive(Debug)]
pub struct Plan {
    pub stack: Value,
    pub secrets: Vec<Secret>,
}

/// What the plan needs besides compose's rendering.
pub struct Inputs<'a> {
    pub project: &'a str,
    pub replicas: &'a BTreeMap<String, u64>,
    /// Image IDs of our images: a task template that names them changes with the image, so
    /// a rebuilt image under the same tag is rolled out.
    pub image_ids: &'a BTreeMap<String, String>,
    /// Makes the migration job run again on every deploy (its spec changes).
    pub deployment: &'a str,
    /// The entry point and command of each third-party image (compose does not render an
    /// image's own): what a service started through [`shim`] runs.
    pub starts: &'a BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// How services find each other: Swarm's virtual IPs (the default), or DNS round robin
    /// where the kernel has no IPVS, which virtual IPs and the ingress need.
    pub dnsrr: bool,
}

/// Our services that read a secret from the file `VAR_FILE` names.
const READ_FILES: [&str; 2] = ["app", "docreader"];

/// A variable whose value is a secret, as weknora-stack-spec declares it.
pub fn is_secret(var: &str) -> bool {
    weknora_stack_spec::is_secret(var)
}

/// The stack file for `compose` (the JSON `docker compose config --format json` renders).
/// Our services read secrets from files (`VAR_FILE`); third-party images get a small shell
/// entry point that reads them into their variables before starting the image's own.
pub fn plan(compose: &Value, inputs: &Inputs<'_>) -> Result<Plan> {
    let services = compose["services"].as_object().context("compose rendered no services")?;
    let mut out = serde_json::Map::new();
    let mut secrets: BTreeMap<String, Secret> = BTreeMap::new();
    for (name, service) in services {
        let ours = SCALED.contains(&name.as_str());
        let mut s = base(service)?;
        let reads_files = READ_FILES.contains(&name.as_str());
        let (env, from_files) = environment(service, reads_files, inputs.project, &mut secrets);
        s.insert("environment".into(), Value::Object(env));
        if !from_files.is_empty() {
            s.insert(
                "secrets".into(),
                Value::Array(from_files.iter().map(|v| json!({"source": v, "target": v})).collect()),
            );
        }
        if !reads_files && !from_files.is_empty() {
            let start =
                inputs.starts.get(name.as_str()).with_context(|| format!("the image of {name} was not inspected"))?;
            shim(&mut s, start, &from_files);
        }
        if let Some(id) = inputs.image_ids.get(name.as_str()) {
            s.insert("labels".into(), json!({"org.weknora.image-id": id}));
        }
        let replicas = if ours { inputs.replicas.get(name.as_str()).copied().unwrap_or(1) } else { 1 };
        let mut settings = deploy_settings(service, ours, replicas);
        if inputs.dnsrr {
            settings["endpoint_mode"] = json!("dnsrr");
        }
        s.insert("deploy".into(), settings);
        if name == "app" {
            let env = s["environment"].as_object_mut().unwrap();
            // Migrations are the job's, never the replicas' at start.
            env.insert("AUTO_MIGRATE".into(), json!("false"));
            env.insert("WEKNORA__SERVER__DRAIN_SECS".into(), json!(APP_DRAIN_SECS.to_string()));
            s.insert("stop_grace_period".into(), json!("30s"));
        }
        if name != "frontend" {
            // The frontend is the stack's one way in: ingress listens on every address,
            // which compose's 127.0.0.1 bindings for the others never did.
            s.remove("ports");
        } else if inputs.dnsrr {
            // Without the ingress the port is the node's own: one task at a time holds it.
            for port in s["ports"].as_array_mut().into_iter().flatten() {
                port["mode"] = json!("host");
            }
            s["deploy"]["update_config"]["order"] = json!("stop-first");
            s["deploy"]["rollback_config"]["order"] = json!("stop-first");
        }
        out.insert(name.clone(), Value::Object(s));
    }
    let app = out.get("app").cloned().context("compose rendered no app service")?;
    out.insert(MIGRATE.into(), migrate_job(&app, inputs.deployment));

    let volumes: serde_json::Map<String, Value> =
        compose["volumes"].as_object().map(|v| v.keys().map(|k| (k.clone(), json!({}))).collect()).unwrap_or_default();
    let top_secrets: serde_json::Map<String, Value> =
        secrets.values().map(|s| (s.var.clone(), json!({"external": true, "name": s.name}))).collect();
    let stack = json!({
        "version": "3.9",
        "services": out,
        "networks": {NETWORK: {"driver": "overlay", "attachable": true}},
        "volumes": volumes,
        "secrets": top_secrets,
    });
    Ok(Plan { stack, secrets: secrets.into_values().collect() })
}

/// The network every service joins (compose's name for it).
const NETWORK: &str = "WeKnora-network";

/// What carries over from compose as it is.
fn base(service: &Value) -> Result<serde_json::Map<String, Value>> {
    let mut s = serde_json::Map::new();
    for key in ["image", "command", "entrypoint", "healthcheck", "user", "read_only", "cap_add", "cap_drop", "logging"]
    {
        if let Some(v) = service.get(key).filter(|v| !v.is_null()) {
            s.insert(key.into(), v.clone());
        }
    }
    if let Some(grace) = service.get("stop_grace_period").filter(|v| !v.is_null()) {
        s.insert("stop_grace_period".into(), grace.clone());
    }
    s.insert("networks".into(), json!([NETWORK]));
    let mut volumes: Vec<Value> = service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut m = serde_json::Map::new();
            for key in ["type", "source", "target", "read_only"] {
                if let Some(x) = v.get(key) {
                    m.insert(key.into(), x.clone());
                }
            }
            Value::Object(m)
        })
        .collect();
    // A stack file cannot give a tmpfs mount a mode or an owner (the CLI drops them), so a
    // tmpfs for an unprivileged user (compose's uid=, the frontend's) would be root's and
    // unwritable: such a service writes those folders of its image (made its user's)
    // instead, on a writable root. Other tmpfs mounts carry over with their size.
    let tmpfs: Vec<&str> = service["tmpfs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if tmpfs.iter().any(|t| t.contains("uid=")) {
        s.insert("read_only".into(), json!(false));
    } else {
        for t in tmpfs {
            let (target, options) = t.split_once(':').unwrap_or((t, ""));
            let mut mount = json!({"type": "tmpfs", "target": target});
            if let Some(size) = options.split(',').find_map(|o| o.strip_prefix("size=")) {
                mount["tmpfs"] = json!({"size": bytes(size).with_context(|| format!("tmpfs size `{size}`"))?});
            }
            volumes.push(mount);
        }
    }
    if !volumes.is_empty() {
        s.insert("volumes".into(), Value::Array(volumes));
    }
    if let Some(ports) = service["ports"].as_array() {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                // Compose renders the published port as text; the stack file wants a number.
                let published = p["published"]
                    .as_str()
                    .and_then(|n| n.parse::<u64>().ok())
                    .map_or(p["published"].clone(), |n| json!(n));
                json!({"target": p["target"], "published": published, "protocol": p["protocol"], "mode": "ingress"})
            })
            .collect();
        s.insert("ports".into(), Value::Array(ports));
    }
    Ok(s)
}

/// `64m` and the like in bytes.
fn bytes(size: &str) -> Result<u64> {
    let (n, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
    let n: u64 = n.parse()?;
    Ok(n * match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => bail!("unknown unit {other}"),
    })
}

/// The service's environment with each non-empty secret replaced: our services read
/// `VAR_FILE`; for the others the variable is left out and [`shim`] sets it from the file.
/// Returns the environment and the variables the service reads from files.
fn environment(
    service: &Value,
    reads_files: bool,
    project: &str,
    secrets: &mut BTreeMap<String, Secret>,
) -> (serde_json::Map<String, Value>, Vec<String>) {
    let mut env = serde_json::Map::new();
    let mut from_files = Vec::new();
    for (var, value) in service["environment"].as_object().into_iter().flatten() {
        let text = value.as_str().unwrap_or_default();
        if !is_secret(var) || text.is_empty() {
            env.insert(var.clone(), value.clone());
            continue;
        }
        let hash = crate::digest::hex(&Sha256::digest(text.as_bytes()))[..12].to_string();
        let name = format!("{project}_{}_{hash}", var.to_ascii_lowercase());
        secrets.insert(var.clone(), Secret { var: var.clone(), name, value: text.to_string() });
        if reads_files {
            env.insert(format!("{var}_FILE"), json!(format!("/run/secrets/{var}")));
        }
        from_files.push(var.clone());
    }
    (env, from_files)
}

/// Gives a third-party service an entry point that exports each secret from its file, then
/// runs the image's own entry point and the service's command (`$$`: the stack file is
/// interpolated once more by `docker stack deploy`). Its shell healthcheck reads them too.
fn shim(s: &mut serde_json::Map<String, Value>, (entrypoint, cmd): &(Vec<String>, Vec<String>), vars: &[String]) {
    let exports: String = vars.iter().map(|v| format!("export {v}=\"$$(cat /run/secrets/{v})\"; ")).collect();
    let mut wrapped = vec![json!("sh"), json!("-c"), json!(format!("{exports}exec \"$$@\"")), json!("sh")];
    wrapped.extend(
        s.get("entrypoint")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| entrypoint.iter().map(|e| json!(e)).collect()),
    );
    s.insert("entrypoint".into(), Value::Array(wrapped));
    if s.get("command").is_none_or(Value::is_null) {
        s.insert("command".into(), json!(cmd));
    }
    if let Some(test) = s.get_mut("healthcheck").and_then(|h| h.get_mut("test"))
        && test[0] == "CMD-SHELL"
    {
        let line = test[1].as_str().unwrap_or_default().to_string();
        test[1] = json!(format!("{exports}{line}"));
    }
}

/// Swarm's settings of a service: replicas, limits, restarts, how updates and rollbacks go.
fn deploy_settings(service: &Value, ours: bool, replicas: u64) -> Value {
    let text = |v: &Value| v.as_str().map_or(v.to_string(), str::to_string);
    // A service on a volume (a database) never runs two tasks at once.
    let order = if ours { "start-first" } else { "stop-first" };
    json!({
        "replicas": replicas,
        "resources": {"limits": {"cpus": text(&service["cpus"]), "memory": text(&service["mem_limit"])}},
        "restart_policy": {"condition": "any", "delay": "5s"},
        "update_config": {
            "parallelism": 1,
            "order": order,
            "failure_action": "rollback",
            "monitor": "20s",
            "max_failure_ratio": 0,
        },
        "rollback_config": {"parallelism": 1, "order": order, "failure_action": "pause", "monitor": "20s"},
    })
}

/// The migration job: the app's image and settings, `migrate`, once per deploy.
fn migrate_job(app: &Value, deployment: &str) -> Value {
    let mut job = app.clone();
    let s = job.as_object_mut().unwrap();
    s.insert("command".into(), json!(["migrate"]));
    s.remove("healthcheck");
    s.remove("ports");
    s.remove("stop_grace_period");
    s.insert("healthcheck".into(), json!({"disable": true}));
    s["environment"]["WEKNORA_DEPLOYMENT"] = json!(deployment);
    s.insert(
        "deploy".into(),
        json!({
            "mode": "replicated-job",
            "replicas": 1,
            "resources": app["deploy"]["resources"],
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 2},
        }),
    );
    job
}

/// This engine is a swarm manager, or the error says how to make it one.
pub async fn ensure_manager(docker: &Docker) -> Result<()> {
    let info = docker.info().await.context("asking Docker about its swarm")?;
    let swarm = info.swarm.unwrap_or_default();
    let active = swarm.local_node_state == Some(bollard::models::LocalNodeState::ACTIVE);
    if !active || swarm.control_available != Some(true) {
        bail!(
            "this Docker engine is not a swarm manager: make it one with `docker swarm init --advertise-addr <this \
             host's address>` (or join it to a swarm as a manager), then deploy again"
        );
    }
    Ok(())
}

/// Creates the secrets that do not exist yet (a new value is a new name), labelled with the
/// stack; never prints a value.
pub async fn ensure_secrets(docker: &Docker, project: &str, secrets: &[Secret]) -> Result<()> {
    let existing = stack_secrets(docker, project).await?;
    for s in secrets.iter().filter(|s| !existing.iter().any(|(name, _)| *name == s.name)) {
        let spec = SecretSpec {
            name: Some(s.name.clone()),
            labels: Some(
                [("com.docker.stack.namespace".to_string(), project.to_string()), (SECRET_LABEL.into(), s.var.clone())]
                    .into(),
            ),
            data: Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &s.value)),
            ..Default::default()
        };
        docker.create_secret(spec).await.with_context(|| format!("creating the Docker secret {}", s.name))?;
        eprintln!("    secret {} ({})", s.name, s.var);
    }
    Ok(())
}

const SECRET_LABEL: &str = "org.weknora.secret";

/// The stack's secrets made by [`ensure_secrets`]: (name, id).
async fn stack_secrets(docker: &Docker, project: &str) -> Result<Vec<(String, String)>> {
    let filters = std::collections::HashMap::from([("label", vec![format!("com.docker.stack.namespace={project}")])]);
    let listed = docker.list_secrets(Some(ListSecretsOptionsBuilder::default().filters(&filters).build())).await?;
    Ok(listed
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.labels.as_ref()).is_some_and(|l| l.contains_key(SECRET_LABEL)))
        .filter_map(|s| Some((s.spec?.name?, s.id?)))
        .collect())
}

/// Removes the stack's secrets no longer in use (older values); one a task still uses stays.
pub async fn prune_secrets(docker: &Docker, project: &str, keep: &[Secret]) -> Result<()> {
    for (name, id) in stack_secrets(docker, project).await? {
        if !keep.iter().any(|s| s.name == name) && docker.delete_secret(&id).await.is_ok() {
            eprintln!("    removed the unused secret {name}");
        }
    }
    Ok(())
}

/// `stack` with only `services` (the other keys as they are): a phase of a deploy.
pub fn only(stack: &Value, services: &[&str]) -> Value {
    let mut part = stack.clone();
    if let Some(all) = part["services"].as_object_mut() {
        all.retain(|name, _| services.contains(&name.as_str()));
    }
    part
}

/// `docker stack deploy` of `stack` (written to `file`) as `project`, without waiting:
/// [`converge`] waits. Images are the local ones (no registry is asked).
pub fn deploy(stack: &Value, file: &std::path::Path, project: &str) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(file, serde_json::to_string_pretty(stack)?)
        .with_context(|| format!("writing {}", file.display()))?;
    let status = std::process::Command::new("docker")
        .args(["stack", "deploy", "--resolve-image", "never", "--detach=true", "--compose-file"])
        .arg(file)
        .arg(project)
        // Its progress is ours: stderr (stdout carries the result, `--json` too).
        .stdout(std::io::stderr())
        .status()
        .context("running docker stack deploy")?;
    if !status.success() {
        bail!("`docker stack deploy` of {} failed (its output is above)", file.display());
    }
    Ok(())
}

/// Where a service of the stack stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceState {
    pub service: String,
    pub running: u64,
    pub desired: u64,
    /// Swarm's update state: completed, updating, rollback_completed, ... (empty: never updated).
    pub update: String,
    pub message: String,
    pub image: String,
}

/// The stack's services (`project_<service>`), with their tasks counted.
pub async fn states(docker: &Docker, project: &str) -> Result<Vec<ServiceState>> {
    let filters = std::collections::HashMap::from([("label", vec![format!("com.docker.stack.namespace={project}")])]);
    let options = ListServicesOptionsBuilder::default().filters(&filters).status(true).build();
    let mut out = Vec::new();
    for s in docker.list_services(Some(options)).await.context("listing the stack's services")? {
        let spec = s.spec.unwrap_or_default();
        let name = spec.name.unwrap_or_default();
        let status = s.service_status.unwrap_or_default();
        let update = s.update_status.unwrap_or_default();
        let image = spec.task_template.and_then(|t| t.container_spec).and_then(|c| c.image).unwrap_or_default();
        out.push(ServiceState {
            service: name.strip_prefix(&format!("{project}_")).unwrap_or(&name).to_string(),
            running: status.running_tasks.unwrap_or_default(),
            desired: status.desired_tasks.unwrap_or_default(),
            update: update.state.map(|s| s.to_string()).unwrap_or_default(),
            message: update.message.unwrap_or_default(),
            image,
        });
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(out)
}

/// Waits until every one of `services` runs all its replicas (healthy: Swarm counts a task
/// with a healthcheck as running once it passes) and no update is under way. An update
/// that rolled back or paused is an error naming the service and Swarm's reason.
pub async fn converge(
    docker: &Docker,
    project: &str,
    services: &[&str],
    timeout: Duration,
) -> Result<Vec<ServiceState>> {
    let what = format!("{} to converge ({})", project, services.join(", "));
    poll(&what, timeout, Duration::from_secs(2), || async {
        let all = states(docker, project).await?;
        let mut done = true;
        for name in services {
            let Some(s) = all.iter().find(|s| s.service == *name) else {
                done = false;
                continue;
            };
            match s.update.as_str() {
                "rollback_completed" | "rollback_paused" | "paused" => bail!(
                    "the update of {name} failed and was {}: {} (`docker service ps {project}_{name} --no-trunc` shows \
                     each task's error; the previous version keeps running)",
                    if s.update == "paused" { "paused" } else { "rolled back" },
                    s.message
                ),
                "updating" | "rollback_started" => done = false,
                _ if s.running < s.desired || s.desired == 0 => done = false,
                _ => {}
            }
        }
        Ok(done.then_some(all))
    })
    .await
}

/// Waits for the current run of the job `service` to complete; a failed run is an error
/// with the task's reason.
pub async fn job_done(docker: &Docker, project: &str, service: &str, timeout: Duration) -> Result<()> {
    let full = format!("{project}_{service}");
    poll(&format!("{full} to complete"), timeout, Duration::from_secs(2), || async {
        let filters = std::collections::HashMap::from([("name", vec![full.clone()])]);
        let options = ListServicesOptionsBuilder::default().filters(&filters).status(true).build();
        let Some(s) = docker
            .list_services(Some(options))
            .await?
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(full.as_str()))
        else {
            return Ok(None);
        };
        let iteration = s.job_status.and_then(|j| j.job_iteration).and_then(|v| v.index);
        let filters = std::collections::HashMap::from([("service", vec![full.clone()])]);
        let tasks = docker.list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filters).build())).await?;
        let current: Vec<_> =
            tasks.into_iter().filter(|t| t.job_iteration.as_ref().and_then(|v| v.index) == iteration).collect();
        let state = |t: &bollard::models::Task| t.status.as_ref().and_then(|s| s.state);
        if current.iter().any(|t| state(t) == Some(TaskState::COMPLETE)) {
            return Ok(Some(()));
        }
        let failed: Vec<_> = current.iter().filter(|t| state(t) == Some(TaskState::FAILED)).collect();
        let retrying =
            current.iter().any(|t| t.desired_state != Some(TaskState::SHUTDOWN) && state(t) != Some(TaskState::FAILED));
        if let (Some(last), false) = (failed.last(), retrying) {
            let status = last.status.clone().unwrap_or_default();
            let why = status.err.or(status.message).unwrap_or_default();
            let container = status.container_status.and_then(|c| c.container_id).unwrap_or_default();
            let logs = crate::containers::last_log_lines(docker, &container, 20).await;
            bail!(
                "{full} failed {} time(s): {why}; its last lines:\n{logs}\n(nothing of ours was updated; \
                 `docker service logs {full}` shows every run)",
                failed.len()
            );
        }
        Ok(None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compose() -> Value {
        json!({
            "services": {
                "app": {
                    "image": "weknora/app:0.1.0", "cpus": 2, "mem_limit": "2147483648", "read_only": true,
                    "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"], "restart": "unless-stopped",
                    "depends_on": {"postgres": {"condition": "service_healthy"}},
                    "extra_hosts": ["host.docker.internal=host-gateway"],
                    "environment": {"DB_HOST": "postgres", "DB_PASSWORD": "hunter2-db", "LLM_API_KEY": "", "AUTO_MIGRATE": "true"},
                    "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080, "published": "8080", "protocol": "tcp"}],
                    "volumes": [{"type": "volume", "source": "app_data", "target": "/data", "volume": {}}],
                },
                "frontend": {
                    "image": "weknora/frontend:0.1.0", "cpus": 1, "mem_limit": "268435456",
                    "ports": [{"mode": "ingress", "host_ip": "0.0.0.0", "target": 8080, "published": "80", "protocol": "tcp"}],
                    "tmpfs": ["/tmp:size=64m,mode=1777", "/etc/nginx/conf.d:size=1m,uid=101,gid=101,mode=0755"],
                    "read_only": true,
                },
                "postgres": {
                    "image": "weknora/postgres-local:17", "cpus": 2, "mem_limit": "4294967296", "command": null,
                    "environment": {"POSTGRES_USER": "weknora", "POSTGRES_PASSWORD": "hunter2-db"},
                    "healthcheck": {"test": ["CMD-SHELL", "pg_isready -h 127.0.0.1"], "interval": "5s"},
                    "volumes": [{"type": "volume", "source": "postgres_data", "target": "/var/lib/postgresql/data"}],
                },
            },
            "volumes": {"app_data": {"name": "p_app_data"}, "postgres_data": {"name": "p_postgres_data"}},
        })
    }

    fn planned() -> Plan {
        let replicas = default_replicas();
        let ids = BTreeMap::from([("app".to_string(), "sha256:abc".to_string())]);
        let starts = BTreeMap::from([(
            "postgres".to_string(),
            (vec!["/usr/local/bin/docker-entrypoint.sh".to_string()], vec!["postgres".to_string()]),
        )]);
        let inputs = Inputs {
            project: "p",
            replicas: &replicas,
            image_ids: &ids,
            deployment: "2026-12-01T00:00:00Z",
            starts: &starts,
            dnsrr: false,
        };
        plan(&compose(), &inputs).unwrap()
    }

    #[test]
    fn secrets_become_docker_secrets_and_never_appear_in_the_stack_file() {
        let plan = planned();
        let text = serde_json::to_string(&plan.stack).unwrap();
        assert!(!text.contains("hunter2"), "a secret's value is in the stack file: {text}");
        let names: Vec<&str> = plan.secrets.iter().map(|s| s.var.as_str()).collect();
        assert_eq!(names, ["DB_PASSWORD", "POSTGRES_PASSWORD"], "an empty key is no secret");
        assert!(plan.secrets.iter().all(|s| s.name.starts_with("p_") && s.value == "hunter2-db"));
        assert_ne!(plan.secrets[0].name, plan.secrets[1].name);
        assert!(!format!("{:?}", plan).contains("hunter2"), "a secret's value in its Debug");

        let app = &plan.stack["services"]["app"];
        assert_eq!(app["environment"]["DB_PASSWORD_FILE"], "/run/secrets/DB_PASSWORD");
        assert!(app["environment"].get("DB_PASSWORD").is_none());
        assert_eq!(app["environment"]["LLM_API_KEY"], "");
        assert_eq!(app["secrets"], json!([{"source": "DB_PASSWORD", "target": "DB_PASSWORD"}]));
        assert_eq!(plan.stack["secrets"]["DB_PASSWORD"], json!({"external": true, "name": plan.secrets[0].name}));

        // A third-party image reads its variable from the file through a shell entry point,
        // then runs its own entry point and command; `$$` survives the stack's interpolation.
        let pg = &plan.stack["services"]["postgres"];
        assert!(pg["environment"].get("POSTGRES_PASSWORD").is_none());
        assert_eq!(
            pg["entrypoint"],
            json!([
                "sh",
                "-c",
                "export POSTGRES_PASSWORD=\"$$(cat /run/secrets/POSTGRES_PASSWORD)\"; exec \"$$@\"",
                "sh",
                "/usr/local/bin/docker-entrypoint.sh"
            ])
        );
        assert_eq!(pg["command"], json!(["postgres"]));
        assert!(pg["healthcheck"]["test"][1].as_str().unwrap().ends_with("; pg_isready -h 127.0.0.1"));
    }

    #[test]
    fn ours_roll_out_start_first_and_roll_back_the_data_services_stop_first() {
        let plan = planned();
        let app = &plan.stack["services"]["app"];
        assert_eq!(app["deploy"]["replicas"], 2);
        assert_eq!(app["deploy"]["update_config"]["order"], "start-first");
        assert_eq!(app["deploy"]["update_config"]["failure_action"], "rollback");
        assert_eq!(app["deploy"]["resources"]["limits"], json!({"cpus": "2", "memory": "2147483648"}));
        assert_eq!(app["environment"]["AUTO_MIGRATE"], "false", "the job migrates, never a replica");
        assert_eq!(app["labels"]["org.weknora.image-id"], "sha256:abc");
        assert_eq!(app["networks"], json!([NETWORK]));
        for key in ["depends_on", "restart", "mem_limit", "cpus", "security_opt", "extra_hosts", "ports"] {
            assert!(app.get(key).is_none(), "{key} is not for swarm (or not published there)");
        }
        let pg = &plan.stack["services"]["postgres"];
        assert_eq!(
            (pg["deploy"]["replicas"].as_u64(), pg["deploy"]["update_config"]["order"].as_str()),
            (Some(1), Some("stop-first"))
        );

        let front = &plan.stack["services"]["frontend"];
        assert_eq!(front["ports"], json!([{"target": 8080, "published": 80, "protocol": "tcp", "mode": "ingress"}]));
        assert!(front.get("volumes").is_none() && front["read_only"] == false, "a tmpfs Swarm cannot own to 101");
        let pg_volume = json!([{"type": "volume", "source": "postgres_data", "target": "/var/lib/postgresql/data"}]);
        assert_eq!(pg["volumes"], pg_volume);

        let job = &plan.stack["services"][MIGRATE];
        assert_eq!(job["deploy"]["mode"], "replicated-job");
        assert_eq!(job["command"], json!(["migrate"]));
        assert_eq!(job["environment"]["DB_PASSWORD_FILE"], "/run/secrets/DB_PASSWORD");
        assert_eq!(job["environment"]["WEKNORA_DEPLOYMENT"], "2026-12-01T00:00:00Z");
        assert_eq!(plan.stack["volumes"], json!({"app_data": {}, "postgres_data": {}}));
        assert_eq!(plan.stack["networks"][NETWORK]["driver"], "overlay");
    }
}
