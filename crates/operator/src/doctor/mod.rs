//! `doctor`: is this machine ready to run the stack? A table of checks (or JSON), and with
//! `--fix` the installs and starts that make it ready. The command is only its arguments:
//! the facts (`probe`), verdicts (`checks`), remedies (`fix`), the flow (`examine`) and the
//! set-up other commands run first (`setup`) are the stack's mechanisms.

pub mod checks;
pub mod examine;
pub mod fix;
pub mod probe;
pub mod setup;

use std::process::ExitCode;

use anyhow::Result;

use examine::{Options, TheStack, examine};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render_table;

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
