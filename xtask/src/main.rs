//! `cargo xtask`: the operator CLI of weknora. One module per command group; every
//! repository path lives in `paths`. Results go to stdout, progress to stderr.

mod bench;
mod ci;
mod database;
mod docker;
mod doctor;
mod dotenv;
mod images;
mod migrate;
mod paths;
mod poll;
mod process;

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

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Every command works relative to the repository root, wherever it was started from.
    std::env::set_current_dir(paths::project_root())?;
    match cli.command {
        Command::Doctor(cmd) => cmd.run(),
        Command::Migrate(cmd) => cmd.run(),
        Command::BuildImages(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Ci(cmd) => cmd.run(),
    }
}
