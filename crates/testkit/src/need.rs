//! What a test needs beyond Rust, said once at its top: `require!(Need::DockerEngine)`.
//!
//! Outside CI a missing need prints what is missing and how to get it, and the test returns
//! (it passes, having checked nothing); under CI (`CI` set, as `cargo xtask ci` sets it) a
//! missing need fails the test, so CI never passes by skipping what it could have installed.
//! The one exception is a need no command can provide on a machine that lacks it (git
//! mirrors of the flake's inputs, whose hosts these machines cannot reach): under CI such a
//! skip is written to the file `WEKNORA_TEST_SKIPS` names, and `cargo xtask ci` lists it in
//! its summary, so it is seen rather than passed silently.

use std::path::Path;
use std::process::{Command, Stdio};

/// Something outside the Rust toolchain that a test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A running Docker engine (`docker info` answers).
    DockerEngine,
    /// The stack tier: whole stacks on the Docker engine, minutes each, one at a time. Runs
    /// only under nextest's `ci` profile (`cargo xtask ci`), which serialises its group.
    StackTier,
    /// `docker compose` (v2).
    Compose,
    /// `kubectl` (1.21+, for `kubectl kustomize`).
    Kubectl,
    /// compose-lint, as a Python module.
    ComposeLint,
    /// sqlx-cli's `sqlx`.
    SqlxCli,
    /// Running arm64 binaries: qemu-aarch64-static and its binfmt handler.
    Qemu,
    /// debootstrap, for the images' base.
    Debootstrap,
    /// Distribution's `docker-registry`, a registry on loopback.
    DockerRegistry,
    /// Root (mounts, for one).
    Root,
    /// Root, and apt to install and remove packages (a fresh machine's view).
    RootAndApt,
    /// The host's PostgreSQL server packages (initdb, pg_ctl).
    HostPostgres,
    /// The host's `redis-server`.
    HostRedis,
    /// Nix's `nix-instantiate`.
    NixInstantiate,
    /// Nix's `nix` command.
    Nix,
    /// Git mirrors of the flake's inputs, in the folder `WEKNORA_NIX_MIRRORS` names.
    NixInputMirrors,
}

/// The fix for a need doctor sees to.
const DOCTOR: &str = "`cargo xtask doctor --fix --dev`";

impl Need {
    /// What the need is, for the message.
    fn what(self) -> &'static str {
        match self {
            Need::DockerEngine => "a running Docker engine",
            Need::StackTier => "the stack tier (whole stacks on the Docker engine, one at a time)",
            Need::Compose => "docker compose",
            Need::Kubectl => "kubectl",
            Need::ComposeLint => "compose-lint",
            Need::SqlxCli => "sqlx-cli",
            Need::Qemu => "qemu-aarch64-static and its binfmt handler",
            Need::Debootstrap => "debootstrap",
            Need::DockerRegistry => "docker-registry",
            Need::Root => "root",
            Need::RootAndApt => "root and apt",
            Need::HostPostgres => "the PostgreSQL server packages",
            Need::HostRedis => "redis-server",
            Need::NixInstantiate => "nix-instantiate",
            Need::Nix => "nix",
            Need::NixInputMirrors => "git mirrors of the flake's inputs (WEKNORA_NIX_MIRRORS)",
        }
    }

    /// How to meet it.
    fn fix(self) -> &'static str {
        match self {
            Need::StackTier => "run `cargo xtask ci`, or `cargo nextest run --profile ci`",
            Need::Root | Need::RootAndApt => "run the tests as root on a Debian machine (CI does)",
            Need::NixInputMirrors => {
                "set WEKNORA_NIX_MIRRORS to a folder of `<owner>+<repo>/repo` git mirrors (docs/operations.md, \"Nix\")"
            }
            _ => DOCTOR,
        }
    }

    /// Whether a project command can provide it (`cargo xtask ci` sets the machine up
    /// first). Only what nothing here can install may be skipped under CI.
    fn installable(self) -> bool {
        !matches!(self, Need::NixInputMirrors)
    }

    /// Whether this machine meets it now.
    pub fn is_met(self) -> bool {
        match self {
            Need::DockerEngine => succeeds("docker", &["info"]),
            Need::StackTier => std::env::var("NEXTEST_PROFILE").is_ok_and(|p| p == "ci"),
            Need::Compose => succeeds("docker", &["compose", "version"]),
            Need::Kubectl => succeeds("kubectl", &["version", "--client"]),
            Need::ComposeLint => succeeds("python3", &["-m", "compose_lint", "--version"]),
            Need::SqlxCli => succeeds("sqlx", &["--version"]),
            Need::Qemu => {
                succeeds("qemu-aarch64-static", &["--version"])
                    && Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
            }
            Need::Debootstrap => on_path("debootstrap"),
            Need::DockerRegistry => on_path("docker-registry"),
            Need::Root => rustix::process::geteuid().is_root(),
            Need::RootAndApt => rustix::process::geteuid().is_root() && on_path("apt-get"),
            Need::HostPostgres => std::fs::read_dir("/usr/lib/postgresql")
                .is_ok_and(|versions| versions.flatten().any(|v| v.path().join("bin/initdb").exists())),
            Need::HostRedis => on_path("redis-server"),
            Need::NixInstantiate => on_path("nix-instantiate"),
            Need::Nix => on_path("nix"),
            Need::NixInputMirrors => std::env::var_os("WEKNORA_NIX_MIRRORS").is_some_and(|m| Path::new(&m).is_dir()),
        }
    }
}

/// Whether the tests run under CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The variable naming the file where, under CI, a test notes a need nothing here provides.
pub const SKIPS_FILE_VAR: &str = "WEKNORA_TEST_SKIPS";

/// Whether every need is met. When one is not: under CI this panics naming it and its fix
/// (unless no command could have provided it: see the module's doc); elsewhere it prints
/// the same and returns false, and the test returns (`require!`).
pub fn met(needs: &[Need]) -> bool {
    let missing: Vec<Need> = needs.iter().copied().filter(|n| !n.is_met()).collect();
    if missing.is_empty() {
        return true;
    }
    let what: Vec<String> = missing.iter().map(|n| format!("{} ({})", n.what(), n.fix())).collect();
    // libtest and nextest name each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("this test").to_string();
    let message = format!("{test} needs {}", what.join("; "));
    if in_ci() {
        assert!(
            !missing.iter().any(|n| n.installable()),
            "{message}: CI installs what the tests need and runs every test, so it fails here"
        );
        if let Some(file) = std::env::var_os(SKIPS_FILE_VAR) {
            use std::io::Write;
            let noted = std::fs::OpenOptions::new().create(true).append(true).open(file);
            let _ = noted.and_then(|mut f| writeln!(f, "{message}"));
        }
    }
    eprintln!("skipped: {message}");
    false
}

/// Declares what the test needs; returns from it (skips) when a need is missing outside CI,
/// and fails it under CI. `require!(Need::DockerEngine, Need::StackTier);`
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if !$crate::met(&[$($need),+]) {
            return;
        }
    };
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_need_names_its_fix() {
        assert_eq!(Need::Kubectl.fix(), DOCTOR);
        assert!(Need::StackTier.fix().contains("cargo xtask ci"));
        assert!(Need::NixInputMirrors.fix().contains("WEKNORA_NIX_MIRRORS"));
        assert!(Need::Kubectl.installable() && !Need::NixInputMirrors.installable());
    }

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-weknora"));
    }
}
