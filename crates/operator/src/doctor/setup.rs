//! What other commands run before they touch the stack: `start`'s set-up and checks,
//! `check`'s table, `deploy swarm`'s and `ci`'s set-up, the host tools a build step needs.

use anyhow::{Result, bail};
use serde_json::json;

use super::examine::{Examined, TheStack};
use super::fix::{self, Remedy, Step};
use super::{checks, probe};
use crate::process::HostTool;
use crate::report::{Check, Status, render_table};

/// The checks the stack itself depends on (doctor's rows but the chat model's): `cargo xtask
/// check`, and the first step of `cargo xtask start`.
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
            fix::manual_commands(&steps, facts).trim_end()
        );
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks;

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
