//! The running stack's small commands: `stop`, `restart`, `ps`, `logs`, `pull`, `check`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::compose::{OURS, Stack};
use crate::containers::{containers, wait_healthy};
use crate::docker;
use crate::dotenv::{Vars, ensure_env_file};
use crate::images::{ensure_ours, resolve_images};
use crate::paths;

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
    /// Run the troubleshooting checklist against the running stack: containers, database
    /// connections, long queries and lock waits, the ingest queue, consistency of documents,
    /// chunks, vectors and files, volumes and disk, errors in the logs.
    #[arg(long)]
    deep: bool,
    /// With --deep: a statement running longer than this is reported.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    long_query_secs: u64,
    /// With --deep: how far back the logs are read for errors.
    #[arg(long, value_name = "MINUTES", default_value_t = 15)]
    log_minutes: u64,
}

#[derive(clap::Args)]
pub struct Pull {
    #[arg(long = "profile", value_name = "P")]
    profiles: Vec<String>,
}

impl Stop {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(async {
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
        crate::host::runtime()?.block_on(async {
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
        crate::host::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let project = docker::project_name(&Vars::load()).to_ascii_lowercase();
            let list = containers(&docker, &project).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!(
                    "{}",
                    crate::host::in_host_words(&format!(
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
        crate::host::runtime()?.block_on(async {
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
        crate::host::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let stack = Stack::open(&docker, Some(false), &self.profiles).await?;
            stack.pull_upstream(&stack.services()?)?;
            Ok(ExitCode::SUCCESS)
        })
    }
}

impl Check {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(async {
            let ok = if self.deep {
                self.deep().await?
            } else {
                crate::doctor::setup::stack_checks(self.dev, self.json).await?
            };
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        })
    }

    /// `check --deep`: the findings, as a table on stderr or JSON on stdout; whether none failed.
    async fn deep(&self) -> Result<bool> {
        let docker = docker::connect().await?;
        let stack = Stack::open(&docker, None, &["full".to_string()]).await?;
        eprintln!("==> checking project {} (check --deep)", stack.project);
        let limits = crate::deep::Limits {
            long_query: Duration::from_secs(self.long_query_secs),
            logs: Duration::from_secs(self.log_minutes * 60),
        };
        let findings = crate::deep::findings(&docker, &stack.project, &limits).await?;
        let ok = findings.iter().all(|c| c.status != crate::report::Status::Fail);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "checks": findings }))?);
        } else {
            eprint!("{}", crate::report::render_table(&findings));
        }
        Ok(ok)
    }
}
