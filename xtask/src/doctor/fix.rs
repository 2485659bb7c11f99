//! The developer's remedies: the Debian packages the stack's apt step also installs, and
//! the steps after the stack's (binfmt, rustup, sqlx-cli, the Python tools).

use anyhow::{Context, Result};
use serde::Serialize;
use weknora_operator::doctor::fix::{Remedy, Step};
use xshell::{Shell, cmd};

use super::checks::compose_lint_ok;
use super::probe::{DevFacts, SQLX_CLI_VERSION};
use crate::paths;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum DevStep {
    Binfmt { mount: bool },
    Rustup { targets: Vec<String>, components: Vec<String> },
    CargoInstall { krate: String, version: String, features: Vec<String> },
    PipInstall { requirements: String },
}

impl Remedy for DevStep {
    fn describe(&self) -> String {
        match self {
            DevStep::Binfmt { .. } => "register qemu-aarch64 with binfmt_misc (runs arm64 images)".into(),
            DevStep::Rustup { targets, components } => {
                format!(
                    "add to the pinned Rust toolchain: {}",
                    [targets.as_slice(), components.as_slice()].concat().join(" ")
                )
            }
            DevStep::CargoInstall { krate, version, .. } => format!("cargo install {krate} {version} (a few minutes)"),
            DevStep::PipInstall { requirements } => format!("install the Python packages of {requirements}"),
        }
    }

    fn commands(&self) -> Vec<String> {
        match self {
            DevStep::Binfmt { mount } => {
                let mut c = Vec::new();
                if *mount {
                    c.push("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc".into());
                }
                c.push("update-binfmts --enable qemu-aarch64".into());
                c
            }
            DevStep::Rustup { targets, components } => {
                let mut c = Vec::new();
                if !targets.is_empty() {
                    c.push(format!("rustup target add {}", targets.join(" ")));
                }
                if !components.is_empty() {
                    c.push(format!("rustup component add {}", components.join(" ")));
                }
                c
            }
            DevStep::CargoInstall { krate, version, features } => vec![format!(
                "cargo install {krate}@{version} --locked --no-default-features --features {}",
                features.join(",")
            )],
            DevStep::PipInstall { requirements } => vec![format!("python3 -m pip install --quiet -r {requirements}")],
        }
    }

    fn needs_root(&self, command: &str) -> bool {
        !command.starts_with("rustup")
    }

    async fn run(&self) -> Result<()> {
        match self {
            DevStep::Binfmt { mount } => register_binfmt(*mount),
            DevStep::Rustup { targets, components } => rustup_add(targets, components),
            DevStep::CargoInstall { krate, version, features } => cargo_install(krate, version, features),
            DevStep::PipInstall { requirements } => pip_install(requirements),
        }
    }
}

/// A step of `cargo xtask doctor --fix --dev`: the stack's, or the developer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AnyStep {
    Stack(Step),
    Dev(DevStep),
}

impl Remedy for AnyStep {
    fn describe(&self) -> String {
        match self {
            AnyStep::Stack(s) => s.describe(),
            AnyStep::Dev(s) => s.describe(),
        }
    }

    fn commands(&self) -> Vec<String> {
        match self {
            AnyStep::Stack(s) => s.commands(),
            AnyStep::Dev(s) => s.commands(),
        }
    }

    fn needs_root(&self, command: &str) -> bool {
        match self {
            AnyStep::Stack(s) => s.needs_root(command),
            AnyStep::Dev(s) => s.needs_root(command),
        }
    }

    async fn run(&self) -> Result<()> {
        match self {
            AnyStep::Stack(s) => s.run().await,
            AnyStep::Dev(s) => s.run().await,
        }
    }
}

/// The Debian packages the developer's machine lacks (the stack's apt step installs them
/// after its own), and whether its steps need pip.
pub fn packages(d: &DevFacts) -> (Vec<String>, bool) {
    let mut packages = Vec::new();
    let mut want = |missing: bool, package: &str| {
        if missing {
            packages.push(package.to_string());
        }
    };
    want(!d.compose_v1, "docker-compose");
    want(!d.arm64.cross_gcc, "gcc-aarch64-linux-gnu");
    want(!d.arm64.cross_libc, "libc6-dev-arm64-cross");
    want(!d.arm64.qemu_static, "qemu-user-static");
    want(!d.arm64.update_binfmts, "binfmt-support");
    want(d.postgres_server.is_none(), "postgresql");
    want(!d.redis_server, "redis-server");
    want(!d.registry, "docker-registry");
    for package in ["chromium", "chromium-driver", "fonts-wqy-microhei"] {
        want(!d.browser, package);
    }
    want(!d.debootstrap, "debootstrap");
    want(!d.nix, "nix-bin");
    (packages, !d.bench_python || !compose_lint_ok(d))
}

/// The developer's steps after the stack's, in the order they must run.
pub fn plan(d: &DevFacts) -> Vec<DevStep> {
    let mut steps = Vec::new();
    if !d.arm64.binfmt_enabled {
        steps.push(DevStep::Binfmt { mount: !d.arm64.binfmt_mounted });
    }
    let t = &d.toolchain;
    let targets: Vec<String> = t.targets_wanted.iter().filter(|w| !t.targets_installed.contains(w)).cloned().collect();
    if t.rustup && (!targets.is_empty() || !t.components_missing.is_empty()) {
        steps.push(DevStep::Rustup { targets, components: t.components_missing.clone() });
    }
    if !d.sqlx_cli.as_ref().is_some_and(|v| v.ends_with(SQLX_CLI_VERSION)) {
        steps.push(DevStep::CargoInstall {
            krate: "sqlx-cli".into(),
            version: SQLX_CLI_VERSION.into(),
            features: vec!["postgres".into(), "rustls".into()],
        });
    }
    if !d.bench_python {
        let requirements = paths::docreader_bench().join("requirements.txt");
        steps.push(DevStep::PipInstall { requirements: requirements.display().to_string() });
    }
    if !compose_lint_ok(d) {
        let requirements = paths::dev_python_requirements();
        steps.push(DevStep::PipInstall { requirements: requirements.display().to_string() });
    }
    steps
}

fn register_binfmt(mount: bool) -> Result<()> {
    let sh = Shell::new()?;
    if mount {
        cmd!(sh, "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc").run().context("mounting binfmt_misc")?;
    }
    cmd!(sh, "update-binfmts --enable qemu-aarch64").run().context("enabling the qemu-aarch64 binfmt handler")
}

fn cargo_install(krate: &str, version: &str, features: &[String]) -> Result<()> {
    let sh = Shell::new()?;
    let spec = format!("{krate}@{version}");
    let features = features.join(",");
    cmd!(sh, "cargo install {spec} --locked --no-default-features --features {features}")
        .run()
        .with_context(|| format!("cargo install {spec}"))
}

fn pip_install(requirements: &str) -> Result<()> {
    let sh = Shell::new()?;
    cmd!(sh, "python3 -m pip install --quiet -r {requirements}").run().context("pip install")
}

fn rustup_add(targets: &[String], components: &[String]) -> Result<()> {
    let sh = Shell::new()?;
    if !targets.is_empty() {
        cmd!(sh, "rustup target add {targets...}").run().context("rustup target add")?;
    }
    if !components.is_empty() {
        cmd!(sh, "rustup component add {components...}").run().context("rustup component add")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks::tests::{fresh, healthy};

    #[test]
    fn nothing_to_do_on_a_healthy_machine() {
        assert_eq!(packages(&healthy()), (vec![], false));
        assert_eq!(plan(&healthy()), []);
    }

    #[test]
    fn a_fresh_machine_gets_compose_v1_arm64_and_targets() {
        let (packages, needs_pip) = packages(&fresh());
        let wanted = ["docker-compose", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user-static"];
        assert_eq!(packages, [&wanted[..], &["binfmt-support"]].concat());
        assert!(!needs_pip);
        assert_eq!(
            plan(&fresh()),
            [
                DevStep::Binfmt { mount: false },
                DevStep::Rustup { targets: vec!["aarch64-unknown-linux-gnu".into()], components: vec![] },
            ]
        );
    }

    #[test]
    fn binfmt_is_mounted_first_when_needed() {
        let mut d = healthy();
        d.arm64.binfmt_enabled = false;
        d.arm64.binfmt_mounted = false;
        let steps = plan(&d);
        assert_eq!(steps, [DevStep::Binfmt { mount: true }]);
        assert_eq!(steps[0].commands()[0], "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc");
    }

    #[test]
    fn test_servers_nix_and_the_browser_are_debian_packages() {
        let mut d = healthy();
        d.postgres_server = None;
        d.nix = false;
        d.browser = false;
        let wanted = ["postgresql", "chromium", "chromium-driver", "fonts-wqy-microhei", "nix-bin"];
        assert_eq!(packages(&d).0, wanted);
        assert_eq!(plan(&d), []);
    }

    #[test]
    fn sqlx_cli_is_installed_at_the_tested_version() {
        let mut d = healthy();
        d.sqlx_cli = Some("sqlx-cli 0.8.6".into());
        let steps = plan(&d);
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].commands(),
            ["cargo install sqlx-cli@0.9.0 --locked --no-default-features --features postgres,rustls"]
        );
    }

    #[test]
    fn the_python_tools_need_pip() {
        let mut d = healthy();
        d.bench_python = false;
        assert!(packages(&d).1);
        assert!(
            matches!(&plan(&d)[..], [DevStep::PipInstall { requirements }] if requirements.ends_with("requirements.txt"))
        );
    }

    #[test]
    fn rustup_runs_as_the_user_and_apt_as_root() {
        let rustup = AnyStep::Dev(DevStep::Rustup { targets: vec!["x".into()], components: vec![] });
        assert!(!rustup.needs_root("rustup target add x"));
        let apt = AnyStep::Stack(Step::AptInstall { packages: vec!["nix-bin".into()] });
        assert!(apt.needs_root("apt-get update"));
        assert_eq!(serde_json::to_value(&apt).unwrap()["step"], "apt-install", "the JSON of --fix is unchanged");
        assert_eq!(serde_json::to_value(&rustup).unwrap()["step"], "rustup");
    }
}
