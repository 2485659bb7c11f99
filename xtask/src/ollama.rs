//! `cargo xtask ollama start|stop|status`: a local Ollama for embedding and chat models.
//! Ollama is not part of the compose stack (it wants the host's GPU); this runs
//! `ollama serve` on the host, waits for its API and lists configured models it lacks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::dotenv::Vars;
use crate::paths;

#[derive(clap::Subcommand)]
pub enum Ollama {
    /// Start `ollama serve` in the background and wait for its API.
    Start,
    /// Stop the `ollama serve` that `start` started.
    Stop,
    /// Installed? Answering? Which configured models (OLLAMA_MODELS) are missing?
    Status {
        #[arg(long)]
        json: bool,
    },
}

const NOT_INSTALLED: &str = "Ollama is not installed: get it from https://ollama.com/download (Linux: `curl -fsSL https://ollama.com/install.sh | sh`), \
     or leave OLLAMA_BASE_URL empty to run without local models";

/// Where Ollama listens: host and port of OLLAMA_BASE_URL as the host sees it (default 127.0.0.1:11434).
fn address(vars: &Vars) -> String {
    let url = vars.get("OLLAMA_BASE_URL").unwrap_or("http://127.0.0.1:11434");
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.replace("host.docker.internal", "127.0.0.1").replace("localhost", "127.0.0.1");
    if hostport.contains(':') { hostport } else { format!("{hostport}:11434") }
}

fn installed() -> bool {
    Command::new("ollama").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The model names Ollama has (GET /api/tags), or None when nothing answers.
fn models(addr: &str) -> Option<Vec<String>> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /api/tags HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v["models"].as_array()?.iter().filter_map(|m| m["name"].as_str().map(str::to_string)).collect())
}

/// Configured models Ollama lacks (`name` matches `name:latest`).
pub fn missing_models(configured: &str, have: &[String]) -> Vec<String> {
    configured
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .filter(|m| !have.iter().any(|h| h == m || h.strip_suffix(":latest") == Some(m)))
        .map(str::to_string)
        .collect()
}

pub fn start() -> Result<()> {
    let vars = Vars::load();
    let addr = address(&vars);
    if models(&addr).is_some() {
        eprintln!("==> Ollama already answers on {addr}");
        return Ok(());
    }
    if !installed() {
        bail!(NOT_INSTALLED);
    }
    let log = paths::project_root().join("target/ollama.log");
    std::fs::create_dir_all(log.parent().unwrap())?;
    let child = Command::new("ollama")
        .arg("serve")
        .env("OLLAMA_HOST", &addr)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::options().append(true).open(&log)?)
        .spawn()
        .context("starting `ollama serve`")?;
    std::fs::write(paths::project_root().join("target/ollama.pid"), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while models(&addr).is_none() {
        if Instant::now() > deadline {
            bail!("`ollama serve` did not answer on {addr} within 30s: see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("==> Ollama answers on {addr} (log: {})", log.display());
    Ok(())
}

impl Ollama {
    pub fn run(self) -> Result<ExitCode> {
        let vars = Vars::load();
        let addr = address(&vars);
        match self {
            Ollama::Start => start().map(|()| ExitCode::SUCCESS),
            Ollama::Stop => {
                let pid_file = paths::project_root().join("target/ollama.pid");
                let Ok(pid) = std::fs::read_to_string(&pid_file) else {
                    bail!("no Ollama started by `cargo xtask ollama start` (no {})", pid_file.display());
                };
                let status = Command::new("kill").arg(pid.trim()).status()?;
                std::fs::remove_file(&pid_file)?;
                if !status.success() {
                    bail!("Ollama (pid {}) was not running", pid.trim());
                }
                println!("stopped Ollama (pid {})", pid.trim());
                Ok(ExitCode::SUCCESS)
            }
            Ollama::Status { json } => {
                let installed = installed();
                let have = models(&addr);
                let missing = missing_models(vars.get("OLLAMA_MODELS").unwrap_or(""), have.as_deref().unwrap_or(&[]));
                if json {
                    let v = serde_json::json!({
                        "installed": installed, "address": addr, "answering": have.is_some(),
                        "models": have.clone().unwrap_or_default(), "missing": missing,
                    });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("installed: {}", if installed { "yes" } else { "no" });
                    println!("address:   {addr} ({})", if have.is_some() { "answering" } else { "not answering" });
                    if let Some(m) = &have {
                        println!("models:    {}", if m.is_empty() { "none".into() } else { m.join(", ") });
                    }
                    for m in &missing {
                        println!("missing:   {m} (get it with `ollama pull {m}`)");
                    }
                }
                if !installed {
                    eprintln!("{NOT_INSTALLED}");
                }
                Ok(if have.is_some() && missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_models_match_with_or_without_the_latest_tag() {
        let have = vec!["nomic-embed-text:latest".to_string(), "qwen2.5:7b".to_string()];
        assert_eq!(missing_models("nomic-embed-text, qwen2.5:7b,llama3", &have), ["llama3"]);
        assert!(missing_models("", &have).is_empty());
    }

    #[test]
    fn the_address_is_the_hosts_view_of_the_base_url() {
        let vars =
            |url: &str| Vars::new(Default::default(), crate::dotenv::EnvFile::parse(&format!("OLLAMA_BASE_URL={url}")));
        assert_eq!(address(&vars("http://host.docker.internal:11434")), "127.0.0.1:11434");
        assert_eq!(address(&vars("http://localhost")), "127.0.0.1:11434");
        assert_eq!(address(&vars("")), "127.0.0.1:11434");
        assert_eq!(address(&vars("http://10.0.0.5:9999/")), "10.0.0.5:9999");
    }
}
