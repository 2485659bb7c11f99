//! `cargo xtask`: the developer's front end of weknora. The operator's commands (start,
//! backup, upgrade, ...) are `weknora_operator`'s, run from this checkout with images built
//! from it; the developer's own (build-images, ci, bench, dist) live here. Every repository
//! path lives in `paths`. Results go to stdout, progress to stderr.

mod bench;
mod ci;
mod codegen;
mod dist;
mod images;
mod paths;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weknora_operator::Host;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, run and operate the weknora stack", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Operator(weknora_operator::Command),
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
            weknora_operator::report_error(&err);
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Every command works relative to the repository root, wherever it was started from.
    let images = Box::new(images::checkout::CheckoutImages);
    weknora_operator::install(Host { name: "cargo xtask", root: paths::project_root(), images })?;
    match cli.command {
        Command::Operator(cmd) => cmd.run(),
        Command::BuildImages(cmd) => cmd.run(),
        Command::Codegen(cmd) => cmd.run(),
        Command::Dist(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Ci(cmd) => cmd.run(),
    }
}
