//! `weknora`: the operator binary of a release bundle. It runs the stack from the folder it
//! sits in (or WEKNORA_HOME), with the bundle's images; no cargo, rustc, git or checkout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weknora_operator::bundle;
use weknora_operator::cli::Command;
use weknora_operator::host::Host;

#[derive(Parser)]
#[command(name = "weknora", about = "Run and operate a weknora stack from its release bundle", version = weknora_buildinfo::BUILD.version)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Check this machine for everything the stack needs; `--fix` installs what is missing.
    Doctor(weknora_operator::doctor::Doctor),
    #[command(flatten)]
    Operator(Command),
    /// This bundle: what it holds, checksums, importing its images.
    Bundle(bundle::Bundle),
}

/// The bundle's folder: WEKNORA_HOME, else the folder this binary is in.
fn root() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("WEKNORA_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let exe = std::env::current_exe().context("finding this binary's folder")?;
    Ok(exe.canonicalize()?.parent().context("the binary's folder")?.to_path_buf())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = || -> anyhow::Result<ExitCode> {
        let host = Host { name: "./weknora", root: root()?, images: Box::new(bundle::BundleImages) };
        weknora_operator::host::install(host)?;
        match cli.command {
            Top::Doctor(cmd) => cmd.run(),
            Top::Operator(cmd) => cmd.run(),
            Top::Bundle(cmd) => cmd.run(),
        }
    };
    run().unwrap_or_else(|err| {
        weknora_operator::host::report_error(&err);
        ExitCode::FAILURE
    })
}
