//! `cargo xtask reindex [--kb ID]`: makes the vectors of every knowledge base (or one) again
//! with the embedding model the running app is configured with, after a change of model or
//! to recover from failed embeddings. The running app's own binary queues the embed jobs
//! (it knows the database and the model); its workers then do them.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::compose::Stack;
use crate::containers::containers;
use crate::docker;

#[derive(clap::Args)]
pub struct Reindex {
    /// Only this knowledge base (its id, as the API and the web UI show it).
    #[arg(long, value_name = "ID")]
    kb: Option<String>,
}

impl Reindex {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let stack = Stack::open(&docker, None, &[]).await?;
            // In development the binary is the one app-dev's watcher built.
            let (service, binary) = if stack.dev() {
                ("app-dev", "/target/debug/weknora-app")
            } else {
                ("app", "/usr/local/bin/weknora-app")
            };
            let running = containers(&docker, &stack.project).await?;
            if !running.iter().any(|c| c.service == service && c.state == "running") {
                bail!(
                    "the app of project `{}` is not running: start the stack first (`cargo xtask start`)",
                    stack.project
                );
            }
            let mut args = vec!["exec", "-T", service, binary, "reindex"];
            if let Some(kb) = &self.kb {
                args.extend(["--kb", kb]);
            }
            eprintln!("==> queueing the embed jobs (the app's workers make the vectors; watch vector_status)");
            stack.run(&args)?;
            Ok(ExitCode::SUCCESS)
        })
    }
}
