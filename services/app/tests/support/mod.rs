//! What the app's integration tests share: the app binary and docreader as processes
//! against real PostgreSQL and Redis, and a plain HTTP client.
#![allow(dead_code)] // each test file uses its own share of these

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weknora_testkit::{PASSWORD, Pg, Redis, USER, free_port};

pub const APP: &str = env!("CARGO_BIN_EXE_weknora-app");

/// Every file under `dir` at any depth (symlinks listed, not followed), sorted; none when
/// `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The `.rs` files under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).collect()
}

pub fn config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml")
}

/// The docreader binary `cargo test --workspace` builds next to ours.
pub fn docreader_binary() -> PathBuf {
    let path = Path::new(APP).with_file_name("weknora-docreader");
    assert!(
        path.exists(),
        "{} is missing: `cargo build -p weknora-docreader` (cargo xtask ci builds it)",
        path.display()
    );
    path
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} not up within 30s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn docreader() -> (Proc, u16) {
    docreader_on(free_port(), &[])
}

pub fn docreader_on(port: u16, env: &[(&str, &str)]) -> (Proc, u16) {
    let child = Command::new(docreader_binary())
        .envs(env.iter().copied())
        .env("DOCREADER_GRPC_PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        // Tests run docreaders side by side: none serves metrics.
        .env("DOCREADER_METRICS_PORT", "0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let bin = docreader_binary();
    wait_until("docreader", || {
        Command::new(&bin)
            .args(["healthcheck", "--addr", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    (Proc(child), port)
}

pub fn app_env(pg_port: u16, redis: &str, docreader_port: u16, app_port: u16) -> Vec<(String, String)> {
    [
        ("WEKNORA_CONFIG", config_file().display().to_string()),
        ("WEKNORA__SERVER__HOST", "127.0.0.1".into()),
        ("WEKNORA__SERVER__PORT", app_port.to_string()),
        ("DB_HOST", "127.0.0.1".into()),
        ("DB_PORT", pg_port.to_string()),
        ("DB_USER", USER.into()),
        ("DB_PASSWORD", PASSWORD.into()),
        ("DB_NAME", "postgres".into()),
        ("REDIS_ADDR", redis.into()),
        ("DOCREADER_ADDR", format!("127.0.0.1:{docreader_port}")),
        ("AUTO_MIGRATE", "true".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `app_env` plus the admin key and `files` as the storage folder.
pub fn admin_env(pg_port: u16, redis: &str, docreader_port: u16, files: &Path) -> Vec<(String, String)> {
    let mut env = app_env(pg_port, redis, docreader_port, free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.display().to_string()));
    env
}

/// A new knowledge base of the admin's tenant; its API path (`/api/v1/knowledge-bases/<id>`).
pub fn create_kb(port: u16, name: &str) -> String {
    let body = serde_json::json!({ "name": name });
    let (status, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &[("X-API-Key", ADMIN_KEY)], Some(&body));
    assert_eq!(status, 201, "{kb}");
    format!("/api/v1/knowledge-bases/{}", kb["data"]["id"].as_str().unwrap())
}

/// The app with the deployment's admin key (`ADMIN_KEY`) on real PostgreSQL and Redis, with
/// a docreader and uploads in a folder of its own; all stopped when dropped (the app first).
pub struct AdminStack {
    pub port: u16,
    pub app: Proc,
    pub env: Vec<(String, String)>,
    pub dr_port: u16,
    pub docreader: Proc,
    pub files: tempfile::TempDir,
    pub redis: Redis,
    pub pg: Pg,
}

pub fn admin_stack() -> AdminStack {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (docreader, dr_port) = docreader();
    let files = tempfile::tempdir().unwrap();
    let env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    let (app, port) = start_app(&env);
    AdminStack { port, app, env, dr_port, docreader, files, redis, pg }
}

pub fn start_app(env: &[(String, String)]) -> (Proc, u16) {
    let port: u16 = env.iter().find(|(k, _)| k == "WEKNORA__SERVER__PORT").unwrap().1.parse().unwrap();
    let child = Command::new(APP).envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).spawn().unwrap();
    let app = Proc(child);
    wait_until("weknora-app", || healthcheck(port));
    (app, port)
}

pub fn healthcheck(port: u16) -> bool {
    Command::new(APP)
        .args(["--config", config_file().to_str().unwrap(), "healthcheck", "--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// GET over a plain socket: (status, lower-cased headers, JSON body).
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    call(port, "GET", path, headers, None)
}

/// Any method with an optional JSON body.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(port, method, path, headers, "application/json", body.as_bytes())
}

/// A multipart upload of `bytes` as the field `file`.
pub fn upload(port: u16, path: &str, key: &str, name: &str, bytes: &[u8]) -> (u16, String, Value) {
    let (content_type, body) = multipart(name, bytes);
    send(port, "POST", path, &[("X-API-Key", key)], &content_type, &body)
}

/// A multipart/form-data body with `bytes` as the field `file` named `name` (written as
/// given, whatever it holds): its content type and bytes.
pub fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "weknora-test-boundary";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> (u16, String, Value) {
    let typed = (!body.is_empty()).then_some((content_type, body));
    let reply = exchange(port, method, path, headers, typed).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let body = String::from_utf8_lossy(&reply.body);
    // Take the JSON object between the first { and the last }; a body that is not JSON
    // (the metrics' text, server-sent events) comes back as a string.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or_else(|_| Value::String(body.to_string())),
        _ => Value::String(body.to_string()),
    };
    (reply.status, reply.head, json)
}

/// A response as it came: status, lower-cased head, and the body (de-chunked).
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (the head is lower-cased).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim()))
    }
}

/// One request over a fresh connection; `body` is (content type, bytes) and is written
/// while the answer is read, so a server that answers (413, 401) without reading a large
/// body is heard. Err when no complete answer came (the connection dropped).
pub fn exchange(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", bytes.len()));
    }
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n{head}Connection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body.map_or(&[][..], |(_, b)| b));
    let mut writer = stream.try_clone().unwrap();
    // A failed write is fine: the server may have answered and closed already.
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server closed with the body unread) ends it.
            Err(_) if response.windows(4).any(|w| w == b"\r\n\r\n") => break,
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writing.join();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
        format!("no answer (the connection closed after {} bytes: did the handler panic?)", response.len())
    })?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let mut reply = Reply { status, head, body: response[split + 4..].to_vec() };
    if reply.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        reply.body = dechunk(&reply.body);
    }
    Ok(reply)
}

/// A chunked body's data (as much of it as is complete).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else { break };
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    out
}

pub const ADMIN_KEY: &str = "admin-key-for-tests-0123456789abcdef";

/// Polls a document until it leaves pending/processing; returns its final JSON.
pub fn wait_parsed(port: u16, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = get(port, &format!("/api/v1/knowledge/{id}"), &[("X-API-Key", key)]);
        let status = body["data"]["parse_status"].as_str().unwrap_or("").to_string();
        if status == "completed" || status == "failed" {
            return body["data"].clone();
        }
        assert!(Instant::now() < deadline, "document {id} still {status} after 60s: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn metric(text: &str, series: &str) -> f64 {
    counted(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// A series' value, or None before anything was recorded in it.
pub fn counted(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

/// One row of `psql -At` output per line, fields split on `|`.
pub fn psql(pg: &Pg, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new("psql").args([&pg.url("postgres"), "-XAtqc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}
