//! `start`: checks, `.env`, images, postgres and redis, migrations, the rest, healthy; with
//! `--ollama` a local chat model for the app.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use bollard::Docker;

use crate::compose::{OURS, Stack, migrate};
use crate::containers::wait_healthy;
use crate::docker;
use crate::dotenv::{Vars, ensure_env_file};
use crate::images::{begin_ours, ensure_ours, resolve_images};
use crate::paths;

#[derive(clap::Args)]
pub struct Start {
    /// Development mode: docker-compose.yml overridden by docker-compose.dev.yml (app-dev with
    /// hot reload, ports on 127.0.0.1).
    #[arg(long)]
    dev: bool,
    /// Optional services: minio, neo4j, jaeger, monitoring (Prometheus), or full (repeatable).
    #[arg(long = "profile", value_name = "P")]
    profiles: Vec<String>,
    /// Also start a local Ollama (`cargo xtask ollama start`) and, unless LLM_BASE_URL names a
    /// chat model, give the app one from it (OLLAMA_CHAT_MODEL, default qwen2.5:0.5b; pulled first).
    #[arg(long)]
    ollama: bool,
    /// Never build images: fail when one is missing.
    #[arg(long, conflicts_with = "pull")]
    no_build: bool,
    /// Pull the third-party images first.
    #[arg(long)]
    pull: bool,
    /// How long to wait for every service to be healthy, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// What a start brings up: `start`'s flags, or the production start `upgrade` runs.
pub(crate) struct Plan {
    dev: bool,
    profiles: Vec<String>,
    ollama: bool,
    no_build: bool,
    pull: bool,
    timeout: u64,
    /// The command that runs this start (`upgrade` runs one too), for what it writes in `.env`.
    by: &'static str,
}

impl Plan {
    /// A production start of these optional profiles (what `upgrade` runs); `ollama` as
    /// `--ollama`.
    pub(crate) fn production(profiles: Vec<String>, ollama: bool, timeout: u64) -> Plan {
        Plan { dev: false, profiles, ollama, no_build: false, pull: false, timeout, by: "upgrade" }
    }
}

impl Start {
    pub fn run(self) -> Result<ExitCode> {
        let Start { dev, profiles, ollama, no_build, pull, timeout } = self;
        let plan = Plan { dev, profiles, ollama, no_build, pull, timeout, by: "start" };
        crate::host::runtime()?.block_on(bring_up(&plan))
    }
}

/// Brings the stack up healthy as `plan` says: checks, `.env`, images, postgres and redis,
/// migrations, the rest.
pub(crate) async fn bring_up(plan: &Plan) -> Result<ExitCode> {
    if plan.dev && !paths::compose_dev_file().exists() {
        bail!("development mode builds from a checkout: run `cargo xtask start --dev` in one");
    }
    ensure_env_file(&paths::env_file(), plan.by)?;
    crate::doctor::setup::ready_to_run(plan.by, plan.dev).await?;
    let docker = docker::connect().await?;
    let mut stack = Stack::open(&docker, Some(plan.dev), &plan.profiles).await?;
    let services = stack.services()?;
    let backup_service = services.iter().any(|s| s == "backup");
    if backup_service {
        crate::backup::schedule::check_settings(&Vars::load())?;
    }
    if plan.ollama {
        // Before anything is built or started: the app must start with its model there.
        let env = ollama_for_the_app(&docker).await?;
        stack.env.extend(env);
    }
    if plan.pull {
        stack.pull_upstream(&services)?;
    }
    let ours: Vec<&str> = OURS.iter().copied().filter(|o| services.iter().any(|s| s == o)).collect();
    // Our images' slow part (a checkout's compile) runs while the third-party ones are made.
    begin_ours(&docker, &stack, &ours, plan.no_build).await?;
    resolve_images(&docker, &mut stack, &services).await?;
    ensure_ours(&docker, &stack, &ours, false, plan.no_build).await?;
    if backup_service {
        let prepared = crate::backup::schedule::prepare(&docker, &stack, &Vars::load()).await?;
        stack.env.extend(prepared);
    }
    if stack.dev() {
        crate::host::host().images.ensure_dev(&docker, &format!("weknora/app-dev:{}", stack.version())).await?;
    }
    let timeout = Duration::from_secs(plan.timeout);
    let deps = ["postgres".to_string(), "redis".to_string()];
    eprintln!("==> starting postgres and redis");
    stack.run(&["up", "--detach", "--remove-orphans", "postgres", "redis"])?;
    wait_healthy(&docker, &stack.project, &deps, timeout).await?;
    eprintln!("==> migrating the database");
    migrate(&stack)?;
    eprintln!("==> starting {}", services.join(", "));
    if let Err(e) = stack.run(&["up", "--detach", "--remove-orphans"]) {
        // Compose gave up on a dependency: say which service, and why.
        wait_healthy(&docker, &stack.project, &services, Duration::ZERO).await?;
        return Err(e);
    }
    wait_healthy(&docker, &stack.project, &services, timeout).await?;
    let vars = Vars::load();
    let port = |k: &str| vars.get(k).unwrap_or_default().to_string();
    println!("weknora {} is up ({} services healthy, project {})", stack.version(), services.len(), stack.project);
    println!("  web UI:    http://localhost:{}/", port("FRONTEND_PORT"));
    println!("  API:       http://localhost:{}/api/v1 (also through the web UI's /api)", port("APP_PORT"));
    println!("  admin key: ADMIN_API_KEY in {} (send it as X-API-Key)", paths::env_file().display());
    if services.iter().any(|s| s == "jaeger") {
        println!("  traces:    http://localhost:{}/ (Jaeger)", vars.get("JAEGER_UI_PORT").unwrap_or("16686"));
        if vars.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none_or(|v| v.trim().is_empty()) {
            eprintln!(
                "==> jaeger runs, but nothing sends it traces: set OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317 in \
                 {} and start again (docs/operations.md, \"Traces\")",
                paths::env_file().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `start --ollama`: Ollama running, and, unless LLM_BASE_URL names a chat model, the chat
/// model pulled and the app's environment that gives it to the app.
async fn ollama_for_the_app(docker: &Docker) -> Result<Vec<(String, String)>> {
    let vars = Vars::load();
    let chat = crate::ollama::ChatModel::for_app(&vars);
    let via_host = chat.as_ref().is_some_and(|c| c.on_this_host()) || crate::ollama::containers_use_this_host(&vars);
    crate::ollama::start(via_host)?;
    let Some(chat) = chat else {
        eprintln!("==> LLM_BASE_URL is set: the app keeps that chat model");
        return Ok(Vec::new());
    };
    let addr = crate::ollama::address(&vars);
    crate::ollama::ensure_model(&addr, &chat.model)?;
    if chat.on_this_host() {
        let gateway = docker::bridge_address(docker).await?;
        crate::ollama::check_reachable_from_containers(&addr, &gateway.to_string())?;
    }
    eprintln!("==> the app's chat model: {} on Ollama ({})", chat.model, chat.base_url);
    Ok(chat.app_env())
}
