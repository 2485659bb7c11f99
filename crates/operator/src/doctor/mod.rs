//! `doctor`: is this machine ready to run the stack? A table of checks (or JSON), and with
//! `--fix` the installs and starts that make it ready. The stack's facts are gathered once
//! per command (again only after a fix changed the machine). A front end may examine more
//! than the stack ([`Examined`]): `cargo xtask doctor --dev` adds the developer's machine.

pub mod checks;
pub mod fix;
pub mod probe;

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;

use fix::{Remedy, Step};

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
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl Doctor {
    pub fn run(self) -> Result<ExitCode> {
        let rt = crate::host::runtime()?;
        let options = Options { fix: self.fix, dry_run: self.dry_run, json: self.json };
        rt.block_on(examine(async || TheStack(probe::gather(false).await), options))
    }
}

/// How `doctor` runs: `--fix`, `--dry-run`, `--json`.
pub struct Options {
    pub fix: bool,
    pub dry_run: bool,
    pub json: bool,
}

/// What a doctor examines: the stack's facts, and what its front end adds.
pub trait Examined {
    type Step: Remedy;
    /// The doctor command that sets this up (`doctor --fix`), for the set-up's messages.
    const AGAIN: &'static str;
    /// The stack's facts among them (who runs this, where: whether steps may be applied).
    fn stack(&self) -> &probe::Facts;
    /// The rows of the table, the stack's first.
    fn checks(&self) -> Vec<Check>;
    /// The steps that make the checks pass, in the order they must run.
    fn plan(&self) -> Vec<Self::Step>;
}

/// The stack alone: what `weknora doctor`, `check`, `start` and `deploy swarm` examine.
pub struct TheStack(pub probe::Facts);

impl Examined for TheStack {
    type Step = Step;
    const AGAIN: &'static str = "doctor --fix";

    fn stack(&self) -> &probe::Facts {
        &self.0
    }

    fn checks(&self) -> Vec<Check> {
        checks::evaluate(&self.0)
    }

    fn plan(&self) -> Vec<Step> {
        fix::plan(&self.0)
    }
}

/// `doctor` over what `gather` gathers: the table (or JSON), with `--fix` the steps first
/// (applied, or printed where they may not be), and the facts gathered again after them.
pub async fn examine<E: Examined>(gather: impl AsyncFn() -> E, o: Options) -> Result<ExitCode> {
    let mut examined = gather().await;
    let mut steps = Vec::new();
    let mut applied = false;
    let mut failures = Vec::new();
    if o.fix {
        steps = examined.plan();
        if steps.is_empty() {
            eprintln!("doctor --fix: nothing to fix, every prerequisite is already in place");
        } else if o.dry_run || !fix::can_apply(examined.stack()) {
            print_manual_steps(&steps, examined.stack(), o.dry_run);
        } else {
            failures = fix::apply(&steps).await;
            applied = true;
            examined = gather().await;
        }
    }
    let checks = examined.checks();
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if o.json {
        let mut out = json!({ "ok": ok, "checks": checks });
        if o.fix {
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
        let hint = if o.fix { "see the FIX column" } else { "run `cargo xtask doctor --fix`, or see the FIX column" };
        eprintln!("{}", crate::host::in_host_words(&format!("doctor: a required check failed: {hint}")));
        Ok(ExitCode::FAILURE)
    }
}

/// The checks the stack itself depends on (the rest of doctor is about building and
/// testing): `cargo xtask check`, and the first step of `cargo xtask start`.
const STACK_CHECKS: [&str; 8] =
    ["docker-cli", "docker-daemon", "compose", "ports", "disk", "memory", "env-file", "embedding"];

/// Gathers the stack's facts and reports its checks (`check`): see [`report_stack_checks`].
pub async fn stack_checks(dev: bool, json: bool) -> Result<bool> {
    report_stack_checks(&probe::gather(dev).await, json)
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
    let stack = TheStack(probe::gather(dev).await);
    let facts = if set_up_with(&stack, by).await? { probe::gather(dev).await } else { stack.0 };
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

fn print_manual_steps<S: Remedy>(steps: &[S], facts: &probe::Facts, dry_run: bool) {
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
fn manual_commands<S: Remedy>(steps: &[S], facts: &probe::Facts) -> String {
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

/// The first run's set-up (`deploy swarm`): installs and starts what running the stack
/// needs and this machine lacks, printing each step first, as `doctor --fix` would; where it
/// may not (not root, not Debian/Ubuntu), fails with the commands that would. Nothing
/// missing: nothing done, nothing printed.
pub async fn set_up(by: &str) -> Result<()> {
    set_up_with(&TheStack(probe::gather(false).await), by).await.map(|_| ())
}

/// [`set_up`] of what a front end examined (xtask's `ci`: the developer's machine too),
/// from facts already gathered; whether it changed anything.
pub async fn set_up_with<E: Examined>(examined: &E, by: &str) -> Result<bool> {
    let steps = set_up_steps(examined, by)?;
    if steps.is_empty() {
        return Ok(false);
    }
    eprintln!(
        "{}",
        crate::host::in_host_words(&format!(
            "==> {by}: setting this machine up first (what `cargo xtask {}` does):",
            E::AGAIN
        ))
    );
    steps.iter().for_each(|s| eprintln!("    - {}", s.describe()));
    let failures = fix::apply(&steps).await;
    if !failures.is_empty() {
        bail!(
            "{by}: setting the machine up failed:\n  - {}\n(`cargo xtask {}` tries again)",
            failures.join("\n  - "),
            E::AGAIN
        );
    }
    Ok(true)
}

/// The steps `set_up` applies, or why it may not (with the commands that would).
fn set_up_steps<E: Examined>(examined: &E, by: &str) -> Result<Vec<E::Step>> {
    let facts = examined.stack();
    let steps = examined.plan();
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
        assert!(set_up_steps(&TheStack(checks::tests::healthy()), "ci").unwrap().is_empty());
        let mut f = checks::tests::fresh();
        f.host.root = true;
        assert_eq!(set_up_steps(&TheStack(f), "start").unwrap().len(), 3);
        let mut f = checks::tests::fresh();
        f.host.root = false;
        let e = set_up_steps(&TheStack(f), "start").unwrap_err().to_string();
        assert!(e.contains("installing needs root") && e.contains("then `cargo xtask start` again"), "{e}");
        assert!(e.contains("sudo DEBIAN_FRONTEND=noninteractive apt-get install") && e.contains("docker.io"), "{e}");
        assert!(!e.contains("chromium"), "only what running the stack needs: {e}");
        let mut healthy_user = checks::tests::healthy();
        healthy_user.host.root = false;
        assert!(set_up_steps(&TheStack(healthy_user), "ci").unwrap().is_empty(), "nothing missing: no root needed");
    }
}
