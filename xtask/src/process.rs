//! Running other programs for what they print.

use std::process::Command;

/// The trimmed stdout of a command that succeeded; `None` if it is missing or failed.
pub fn stdout_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
