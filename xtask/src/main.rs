//! `cargo xtask`: the operator CLI of weknora. One module per command group; every
//! repository path lives in `paths`. Results go to stdout, progress to stderr.

mod backup;
mod bench;
mod ci;
mod database;
mod docker;
mod doctor;
mod dotenv;
mod images;
mod migrate;
mod ollama;
mod paths;
mod poll;
mod process;
mod reindex;
mod stack;
mod upgrade;
mod utc;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, run and operate the weknora stack", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check this machine for everything the stack needs; `--fix` installs what is missing.
    Doctor(doctor::Doctor),
    /// Apply, revert, create and inspect database migrations.
    Migrate(migrate::Migrate),
    /// Build our images (reproducible, labelled, per platform), the local stand-ins for
    /// third-party images, push them, or clean them away.
    BuildImages(images::BuildImages),
    /// Bring the whole stack up healthy: checks, images, postgres and redis, migrations, the rest.
    Start(stack::Start),
    /// Stop the stack (`--volumes --yes` also deletes its data).
    Stop(stack::Stop),
    /// Restart one service (ours are rebuilt and recreated) or all of them.
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
    /// Move the running stack to this checkout: keep the running images, back up, build,
    /// migrate, recreate; roll back by itself on failure.
    Upgrade(upgrade::Upgrade),
    /// Undo the last upgrade: restore the backup taken before it and run the kept images.
    Rollback(upgrade::Rollback),
    /// Make the knowledge bases' vectors again with the configured embedding model.
    Reindex(reindex::Reindex),
    /// A local Ollama for models: start, stop, status.
    #[command(subcommand)]
    Ollama(ollama::Ollama),
    /// Measure docreader's parser throughput against Python reference parsers.
    Bench(bench::Bench),
    /// Run everything CI runs: fmt, clippy, all tests, the Docker-backed suites.
    Ci(ci::Ci),
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            let label = if std::io::stderr().is_terminal() { "\x1b[1;31merror\x1b[0m" } else { "error" };
            eprintln!("{label}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime of the commands that talk to Docker or PostgreSQL: one thread is enough.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Lowercase hex of bytes: checksums, image digests, generated secrets.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Every command works relative to the repository root, wherever it was started from.
    std::env::set_current_dir(paths::project_root())?;
    match cli.command {
        Command::Doctor(cmd) => cmd.run(),
        Command::Migrate(cmd) => cmd.run(),
        Command::BuildImages(cmd) => cmd.run(),
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
        Command::Bench(cmd) => cmd.run(),
        Command::Ci(cmd) => cmd.run(),
    }
}
