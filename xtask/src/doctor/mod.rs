//! `cargo xtask doctor`: is this machine ready to build and run the stack? A table of
//! checks (or JSON), and with `--fix` the installs and starts that make it ready.

mod checks;
mod fix;
mod probe;

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use checks::{Check, Status};
use fix::Step;

#[derive(clap::Args)]
pub struct Doctor {
    /// Install and start what is missing (as root on Debian/Ubuntu; elsewhere print the commands).
    #[arg(long)]
    fix: bool,
    /// With --fix: show the steps without running them.
    #[arg(long, requires = "fix")]
    dry_run: bool,
    /// Also check the ports the development compose file publishes (database, redis, docreader).
    #[arg(long)]
    dev: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl Doctor {
    pub fn run(self) -> Result<ExitCode> {
        let rt = crate::runtime()?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<ExitCode> {
        let mut facts = probe::gather(self.dev).await;
        let mut steps = Vec::new();
        let mut applied = false;
        let mut failures = Vec::new();
        if self.fix {
            steps = fix::plan(&facts);
            if steps.is_empty() {
                eprintln!("doctor --fix: nothing to fix, every prerequisite is already in place");
            } else if self.dry_run || !fix::can_apply(&facts) {
                print_manual_steps(&steps, &facts, self.dry_run);
            } else {
                failures = fix::apply(&steps).await;
                applied = true;
                facts = probe::gather(self.dev).await;
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
            eprintln!("doctor: a required check failed: {hint}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The checks the stack itself depends on (the rest of doctor is about building and
/// testing): `cargo xtask check`, and the first step of `cargo xtask start`.
const STACK_CHECKS: [&str; 8] =
    ["docker-cli", "docker-daemon", "compose", "ports", "disk", "memory", "env-file", "embedding"];

/// Runs the stack's checks, prints them (a table on stderr, or JSON on stdout) and
/// returns whether none failed.
pub async fn stack_checks(dev: bool, json: bool) -> Result<bool> {
    let facts = probe::gather(dev).await;
    let checks: Vec<Check> = checks::evaluate(&facts).into_iter().filter(|c| STACK_CHECKS.contains(&c.id)).collect();
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "ok": ok, "checks": checks }))?);
    } else {
        eprint!("{}", render_table(&checks));
    }
    Ok(ok)
}

fn print_manual_steps(steps: &[Step], facts: &probe::Facts, dry_run: bool) {
    let sudo = if facts.host.root { "" } else { "sudo " };
    if dry_run {
        eprintln!("doctor --fix --dry-run: would run");
    } else if !facts.host.debian {
        eprintln!("doctor --fix: this is not Debian/Ubuntu; the equivalent steps are below (adapt the package names)");
    } else {
        eprintln!("doctor --fix: installing needs root; run these commands, then `cargo xtask doctor` again");
    }
    for step in steps {
        println!("# {}", step.describe());
        for command in step.commands() {
            let needs_root =
                !command.starts_with("rustup") && !command.starts_with("d=") && !command.starts_with("echo");
            println!("{}{command}", if needs_root { sudo } else { "" });
        }
    }
}

/// A plain aligned table: CHECK, STATUS, DETAIL, FIX.
fn render_table(checks: &[Check]) -> String {
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [c.name.to_string(), c.status.label().to_string(), c.detail.clone(), c.fix.clone().unwrap_or_default()]
        })
        .collect();
    let header = ["CHECK", "STATUS", "DETAIL", "FIX"].map(String::from);
    let mut widths = [0usize; 3];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
}
