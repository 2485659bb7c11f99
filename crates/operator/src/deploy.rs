//! `deploy swarm`: the stack on Docker Swarm, from the same compose description `start`
//! runs. The images are made as for `start`; the stack file comes from `swarm::plan`; then
//! three steps, each waited for: the data services (PostgreSQL, Redis, the optional ones),
//! the migration job (once, before anything of ours is updated), and our services, rolled
//! out one task at a time, each new task healthy before an old one stops, and rolled back by
//! Swarm when a new one fails its healthcheck.

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use serde_json::Value;

use crate::compose::{OURS, Stack};
use crate::containers::containers;
use crate::docker;
use crate::dotenv::ensure_env_file;
use crate::images::{ensure_ours, resolve_images};
use crate::paths;
use crate::swarm::{self, Inputs, MIGRATE, SCALED};

#[derive(clap::Subcommand)]
pub enum Deploy {
    /// Deploy (or update) the stack on this Docker Swarm manager with `docker stack deploy`.
    Swarm(Swarm),
}

impl Deploy {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            Deploy::Swarm(cmd) => crate::host::runtime()?.block_on(cmd.run()),
        }
    }
}

#[derive(clap::Args)]
pub struct Swarm {
    /// Replicas of one of our services as SERVICE=N, repeatable (defaults: app=2,
    /// docreader=2, embedder=1, frontend=1).
    #[arg(long = "replicas", value_name = "SERVICE=N")]
    replicas: Vec<String>,
    /// Optional services: minio, neo4j, jaeger, monitoring, or full (repeatable).
    #[arg(long = "profile", value_name = "P")]
    profiles: Vec<String>,
    /// Write the stack file and print it (secrets are Docker secrets: no value is in it);
    /// deploy nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long each step may take to converge, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// How services find each other: `vip`, Swarm's virtual IPs and ingress (needs IPVS in
    /// the kernel), or `dnsrr`, DNS round robin, the frontend's port on its node.
    #[arg(long, value_enum, default_value_t = EndpointMode::Vip)]
    endpoint_mode: EndpointMode,
    /// The services' states as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum EndpointMode {
    Vip,
    Dnsrr,
}

impl Swarm {
    async fn run(self) -> Result<ExitCode> {
        let replicas = parse_replicas(&self.replicas)?;
        crate::doctor::setup::set_up("deploy swarm").await?;
        ensure_env_file(&paths::env_file(), "deploy swarm")?;
        let docker = docker::connect().await?;
        if !self.dry_run {
            swarm::ensure_manager(&docker).await?;
        }
        let mut stack = Stack::open(&docker, Some(false), &self.profiles).await?;
        if stack.drop_profile("backup") {
            eprintln!(
                "==> warning: the backup service (BACKUP_AT) runs with compose only: it shares postgres's network \
                 namespace, which Swarm has not. Here take backups with `backup` on the manager (docs/operations.md)"
            );
        }
        let project = stack.project.clone();
        if !self.dry_run && !containers(&docker, &project).await?.is_empty() {
            bail!(
                "project {project} runs with compose on this host: its volumes would be shared by two stacks. Stop it \
                 first (`cargo xtask stop`; the data stays in its volumes, which the swarm stack then uses)"
            );
        }
        let services = stack.services()?;
        let ours: Vec<&str> = OURS.iter().copied().filter(|o| services.iter().any(|s| s == o)).collect();
        ensure_ours(&docker, &stack, &ours, false, false).await?;
        resolve_images(&docker, &mut stack, &services).await?;
        let rendered = render(&stack)?;
        let (image_ids, starts) = inspect_images(&docker, &rendered).await?;
        let deployment = crate::utc::rfc3339(crate::utc::now());
        let dnsrr = self.endpoint_mode == EndpointMode::Dnsrr;
        if !dnsrr && !ipvs_here() {
            eprintln!(
                "==> warning: this kernel seems to lack IPVS: Swarm's virtual IPs and ingress would not answer. If the \
                 services cannot reach each other, deploy with --endpoint-mode dnsrr"
            );
        }
        let inputs = Inputs {
            project: &project,
            replicas: &replicas,
            image_ids: &image_ids,
            deployment: &deployment,
            starts: &starts,
            dnsrr,
        };
        let plan = swarm::plan(&rendered, &inputs)?;
        let file = paths::swarm_stack();
        if self.dry_run {
            std::fs::write(&file, serde_json::to_string_pretty(&plan.stack)?)?;
            eprintln!("==> the stack file is {} (nothing deployed)", file.display());
            println!("{}", serde_json::to_string_pretty(&plan.stack)?);
            return Ok(ExitCode::SUCCESS);
        }

        let timeout = Duration::from_secs(self.timeout);
        let names: Vec<&str> = plan.stack["services"].as_object().unwrap().keys().map(String::as_str).collect();
        let data: Vec<&str> = names.iter().copied().filter(|s| !SCALED.contains(s) && *s != MIGRATE).collect();
        let running: Vec<&str> = names.iter().copied().filter(|s| *s != MIGRATE).collect();

        eprintln!("==> secrets");
        swarm::ensure_secrets(&docker, &project, &plan.secrets).await?;
        eprintln!("==> deploying {} to the swarm", data.join(", "));
        swarm::deploy(&swarm::only(&plan.stack, &data), &file, &project)?;
        swarm::converge(&docker, &project, &data, timeout).await?;
        eprintln!("==> migrating the database (the job {project}_{MIGRATE})");
        let with_job: Vec<&str> = data.iter().copied().chain([MIGRATE]).collect();
        swarm::deploy(&swarm::only(&plan.stack, &with_job), &file, &project)?;
        swarm::job_done(&docker, &project, MIGRATE, timeout).await?;
        eprintln!("==> deploying {} (one task at a time, each healthy before the next)", SCALED.join(", "));
        swarm::deploy(&plan.stack, &file, &project)?;
        let states = swarm::converge(&docker, &project, &running, timeout).await?;
        swarm::prune_secrets(&docker, &project, &plan.secrets).await?;

        let states: Vec<_> = states.into_iter().filter(|s| s.service != MIGRATE).collect();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&states)?);
        } else {
            println!("weknora {} runs on the swarm as stack {project}:", stack.version());
            for s in &states {
                println!("  {:<12} {}/{} {}", s.service, s.running, s.desired, s.image);
            }
            let port = rendered["services"]["frontend"]["ports"][0]["published"].as_str().unwrap_or("80").to_string();
            println!("  web UI: http://<any swarm node>:{port}/");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Whether this host's kernel has IPVS, loaded or as a module (an engine elsewhere is not
/// judged).
fn ipvs_here() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    std::path::Path::new("/proc/net/ip_vs").exists()
        || std::path::Path::new(&format!("/lib/modules/{}/kernel/net/netfilter/ipvs", release.trim())).exists()
}

/// `SERVICE=N` flags over the defaults.
fn parse_replicas(flags: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut replicas = swarm::default_replicas();
    for flag in flags {
        let parsed = flag.split_once('=').and_then(|(s, n)| Some((s.trim(), n.trim().parse::<u64>().ok()?)));
        match parsed {
            Some((service, n)) if SCALED.contains(&service) && n >= 1 => {
                replicas.insert(service.to_string(), n);
            }
            _ => bail!("--replicas {flag}: use SERVICE=N with N at least 1 and SERVICE one of {}", SCALED.join(", ")),
        }
    }
    Ok(replicas)
}

/// The stack as compose renders it (defaults and `.env` applied).
fn render(stack: &Stack) -> Result<Value> {
    let out = stack.command(&["config", "--format", "json"]).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("the compose file does not resolve: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("reading what docker compose config rendered (compose v2 is needed)")
}

type Starts = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// The image ID of each of our services, and the entry point and command of the others'.
async fn inspect_images(docker: &Docker, rendered: &Value) -> Result<(BTreeMap<String, String>, Starts)> {
    let (mut ids, mut starts) = (BTreeMap::new(), BTreeMap::new());
    for (name, service) in rendered["services"].as_object().into_iter().flatten() {
        let image = service["image"].as_str().unwrap_or_default();
        let inspect = docker
            .inspect_image(image)
            .await
            .with_context(|| format!("the image of {name}, {image}, is not on this host (`cargo xtask pull`)"))?;
        if SCALED.contains(&name.as_str()) {
            ids.insert(name.clone(), inspect.id.unwrap_or_default());
        } else {
            let config = inspect.config.unwrap_or_default();
            starts.insert(name.clone(), (config.entrypoint.unwrap_or_default(), config.cmd.unwrap_or_default()));
        }
    }
    Ok((ids, starts))
}
