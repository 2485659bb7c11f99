//! The flow of `doctor` over what it examines: the stack alone ([`TheStack`]), or what a
//! front end adds to it (`cargo xtask doctor --dev`: the developer's machine). The facts are
//! gathered once, and again only after a fix changed the machine.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::fix::{self, Remedy, Step};
use super::{checks, probe};
use crate::report::{Check, Status, render_table};

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
            fix::print_manual_steps(&steps, examined.stack(), o.dry_run);
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
