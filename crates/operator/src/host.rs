//! The front end the operator runs in (`cargo xtask` or `weknora`), installed once at
//! start: its name, its root, its images; and what every command shares with it: the async
//! runtime, the error report, and naming commands in the front end's words.

use std::path::PathBuf;
use std::sync::OnceLock;

use bollard::Docker;
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

pub(crate) static HOST: OnceLock<Host> = OnceLock::new();

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
