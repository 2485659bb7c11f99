//! Running other programs: for what they print, and the host's tools a step needs.

use std::path::PathBuf;
use std::process::Command;

/// The trimmed stdout of a command that succeeded; `None` if it is missing or failed.
pub fn stdout_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Finds `program` in PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A program a step runs on this host, and the Debian package that has it: what that step
/// needs set up (`doctor::install_tools`) and how it runs it, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    pub program: &'static str,
    pub package: &'static str,
    /// What the step uses it for, in the words of a set-up message.
    pub why: &'static str,
}

impl HostTool {
    /// Where it is: on PATH, or in the sbin folders a non-login root shell may lack.
    pub fn path(&self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
        std::env::split_paths(&path).chain(sbin).map(|dir| dir.join(self.program)).find(|p| p.is_file())
    }

    /// A command running it (by its found path, else by name, which then fails to spawn).
    pub fn command(&self) -> Command {
        Command::new(self.path().unwrap_or_else(|| self.program.into()))
    }
}
