//! `cargo xtask ollama start|stop|status|pull`: a local Ollama for embedding and chat models.
//! Ollama is not part of the compose stack (it wants the host's GPU); this runs
//! `ollama serve` on the host, waits for its API, lists configured models it lacks and pulls
//! them. `cargo xtask start --ollama` also gives the app its chat model from here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

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
    /// Pull models into Ollama (default: OLLAMA_MODELS and the chat model `start --ollama`
    /// gives the app); one it has already is left alone.
    Pull {
        /// Model names, e.g. qwen2.5:0.5b.
        models: Vec<String>,
    },
}

/// The chat model `start --ollama` gives the app unless OLLAMA_CHAT_MODEL names another:
/// small (about 400 MB), Chinese and English, quick enough on a CPU.
pub const DEFAULT_CHAT_MODEL: &str = "qwen2.5:0.5b";

/// Ollama on this host as the stack's containers reach it (compose maps host.docker.internal
/// to the host for the app).
const HOST_FROM_CONTAINERS: &str = "host.docker.internal";
const DEFAULT_PORT: u16 = 11434;

/// The chat model `start --ollama` gives the app.
#[derive(Debug, PartialEq, Eq)]
pub struct ChatModel {
    /// Ollama's URL as the app's container sees it.
    pub base_url: String,
    pub model: String,
}

impl ChatModel {
    /// None when LLM_BASE_URL names a chat model server already: the operator's choice stays.
    /// Else Ollama at OLLAMA_BASE_URL (default http://host.docker.internal:11434; a localhost
    /// there would be the container itself, so it becomes host.docker.internal) with
    /// OLLAMA_CHAT_MODEL (default DEFAULT_CHAT_MODEL).
    pub fn for_app(vars: &Vars) -> Option<ChatModel> {
        if vars.get("LLM_BASE_URL").is_some() {
            return None;
        }
        let base_url = match vars.get("OLLAMA_BASE_URL") {
            None => format!("http://{HOST_FROM_CONTAINERS}:{DEFAULT_PORT}"),
            Some(url) => {
                let url = url.trim().trim_end_matches('/');
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
                let (host, tail) = rest.split_at(rest.find([':', '/']).unwrap_or(rest.len()));
                let host = if matches!(host, "localhost" | "127.0.0.1") { HOST_FROM_CONTAINERS } else { host };
                format!("{scheme}://{host}{tail}")
            }
        };
        let model = vars.get("OLLAMA_CHAT_MODEL").unwrap_or(DEFAULT_CHAT_MODEL).trim().to_string();
        Some(ChatModel { base_url, model })
    }

    /// The app's environment for it; compose takes these over `.env`'s.
    pub fn app_env(&self) -> Vec<(String, String)> {
        vec![
            ("LLM_PROVIDER".into(), "ollama".into()),
            ("LLM_BASE_URL".into(), self.base_url.clone()),
            ("LLM_MODEL_NAME".into(), self.model.clone()),
        ]
    }

    /// Whether the app reaches Ollama through the host (host.docker.internal): Ollama must
    /// then listen beyond the host's loopback.
    pub fn on_this_host(&self) -> bool {
        url_host(&self.base_url) == HOST_FROM_CONTAINERS
    }
}

fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// Whether OLLAMA_BASE_URL has the stack's containers reach Ollama on this host.
pub fn containers_use_this_host(vars: &Vars) -> bool {
    vars.get("OLLAMA_BASE_URL").is_some_and(|url| url_host(url) == HOST_FROM_CONTAINERS)
}

const NOT_INSTALLED: &str = "Ollama is not installed: get it from https://ollama.com/download (Linux: `curl -fsSL https://ollama.com/install.sh | sh`), \
     or leave OLLAMA_BASE_URL empty to run without local models";

/// Where Ollama listens: host and port of OLLAMA_BASE_URL as the host sees it (default 127.0.0.1:11434).
pub fn address(vars: &Vars) -> String {
    let url = vars.get("OLLAMA_BASE_URL").unwrap_or("http://127.0.0.1:11434");
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.replace("host.docker.internal", "127.0.0.1").replace("localhost", "127.0.0.1");
    if hostport.contains(':') { hostport } else { format!("{hostport}:11434") }
}

fn installed() -> bool {
    Command::new("ollama").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// One HTTP/1.0 request to Ollama (the answer ends when the connection closes, never
/// chunked): the status code, and the body to read.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, BufReader<TcpStream>)> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} resolves to nothing")))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    Ok((status, reader))
}

/// The model names Ollama has (GET /api/tags), or None when nothing answers.
fn models(addr: &str) -> Option<Vec<String>> {
    let (status, mut body) = request(addr, "GET", "/api/tags", "", Duration::from_secs(5)).ok()?;
    let mut text = String::new();
    body.read_to_string(&mut text).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(v["models"].as_array()?.iter().filter_map(|m| m["name"].as_str().map(str::to_string)).collect())
}

/// Where a pull that fails can go from here.
const PULL_FIX: &str = "pick a model that exists (https://ollama.com/library) with OLLAMA_CHAT_MODEL in .env; where \
     this machine cannot download models, pull it where one can and copy Ollama's models folder (~/.ollama/models) \
     here; or set LLM_BASE_URL in .env to another chat model server";

/// Makes sure Ollama at `addr` has `model`, pulling it when it lacks it (POST /api/pull,
/// progress on stderr).
pub fn ensure_model(addr: &str, model: &str) -> Result<()> {
    let Some(have) = models(addr) else {
        bail!("Ollama does not answer on {addr}: start it with `cargo xtask ollama start`");
    };
    if missing_models(model, &have).is_empty() {
        eprintln!("==> Ollama has {model}");
        return Ok(());
    }
    eprintln!("==> pulling {model} into Ollama on {addr}");
    let body = serde_json::json!({"model": model, "stream": true}).to_string();
    // Ollama reports progress every few hundred ms while downloading; checking the digest of
    // a large model is the longest quiet stretch.
    let (status, reader) = request(addr, "POST", "/api/pull", &body, Duration::from_secs(600))
        .with_context(|| format!("asking Ollama on {addr} to pull {model}"))?;
    let mut progress = Progress::default();
    let mut done = false;
    for line in reader.lines() {
        let line = line.with_context(|| format!("Ollama on {addr} stopped answering while pulling {model}"))?;
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(error) = event["error"].as_str() {
            bail!("Ollama could not pull {model}: {error}. Fix: {PULL_FIX}");
        }
        if let Some(shown) = progress.line(&event) {
            eprintln!("    {shown}");
        }
        done |= event["status"].as_str() == Some("success");
    }
    if status != 200 {
        bail!("Ollama answered HTTP {status} to pulling {model}. Fix: {PULL_FIX}");
    }
    if !done {
        bail!(
            "Ollama on {addr} stopped answering before {model} was pulled: run `cargo xtask ollama pull {model}` again"
        );
    }
    eprintln!("==> pulled {model}");
    Ok(())
}

/// What of a pull's progress is worth a line: each new step, and downloads by tenths.
#[derive(Default)]
struct Progress {
    status: String,
    tenth: u64,
}

impl Progress {
    fn line(&mut self, event: &serde_json::Value) -> Option<String> {
        let status = event["status"].as_str()?;
        let total = event["total"].as_u64().filter(|t| *t > 0);
        let completed = event["completed"].as_u64().unwrap_or(0);
        let tenth = total.map_or(0, |t| completed.min(t) * 10 / t);
        if status == self.status && tenth <= self.tenth {
            return None;
        }
        self.status = status.to_string();
        self.tenth = tenth;
        Some(match total {
            Some(t) => format!("{status}: {}% of {} MB", tenth * 10, t.div_ceil(1_000_000)),
            None => status.to_string(),
        })
    }
}

/// What `ollama pull` without names pulls: OLLAMA_MODELS, then the chat model `start
/// --ollama` would give the app.
fn default_pulls(vars: &Vars) -> Vec<String> {
    let mut models: Vec<String> = vars
        .get("OLLAMA_MODELS")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    if let Some(chat) = ChatModel::for_app(vars)
        && !models.contains(&chat.model)
    {
        models.push(chat.model);
    }
    models
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

/// Starts `ollama serve` unless Ollama answers already. `for_containers`: the stack's
/// containers use it through host.docker.internal, so a loopback address is widened to every
/// interface (Docker's bridge included).
pub fn start(for_containers: bool) -> Result<()> {
    let vars = Vars::load();
    let addr = address(&vars);
    if models(&addr).is_some() {
        eprintln!("==> Ollama already answers on {addr}");
        return Ok(());
    }
    if !installed() {
        bail!(NOT_INSTALLED);
    }
    let listen = listen_address(&addr, for_containers);
    if listen != addr {
        eprintln!(
            "==> Ollama listens on {listen} so the containers reach it: keep port {} closed to other machines",
            port_of(&addr)
        );
    }
    let log = paths::state_dir().join("ollama.log");
    std::fs::create_dir_all(log.parent().unwrap())?;
    let child = Command::new("ollama")
        .arg("serve")
        .env("OLLAMA_HOST", &listen)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::options().append(true).open(&log)?)
        .spawn()
        .context("starting `ollama serve`")?;
    std::fs::write(paths::state_dir().join("ollama.pid"), child.id().to_string())?;
    let what = format!("`ollama serve` to answer on {addr}");
    crate::poll::poll_blocking(&what, Duration::from_secs(30), Duration::from_millis(300), || Ok(models(&addr)))
        .with_context(|| format!("see {}", log.display()))?;
    eprintln!("==> Ollama answers on {addr} (log: {})", log.display());
    Ok(())
}

/// The address `ollama serve` binds: the host's view of OLLAMA_BASE_URL, or every interface
/// when that is loopback and containers must reach it.
fn listen_address(addr: &str, for_containers: bool) -> String {
    match addr.strip_prefix("127.0.0.1:") {
        Some(port) if for_containers => format!("0.0.0.0:{port}"),
        _ => addr.to_string(),
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(DEFAULT_PORT)
}

/// Checks that containers can reach Ollama: an Ollama on this host that listens on loopback
/// only (the Linux installer's service does) answers the host but not the Docker bridge
/// (`gateway`, what host.docker.internal means inside the containers).
pub fn check_reachable_from_containers(addr: &str, gateway: &str) -> Result<()> {
    let on_bridge = format!("{gateway}:{}", port_of(addr));
    if models(&on_bridge).is_none() {
        bail!(
            "Ollama answers on {addr} but not on Docker's bridge ({on_bridge}), so the app cannot reach it: make it \
             listen on every interface (its systemd service: `sudo systemctl edit ollama`, add \
             `[Service]` `Environment=OLLAMA_HOST=0.0.0.0`, then `sudo systemctl restart ollama`), or stop it and let \
             `cargo xtask start --ollama` start one"
        );
    }
    Ok(())
}

impl Ollama {
    pub fn run(self) -> Result<ExitCode> {
        let vars = Vars::load();
        let addr = address(&vars);
        match self {
            Ollama::Start => start(containers_use_this_host(&vars)).map(|()| ExitCode::SUCCESS),
            Ollama::Pull { models } => {
                let models = if models.is_empty() { default_pulls(&vars) } else { models };
                for model in &models {
                    ensure_model(&addr, model)?;
                }
                println!("Ollama on {addr} has {}", models.join(", "));
                Ok(ExitCode::SUCCESS)
            }
            Ollama::Stop => {
                let pid_file = paths::state_dir().join("ollama.pid");
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

    fn vars(env: &str) -> Vars {
        Vars::new(Default::default(), crate::dotenv::EnvFile::parse(env))
    }

    #[test]
    fn start_ollama_gives_the_app_a_chat_model_unless_one_is_named() {
        let chat = ChatModel::for_app(&vars("")).unwrap();
        assert_eq!(chat.base_url, "http://host.docker.internal:11434");
        assert_eq!(chat.model, DEFAULT_CHAT_MODEL);
        assert!(chat.on_this_host());
        assert_eq!(
            chat.app_env(),
            [
                ("LLM_PROVIDER".to_string(), "ollama".to_string()),
                ("LLM_BASE_URL".to_string(), "http://host.docker.internal:11434".to_string()),
                ("LLM_MODEL_NAME".to_string(), "qwen2.5:0.5b".to_string()),
            ]
        );
        assert_eq!(ChatModel::for_app(&vars("LLM_BASE_URL=https://api.openai.com/v1\n")), None);
        let chat = ChatModel::for_app(&vars("LLM_BASE_URL=\nOLLAMA_CHAT_MODEL=llama3.2:1b\n")).unwrap();
        assert_eq!(chat.model, "llama3.2:1b", "an empty LLM_BASE_URL names nothing");
        // OLLAMA_BASE_URL is the containers' view; localhost there would be the container.
        let chat = ChatModel::for_app(&vars("OLLAMA_BASE_URL=http://localhost:11500/\n")).unwrap();
        assert_eq!(chat.base_url, "http://host.docker.internal:11500");
        let chat = ChatModel::for_app(&vars("OLLAMA_BASE_URL=http://gpu-box:11434/\n")).unwrap();
        assert_eq!(chat.base_url, "http://gpu-box:11434");
        assert!(!chat.on_this_host());
    }

    #[test]
    fn ollama_listens_beyond_loopback_only_for_the_containers() {
        assert_eq!(listen_address("127.0.0.1:11434", true), "0.0.0.0:11434");
        assert_eq!(listen_address("127.0.0.1:11434", false), "127.0.0.1:11434");
        assert_eq!(listen_address("10.0.0.5:9999", true), "10.0.0.5:9999");
        assert!(containers_use_this_host(&vars("OLLAMA_BASE_URL=http://host.docker.internal:11434\n")));
        assert!(!containers_use_this_host(&vars("")));
    }

    #[test]
    fn pull_progress_shows_each_step_and_downloads_by_tenths() {
        let mut p = Progress::default();
        let ev = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(p.line(&ev(r#"{"status":"pulling manifest"}"#)).as_deref(), Some("pulling manifest"));
        assert_eq!(p.line(&ev(r#"{"status":"pulling manifest"}"#)), None);
        let part = |done: u64| ev(&format!(r#"{{"status":"pulling abc","total":400000000,"completed":{done}}}"#));
        assert_eq!(p.line(&part(0)).as_deref(), Some("pulling abc: 0% of 400 MB"));
        assert_eq!(p.line(&part(30_000_000)), None);
        assert_eq!(p.line(&part(45_000_000)).as_deref(), Some("pulling abc: 10% of 400 MB"));
        assert_eq!(p.line(&part(400_000_000)).as_deref(), Some("pulling abc: 100% of 400 MB"));
        assert_eq!(p.line(&ev(r#"{"status":"success"}"#)).as_deref(), Some("success"));
    }

    /// (request line, body) of each request a stand-in got.
    type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

    /// A stand-in for Ollama's API on loopback: answers /api/tags with `have` and /api/pull
    /// with `pull_answer` (NDJSON lines); returns its address and the requests it got.
    fn fake_ollama(have: &'static [&'static str], pull_answer: &'static str) -> (String, Requests) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request_line = head.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push((request_line.clone(), String::from_utf8_lossy(&body).into_owned()));
                let answer = if request_line.starts_with("GET /api/tags") {
                    let models: Vec<_> = have.iter().map(|m| serde_json::json!({"name": m})).collect();
                    serde_json::json!({"models": models}).to_string()
                } else {
                    pull_answer.to_string()
                };
                let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{answer}");
            }
        });
        (addr, seen)
    }

    #[test]
    fn a_missing_model_is_pulled_and_one_there_is_left_alone() {
        let pulled = "{\"status\":\"pulling manifest\"}\n{\"status\":\"pulling abc\",\"total\":10,\"completed\":10}\n\
                      {\"status\":\"success\"}\n";
        let (addr, seen) = fake_ollama(&["nomic-embed-text:latest"], pulled);
        ensure_model(&addr, "qwen2.5:0.5b").unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].0, "POST /api/pull HTTP/1.0");
        let body: serde_json::Value = serde_json::from_str(&seen[1].1).unwrap();
        assert_eq!(body, serde_json::json!({"model": "qwen2.5:0.5b", "stream": true}));

        let (addr, seen) = fake_ollama(&["qwen2.5:0.5b"], "");
        ensure_model(&addr, "qwen2.5:0.5b").unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1, "no pull of a model Ollama has");
    }

    #[test]
    fn a_failed_pull_names_the_model_and_the_fix() {
        let (addr, _) = fake_ollama(
            &[],
            "{\"status\":\"pulling manifest\"}\n{\"error\":\"pull model manifest: file does not exist\"}\n",
        );
        let err = ensure_model(&addr, "no-such-model:1b").unwrap_err().to_string();
        assert!(err.contains("could not pull no-such-model:1b: pull model manifest: file does not exist"), "{err}");
        assert!(err.contains("OLLAMA_CHAT_MODEL") && err.contains("LLM_BASE_URL"), "{err}");
        // Cut off before `success`: not taken for a pulled model.
        let (addr, _) = fake_ollama(&[], "{\"status\":\"pulling manifest\"}\n");
        let err = ensure_model(&addr, "tiny:1b").unwrap_err().to_string();
        assert!(err.contains("stopped answering before tiny:1b was pulled"), "{err}");
        // Nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = ensure_model(&format!("127.0.0.1:{port}"), "tiny:1b").unwrap_err().to_string();
        assert!(err.contains("does not answer") && err.contains("cargo xtask ollama start"), "{err}");
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
