//! The running stack: `start`, `stop`, `restart`, `ps`, `logs`, `pull`, `check`. Compose
//! (v2 plugin, else standalone v1) creates and removes things, always with an explicit
//! project name, compose file and env file; everything else (finding containers again by
//! their compose labels, health waits, logs of a failed service) goes through bollard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use crate::docker::{self, ComposeCli};
use crate::dotenv::{self, Vars};
use crate::paths;
use crate::third_party::{self, Resolver, Source, ThirdParty};

/// Our services, built from this repository.
pub const OURS: [&str; 3] = ["app", "docreader", "frontend"];
/// The optional services; each runs with the profile of its own name.
pub const OPTIONAL: [&str; 4] = ["minio", "neo4j", "jaeger", "embedder"];
/// The optional services the profile `full` runs too.
const FULL: [&str; 3] = ["minio", "neo4j", "jaeger"];
/// Where the app finds the bundled embedder (the compose files' default EMBEDDING_BASE_URL).
pub const BUNDLED_EMBEDDER_URL: &str = "http://embedder:8000";

/// Whether the stack runs the bundled embedder: unless EMBEDDING_BASE_URL names another
/// model server.
pub fn embedder_bundled(vars: &Vars) -> bool {
    vars.get("EMBEDDING_BASE_URL").is_none_or(|url| url.trim_end_matches('/') == BUNDLED_EMBEDDER_URL)
}

#[derive(clap::Args)]
pub struct Start {
    /// Development mode: docker-compose.dev.yml (app-dev with hot reload, ports on 127.0.0.1).
    #[arg(long)]
    dev: bool,
    /// Optional services: minio, neo4j, jaeger, or full (repeatable).
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
    /// The command that runs this start (`upgrade` runs one too), for what it writes in `.env`.
    #[arg(skip = "start")]
    by: &'static str,
}

#[derive(clap::Args)]
pub struct Stop {
    /// Also remove the volumes: every document, chunk and database row of this stack.
    #[arg(long)]
    volumes: bool,
    /// Confirm `--volumes`.
    #[arg(long)]
    yes: bool,
    /// Print what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct Restart {
    /// One service; ours (app, docreader, frontend) are rebuilt first and recreated.
    service: Option<String>,
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(clap::Args)]
pub struct Ps {
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct Logs {
    service: Option<String>,
    /// Keep following.
    #[arg(short, long)]
    follow: bool,
    /// Only lines since this time (e.g. 10m, 2026-11-25T10:00:00).
    #[arg(long)]
    since: Option<String>,
    /// Lines from the end of each service's log.
    #[arg(long, default_value = "200")]
    tail: String,
}

#[derive(clap::Args)]
pub struct Check {
    /// Also check the ports development mode publishes.
    #[arg(long)]
    dev: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct Pull {
    #[arg(long = "profile", value_name = "P")]
    profiles: Vec<String>,
}

/// Compose for this checkout: program, project, file, env file, profiles, extra environment.
pub struct Stack {
    compose: ComposeCli,
    pub project: String,
    file: PathBuf,
    env_file: PathBuf,
    profiles: Vec<String>,
    env: Vec<(String, String)>,
}

impl Stack {
    /// The stack as this checkout and `.env` describe it. `dev: None` finds the mode of the
    /// running stack (an `app-dev` container means development).
    pub async fn open(docker: &Docker, dev: Option<bool>, profiles: &[String]) -> Result<Stack> {
        let compose = ComposeCli::detect()
            .context("no docker compose found: run `cargo xtask doctor --fix` to install the compose plugin")?;
        let vars = Vars::load();
        let project = docker::project_name(&vars).to_ascii_lowercase();
        let dev = match dev {
            Some(d) => d,
            None => containers(docker, &project).await?.iter().any(|c| c.service == "app-dev"),
        };
        let version = match vars.get("WEKNORA_VERSION") {
            Some(v) => v.to_string(),
            None => crate::host().images.release()?.version,
        };
        for p in profiles {
            if p != "full" && !OPTIONAL.contains(&p.as_str()) {
                bail!("unknown profile `{p}`: use minio, neo4j, jaeger or full");
            }
        }
        let mut profiles = profiles.to_vec();
        if embedder_bundled(&vars) && !profiles.iter().any(|p| p == "embedder") {
            profiles.push("embedder".into());
        }
        Ok(Stack {
            compose,
            project,
            file: if dev { paths::compose_dev_file() } else { paths::compose_file() },
            env_file: paths::env_file(),
            profiles,
            env: vec![("WEKNORA_VERSION".into(), version)],
        })
    }

    pub fn dev(&self) -> bool {
        self.file == paths::compose_dev_file()
    }

    pub fn version(&self) -> &str {
        &self.env[0].1
    }

    /// Runs our images tagged `tag` instead of the checkout's version.
    pub fn pin_version(&mut self, tag: &str) {
        self.env[0].1 = tag.to_string();
    }

    /// Gives a recreated app the chat model `start --ollama` gave the running one.
    pub async fn keep_ollama_chat_model(&mut self, docker: &Docker) -> Result<()> {
        if let Some(env) = ollama_chat_env(docker, &self.project).await? {
            self.env.extend(env);
        }
        Ok(())
    }

    /// The compose command for `args`, with everything explicit.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose.program[0]);
        cmd.args(&self.compose.program[1..]);
        cmd.arg("--project-name").arg(&self.project).arg("--file").arg(&self.file);
        if self.env_file.exists() {
            cmd.arg("--env-file").arg(&self.env_file);
        }
        for p in &self.profiles {
            cmd.args(["--profile", p]);
        }
        cmd.args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(paths::project_root());
        cmd
    }

    /// Runs compose; its progress goes to our stderr.
    pub fn run(&self, args: &[&str]) -> Result<()> {
        let status = self
            .command(args)
            .stdout(Stdio::inherit())
            .status()
            .with_context(|| format!("running {}", self.compose.display()))?;
        if !status.success() {
            bail!("`{} {}` failed (its output is above)", self.compose.display(), args.join(" "));
        }
        Ok(())
    }

    /// The services compose would run with these profiles.
    pub fn services(&self) -> Result<Vec<String>> {
        let out = self.command(&["config", "--services"]).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!("the compose file does not resolve: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let listed = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        Ok(active_services(listed, &self.profiles))
    }
}

/// The services that run with `profiles`: compose v1's `config --services` lists the
/// optional ones (each in the profile of its own name, most in `full` too) even when no
/// profile selects them, so they are dropped here.
pub fn active_services(listed: Vec<String>, profiles: &[String]) -> Vec<String> {
    let on = |s: &str| profiles.iter().any(|p| p == s || (p == "full" && FULL.contains(&s)));
    listed.into_iter().filter(|s| !s.is_empty() && (!OPTIONAL.contains(&s.as_str()) || on(s))).collect()
}

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
        let health = match docker.inspect_container(&id, None).await {
            Ok(i) => i.state.and_then(|s| s.health).and_then(|h| h.status).map(|s| s.to_string()).unwrap_or_default(),
            Err(_) => String::new(),
        };
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
            image: c.image.unwrap_or_default(),
            version: labels.get("org.opencontainers.image.version").cloned().unwrap_or_else(|| "-".into()),
            id,
            image_id: c.image_id.unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(out)
}

/// Creates `.env` from `.env.example` with generated secrets when it is missing. To an
/// existing one it appends, with fresh values, the `<generated>` secrets of the example it
/// lacks (a newer version's), and changes nothing else. `by` names the command, for the
/// comment above them. Says which keys it added, never their values.
pub fn ensure_env_file(path: &Path, by: &str) -> Result<bool> {
    let example = std::fs::read_to_string(paths::env_example())
        .with_context(|| format!("reading {}", paths::env_example().display()))?;
    if path.exists() {
        let env = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let stamp = crate::in_host_words(&format!("`cargo xtask {by}` at {}", crate::utc::rfc3339(crate::utc::now())));
        let Some((text, keys)) =
            dotenv::missing_secrets(&env, &example, &stamp).context("generating secrets from /dev/urandom")?
        else {
            return Ok(false);
        };
        // Appending keeps the file's owner and mode (600 as `start` made it).
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("adding {} to {}", keys.join(", "), path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        eprintln!("==> added to {} the generated secrets it lacked: {}", path.display(), keys.join(", "));
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata()?.permissions());
        if mode & 0o077 != 0 {
            eprintln!(
                "    {} is readable by other users (mode {:o}): `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        return Ok(true);
    }
    let text = dotenv::new_env_text(&example).context("generating secrets from /dev/urandom")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    eprintln!("==> created {} from .env.example with generated secrets (mode 600)", path.display());
    Ok(true)
}

/// Waits until every one of `services` has a running, healthy container; on failure names
/// the service, its last health output and its last log lines.
pub async fn wait_healthy(docker: &Docker, project: &str, services: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = containers(docker, project).await?;
        let mut pending = Vec::new();
        for service in services {
            let Some(c) = all.iter().find(|c| &c.service == service) else {
                pending.push(format!("{service} (no container)"));
                continue;
            };
            match (c.state.as_str(), c.health.as_str()) {
                ("running", "healthy" | "-") => {}
                ("running", "unhealthy") => return Err(failure(docker, c, "is unhealthy").await),
                ("running", _) => pending.push(format!("{service} ({})", c.health)),
                ("exited" | "dead", _) => return Err(failure(docker, c, "exited").await),
                ("restarting", _) => return Err(failure(docker, c, "keeps exiting and restarting").await),
                (state, _) => pending.push(format!("{service} ({state})")),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let first = all.iter().find(|c| pending.iter().any(|p| p.starts_with(&c.service)));
            let reason = format!("not healthy after {}s: {}", timeout.as_secs(), pending.join(", "));
            return Err(match first {
                Some(c) => failure(docker, c, &reason).await,
                None => anyhow::anyhow!(reason),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
    let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).tail("30").build();
    let mut logs = String::new();
    let mut stream = docker.logs(&c.id, Some(opts));
    while let Some(Ok(line)) = stream.next().await {
        logs.push_str(&line.to_string());
    }
    anyhow::anyhow!(
        "service `{}` {what}\nlast healthcheck: {health}\nlast log lines:\n{}\n(more: cargo xtask logs {})",
        c.service,
        logs.trim_end(),
        c.service
    )
}

/// Picks every third-party image of the active services from the source `.env` records
/// (IMAGE_SOURCE: upstream or the local stand-ins); the first start chooses and records it.
/// Refuses to run another database engine on the database this project already has.
async fn resolve_images(docker: &Docker, stack: &mut Stack, services: &[String]) -> Result<()> {
    let vars = Vars::load();
    let recorded = Source::parse(vars.get("IMAGE_SOURCE"))?;
    // A stack from before IMAGE_SOURCE existed keeps what its database runs on.
    let running = containers(docker, &stack.project).await?.into_iter().find(|c| c.service == "postgres");
    let carried = Source::parse(crate::host().images.release()?.image_source.as_deref())?;
    let given = recorded.or(running.as_ref().map(|c| Source::of(&c.image))).or(carried);
    let mut resolver = Resolver::new(docker, given);
    let active: Vec<ThirdParty> =
        third_party::SERVICES.into_iter().filter(|tp| services.iter().any(|s| s == tp.service)).collect();
    for tp in active {
        let image = resolver.image(&tp, vars.get(tp.env)).await?;
        if let Some(old) =
            running.as_ref().filter(|c| tp.service == "postgres" && Source::of(&c.image) != Source::of(&image))
        {
            bail!(
                "the database of project {} runs on {}; {image} is another engine (other extensions), and start never \
                 swaps the engine under a database. To move: `cargo xtask backup`, `cargo xtask stop --volumes --yes`, \
                 set IMAGE_SOURCE (or POSTGRES_IMAGE) in .env, `cargo xtask start`, `cargo xtask restore <backup> --yes`",
                stack.project,
                old.image
            );
        }
        stack.env.push((tp.env.to_string(), image));
    }
    if let (None, Some(chosen)) = (recorded, resolver.chosen) {
        record_image_source(chosen)?;
    }
    Ok(())
}

/// Writes the first start's choice of image source into `.env`.
fn record_image_source(source: Source) -> Result<()> {
    let path = paths::env_file();
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let why = crate::in_host_words(&format!(
        "the first `cargo xtask start` at {}: where the third-party images come from (upstream: their \
         registries; local: stand-ins built here or carried by the bundle). start never switches by itself; see \
         docs/operations.md",
        crate::utc::rfc3339(crate::utc::now())
    ));
    std::fs::write(&path, dotenv::pin(&text, "IMAGE_SOURCE", source.name(), &why))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("==> recorded IMAGE_SOURCE={} in {}", source.name(), path.display());
    Ok(())
}

/// The commit an image was built from (its `revision` label); None when Docker lacks it.
pub async fn image_revision(docker: &Docker, image: &str) -> Option<String> {
    let labels = docker.inspect_image(image).await.ok()?.config?.labels?;
    labels.get("org.opencontainers.image.revision").cloned()
}

/// Makes our images of `wanted` present: a WEKNORA_VERSION other than the release's pins
/// images built elsewhere (or kept by `upgrade`), which must exist and are never built;
/// otherwise the host's [`crate::Images`] builds or imports them (with `rebuild`, again).
pub async fn ensure_ours(docker: &Docker, stack: &Stack, wanted: &[&str], rebuild: bool, no_build: bool) -> Result<()> {
    let images = &crate::host().images;
    let release = images.release()?;
    if stack.version() == release.version {
        return images.ensure_ours(docker, wanted, rebuild, no_build).await;
    }
    let mut absent = Vec::new();
    for name in wanted {
        let image = format!("weknora/{name}:{}", stack.version());
        if docker.inspect_image(&image).await.is_err() {
            absent.push(image);
        }
    }
    if !absent.is_empty() {
        bail!(
            "WEKNORA_VERSION={} pins images that are not this release's ({}), and Docker lacks {}: load them \
             (`docker load`), or unset WEKNORA_VERSION to run this release's",
            stack.version(),
            release.version,
            absent.join(", ")
        );
    }
    Ok(())
}

impl Start {
    /// A production start of these optional profiles (what `upgrade` runs); `ollama` as
    /// `--ollama`.
    pub fn production(profiles: Vec<String>, ollama: bool, timeout: u64) -> Start {
        Start { dev: false, profiles, ollama, no_build: false, pull: false, timeout, by: "upgrade" }
    }

    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(self.run_async())
    }

    pub async fn run_async(self) -> Result<ExitCode> {
        if self.dev && !paths::compose_dev_file().exists() {
            bail!("development mode builds from a checkout: run `cargo xtask start --dev` in one");
        }
        crate::doctor::set_up(crate::doctor::Scope::Stack, self.by).await?;
        ensure_env_file(&paths::env_file(), self.by)?;
        eprintln!("==> checking the machine");
        if !crate::doctor::stack_checks(self.dev, false).await? {
            bail!("a required check failed (table above): fix it, or run `cargo xtask doctor --fix`");
        }
        let docker = docker::connect().await?;
        let mut stack = Stack::open(&docker, Some(self.dev), &self.profiles).await?;
        let services = stack.services()?;
        if self.ollama {
            // Before anything is built or started: the app must start with its model there.
            let env = ollama_for_the_app(&docker).await?;
            stack.env.extend(env);
        }
        if self.pull {
            Pull::pull(&stack, &services)?;
        }
        let ours: Vec<&str> = OURS.iter().copied().filter(|o| services.iter().any(|s| s == o)).collect();
        ensure_ours(&docker, &stack, &ours, false, self.no_build).await?;
        resolve_images(&docker, &mut stack, &services).await?;
        if stack.dev() {
            crate::host().images.ensure_dev(&docker, &format!("weknora/app-dev:{}", stack.version())).await?;
        }
        let timeout = Duration::from_secs(self.timeout);
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
        let port = |k: &str, d: &str| vars.get(k).unwrap_or(d).to_string();
        println!("weknora {} is up ({} services healthy, project {})", stack.version(), services.len(), stack.project);
        println!("  web UI:    http://localhost:{}/", port("FRONTEND_PORT", "80"));
        println!("  API:       http://localhost:{}/api/v1 (also through the web UI's /api)", port("APP_PORT", "8080"));
        println!("  admin key: ADMIN_API_KEY in {} (send it as X-API-Key)", paths::env_file().display());
        Ok(ExitCode::SUCCESS)
    }
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
    if chat.on_this_host()
        && let Some(gateway) = bridge_gateway(docker).await
    {
        crate::ollama::check_reachable_from_containers(&addr, &gateway)?;
    }
    eprintln!("==> the app's chat model: {} on Ollama ({})", chat.model, chat.base_url);
    Ok(chat.app_env())
}

/// The address of Docker's default bridge on this host: what `host-gateway` (and so
/// host.docker.internal in the containers) stands for. None when Docker does not say.
async fn bridge_gateway(docker: &Docker) -> Option<String> {
    let network =
        docker.inspect_network("bridge", None::<bollard::query_parameters::InspectNetworkOptions>).await.ok()?;
    network.ipam?.config?.into_iter().find_map(|c| c.gateway).filter(|g| !g.is_empty())
}

/// The chat model `start --ollama` gave the running app (its LLM_* environment), so that a
/// command recreating the app keeps it. None when `.env` names a chat model (compose gives
/// that one anyway) or the app has none from Ollama.
pub async fn ollama_chat_env(docker: &Docker, project: &str) -> Result<Option<Vec<(String, String)>>> {
    if Vars::load().get("LLM_BASE_URL").is_some() {
        return Ok(None);
    }
    let Some(app) =
        containers(docker, project).await?.into_iter().find(|c| c.service == "app" || c.service == "app-dev")
    else {
        return Ok(None);
    };
    let env = docker.inspect_container(&app.id, None).await?.config.and_then(|c| c.env).unwrap_or_default();
    Ok(ollama_chat_of(&env))
}

/// The LLM_* variables of a container's environment (`KEY=value` lines) when they name an
/// Ollama chat model.
fn ollama_chat_of(env: &[String]) -> Option<Vec<(String, String)>> {
    let get = |key: &str| env.iter().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).filter(|v| !v.is_empty());
    if get("LLM_PROVIDER")? != "ollama" {
        return None;
    }
    let keys = ["LLM_PROVIDER", "LLM_BASE_URL", "LLM_MODEL_NAME"];
    keys.iter().map(|k| Some((k.to_string(), get(k)?.to_string()))).collect()
}

/// Applies pending migrations inside the stack's network with the app image's own
/// migrations (production: the database port is not published); in development through
/// the published port with `cargo xtask migrate up`.
pub fn migrate(stack: &Stack) -> Result<()> {
    if stack.dev() {
        let vars = Vars::load();
        let exe = std::env::current_exe()?;
        let status = Command::new(exe)
            .args(["migrate", "up"])
            .env("DB_HOST", "127.0.0.1")
            .env("DB_PORT", vars.get("DB_PORT").unwrap_or("5432"))
            .env("DATABASE_URL", "")
            .status()?;
        if !status.success() {
            bail!("migrating failed (see above); the stack's other services were not started");
        }
        return Ok(());
    }
    stack
        .run(&["run", "--rm", "--no-deps", "-T", "app", "migrate"])
        .context("migrating failed; the stack's other services were not started (database and redis are up)")
}

impl Stop {
    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let stack = Stack::open(&docker, None, &["full".to_string()]).await?;
            let found = containers(&docker, &stack.project).await?;
            let mut plan: Vec<String> =
                found.iter().map(|c| format!("remove container {} ({})", c.name, c.service)).collect();
            plan.push(format!("remove network {}_WeKnora-network", stack.project));
            if self.volumes {
                plan.push(format!(
                    "delete the volumes of project {}: every document, chunk and database row (take a backup first)",
                    stack.project
                ));
            }
            // Stopping alone loses nothing: only --volumes asks for --yes.
            if !crate::confirm::go_ahead("stop", &plan, self.dry_run, self.yes || !self.volumes, false)? {
                return Ok(ExitCode::SUCCESS);
            }
            let mut args = vec!["down", "--remove-orphans"];
            if self.volumes {
                args.push("--volumes");
            }
            stack.run(&args)?;
            println!("stopped project {} ({} containers removed)", stack.project, found.len());
            Ok(ExitCode::SUCCESS)
        })
    }
}

impl Restart {
    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let mut stack = Stack::open(&docker, None, &["full".to_string()]).await?;
            let running: Vec<String> =
                containers(&docker, &stack.project).await?.into_iter().map(|c| c.service).collect();
            if running.is_empty() {
                bail!("project {} has no containers: start it with `cargo xtask start`", stack.project);
            }
            let timeout = Duration::from_secs(self.timeout);
            match self.service.as_deref() {
                Some(svc) if OURS.contains(&svc) => {
                    ensure_ours(&docker, &stack, &[svc], true, false).await?;
                    resolve_images(&docker, &mut stack, &running).await?;
                    stack.keep_ollama_chat_model(&docker).await?;
                    stack.run(&["up", "--detach", "--no-deps", "--force-recreate", svc])?;
                    wait_healthy(&docker, &stack.project, &[svc.to_string()], timeout).await?;
                }
                Some(svc) => {
                    if !running.iter().any(|r| r == svc) {
                        bail!("no service `{svc}` in project {}: running are {}", stack.project, running.join(", "));
                    }
                    stack.run(&["restart", svc])?;
                    wait_healthy(&docker, &stack.project, &[svc.to_string()], timeout).await?;
                }
                None => {
                    stack.run(&["restart"])?;
                    wait_healthy(&docker, &stack.project, &running, timeout).await?;
                }
            }
            println!("restarted {} (healthy)", self.service.as_deref().unwrap_or("every service"));
            Ok(ExitCode::SUCCESS)
        })
    }
}

impl Ps {
    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let project = docker::project_name(&Vars::load()).to_ascii_lowercase();
            let list = containers(&docker, &project).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!(
                    "{}",
                    crate::in_host_words(&format!(
                        "project {project} has no containers (start it with `cargo xtask start`)"
                    ))
                );
            } else {
                println!("{:<12} {:<10} {:<10} {:<10} PORTS", "SERVICE", "STATE", "HEALTH", "VERSION");
                for c in &list {
                    println!(
                        "{:<12} {:<10} {:<10} {:<10} {}",
                        c.service,
                        c.state,
                        c.health,
                        c.version,
                        c.ports.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}

impl Logs {
    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let stack = Stack::open(&docker, None, &["full".to_string()]).await?;
            let mut args = vec!["logs", "--no-color", "--tail", &self.tail];
            if self.follow {
                args.push("--follow");
            }
            if let Some(since) = &self.since {
                args.extend(["--since", since]);
            }
            if let Some(s) = &self.service {
                args.push(s);
            }
            stack.run(&args)?;
            Ok(ExitCode::SUCCESS)
        })
    }
}

impl Pull {
    pub fn run(self) -> Result<ExitCode> {
        // The compose file needs `.env`'s secrets to resolve; pull before the first start
        // creates it as start would.
        ensure_env_file(&paths::env_file(), "pull")?;
        crate::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let stack = Stack::open(&docker, Some(false), &self.profiles).await?;
            Pull::pull(&stack, &stack.services()?)?;
            Ok(ExitCode::SUCCESS)
        })
    }

    /// Pulls the upstream third-party images (never ours: they are built here).
    fn pull(stack: &Stack, services: &[String]) -> Result<()> {
        // Ours, app-dev and the embedder (no registry has it) are built here, never pulled.
        let upstream: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| !OURS.contains(s) && !matches!(*s, "app-dev" | "embedder"))
            .collect();
        let mut args = vec!["pull"];
        args.extend(&upstream);
        stack.run(&args).context(
            "pulling failed: where no registry is reachable, `cargo xtask start` uses local stand-ins instead (see docs/operations.md)",
        )
    }
}

impl Check {
    pub fn run(self) -> Result<ExitCode> {
        crate::runtime()?.block_on(async {
            let ok = crate::doctor::stack_checks(self.dev, self.json).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_services_run_only_with_their_profile() {
        let listed: Vec<String> =
            ["app", "minio", "neo4j", "jaeger", "postgres", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(active_services(listed.clone(), &[]), ["app", "postgres"]);
        assert_eq!(active_services(listed.clone(), &["neo4j".into()]), ["app", "neo4j", "postgres"]);
        assert_eq!(active_services(listed, &["full".into()]), ["app", "minio", "neo4j", "jaeger", "postgres"]);
        let listed: Vec<String> = ["app", "embedder", "minio"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            active_services(listed.clone(), &["full".into()]),
            ["app", "minio"],
            "full leaves the embedder to start"
        );
        assert_eq!(active_services(listed, &["embedder".into()]), ["app", "embedder"]);
    }

    #[test]
    fn an_older_env_gets_the_new_secrets_and_keeps_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert!(ensure_env_file(&path, "start").unwrap(), "created");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // As a version before MODELS_ENCRYPTION_KEY made it, with the operator's own values.
        let created = std::fs::read_to_string(&path).unwrap();
        let old: String = created
            .lines()
            .filter(|l| !l.starts_with("MODELS_ENCRYPTION_KEY="))
            .map(|l| if l.starts_with("DB_PASSWORD=") { "DB_PASSWORD=mine\n".to_string() } else { format!("{l}\n") })
            .collect();
        std::fs::write(&path, &old).unwrap();

        assert!(ensure_env_file(&path, "start").unwrap(), "added");
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.starts_with(&old), "nothing before is changed");
        let added = &now[old.len()..];
        assert!(added.contains("# Added by `cargo xtask start` at 20"), "{added}");
        let env = crate::dotenv::EnvFile::parse(&now);
        assert_eq!(env.get("DB_PASSWORD"), Some("mine"));
        assert_eq!(env.get("MODELS_ENCRYPTION_KEY").map(str::len), Some(64));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let example = crate::dotenv::EnvFile::parse(&std::fs::read_to_string(paths::env_example()).unwrap());
        assert!(!crate::dotenv::EnvReport::compare(&env, &example).is_broken());

        assert!(!ensure_env_file(&path, "start").unwrap(), "a complete .env is left alone");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), now);
    }

    #[test]
    fn a_recreated_app_keeps_the_chat_model_start_ollama_gave_it() {
        let env = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let ollama = env(&[
            "PATH=/usr/bin",
            "LLM_PROVIDER=ollama",
            "LLM_BASE_URL=http://host.docker.internal:11434",
            "LLM_MODEL_NAME=qwen2.5:0.5b",
            "LLM_API_KEY=",
        ]);
        let kept = ollama_chat_of(&ollama).unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[1], ("LLM_BASE_URL".to_string(), "http://host.docker.internal:11434".to_string()));
        assert_eq!(ollama_chat_of(&env(&["LLM_PROVIDER=openai", "LLM_BASE_URL=https://api.openai.com/v1"])), None);
        assert_eq!(ollama_chat_of(&env(&["LLM_PROVIDER=ollama", "LLM_BASE_URL="])), None, "no model: nothing to keep");
    }

    /// The `KEY: value` lines of a service's `environment:` in a compose file, and whether it
    /// maps host.docker.internal to the host.
    fn compose_environment(compose: &str, service: &str) -> (Vec<String>, bool) {
        let block: Vec<&str> = compose
            .lines()
            .skip_while(|l| *l != format!("  {service}:"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("   "))
            .collect();
        let environment = block
            .iter()
            .skip_while(|l| !l.starts_with("    environment:"))
            .skip(1)
            .take_while(|l| l.starts_with("      "))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| l.trim().to_string())
            .collect();
        let gateway = block.iter().any(|l| l.contains(r#"extra_hosts: ["host.docker.internal:host-gateway"]"#));
        (environment, gateway)
    }

    #[test]
    fn the_development_app_gets_the_production_apps_settings() {
        let prod = std::fs::read_to_string(paths::compose_file()).unwrap();
        let dev = std::fs::read_to_string(paths::compose_dev_file()).unwrap();
        let (app, app_gateway) = compose_environment(&prod, "app");
        let (mut app_dev, dev_gateway) = compose_environment(&dev, "app-dev");
        app_dev.retain(|l| !l.starts_with("WEKNORA_CONFIG:"));
        assert_eq!(app_dev, app, "docker-compose.dev.yml's app-dev environment differs from the app's");
        assert!(app.iter().any(|l| l == "MODELS_ENCRYPTION_KEY: ${MODELS_ENCRYPTION_KEY:-}"), "{app:?}");
        assert!(app.iter().any(|l| l == "LLM_BASE_URL: ${LLM_BASE_URL:-}"), "{app:?}");
        assert!(app_gateway && dev_gateway, "the app reaches model servers on the host as host.docker.internal");
    }

    #[test]
    fn the_embedder_is_bundled_unless_another_model_server_is_named() {
        let vars = |url: &str| {
            let file = crate::dotenv::EnvFile::parse(&format!("EMBEDDING_BASE_URL={url}\n"));
            Vars::new(Default::default(), file)
        };
        assert!(embedder_bundled(&vars("")));
        assert!(embedder_bundled(&vars("http://embedder:8000/")));
        assert!(!embedder_bundled(&vars("http://ollama:11434")));
        let compose = std::fs::read_to_string(crate::paths::compose_file()).unwrap();
        assert!(compose.contains(&format!("EMBEDDING_BASE_URL: ${{EMBEDDING_BASE_URL:-{BUNDLED_EMBEDDER_URL}}}")));
    }
}
