//! `cargo xtask doctor`: the operator's doctor of the stack, and with `--dev` the developer's
//! machine beside it (toolchain, arm64 builds, test servers, dev tools): its facts, rows and
//! remedies live here, so that the `weknora` binary knows nothing of them.

mod checks;
mod fix;
pub mod probe;

use std::process::ExitCode;

use anyhow::{Result, bail};
use weknora_operator::doctor::examine::{Examined, Options, TheStack, examine};
use weknora_operator::doctor::probe::Facts;
use weknora_operator::doctor::{self, setup};
use weknora_operator::report::Check;

use fix::AnyStep;
use probe::DevFacts;

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
        let options = Options { fix: self.fix, dry_run: self.dry_run, json: self.json };
        let rt = weknora_operator::host::runtime()?;
        if !self.dev {
            return rt.block_on(examine(async || TheStack(doctor::probe::gather(false).await), options));
        }
        if !crate::paths::rust_toolchain().exists() {
            bail!(
                "`--dev` checks a development checkout (building and testing the stack), and this is none: \
                 `cargo xtask doctor` checks what running the stack needs"
            );
        }
        rt.block_on(examine(async || DevMachine::gather(true).await, options))
    }
}

/// The stack's facts and the developer's, gathered in that order.
struct DevMachine {
    stack: Facts,
    dev: DevFacts,
}

impl DevMachine {
    /// `dev_ports`: the development compose file's ports too.
    async fn gather(dev_ports: bool) -> DevMachine {
        let stack = doctor::probe::gather(dev_ports).await;
        DevMachine { stack, dev: probe::gather() }
    }
}

impl Examined for DevMachine {
    type Step = AnyStep;
    const AGAIN: &'static str = "doctor --fix --dev";

    fn stack(&self) -> &Facts {
        &self.stack
    }

    /// The stack's rows, then the developer's.
    fn checks(&self) -> Vec<Check> {
        let mut rows = doctor::checks::evaluate(&self.stack);
        rows.extend(checks::evaluate(&self.dev));
        rows
    }

    /// One apt step for the stack's packages and the developer's, the stack's other steps,
    /// then the developer's.
    fn plan(&self) -> Vec<AnyStep> {
        let (packages, needs_pip) = fix::packages(&self.dev);
        let stack = doctor::fix::plan_with(&self.stack, packages, needs_pip);
        stack.into_iter().map(AnyStep::Stack).chain(fix::plan(&self.dev).into_iter().map(AnyStep::Dev)).collect()
    }
}

/// `ci`'s first step: installs and starts what building and testing need and this machine
/// lacks (the stack's prerequisites among them), as `doctor --fix --dev` would.
pub async fn set_up(by: &str) -> Result<()> {
    setup::set_up_with(&DevMachine::gather(false).await, by).await.map(|_| ())
}
