//! The operator's commands, shared by both front ends: each one's clap arguments live in
//! its own module, and `Command::run` hands over to it. `doctor` is each front end's own:
//! `weknora doctor` is `doctor::Doctor`, and `cargo xtask doctor` adds the developer's
//! machine to it.

use std::process::ExitCode;

use clap::Subcommand;

use crate::{backup, deploy, migrate, ollama, reindex, stack, start, upgrade};

/// The operator's commands, shared by both front ends.
#[derive(Subcommand)]
pub enum Command {
    /// Apply, revert, create and inspect database migrations.
    Migrate(migrate::Migrate),
    /// Bring the whole stack up healthy: checks, images, postgres and redis, migrations, the rest.
    Start(start::Start),
    /// Stop the stack (`--volumes --yes` also deletes its data).
    Stop(stack::Stop),
    /// Restart one service (ours are rebuilt or re-imported, and recreated) or all of them.
    Restart(stack::Restart),
    /// The stack's containers: service, state, health, version, ports.
    Ps(stack::Ps),
    /// The stack's logs.
    Logs(stack::Logs),
    /// Pull the upstream third-party images.
    Pull(stack::Pull),
    /// Check what the stack needs from this machine (the stack part of doctor).
    Check(stack::Check),
    /// Back up the running stack (database, uploaded files) to one archive; `backup verify`
    /// checks an archive with a restore drill.
    Backup(backup::Backup),
    /// Replace the stack's data with a backup's (a backup of the current state is taken first).
    Restore(backup::Restore),
    /// Move the running stack to these images (this checkout's, or `--bundle`'s): keep the
    /// running images, back up, migrate, recreate; roll back by itself on failure.
    Upgrade(upgrade::Upgrade),
    /// Undo the last upgrade: restore the backup taken before it and run the kept images.
    Rollback(upgrade::Rollback),
    /// Make the knowledge bases' vectors again with the configured embedding model.
    Reindex(reindex::Reindex),
    /// A local Ollama for models: start, stop, status.
    #[command(subcommand)]
    Ollama(ollama::Ollama),
    /// Deploy the stack beyond one machine: `deploy swarm` on Docker Swarm.
    #[command(subcommand)]
    Deploy(deploy::Deploy),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Migrate(cmd) => cmd.run(),
            Command::Start(cmd) => cmd.run(),
            Command::Stop(cmd) => cmd.run(),
            Command::Restart(cmd) => cmd.run(),
            Command::Ps(cmd) => cmd.run(),
            Command::Logs(cmd) => cmd.run(),
            Command::Pull(cmd) => cmd.run(),
            Command::Check(cmd) => cmd.run(),
            Command::Backup(cmd) => cmd.run(),
            Command::Restore(cmd) => cmd.run(),
            Command::Upgrade(cmd) => cmd.run(),
            Command::Rollback(cmd) => cmd.run(),
            Command::Reindex(cmd) => cmd.run(),
            Command::Ollama(cmd) => cmd.run(),
            Command::Deploy(cmd) => cmd.run(),
        }
    }
}
