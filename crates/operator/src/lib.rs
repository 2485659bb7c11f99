//! The operator of a weknora stack: start, stop, back up, upgrade, diagnose. Two front ends
//! run it: `cargo xtask` in a checkout (which builds our images from the source) and the
//! `weknora` binary of a release bundle (which imports the bundle's images), each installing
//! its root and its [`Images`] once at start. One module per command group; shared
//! mechanisms (compose and containers in `stack`/`docker`, env files in `dotenv`, waits in
//! `poll`, confirmations in `confirm`) in their own. Results go to stdout, progress to stderr.

pub mod backup;
pub mod bundle;
pub mod compose;
pub mod confirm;
pub mod containers;
pub mod database;
pub mod deep;
pub mod deploy;
pub mod disk;
pub mod docker;
pub mod doctor;
pub mod dotenv;
pub mod images;
pub mod migrate;
pub mod ollama;
pub mod paths;
pub mod poll;
pub mod process;
pub mod reindex;
pub mod stack;
pub mod start;
pub mod swarm;
pub mod third_party;
pub mod upgrade;
pub mod utc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use bollard::Docker;
use clap::Subcommand;
use futures_util::future::BoxFuture;

/// The version and commit of the images a tool brings: a checkout's, or a bundle's.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    /// The full commit hash.
    pub revision: String,
    /// A checkout with uncommitted changes (its images are rebuilt on every start).
    pub dirty: bool,
    /// The IMAGE_SOURCE of the third-party images a bundle carries, which its first start
    /// records; None for a checkout (the first start chooses).
    pub image_source: Option<String>,
}

/// Where our images and the local stand-ins come from: built from a checkout, or imported
/// from a release bundle.
pub trait Images: Send + Sync {
    /// What these images are.
    fn release(&self) -> anyhow::Result<Release>;
    /// Makes `weknora/<name>:<release version>` of each of `wanted` this release's image:
    /// built or imported when missing or of another commit; with `rebuild`, built again.
    /// With `no_build`, a missing image is an error instead. A bundle imports every image it
    /// carries that Docker lacks here, the third-party ones too.
    fn ensure_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        rebuild: bool,
        no_build: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Starts on our images of `wanted` before the third-party ones are resolved: a
    /// checkout begins its release compile in the background (unless `no_build`), so that
    /// the stand-ins are built meanwhile; a bundle imports what it carries, upstream images
    /// among them, which the resolver then finds. `ensure_ours` finishes the job.
    fn begin_ours<'a>(
        &'a self,
        docker: &'a Docker,
        wanted: &'a [&'a str],
        no_build: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Makes one local image (a stand-in such as `weknora/postgres-local:17`, or the
    /// embedder) present.
    fn ensure_local<'a>(&'a self, docker: &'a Docker, image: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The development image with the toolchain (`start --dev`).
    fn ensure_dev<'a>(&'a self, docker: &'a Docker, image: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// This release's static `weknora` binary for the host's platform, which the stack's
    /// backup service runs (built when missing).
    fn operator_binary(&self) -> anyhow::Result<PathBuf>;
}

/// The front end the operator runs in.
pub struct Host {
    /// What the operator's messages call it: `cargo xtask` or `./weknora`.
    pub name: &'static str,
    pub root: PathBuf,
    pub images: Box<dyn Images>,
}

static HOST: OnceLock<Host> = OnceLock::new();

/// Installs the front end; the first call wins. Every command works relative to its root.
pub fn install(host: Host) -> anyhow::Result<()> {
    std::env::set_current_dir(&host.root)?;
    let _ = HOST.set(host);
    Ok(())
}

/// The front end installed at start.
pub fn host() -> &'static Host {
    HOST.get().expect("the front end installs its host before running a command")
}

/// The async runtime of the commands that talk to Docker or PostgreSQL: one thread is enough.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Lowercase hex of bytes: checksums, image digests, generated secrets.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operator's commands, shared by both front ends.
#[derive(Subcommand)]
pub enum Command {
    /// Check this machine for everything the stack needs; `--fix` installs what is missing.
    Doctor(doctor::Doctor),
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
            Command::Doctor(cmd) => cmd.run(),
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

/// Prints an error the way both front ends do, naming commands as the operator types them.
pub fn report_error(err: &anyhow::Error) {
    use std::io::IsTerminal;
    let label = if std::io::stderr().is_terminal() { "\x1b[1;31merror\x1b[0m" } else { "error" };
    eprintln!("{label}: {}", in_host_words(&format!("{err:#}")));
}

/// The commands only a checkout has: their advice keeps saying `cargo xtask`.
const CHECKOUT_ONLY: [&str; 6] = ["dist", "bench", "build-images", "ci", "start --dev", "migrate create"];

/// The operator's texts name commands as `cargo xtask <command>`; in a front end of another
/// name (`./weknora`) they say that, except for the commands only a checkout has.
pub fn in_host_words(text: &str) -> String {
    let name = HOST.get().map_or("cargo xtask", |h| h.name);
    rename_commands(text, name)
}

fn rename_commands(text: &str, name: &str) -> String {
    const OURS: &str = "cargo xtask ";
    if name == "cargo xtask" {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OURS) {
        let after = &rest[at + OURS.len()..];
        out.push_str(&rest[..at]);
        if CHECKOUT_ONLY.iter().any(|c| after.starts_with(c)) {
            out.push_str(OURS);
        } else {
            out.push_str(name);
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bundle_names_its_own_commands_and_leaves_the_checkout_ones() {
        let text = "run `cargo xtask doctor --fix`; or `cargo xtask dist --images`, `cargo xtask start --dev`";
        assert_eq!(
            super::rename_commands(text, "./weknora"),
            "run `./weknora doctor --fix`; or `cargo xtask dist --images`, `cargo xtask start --dev`"
        );
        assert_eq!(super::rename_commands(text, "cargo xtask"), text);
    }
}
