//! The project's containers, found by compose's labels through bollard; health waits, and
//! what a failed service says (healthcheck, last log lines).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use crate::poll::{TimedOut, poll};

/// One container of the project, as `ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub service: String,
    pub name: String,
    pub state: String,
    pub health: String,
    pub ports: Vec<String>,
    pub image: String,
    pub version: String,
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub image_id: String,
}

/// The project's containers, found by compose's labels.
pub async fn containers(docker: &Docker, project: &str) -> Result<Vec<Container>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("com.docker.compose.project={project}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await?;
    let mut out = Vec::new();
    for c in list {
        let labels = c.labels.unwrap_or_default();
        let id = c.id.unwrap_or_default();
        let inspect = docker.inspect_container(&id, None).await.ok();
        let health = inspect
            .as_ref()
            .and_then(|i| i.state.as_ref()?.health.as_ref()?.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        // The image as the container was created with it: the list shows a bare ID once
        // that tag names a newer build.
        let image = inspect.and_then(|i| i.config?.image).or(c.image).unwrap_or_default();
        let mut ports: Vec<String> = c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some(format!("{}:{}->{}", p.ip?, p.public_port?, p.private_port)))
            .collect();
        ports.sort();
        ports.dedup();
        out.push(Container {
            service: labels.get("com.docker.compose.service").cloned().unwrap_or_default(),
            name: c.names.unwrap_or_default().first().cloned().unwrap_or_default().trim_start_matches('/').into(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            health: if health.is_empty() || health == "none" { "-".into() } else { health },
            ports,
            image,
            version: labels.get("org.opencontainers.image.version").cloned().unwrap_or_else(|| "-".into()),
            id,
            image_id: c.image_id.unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(out)
}

/// Waits until every one of `services` has a running, healthy container; on failure names
/// the service, its last health output and its last log lines.
pub async fn wait_healthy(docker: &Docker, project: &str, services: &[String], timeout: Duration) -> Result<()> {
    let what = format!("{} to be healthy", services.join(", "));
    let waited = poll(&what, timeout, Duration::from_secs(1), || async {
        let (all, pending) = pending(docker, project, services).await?;
        for c in &all {
            match (c.state.as_str(), c.health.as_str()) {
                ("running", "unhealthy") => return Err(failure(docker, c, "is unhealthy").await),
                ("exited" | "dead", _) => return Err(failure(docker, c, "exited").await),
                ("restarting", _) => return Err(failure(docker, c, "keeps exiting and restarting").await),
                _ => {}
            }
        }
        Ok(pending.is_empty().then_some(()))
    })
    .await;
    match waited {
        Err(e) if e.is::<TimedOut>() => {
            let (all, pending) = pending(docker, project, services).await?;
            let first = all.iter().find(|c| pending.iter().any(|p| p.starts_with(&c.service)));
            let reason = format!("not healthy after {}s: {}", timeout.as_secs(), pending.join(", "));
            Err(match first {
                Some(c) => failure(docker, c, &reason).await,
                None => anyhow::anyhow!(reason),
            })
        }
        other => other,
    }
}

/// The containers of `services` (those that exist), and which services are not yet up,
/// with their state.
async fn pending(docker: &Docker, project: &str, services: &[String]) -> Result<(Vec<Container>, Vec<String>)> {
    let all = containers(docker, project).await?;
    let mut mine = Vec::new();
    let mut pending = Vec::new();
    for service in services {
        let Some(c) = all.iter().find(|c| &c.service == service) else {
            pending.push(format!("{service} (no container)"));
            continue;
        };
        match (c.state.as_str(), c.health.as_str()) {
            ("running", "healthy" | "-") => {}
            ("running", health) => pending.push(format!("{service} ({health})")),
            (state, _) => pending.push(format!("{service} ({state})")),
        }
        mine.push(c.clone());
    }
    Ok((mine, pending))
}

/// "<service> <what>", the healthcheck's last output and the last log lines.
async fn failure(docker: &Docker, c: &Container, what: &str) -> anyhow::Error {
    let health = match docker.inspect_container(&c.id, None).await {
        Ok(i) => i
            .state
            .and_then(|s| s.health)
            .and_then(|h| h.log)
            .and_then(|l| l.last().cloned())
            .map(|l| format!("exit {}: {}", l.exit_code.unwrap_or_default(), l.output.unwrap_or_default().trim()))
            .unwrap_or_else(|| "(no healthcheck output)".into()),
        Err(e) => e.to_string(),
    };
    let logs = last_log_lines(docker, &c.id, 30).await;
    anyhow::anyhow!(
        "service `{}` {what}\nlast healthcheck: {health}\nlast log lines:\n{logs}\n(more: cargo xtask logs {})",
        c.service,
        c.service
    )
}

/// The name of the volume mounted at `path` in an inspected container.
pub fn volume_at(inspect: &bollard::models::ContainerInspectResponse, path: &str) -> Option<String> {
    let mounts = inspect.mounts.as_deref().unwrap_or_default();
    mounts.iter().find(|m| m.destination.as_deref() == Some(path)).and_then(|m| m.name.clone())
}

/// The last `n` lines a container wrote (stdout and stderr).
pub async fn last_log_lines(docker: &Docker, container: &str, n: usize) -> String {
    let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&n.to_string()).build();
    let mut logs = String::new();
    let mut stream = docker.logs(container, Some(opts));
    while let Some(Ok(line)) = stream.next().await {
        logs.push_str(&line.to_string());
    }
    logs.trim_end().to_string()
}

/// The commit an image was built from (its `revision` label); None when Docker lacks it.
pub async fn image_revision(docker: &Docker, image: &str) -> Option<String> {
    let labels = docker.inspect_image(image).await.ok()?.config?.labels?;
    labels.get("org.opencontainers.image.revision").cloned()
}

/// The app's volume, and the uploads in it with STORAGE_TYPE=local (config.yaml's
/// `./data/files` from the image's working directory), inside the app's container.
pub const DATA_IN_APP: &str = "/var/lib/weknora/data";
pub const FILES_IN_APP: &str = "/var/lib/weknora/data/files";

/// The stack's containers a backup or restore works with.
pub struct Parts {
    pub postgres: Container,
    /// `app`, or `app-dev` in development.
    pub app: Container,
    pub redis: Option<Container>,
}

impl Parts {
    pub async fn find(docker: &Docker, project: &str) -> Result<Parts> {
        let all = containers(docker, project).await?;
        let find = |s: &str| all.iter().find(|c| c.service == s).cloned();
        let Some(postgres) = find("postgres").filter(|c| c.state == "running") else {
            bail!(
                "the postgres of project `{project}` is not running: backups and restores work on the running stack; \
                 start it with `cargo xtask start`"
            );
        };
        let Some(app) = find("app").or_else(|| find("app-dev")) else {
            bail!("project `{project}` has no app container: start the stack with `cargo xtask start`");
        };
        Ok(Parts { postgres, app, redis: find("redis").filter(|c| c.state == "running") })
    }
}
