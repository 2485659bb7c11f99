//! `cargo xtask doctor`: is this machine ready to build and run the stack? A table of
//! checks (or JSON), and with `--fix` the installs and starts that make it ready.

pub(crate) mod checks;
mod fix;
mod probe;

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;

pub use fix::Scope;
use fix::Step;
pub use probe::{COMPOSE_LINT_VERSION, PYTHON_MODULES};

use crate::process::HostTool;
use crate::report::{Check, Status, render_table};

#[derive(clap::Args)]
pub struct Doctor {
    /// Install and start what is missing (as root on Debian/Ubuntu; elsewhere print the commands).
    #[arg(long)]
    fix: bool,
    /// With --fix: show the steps without running them.
    #[arg(long, requires = "fix")]
    dry_run: bool,
    /// A development machine: also check the ports the development compose file publishes
    /// (database, redis, docreader), and with --fix also install the tools for tests and
    /// builds (cross compilers, qemu, test servers, Chromium, Nix, ...), not only Docker.
    #[arg(long)]
    dev: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl Doctor {
    pub fn run(self) -> Result<ExitCode> {
        let rt = crate::host::runtime()?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<ExitCode> {
        if self.dev && !crate::paths::rust_toolchain().exists() {
            bail!(
                "{}",
                crate::host::in_host_words(
                    "`--dev` checks a development checkout (building and testing the stack), and this is none: \
                     `cargo xtask doctor` checks what running the stack needs"
                )
            );
        }
        let mut facts = probe::gather(self.dev, self.dev).await;
        let mut steps = Vec::new();
        let mut applied = false;
        let mut failures = Vec::new();
        if self.fix {
            steps = fix::plan(&facts, if self.dev { Scope::Dev } else { Scope::Stack });
            if steps.is_empty() {
                eprintln!("doctor --fix: nothing to fix, every prerequisite is already in place");
            } else if self.dry_run || !fix::can_apply(&facts) {
                print_manual_steps(&steps, &facts, self.dry_run);
            } else {
                failures = fix::apply(&steps).await;
                applied = true;
                facts = probe::gather(self.dev, self.dev).await;
            }
        }
        let checks = checks::evaluate(&facts);
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        if self.json {
            let mut out = json!({ "ok": ok, "checks": checks });
            if self.fix {
                out["fix"] = json!({ "steps": steps, "applied": applied, "failures": failures });
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", render_table(&checks));
            if !failures.is_empty() {
                eprintln!("\n{} fix step(s) failed:", failures.len());
                failures.iter().for_each(|f| eprintln!("  - {f}"));
            }
        }
        if ok {
            Ok(ExitCode::SUCCESS)
        } else {
            let hint =
                if self.fix { "see the FIX column" } else { "run `cargo xtask doctor --fix`, or see the FIX column" };
            eprintln!("{}", crate::host::in_host_words(&format!("doctor: a required check failed: {hint}")));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The checks the stack itself depends on (the rest of doctor is about building and
/// testing): `cargo xtask check`, and the first step of `cargo xtask start`.
const STACK_CHECKS: [&str; 8] =
    ["docker-cli", "docker-daemon", "compose", "ports", "disk", "memory", "env-file", "embedding"];

/// Gathers the stack's facts and reports its checks (`check`): see [`report_stack_checks`].
pub async fn stack_checks(dev: bool, json: bool) -> Result<bool> {
    report_stack_checks(&probe::gather(dev, false).await, json)
}

/// Prints the stack's checks of `facts` (a table on stderr, or JSON on stdout) and returns
/// whether none failed.
fn report_stack_checks(facts: &probe::Facts, json: bool) -> Result<bool> {
    let checks: Vec<Check> = checks::evaluate(facts).into_iter().filter(|c| STACK_CHECKS.contains(&c.id)).collect();
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "ok": ok, "checks": checks }))?);
    } else {
        eprint!("{}", render_table(&checks));
    }
    Ok(ok)
}

/// `start`'s first step: sets up what running the stack needs (as [`set_up`]), then checks
/// the machine for it (the table on stderr), from facts gathered once, and again only when
/// a set-up step changed the machine. `dev`: the development stack's ports too.
pub async fn ready_to_run(by: &str, dev: bool) -> Result<()> {
    let facts = probe::gather(dev, false).await;
    let facts = if apply_set_up(&facts, Scope::Stack, by).await? { probe::gather(dev, false).await } else { facts };
    eprintln!("==> checking the machine");
    if !report_stack_checks(&facts, false)? {
        bail!("a required check failed (table above): fix it, or run `cargo xtask doctor --fix`");
    }
    Ok(())
}

/// Installs those of `tools` this machine lacks, for a step about to run them (as `set_up`
/// does: as root on Debian/Ubuntu; elsewhere it fails with the command that would).
pub async fn install_tools(tools: &[HostTool]) -> Result<()> {
    let missing: Vec<&HostTool> = tools.iter().filter(|t| t.path().is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let step = Step::AptInstall { packages: missing.iter().map(|t| t.package.to_string()).collect() };
    let host = probe::host_fact();
    for tool in &missing {
        eprintln!("==> {} is missing: installing Debian's {} ({})", tool.program, tool.package, tool.why);
    }
    if !(host.root && host.debian) {
        let why = if host.debian { "installing needs root" } else { "this is not Debian/Ubuntu" };
        let sudo = if host.root { "" } else { "sudo " };
        let commands: Vec<String> = step.commands().iter().map(|c| format!("{sudo}{c}")).collect();
        bail!("{why}: run these (adapted if need be), then the same command again:\n{}", commands.join("\n"));
    }
    let failures = fix::apply(&[step]).await;
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

fn print_manual_steps(steps: &[Step], facts: &probe::Facts, dry_run: bool) {
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
fn manual_commands(steps: &[Step], facts: &probe::Facts) -> String {
    let sudo = if facts.host.root { "" } else { "sudo " };
    let mut out = String::new();
    for step in steps {
        out.push_str(&format!("# {}\n", step.describe()));
        for command in step.commands() {
            let needs_root =
                !command.starts_with("rustup") && !command.starts_with("d=") && !command.starts_with("echo");
            out.push_str(&format!("{}{command}\n", if needs_root { sudo } else { "" }));
        }
    }
    out
}

/// The first run's set-up (`ci`, `deploy swarm`): installs and starts what `scope` needs and
/// this machine lacks, printing each step first, as `doctor --fix` would; where it may not
/// (not root, not Debian/Ubuntu), fails with the commands that would. Nothing missing:
/// nothing done, nothing printed.
pub async fn set_up(scope: Scope, by: &str) -> Result<()> {
    apply_set_up(&probe::gather(false, scope == Scope::Dev).await, scope, by).await.map(|_| ())
}

/// [`set_up`] from facts already gathered; whether it changed anything.
async fn apply_set_up(facts: &probe::Facts, scope: Scope, by: &str) -> Result<bool> {
    let steps = set_up_steps(facts, scope, by)?;
    if steps.is_empty() {
        return Ok(false);
    }
    let again = again(scope);
    eprintln!(
        "{}",
        crate::host::in_host_words(&format!(
            "==> {by}: setting this machine up first (what `cargo xtask {again}` does):"
        ))
    );
    steps.iter().for_each(|s| eprintln!("    - {}", s.describe()));
    let failures = fix::apply(&steps).await;
    if !failures.is_empty() {
        bail!(
            "{by}: setting the machine up failed:\n  - {}\n(`cargo xtask {again}` tries again)",
            failures.join("\n  - ")
        );
    }
    Ok(true)
}

fn again(scope: Scope) -> &'static str {
    if scope == Scope::Dev { "doctor --fix --dev" } else { "doctor --fix" }
}

/// The steps `set_up` applies, or why it may not (with the commands that would).
fn set_up_steps(facts: &probe::Facts, scope: Scope, by: &str) -> Result<Vec<Step>> {
    let steps = fix::plan(facts, scope);
    if !steps.is_empty() && !fix::can_apply(facts) {
        let why = if facts.host.debian { "installing needs root" } else { "this is not Debian/Ubuntu" };
        bail!(
            "{by}: this machine lacks what it needs, and {why}: run these (adapted if need be), then `cargo xtask {by}` \
             again:\n{}",
            manual_commands(&steps, facts).trim_end()
        );
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_shows_fixes() {
        let checks = checks::evaluate(&checks::tests::fresh());
        let table = render_table(&checks);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CHECK"));
        assert_eq!(lines.len(), checks.len() + 1);
        let status_col = lines[0].find("STATUS").unwrap();
        let daemon = lines.iter().find(|l| l.starts_with("Docker daemon")).unwrap();
        assert_eq!(&daemon[status_col..status_col + 4], "FAIL");
        assert!(daemon.ends_with("cargo xtask doctor --fix"));
    }

    #[test]
    fn a_first_run_sets_up_as_root_and_gives_the_commands_otherwise() {
        assert!(set_up_steps(&checks::tests::healthy(), Scope::Dev, "ci").unwrap().is_empty());
        let mut f = checks::tests::fresh();
        f.host.root = true;
        assert_eq!(set_up_steps(&f, Scope::Stack, "start").unwrap().len(), 3);
        f.host.root = false;
        let e = set_up_steps(&f, Scope::Stack, "start").unwrap_err().to_string();
        assert!(e.contains("installing needs root") && e.contains("then `cargo xtask start` again"), "{e}");
        assert!(e.contains("sudo DEBIAN_FRONTEND=noninteractive apt-get install") && e.contains("docker.io"), "{e}");
        assert!(!e.contains("chromium"), "only what running the stack needs: {e}");
        let mut healthy_user = checks::tests::healthy();
        healthy_user.host.root = false;
        assert!(set_up_steps(&healthy_user, Scope::Dev, "ci").unwrap().is_empty(), "nothing missing: no root needed");
    }
}
