//! `cargo xtask dist`: release bundles.

use std::process::ExitCode;

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Dist {}

impl Dist {
    pub fn run(self) -> Result<ExitCode> {
        bail!("not yet")
    }
}
