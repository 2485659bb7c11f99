//! `cargo xtask bench first-run`: where the time of a new user's first `cargo xtask start`
//! goes. A fresh clone of this commit with an empty target folder: xtask's own compile,
//! then `start` with each of its progress lines timed (the release compile runs in the
//! background from its first line to its second, beside the third-party images), until
//! healthy. With `--bare --yes` our images, the local images and their Debian bases are
//! removed first, as on a machine that never built them. The Docker engine's install is not
//! re-run here (it would remove Docker): the runbook gives its figure.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::free_port;
use crate::images::LOCAL_DEPS;

#[derive(clap::Args)]
pub struct FirstRunBench {
    /// Remove our images, the local images and their Debian bases first (needs --yes).
    #[arg(long)]
    bare: bool,
    /// Confirms --bare.
    #[arg(long)]
    yes: bool,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One progress line of `start`, when it appeared.
struct Mark {
    at: f64,
    line: String,
}

impl FirstRunBench {
    pub fn run(self) -> Result<ExitCode> {
        if self.bare && !self.yes {
            bail!("--bare removes images (ours, the stand-ins, the embedder and their bases): add --yes");
        }
        let root = crate::paths::project_root();
        let clone = tempfile::Builder::new().prefix("weknora-first-run-").tempdir()?;
        let src = clone.path().join("weknora");
        eprintln!(
            "==> bench first-run: a fresh clone of HEAD (uncommitted changes are not in it) in {}",
            src.display()
        );
        run(Command::new("git").args(["clone", "--quiet"]).arg(&root).arg(&src))?;
        if self.bare {
            remove_images(&root)?;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let started = Instant::now();
        run(Command::new(&cargo)
            .args(["build", "--quiet", "--package", "xtask"])
            .current_dir(&src)
            .env_remove("CARGO_TARGET_DIR"))?;
        let xtask_compile = started.elapsed().as_secs_f64();

        let project = format!("wkfirstrun{}", std::process::id());
        let env = [
            ("COMPOSE_PROJECT_NAME".to_string(), project),
            ("WEKNORA_ENV_FILE".to_string(), clone.path().join(".env").display().to_string()),
            ("FRONTEND_PORT".to_string(), free_port()?.to_string()),
            ("APP_PORT".to_string(), free_port()?.to_string()),
        ];
        let start = Instant::now();
        let mut child = Command::new(&cargo)
            .args(["xtask", "start", "--timeout", "900"])
            .current_dir(&src)
            .env_remove("CARGO_TARGET_DIR")
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running cargo xtask start in the clone")?;
        let mut marks = Vec::new();
        for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
            let line = line?;
            eprintln!("{line}");
            if let Some(step) = line.strip_prefix("==> ") {
                marks.push(Mark { at: start.elapsed().as_secs_f64(), line: step.to_string() });
            }
        }
        let ok = child.wait()?.success();
        let start_total = start.elapsed().as_secs_f64();
        // The stack and the clone (with its target folder) go, whatever happened.
        let stopped = Command::new(&cargo)
            .args(["xtask", "stop", "--volumes", "--yes"])
            .current_dir(&src)
            .envs(env.iter().cloned())
            .output();
        if !stopped.is_ok_and(|o| o.status.success()) {
            eprintln!("==> stopping the benchmark's stack failed: `cargo xtask stop --volumes --yes` with {env:?}");
        }
        if !ok {
            bail!("start from the fresh clone failed (its output above)");
        }
        let steps: Vec<_> = marks
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let until = marks.get(i + 1).map_or(start_total, |n| n.at);
                json!({ "at_s": round(m.at), "seconds": round(until - m.at), "step": m.line })
            })
            .collect();
        let figures = json!({
            "bare": self.bare,
            "xtask_compile_s": round(xtask_compile),
            "start_s": round(start_total),
            "total_s": round(xtask_compile + start_total),
            "steps": steps,
        });
        if self.json {
            println!("{}", serde_json::to_string_pretty(&figures)?);
        } else {
            println!("first run of a fresh clone{}:", if self.bare { " (no images built before)" } else { "" });
            println!("  xtask compile  {:>7.1} s", xtask_compile);
            println!("  start          {:>7.1} s   (each step below lasts until the next begins)", start_total);
            println!("  total          {:>7.1} s", xtask_compile + start_total);
            for s in &steps {
                println!(
                    "  {:>7.1} s  +{:>6.1} s  {}",
                    s["at_s"].as_f64().unwrap_or(0.0),
                    s["seconds"].as_f64().unwrap_or(0.0),
                    s["step"].as_str().unwrap_or("")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

/// Our images of this version, the local images and their bases, as a bare machine lacks them.
fn remove_images(root: &Path) -> Result<()> {
    let version = crate::images::Workspace::read()?.version;
    let mut images: Vec<String> =
        weknora_stack_spec::OURS.iter().filter_map(|s| Some(format!("{}:{version}", s.repository()?))).collect();
    for dep in LOCAL_DEPS {
        images.push(dep.image.to_string());
        images.push(dep.base());
    }
    images.sort();
    images.dedup();
    eprintln!("==> bench first-run: removing {} (from {})", images.join(", "), root.display());
    for image in &images {
        let _ = Command::new("docker").args(["rmi", "--force", image]).output();
    }
    Ok(())
}
