//! `cargo xtask bench`: docreader's parser throughput (MB/s per format, one core) side by
//! side with the usual Python parsers on the same generated corpus, and the server's
//! resident memory when idle; `bench search` (search.rs): the app's hybrid search;
//! `bench load` (load.rs): the whole stack under concurrent searches, chats and ingest,
//! against its goals; `bench first-run` (first_run.rs): a new user's first `start`.
//! Figures, not assertions: speed is never a test.

mod first_run;
mod load;
mod search;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::doctor::probe::PYTHON_MODULES;
use crate::paths;

#[derive(clap::Args)]
pub struct Bench {
    #[command(subcommand)]
    what: Option<What>,
    /// Seconds spent on each file by each parser (at least 3 runs).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Write the corpus again even if it exists.
    #[arg(long)]
    regenerate: bool,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs a command pinned to one core where `taskset` exists, and returns its stdout as JSON.
fn run_json(program: &Path, args: &[&str]) -> Result<Value> {
    let mut cmd = if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out =
        cmd.args(args).stderr(Stdio::inherit()).output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!("{} failed", program.display());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{} printed no JSON", program.display()))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the release server, waits until it is SERVING, and reads its resident memory.
fn idle_rss(server: &Path) -> Result<u64> {
    let port = free_port()?;
    let mut child = Command::new(server)
        .env("DOCREADER_GRPC_PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .env("DOCREADER_METRICS_PORT", "0")
        .stdout(Stdio::null())
        .spawn()
        .context("starting weknora-docreader")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = format!("127.0.0.1:{port}");
    let serving = loop {
        let ok = Command::new(server).args(["healthcheck", "--addr", &addr]).stderr(Stdio::null()).status()?.success();
        if ok || Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(1));
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if !serving {
        bail!("weknora-docreader did not report SERVING within 20s");
    }
    rss.context("reading VmRSS from /proc")
}

#[derive(clap::Subcommand)]
enum What {
    /// Hybrid search latency through the app beside the same retrieval as raw SQL, at
    /// corpus sizes of your choice, and the ingest's embedding throughput beside the
    /// embedder's own.
    Search(search::SearchBench),
    /// The whole stack under load: its own stack started, seeded through the frontend,
    /// then concurrent searches and chats while documents keep arriving; latency
    /// percentiles, errors and each service's peak memory against the goals (exit 1 when
    /// one is missed).
    Load(load::LoadBench),
    /// A new user's first `start`: a fresh clone with an empty target folder, xtask's
    /// compile, then each step of `start` timed until healthy (`--bare --yes`: with no image
    /// built before).
    FirstRun(first_run::FirstRunBench),
}

impl Bench {
    pub fn run(self) -> Result<ExitCode> {
        match self.what {
            Some(What::Search(search)) => return search.run(),
            Some(What::Load(load)) => return load.run(),
            Some(What::FirstRun(first)) => return first.run(),
            None => {}
        }
        let sh = Shell::new()?;
        let bench_dir = paths::docreader_bench();
        let corpus = paths::bench_corpus();
        let modules = format!("import {PYTHON_MODULES}");
        cmd!(sh, "python3 -c {modules}").quiet().ignore_stdout().run().context(
            "the Python reference parsers are missing: run `cargo xtask doctor --fix --dev` (pip install -r services/docreader/bench/requirements.txt)",
        )?;
        if self.regenerate || !corpus.join("corpus.docx").exists() {
            eprintln!("==> bench: writing the corpus to {}", corpus.display());
            let script = bench_dir.join("make_corpus.py");
            cmd!(sh, "python3 {script} {corpus}").run()?;
        }
        eprintln!("==> bench: building the release binaries");
        cmd!(sh, "cargo build --release --locked -p weknora-docreader --example bench --bin weknora-docreader")
            .run()?;
        let target = paths::project_root().join("target/release");
        let seconds = self.seconds.to_string();
        let corpus_arg = corpus.to_string_lossy().to_string();
        eprintln!("==> bench: Rust parsers, one core, {seconds}s per file");
        let rust = run_json(&target.join("examples/bench"), &[&corpus_arg, &seconds])?;
        eprintln!("==> bench: Python reference parsers, one core, {seconds}s per file");
        let python = run_json(
            Path::new("python3"),
            &[&bench_dir.join("reference.py").to_string_lossy(), &corpus_arg, &seconds],
        )?;
        let rss = idle_rss(&target.join("weknora-docreader"))?;

        let mut rows = Vec::new();
        for (format, r) in rust.as_object().into_iter().flatten() {
            let mbps =
                |v: &Value| v["bytes"].as_f64().unwrap_or(0.0) / 1e6 / v["seconds"].as_f64().unwrap_or(f64::INFINITY);
            let ours = mbps(r);
            let theirs = python.get(format).map(mbps);
            rows.push(json!({
                "format": format,
                "bytes": r["bytes"],
                "rust_mb_s": ours,
                "python_mb_s": theirs,
                "speedup": theirs.map(|t| ours / t),
            }));
        }
        let report = json!({ "formats": rows, "idle_rss_mib": rss as f64 / 1024.0, "seconds_per_file": self.seconds });
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{:<6} {:>10} {:>12} {:>13} {:>8}", "FORMAT", "SIZE", "RUST MB/s", "PYTHON MB/s", "SPEEDUP");
            for r in &rows {
                let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
                println!(
                    "{:<6} {:>9}K {:>12} {:>13} {:>7}x",
                    r["format"].as_str().unwrap_or(""),
                    r["bytes"].as_u64().unwrap_or(0) / 1024,
                    f(&r["rust_mb_s"]),
                    f(&r["python_mb_s"]),
                    f(&r["speedup"])
                );
            }
            println!("idle resident memory of weknora-docreader: {:.1} MiB", rss as f64 / 1024.0);
        }
        Ok(ExitCode::SUCCESS)
    }
}
