//! `cargo xtask`: the developer's front end of weknora. The operator's commands (start,
//! backup, upgrade, ...) are `weknora_operator`'s, run from this checkout with images built
//! from it; the developer's own (build-images, ci, bench, dist) live here, and `doctor` is the
//! operator's with the developer's machine added (`--dev`). Every repository path lives in
//! `paths`. Results go to stdout, progress to stderr.
//!
//! Architecture invariants: xtask is the top of the house. It may use the operator's public
//! mechanisms and the stack spec, and nothing depends on it; what a production host needs
//! never lives here (a bundle's `weknora` has no xtask). It never re-types a fact the stack
//! spec declares: `codegen` writes the files that repeat one. Each command is one module,
//! and what two commands share lives in a module of its own.

mod bench;
mod ci;
mod codegen;
mod dist;
mod doctor;
mod images;
mod paths;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weknora_operator::host::Host;

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
    #[command(flatten)]
    Operator(weknora_operator::cli::Command),
    /// Build our images (reproducible, labelled, per platform), the local stand-ins for
    /// third-party images, push them, or clean them away.
    BuildImages(images::BuildImages),
    /// Write the files that repeat crates/stack-spec's facts (Dockerfile tails, .env.example
    /// sections); `--check`: fail when one is stale.
    Codegen(codegen::Codegen),
    /// Write release bundles: the `weknora` binary, compose files, config, runbook, and with
    /// `--images` every image the stack runs (target/dist/weknora-<version>-linux-<arch>.tar.gz).
    Dist(dist::Dist),
    /// Measure docreader's parser throughput against Python reference parsers; `search`:
    /// the hybrid search; `load`: the whole stack under load, against its goals.
    Bench(bench::Bench),
    /// Run everything CI runs: fmt, clippy, all tests, the Docker-backed suites.
    Ci(ci::Ci),
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            images::abandon_ahead();
            weknora_operator::host::report_error(&err);
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Every command works relative to the repository root, wherever it was started from.
    let images = Box::new(images::checkout::CheckoutImages);
    weknora_operator::host::install(Host { name: "cargo xtask", root: paths::project_root(), images })?;
    match cli.command {
        Command::Doctor(cmd) => cmd.run(),
        Command::Operator(cmd) => cmd.run(),
        Command::BuildImages(cmd) => cmd.run(),
        Command::Codegen(cmd) => cmd.run(),
        Command::Dist(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Ci(cmd) => cmd.run(),
    }
}
