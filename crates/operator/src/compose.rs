//! The stack as compose runs it: program, project, file, env file, profiles, extra
//! environment, always explicit. Compose (v2 plugin, else standalone v1) creates and removes
//! things; finding them again goes through bollard (`containers`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::containers::containers;
use crate::docker::{self, ComposeCli};
use crate::dotenv::Vars;
use crate::paths;
use weknora_stack_spec as spec;

/// Our services, built from this repository (weknora-stack-spec declares them all).
pub const OURS: [&str; 3] = [spec::OURS[0].name, spec::OURS[1].name, spec::OURS[2].name];
/// The optional services, and the profile that runs each (most are named as their profile).
pub const OPTIONAL: [(&str, &str); 6] = [
    optional(spec::MINIO),
    optional(spec::NEO4J),
    optional(spec::JAEGER),
    optional(spec::PROMETHEUS),
    optional(spec::EMBEDDER),
    optional(spec::BACKUP),
];
/// The optional services the profile `full` runs too.
const FULL: [&str; 4] = spec::FULL;

const fn optional(service: spec::Service) -> (&'static str, &'static str) {
    match service.profile {
        Some(profile) => (service.name, profile),
        None => panic!("an optional service has a profile"),
    }
}

/// The profile that runs an optional service; None for the services every stack runs.
pub fn profile_of(service: &str) -> Option<&'static str> {
    OPTIONAL.iter().find(|(s, _)| *s == service).map(|(_, p)| *p)
}
/// Where the app finds the bundled embedder (the compose files' default EMBEDDING_BASE_URL).
pub const BUNDLED_EMBEDDER_URL: &str = "http://embedder:8000";

/// Whether the stack runs the bundled embedder: unless EMBEDDING_BASE_URL names another
/// model server.
pub fn embedder_bundled(vars: &Vars) -> bool {
    vars.get("EMBEDDING_BASE_URL").is_none_or(|url| url.trim_end_matches('/') == BUNDLED_EMBEDDER_URL)
}

/// Whether compose of this version reads docker-compose.dev.yml's `!reset` and `!override`
/// (compose-go added `!override` early in 2024; 2.24.6 is Debian trixie's, known to read it).
fn reads_overrides(version: &str) -> bool {
    let number = |p: Option<&str>| {
        p.map_or(0, |p| p.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse::<u32>().unwrap_or(0))
    };
    let mut parts = version.split('.');
    let (major, minor, patch) = (number(parts.next()), number(parts.next()), number(parts.next()));
    (major, minor, patch) >= (2, 24, 6)
}

/// Compose for this checkout: program, project, file, env file, profiles, extra environment.
pub struct Stack {
    compose: ComposeCli,
    pub project: String,
    /// docker-compose.yml, then (development) the override docker-compose.dev.yml.
    files: Vec<PathBuf>,
    env_file: PathBuf,
    profiles: Vec<String>,
    /// Extra environment for compose: the version to run, the third-party images, ...
    pub(crate) env: Vec<(String, String)>,
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
            None => crate::host::host().images.release()?.version,
        };
        for p in profiles {
            if p != "full" && !OPTIONAL.iter().any(|(_, profile)| profile == p) {
                bail!("unknown profile `{p}`: use minio, neo4j, jaeger, monitoring, backup or full");
            }
        }
        let mut profiles = profiles.to_vec();
        if embedder_bundled(&vars) && !profiles.iter().any(|p| p == "embedder") {
            profiles.push("embedder".into());
        }
        // The backup service runs when .env says when.
        if vars.get("BACKUP_AT").is_some_and(|at| !at.trim().is_empty()) && !profiles.iter().any(|p| p == "backup") {
            profiles.push("backup".into());
        }
        // The development file overrides docker-compose.yml with `!reset`/`!override`, which
        // compose reads from 2.24.6 on (v1 never).
        if dev && !reads_overrides(&compose.version) {
            bail!(
                "development mode needs compose 2.24.6 or later (`docker compose`; {} is {}): run `cargo xtask doctor --fix` to install the compose plugin",
                compose.display(),
                compose.version
            );
        }
        let mut files = vec![paths::compose_file()];
        if dev {
            files.push(paths::compose_dev_file());
        }
        Ok(Stack {
            compose,
            project,
            files,
            env_file: paths::env_file(),
            profiles,
            env: vec![("WEKNORA_VERSION".into(), version)],
        })
    }

    /// Leaves a profile out (one a target cannot run).
    pub fn drop_profile(&mut self, profile: &str) -> bool {
        let before = self.profiles.len();
        self.profiles.retain(|p| p != profile);
        self.profiles.len() != before
    }

    pub fn dev(&self) -> bool {
        self.files.len() > 1
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

    /// Pulls the upstream third-party images (never ours: they are built here).
    pub fn pull_upstream(&self, services: &[String]) -> Result<()> {
        // Ours, app-dev and the embedder (no registry has it) are built here, never pulled.
        let upstream: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| !OURS.contains(s) && !matches!(*s, "app-dev" | "embedder"))
            .collect();
        let mut args = vec!["pull"];
        args.extend(&upstream);
        self.run(&args).context(
            "pulling failed: where no registry is reachable, `cargo xtask start` uses local stand-ins instead (see docs/operations.md)",
        )
    }

    /// The compose command for `args`, with everything explicit.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose.program[0]);
        cmd.args(&self.compose.program[1..]);
        cmd.arg("--project-name").arg(&self.project);
        for file in &self.files {
            cmd.arg("--file").arg(file);
        }
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

    /// `compose run --rm --no-deps -T <args>`: a one-off container of a service (its image,
    /// volumes, environment and network), whether the service runs or not. Reads `stdin`,
    /// writes `stdout` (piped: returned); a failure is an error naming `what`, with its stderr.
    pub fn one_off(&self, what: &str, args: &[&str], stdin: Stdio, stdout: Stdio) -> Result<Vec<u8>> {
        let run = [&["run", "--rm", "--no-deps", "-T"][..], args].concat();
        let out = self.command(&run).stdin(stdin).stdout(stdout).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out.stdout)
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
/// optional ones (each in its profile, most in `full` too) even when no profile selects
/// them, so they are dropped here.
pub fn active_services(listed: Vec<String>, profiles: &[String]) -> Vec<String> {
    let on = |s: &str, profile: &str| profiles.iter().any(|p| p == profile || (p == "full" && FULL.contains(&s)));
    listed.into_iter().filter(|s| !s.is_empty() && profile_of(s).is_none_or(|profile| on(s, profile))).collect()
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
            .env("DB_PORT", vars.get("DB_PORT").unwrap_or_default())
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
        let listed: Vec<String> = ["app", "prometheus"].iter().map(|s| s.to_string()).collect();
        assert_eq!(active_services(listed.clone(), &[]), ["app"]);
        assert_eq!(active_services(listed.clone(), &["monitoring".into()]), ["app", "prometheus"]);
        assert_eq!(active_services(listed, &["full".into()]), ["app", "prometheus"]);
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
    fn development_mode_needs_a_compose_that_reads_overrides() {
        assert!(reads_overrides("2.40.3") && reads_overrides("2.24.6+ds1-0+deb13u1") && reads_overrides("3.0.0"));
        assert!(!reads_overrides("2.24.1") && !reads_overrides("2.23.3") && !reads_overrides("1.29.2"));
    }
    #[test]
    fn the_app_reaches_model_servers_on_the_host() {
        // The development app extends this one (docker-compose.dev.yml): the same settings.
        let prod = std::fs::read_to_string(paths::compose_file()).unwrap();
        let (app, app_gateway) = compose_environment(&prod, "app");
        assert!(app.iter().any(|l| l == "MODELS_ENCRYPTION_KEY: ${MODELS_ENCRYPTION_KEY:-}"), "{app:?}");
        assert!(app.iter().any(|l| l == "LLM_BASE_URL: ${LLM_BASE_URL:-}"), "{app:?}");
        assert!(app_gateway, "the app reaches model servers on the host as host.docker.internal");
        let dev = std::fs::read_to_string(paths::compose_dev_file()).unwrap();
        assert!(dev.contains("      file: docker-compose.yml\n      service: app\n"), "app-dev extends the app");
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
}
