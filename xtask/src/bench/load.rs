//! `cargo xtask bench load`: the whole stack under load, as an operator would run it. It
//! starts its own stack with the project's `start` (a throwaway compose project, removed
//! with its volumes however the run ends), seeds a knowledge base with generated documents
//! through the frontend, then for a while has most clients search (varied questions made
//! of the documents' words, so mostly cache misses), some chat (extractive answers streamed
//! as Server-Sent Events), and one more thread upload a document every few seconds, so the
//! load runs during an ingest. Each container's memory is sampled every second. The figures
//! are set against three goals (no error, search p99, memory under each limit), and the
//! command fails when one is missed.

use super::free_port;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};

use weknora_operator::poll::poll;

#[derive(clap::Args)]
pub struct LoadBench {
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent clients, each one request at a time.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// A client's mean pause between an answer and its next request, in milliseconds
    /// (exponentially distributed: people read what they got). 0: none, which measures
    /// the stack's capacity rather than the latency its users see.
    #[arg(long, default_value_t = 2000)]
    think_ms: u64,
    /// Documents seeded (and fully indexed) before the load.
    #[arg(long, default_value_t = 60)]
    documents: usize,
    /// One client in N chats instead of searching (0: none chats).
    #[arg(long, default_value_t = 8)]
    chat_share: usize,
    /// Seconds between two uploads during the load (0: no ingest during the load).
    #[arg(long, default_value_t = 2.0)]
    ingest_every: f64,
    /// The goal for the searches' 99th percentile, in milliseconds.
    #[arg(long, default_value_t = 200.0)]
    search_p99_ms: f64,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Longest wait for one search or upload answer, and for a whole chat answer.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(120);
const CHAT_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// The stack.

/// The throwaway stack: `start` on a project of its own, `stop --volumes --yes` when dropped,
/// whether the run ended well, with an error or with a panic.
struct Stack {
    exe: PathBuf,
    project: String,
    env: Vec<(String, String)>,
    front: u16,
    started: bool,
    // Last: the .env and the backups folder must outlive the `stop` in `drop`.
    dir: tempfile::TempDir,
}

impl Stack {
    fn new() -> Result<Stack> {
        let dir = tempfile::tempdir()?;
        let project = format!("wkbenchload{}", std::process::id());
        let front = free_port()?;
        let env = vec![
            ("COMPOSE_PROJECT_NAME".to_string(), project.clone()),
            ("WEKNORA_ENV_FILE".to_string(), dir.path().join(".env").display().to_string()),
            ("FRONTEND_PORT".to_string(), front.to_string()),
            ("APP_PORT".to_string(), free_port()?.to_string()),
            ("BACKUP_DIR".to_string(), dir.path().join("backups").display().to_string()),
        ];
        let exe = std::env::current_exe().context("finding this program")?;
        Ok(Stack { exe, project, env, front, started: false, dir })
    }

    /// This program with `args` and the project's environment; its output goes to stderr
    /// (stdout is for the figures).
    fn xtask(&self, args: &[&str]) -> Result<bool> {
        let status = Command::new(&self.exe)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::io::stderr())
            .status()
            .with_context(|| format!("running {}", self.exe.display()))?;
        Ok(status.success())
    }

    fn start(&mut self) -> Result<()> {
        eprintln!(
            "==> bench load: starting project {} (frontend on port {}); should this run be killed, remove it \
             with `COMPOSE_PROJECT_NAME={} WEKNORA_ENV_FILE={} cargo xtask stop --volumes --yes`",
            self.project,
            self.front,
            self.project,
            self.dir.path().join(".env").display()
        );
        self.started = true;
        if !self.xtask(&["start", "--timeout", "900"])? {
            bail!("`start` failed (see its output above)");
        }
        Ok(())
    }

    fn admin_key(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join(".env")).context("reading the stack's .env")?;
        admin_key_of(&text).context("no ADMIN_API_KEY in the stack's .env")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        eprintln!("==> bench load: stopping project {} and removing its volumes", self.project);
        match self.xtask(&["stop", "--volumes", "--yes"]) {
            Ok(true) => {}
            _ => eprintln!(
                "bench load: `stop` failed: remove the project by hand (docker compose -p {} down -v)",
                self.project
            ),
        }
    }
}

/// ADMIN_API_KEY's value in a .env text.
fn admin_key_of(env_file: &str) -> Option<String> {
    env_file
        .lines()
        .find_map(|l| l.trim().strip_prefix("ADMIN_API_KEY="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 over a TcpStream, one request per connection, as a browser's request through
// the frontend would be.

/// Why a request failed; `kind` is how the report counts it.
#[derive(Debug)]
enum Fail {
    Connect(std::io::ErrorKind),
    Io(std::io::ErrorKind),
    Status(u16, String),
    Malformed(String),
}

impl Fail {
    fn kind(&self) -> String {
        match self {
            Fail::Connect(kind) => format!("connection failed ({kind})"),
            Fail::Io(kind) => format!("read failed ({kind})"),
            Fail::Status(status, _) => format!("HTTP {status}"),
            Fail::Malformed(what) => format!("malformed answer ({what})"),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Status(_, body) => write!(f, "{}: {body}", self.kind()),
            _ => f.write_str(&self.kind()),
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        // A read timeout is WouldBlock on Unix.
        match e.kind() {
            std::io::ErrorKind::WouldBlock => Fail::Io(std::io::ErrorKind::TimedOut),
            kind => Fail::Io(kind),
        }
    }
}

/// An answer's status line and the headers that say how its body is framed.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    chunked: bool,
    length: Option<usize>,
}

/// Reads the status line and headers.
fn read_head(r: &mut impl BufRead) -> Result<Head, Fail> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(Fail::Malformed("no answer".into()));
    }
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Fail::Malformed(format!("status line {:?}", line.trim_end())))?;
    let mut head = Head { status, chunked: false, length: None };
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(Fail::Malformed("headers cut short".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Fail::Malformed(format!("header {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            head.length = Some(value.parse().map_err(|_| Fail::Malformed(format!("content-length {value:?}")))?);
        }
    }
}

/// Hands the body to `on_data` piece by piece as it arrives (chunked, by length, or until
/// the connection closes), until it ends or `on_data` returns false.
fn stream_body(r: &mut impl BufRead, head: &Head, mut on_data: impl FnMut(&[u8]) -> bool) -> Result<(), Fail> {
    if head.chunked {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Fail::Malformed("chunked body cut short".into()));
            }
            let size = line.trim_end().split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| Fail::Malformed(format!("chunk size {size:?}")))?;
            if size == 0 {
                return Ok(());
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if !chunk.ends_with(b"\r\n") {
                return Err(Fail::Malformed("chunk without its CRLF".into()));
            }
            if !on_data(&chunk[..size]) {
                return Ok(());
            }
        }
    }
    let mut left = head.length.unwrap_or(usize::MAX);
    while left > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return match head.length {
                Some(_) => Err(Fail::Malformed("body shorter than its content-length".into())),
                None => Ok(()),
            };
        }
        let n = buf.len().min(left);
        let go_on = on_data(&buf[..n]);
        r.consume(n);
        left -= n;
        if !go_on {
            return Ok(());
        }
    }
    Ok(())
}

fn read_body(r: &mut impl BufRead, head: &Head) -> Result<Vec<u8>, Fail> {
    let mut body = Vec::new();
    stream_body(r, head, |piece| {
        body.extend_from_slice(piece);
        true
    })?;
    Ok(body)
}

/// A whole answer that must be 2xx and JSON.
fn json_answer(r: &mut impl BufRead) -> Result<Value, Fail> {
    let head = read_head(r)?;
    let body = read_body(r, &head)?;
    if !(200..300).contains(&head.status) {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(Fail::Status(head.status, text));
    }
    serde_json::from_slice(&body).map_err(|_| Fail::Malformed("not JSON".into()))
}

/// The frontend as clients see it: its port and the admin key.
#[derive(Clone)]
struct Api {
    port: u16,
    key: Arc<str>,
}

impl Api {
    /// Sends one request (one write, without Nagle) and gives back the connection to read
    /// the answer from.
    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<BufReader<TcpStream>, Fail> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| Fail::Connect(e.kind()))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.key,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).map_err(|e| Fail::Connect(e.kind()))?;
        Ok(BufReader::new(stream))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Fail> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut r = self.send(method, path, "application/json", body.as_bytes(), SEARCH_TIMEOUT)?;
        json_answer(&mut r)
    }

    /// Uploads a text document; its id.
    fn upload(&self, kb: &str, name: &str, text: &str) -> Result<String, Fail> {
        let boundary = format!("weknora-bench-load-{}", std::process::id());
        let body = multipart(&boundary, name, text);
        let path = format!("/api/v1/knowledge-bases/{kb}/knowledge/file");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let mut r = self.send("POST", &path, &content_type, &body, SEARCH_TIMEOUT)?;
        let answer = json_answer(&mut r)?;
        data_id(&answer).ok_or_else(|| Fail::Malformed("upload answer without data.id".into()))
    }

    /// A document's `parse_status` and `vector_status`.
    fn document_state(&self, id: &str) -> Result<(String, String), Fail> {
        let answer = self.call("GET", &format!("/api/v1/knowledge/{id}"), None)?;
        let field = |f: &str| answer["data"][f].as_str().map(str::to_string);
        match (field("parse_status"), field("vector_status")) {
            (Some(parse), Some(vector)) => Ok((parse, vector)),
            _ => Err(Fail::Malformed("document without parse_status/vector_status".into())),
        }
    }
}

/// A multipart/form-data body with one file, in field `file`.
fn multipart(boundary: &str, name: &str, text: &str) -> Vec<u8> {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n"
    )
    .into_bytes()
}

fn data_id(answer: &Value) -> Option<String> {
    answer["data"]["id"].as_str().map(str::to_string)
}

/// Whether a search answer came from the cache; an error when it is not a search answer.
fn search_cached(answer: &Value) -> Result<bool, Fail> {
    if !answer["data"].is_array() {
        return Err(Fail::Malformed("search answer without data".into()));
    }
    answer["cached"].as_bool().ok_or_else(|| Fail::Malformed("search answer without cached".into()))
}

/// Server-Sent Events: bytes in, each complete event's data out (its `data:` lines joined).
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    data: Vec<String>,
}

impl Sse {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(self.line.strip_suffix(b"\r").unwrap_or(&self.line)).into_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data.push(data.strip_prefix(' ').unwrap_or(data).to_string());
            }
        }
        events
    }
}

/// How one chat frame ends the answer, if it does.
fn frame_ends(frame: &str) -> Result<bool, Fail> {
    let frame: Value = serde_json::from_str(frame).map_err(|_| Fail::Malformed("chat frame not JSON".into()))?;
    if frame["response_type"] == "error" {
        return Err(Fail::Malformed(format!(
            "chat error frame: {}",
            frame["data"]["code"].as_str().unwrap_or("no code")
        )));
    }
    // agent_query is `done` too: the answer ends with its own `answer` frame marked done.
    Ok(frame["response_type"] == "answer" && frame["done"] == true)
}

/// Asks in a chat session and reads the answer's stream to its `done` frame: the time to the
/// first frame and to the last, in milliseconds.
fn ask(api: &Api, session: &str, query: &str) -> Result<(f64, f64), Fail> {
    let started = Instant::now();
    let body = json!({ "query": query }).to_string();
    let path = format!("/api/v1/knowledge-chat/{session}");
    let mut r = api.send("POST", &path, "application/json", body.as_bytes(), CHAT_TIMEOUT)?;
    let head = read_head(&mut r)?;
    if !(200..300).contains(&head.status) {
        let body = read_body(&mut r, &head).unwrap_or_default();
        return Err(Fail::Status(head.status, String::from_utf8_lossy(&body).chars().take(300).collect()));
    }
    let (mut sse, mut first, mut done, mut failed) = (Sse::default(), None, None, None);
    stream_body(&mut r, &head, |bytes| {
        for frame in sse.push(bytes) {
            first.get_or_insert_with(|| millis(started.elapsed()));
            match frame_ends(&frame) {
                Ok(false) => {}
                Ok(true) => done = Some(millis(started.elapsed())),
                Err(e) => failed = Some(e),
            }
            if done.is_some() || failed.is_some() {
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    match (first, done) {
        (Some(first), Some(done)) => Ok((first, done)),
        _ => Err(Fail::Malformed("chat stream ended without a done frame".into())),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Documents and questions.

/// The words of every document and question.
const WORDS: &str = "backup restore drill vault offsite copy nightly weekly monthly retention policy archive \
    server cluster node replica primary standby failover latency throughput queue worker \
    ticket incident outage alert pager escalation runbook rollback upgrade release version \
    invoice payment customer account contract renewal discount refund budget forecast \
    revenue margin supplier shipment warehouse inventory pallet container harbour freight \
    customs license audit compliance privacy consent encryption certificate token password \
    firewall gateway proxy tunnel network subnet router switch cable fibre antenna satellite \
    battery charger turbine generator pump valve pressure sensor gauge thermostat furnace \
    kitchen recipe flour butter sugar oven bakery pastry garden tomato orchard apple harvest \
    river bridge tunnel railway station platform timetable ticket passenger luggage airport \
    hospital clinic nurse patient pharmacy vaccine therapy diagnosis laboratory sample \
    school teacher student lesson exam library museum gallery concert theatre festival \
    mountain glacier forest meadow desert canyon island lagoon volcano earthquake storm";

fn words() -> Vec<&'static str> {
    WORDS.split_whitespace().collect()
}

/// xorshift64*: enough randomness for generated text, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// A pause of mean `mean`, exponentially distributed (capped at ten times the mean).
    fn pause(&mut self, mean: Duration) -> Duration {
        let uniform = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        mean.mul_f64((-(1.0 - uniform).ln()).min(10.0))
    }
}

/// A client's pause before its next request: never past the end of the load.
fn think(rng: &mut Rng, mean: Duration, until: Instant) {
    if !mean.is_zero() {
        std::thread::sleep(rng.pause(mean).min(until.saturating_duration_since(Instant::now())));
    }
}

/// Document `n`: a title and six paragraphs of sentences of the vocabulary (about 2.5 kB,
/// a handful of chunks).
fn document(n: usize, words: &[&str]) -> String {
    let mut rng = Rng::new(n as u64 + 1);
    let mut text = format!("# Note {n}: {} and {}\n\n", rng.pick(words), rng.pick(words));
    for _ in 0..6 {
        for _ in 0..4 + rng.below(3) {
            let length = 8 + rng.below(7);
            let sentence: Vec<&str> = (0..length).map(|_| rng.pick(words)).collect();
            let sentence = sentence.join(" ");
            let mut chars = sentence.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
            text.push(first);
            text.push_str(chars.as_str());
            text.push_str(". ");
        }
        text.push_str("\n\n");
    }
    text
}

/// A search question: two to four words of the documents, so nearly every one is new; one
/// in ten is one of ten popular questions, which the cache may answer.
fn question(rng: &mut Rng, words: &[&str]) -> String {
    if rng.below(10) == 0 {
        let i = rng.below(10);
        return format!("{} {}", words[i], words[i + 10]);
    }
    let count = 2 + rng.below(3);
    (0..count).map(|_| rng.pick(words)).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// Figures.

/// The nearest-rank percentile `p` (0..=100) of samples sorted ascending.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Serialize, Debug, PartialEq)]
struct Summary {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summary(samples: &[f64]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        count: sorted.len(),
        p50: percentile(&sorted, 50.0)?,
        p90: percentile(&sorted, 90.0)?,
        p99: percentile(&sorted, 99.0)?,
        max: *sorted.last()?,
    })
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    searches: u64,
    search_ms: Vec<f64>,
    cache_hits: u64,
    sessions: u64,
    chats: u64,
    chat_first_ms: Vec<f64>,
    chat_done_ms: Vec<f64>,
    uploads: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, what: &str, fail: &Fail) {
        *self.errors.entry(format!("{what}: {}", fail.kind())).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.searches += other.searches;
        self.search_ms.extend(other.search_ms);
        self.cache_hits += other.cache_hits;
        self.sessions += other.sessions;
        self.chats += other.chats;
        self.chat_first_ms.extend(other.chat_first_ms);
        self.chat_done_ms.extend(other.chat_done_ms);
        self.uploads += other.uploads;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    fn requests(&self) -> u64 {
        self.searches + self.sessions + self.chats + self.uploads
    }
}

/// Counters the progress lines read while the clients run.
#[derive(Default)]
struct Live {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Live {
    fn count(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A pause after a failure, so that a dead service is not hammered in a tight loop.
fn back_off() {
    std::thread::sleep(Duration::from_millis(200));
}

fn search_client(api: &Api, kb: &str, seed: u64, pause: Duration, until: Instant, live: &Live) -> Tally {
    let (words, mut rng, mut tally) = (words(), Rng::new(seed), Tally::default());
    // Clients start spread over one pause, not all at once.
    think(&mut rng, pause, until);
    while Instant::now() < until {
        let body = json!({ "query": question(&mut rng, &words), "knowledge_base_ids": [kb] });
        let started = Instant::now();
        let answer = api.call("POST", "/api/v1/knowledge-search", Some(&body));
        let elapsed = millis(started.elapsed());
        tally.searches += 1;
        match answer.and_then(|a| search_cached(&a)) {
            Ok(cached) => {
                tally.search_ms.push(elapsed);
                tally.cache_hits += u64::from(cached);
                live.count(true);
            }
            Err(e) => {
                tally.error("search", &e);
                live.count(false);
                back_off();
            }
        }
        think(&mut rng, pause, until);
    }
    tally
}

fn chat_client(api: &Api, kb: &str, seed: u64, pause: Duration, until: Instant, live: &Live) -> Tally {
    let (words, mut rng, mut tally) = (words(), Rng::new(seed), Tally::default());
    think(&mut rng, pause, until);
    let mut session = None;
    while Instant::now() < until {
        let Some(id) = &session else {
            tally.sessions += 1;
            match api.call("POST", "/api/v1/sessions", Some(&json!({ "knowledge_base_id": kb }))) {
                Ok(answer) => match data_id(&answer) {
                    Some(id) => {
                        session = Some(id);
                        live.count(true);
                    }
                    None => {
                        tally.error("session", &Fail::Malformed("session answer without data.id".into()));
                        live.count(false);
                        back_off();
                    }
                },
                Err(e) => {
                    tally.error("session", &e);
                    live.count(false);
                    back_off();
                }
            }
            continue;
        };
        let query = format!("What do the notes say about {} and {}?", rng.pick(&words), rng.pick(&words));
        tally.chats += 1;
        match ask(api, id, &query) {
            Ok((first, done)) => {
                tally.chat_first_ms.push(first);
                tally.chat_done_ms.push(done);
                live.count(true);
            }
            Err(e) => {
                tally.error("chat", &e);
                live.count(false);
                back_off();
            }
        }
        think(&mut rng, pause, until);
    }
    tally
}

/// What the ingest during the load did.
#[derive(Default)]
struct Ingested {
    tally: Tally,
    ids: Vec<String>,
    completed_in_load: usize,
}

/// Uploads a new document every `every` until `until`, then counts those fully indexed.
fn ingest_client(api: &Api, kb: &str, first: usize, every: Duration, until: Instant, live: &Live) -> Ingested {
    let words = words();
    let mut out = Ingested::default();
    let mut next = Instant::now();
    let mut n = first;
    while next < until {
        out.tally.uploads += 1;
        match api.upload(kb, &format!("load-{n}.md"), &document(n, &words)) {
            Ok(id) => {
                out.ids.push(id);
                live.count(true);
            }
            Err(e) => {
                out.tally.error("upload", &e);
                live.count(false);
            }
        }
        n += 1;
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(until.saturating_duration_since(Instant::now())));
        }
    }
    out.completed_in_load = out
        .ids
        .iter()
        .filter(|id| matches!(api.document_state(id), Ok((p, v)) if p == "completed" && v == "completed"))
        .count();
    out
}

/// Where a document stands in its ingest.
#[derive(Debug, PartialEq)]
enum Progress {
    Pending,
    Completed,
    Failed(String),
}

fn progress(parse: &str, vector: &str) -> Progress {
    match (parse, vector) {
        ("failed", _) => Progress::Failed("parse failed".into()),
        (_, "failed") => Progress::Failed("vectors failed".into()),
        ("completed", "completed") => Progress::Completed,
        _ => Progress::Pending,
    }
}

/// Polls the documents until each is indexed or failed, or `timeout` passes; the failed
/// ones with why, and the ones still pending.
fn wait_indexed(api: &Api, ids: &[String], timeout: Duration, what: &str) -> Result<(Vec<String>, usize)> {
    let mut pending: HashSet<&String> = ids.iter().collect();
    let mut failed = Vec::new();
    let total = ids.len();
    let mut last_said = Instant::now();
    let waited = weknora_operator::host::runtime()?.block_on(poll(what, timeout, Duration::from_millis(500), || {
        let mut still = HashSet::new();
        for id in pending.iter().copied() {
            match api.document_state(id) {
                Ok((parse, vector)) => match progress(&parse, &vector) {
                    Progress::Completed => {}
                    Progress::Failed(why) => failed.push(format!("{id}: {why}")),
                    Progress::Pending => {
                        still.insert(id);
                    }
                },
                // A failed status read is not the document's failure: ask again.
                Err(_) => {
                    still.insert(id);
                }
            }
        }
        pending = still;
        if last_said.elapsed() >= Duration::from_secs(10) {
            eprintln!("==> bench load: {} of {total} documents indexed", total - pending.len() - failed.len());
            last_said = Instant::now();
        }
        let done = pending.is_empty();
        async move { Ok(done.then_some(())) }
    }));
    match waited {
        Ok(()) => Ok((failed, 0)),
        Err(e) if e.is::<weknora_operator::poll::TimedOut>() => Ok((failed, pending.len())),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Memory.

/// A container's memory in use as `docker stats` shows it: without the inactive page
/// cache (cgroup v2's `inactive_file`, v1's `total_inactive_file`).
fn memory_used(usage: u64, stats: Option<&HashMap<String, u64>>) -> u64 {
    let cache = stats.and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file"))).copied();
    usage.saturating_sub(cache.unwrap_or(0))
}

#[derive(Serialize, Debug, Clone)]
struct ServiceMemory {
    service: String,
    peak_mib: f64,
    /// None: the container has no limit.
    limit_mib: Option<f64>,
    percent: Option<f64>,
    samples: usize,
    restarts: i64,
    oom_killed: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Samples every container of the project each second (Docker's stats stream, one answer a
/// second per container) until `stop`, then reads each one's limit, restarts and OOM kills.
async fn sample_memory(project: &str, stop: &AtomicBool) -> Result<Vec<ServiceMemory>> {
    use bollard::query_parameters::StatsOptionsBuilder;
    use futures_util::StreamExt;
    let docker = weknora_operator::docker::connect_for_transfers().await?;
    let containers = weknora_operator::containers::containers(&docker, project).await?;
    if containers.is_empty() {
        bail!("project {project} has no containers");
    }
    let streams = containers.iter().enumerate().map(|(i, c)| {
        let options = StatsOptionsBuilder::default().stream(true).build();
        docker.stats(&c.id, Some(options)).map(move |answer| (i, answer)).boxed()
    });
    let mut samples = futures_util::stream::select_all(streams);
    let mut peaks: Vec<(u64, usize)> = vec![(0, 0); containers.len()];
    while !stop.load(Ordering::Relaxed) {
        // A wait bounded so that `stop` is seen even when no container answers.
        let Ok(next) = tokio::time::timeout(Duration::from_millis(500), samples.next()).await else { continue };
        let Some((i, answer)) = next else { break };
        let Some(usage) = answer.ok().and_then(|s| s.memory_stats).and_then(|m| Some((m.usage?, m.stats))) else {
            continue;
        };
        peaks[i].0 = peaks[i].0.max(memory_used(usage.0, usage.1.as_ref()));
        peaks[i].1 += 1;
    }
    drop(samples);
    let mut out = Vec::new();
    for (c, (peak, samples)) in containers.iter().zip(peaks) {
        let inspect = docker.inspect_container(&c.id, None).await?;
        let limit = inspect.host_config.as_ref().and_then(|h| h.memory).filter(|&m| m > 0).map(|m| m as f64 / MIB);
        let peak_mib = peak as f64 / MIB;
        out.push(ServiceMemory {
            service: c.service.clone(),
            peak_mib,
            limit_mib: limit,
            percent: limit.map(|l| peak_mib / l * 100.0),
            samples,
            restarts: inspect.restart_count.unwrap_or(0),
            oom_killed: inspect.state.and_then(|s| s.oom_killed).unwrap_or(false),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The report.

#[derive(Serialize)]
struct Requests {
    total: u64,
    per_second: f64,
    search: u64,
    search_per_second: f64,
    chat: u64,
    sessions: u64,
    uploads: u64,
}

#[derive(Serialize)]
struct Ingest {
    uploaded: usize,
    completed_in_load: usize,
    /// Seconds after the load until every document uploaded during it was indexed.
    all_indexed_after_s: Option<f64>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Goal {
    goal: String,
    pass: bool,
    detail: String,
}

/// What the figures were measured on: the stack shares the machine with this program's
/// clients, and with whatever else runs there.
#[derive(Serialize)]
struct Machine {
    cpus: usize,
    /// The 1-minute load average when the load began (Linux).
    load_average: Option<f64>,
}

impl Machine {
    fn now() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| load_average_of(&s));
        Machine { cpus, load_average: load }
    }
}

/// The 1-minute figure of /proc/loadavg.
fn load_average_of(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    seconds: f64,
    clients: usize,
    search_clients: usize,
    chat_clients: usize,
    think_ms: u64,
    documents_seeded: usize,
    requests: Requests,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    search_ms: Option<Summary>,
    cache_hits: u64,
    chat_first_frame_ms: Option<Summary>,
    chat_done_ms: Option<Summary>,
    ingest: Ingest,
    memory: Vec<ServiceMemory>,
    goals: Vec<Goal>,
}

/// The three goals: no error, the searches' p99 at most `p99_goal`, and every service's
/// peak under its limit (and none killed for memory).
fn goals(
    errors: &BTreeMap<String, u64>,
    search: Option<&Summary>,
    p99_goal: f64,
    memory: &[ServiceMemory],
) -> Vec<Goal> {
    let total: u64 = errors.values().sum();
    let mut out = vec![Goal {
        goal: "0 errors".into(),
        pass: total == 0,
        detail: if total == 0 {
            "none".into()
        } else {
            errors.iter().map(|(k, n)| format!("{n} × {k}")).collect::<Vec<_>>().join(", ")
        },
    }];
    out.push(match search {
        Some(s) => Goal {
            goal: format!("search p99 <= {p99_goal:.0} ms"),
            pass: s.p99 <= p99_goal,
            detail: format!("p99 {:.1} ms", s.p99),
        },
        None => {
            Goal { goal: format!("search p99 <= {p99_goal:.0} ms"), pass: false, detail: "no search succeeded".into() }
        }
    });
    let over: Vec<String> = memory
        .iter()
        .filter(|m| m.oom_killed || m.limit_mib.is_some_and(|l| m.peak_mib >= l))
        .map(|m| {
            let limit = m.limit_mib.map_or("-".into(), |l| format!("{l:.0}"));
            let oom = if m.oom_killed { ", killed for memory" } else { "" };
            format!("{} {:.0} of {limit} MiB{oom}", m.service, m.peak_mib)
        })
        .collect();
    let unsampled: Vec<&str> = memory.iter().filter(|m| m.samples == 0).map(|m| m.service.as_str()).collect();
    out.push(Goal {
        goal: "every service's peak memory under its limit".into(),
        pass: over.is_empty() && unsampled.is_empty() && !memory.is_empty(),
        detail: if memory.is_empty() {
            "no memory samples".into()
        } else if !over.is_empty() {
            over.join(", ")
        } else if !unsampled.is_empty() {
            format!("never sampled: {}", unsampled.join(", "))
        } else {
            let highest =
                memory.iter().filter_map(|m| Some((m.percent?, &m.service))).max_by(|a, b| a.0.total_cmp(&b.0));
            highest.map_or("no limits set".into(), |(p, s)| format!("highest {s} at {p:.1} %"))
        },
    });
    out
}

fn print_table(r: &Report) {
    println!(
        "load: {} s, {} clients ({} searching, {} chatting, {} ms mean pause) through the frontend, {} documents \
         seeded",
        fmt1(r.seconds),
        r.clients,
        r.search_clients,
        r.chat_clients,
        r.think_ms,
        r.documents_seeded
    );
    let load = r.machine.load_average.map_or("-".into(), fmt1);
    println!("machine: {} CPUs, load average {load} when the load began", r.machine.cpus);
    let q = &r.requests;
    println!(
        "requests: {} ({:.1}/s): search {} ({:.1}/s), chat {}, sessions {}, uploads {}",
        q.total, q.per_second, q.search, q.search_per_second, q.chat, q.sessions, q.uploads
    );
    println!("errors: {}", r.errors);
    for (kind, n) in &r.errors_by_kind {
        println!("  {n:>6}  {kind}");
    }
    println!();
    println!("{:<18} {:>7} {:>9} {:>9} {:>9} {:>9}", "LATENCY (ms)", "COUNT", "p50", "p90", "p99", "MAX");
    for (name, s) in
        [("search", &r.search_ms), ("chat first frame", &r.chat_first_frame_ms), ("chat done", &r.chat_done_ms)]
    {
        match s {
            Some(s) => println!(
                "{name:<18} {:>7} {:>9} {:>9} {:>9} {:>9}",
                s.count,
                fmt1(s.p50),
                fmt1(s.p90),
                fmt1(s.p99),
                fmt1(s.max)
            ),
            None => println!("{name:<18} {:>7} {:>9} {:>9} {:>9} {:>9}", 0, "-", "-", "-", "-"),
        }
    }
    let hit_rate = if q.search > 0 { r.cache_hits as f64 / q.search as f64 * 100.0 } else { 0.0 };
    println!("search cache hits: {} ({hit_rate:.1} % of searches)", r.cache_hits);
    println!("ingest during the load: {}", ingest_line(&r.ingest));
    println!();
    println!("{:<10} {:>10} {:>10} {:>7} {:>8} {:>9}", "SERVICE", "PEAK MiB", "LIMIT MiB", "%", "SAMPLES", "RESTARTS");
    for m in &r.memory {
        println!(
            "{:<10} {:>10} {:>10} {:>7} {:>8} {:>9}{}",
            m.service,
            fmt1(m.peak_mib),
            m.limit_mib.map_or("-".into(), |l| format!("{l:.0}")),
            m.percent.map_or("-".into(), fmt1),
            m.samples,
            m.restarts,
            if m.oom_killed { "  OOM-killed" } else { "" }
        );
    }
    println!();
    println!("goals:");
    for g in &r.goals {
        println!("  {}  {} ({})", if g.pass { "PASS" } else { "FAIL" }, g.goal, g.detail);
    }
}

fn ingest_line(i: &Ingest) -> String {
    if i.uploaded == 0 {
        return "none".into();
    }
    if i.completed_in_load == i.uploaded {
        return format!("{} uploaded, all indexed within it", i.uploaded);
    }
    let rest = i.all_indexed_after_s.map_or("the rest not indexed".into(), |s| format!("the rest {s:.1} s after it"));
    format!("{} uploaded, {} indexed within it, {rest}", i.uploaded, i.completed_in_load)
}

fn fmt1(x: f64) -> String {
    format!("{x:.1}")
}

// ---------------------------------------------------------------------------------------
// The run.

/// A thread's result, a panic in it turned into an error.
fn joined<T>(handle: JoinHandle<T>, what: &str) -> Result<T> {
    handle.join().map_err(|_| anyhow!("the {what} thread panicked"))
}

impl LoadBench {
    pub fn run(self) -> Result<ExitCode> {
        if self.clients == 0 || self.seconds == 0 || self.documents == 0 {
            bail!("--clients, --seconds and --documents must be at least 1");
        }
        if !(self.ingest_every >= 0.0 && self.ingest_every.is_finite()) {
            bail!("--ingest-every must be 0 or more seconds");
        }
        let mut stack = Stack::new()?;
        stack.start()?;
        let api = Api { port: stack.front, key: stack.admin_key()?.into() };

        // Memory from the seeding to the end of the load.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (project, stop) = (stack.project.clone(), stop.clone());
            std::thread::spawn(move || -> Result<Vec<ServiceMemory>> {
                weknora_operator::host::runtime()?.block_on(sample_memory(&project, &stop))
            })
        };
        // The sampler stops with the run, whatever ends it.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stopper = StopOnDrop(stop.clone());

        let kb = self.seed(&api)?;
        let report = self.load(&api, &kb, &stop, sampler)?;
        drop(stopper);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_table(&report);
        }
        let missed: Vec<String> =
            report.goals.iter().filter(|g| !g.pass).map(|g| format!("{} ({})", g.goal, g.detail)).collect();
        drop(stack);
        if missed.is_empty() {
            eprintln!("bench load: every goal met");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("bench load: goals missed: {}", missed.join("; "));
            Ok(ExitCode::FAILURE)
        }
    }

    /// Creates the knowledge base and uploads the documents; returns once each is indexed.
    fn seed(&self, api: &Api) -> Result<String> {
        let kb = api
            .call("POST", "/api/v1/knowledge-bases", Some(&json!({ "name": "bench-load" })))
            .map_err(|e| anyhow!("creating the knowledge base: {e}"))?;
        let kb = data_id(&kb).context("the knowledge base answer has no data.id")?;
        eprintln!("==> bench load: uploading {} documents", self.documents);
        let words = words();
        let started = Instant::now();
        let mut ids = Vec::new();
        for n in 0..self.documents {
            let id = api
                .upload(&kb, &format!("seed-{n}.md"), &document(n, &words))
                .map_err(|e| anyhow!("uploading document {n}: {e}"))?;
            ids.push(id);
        }
        let (failed, pending) = wait_indexed(api, &ids, Duration::from_secs(900), "the seeded documents")?;
        if !failed.is_empty() {
            bail!("seeded documents failed: {}", failed.join(", "));
        }
        if pending > 0 {
            bail!("{pending} seeded documents were not indexed after 900 s");
        }
        eprintln!("==> bench load: {} documents indexed in {:.1} s", ids.len(), started.elapsed().as_secs_f64());
        Ok(kb)
    }

    fn load(
        &self,
        api: &Api,
        kb: &str,
        stop: &AtomicBool,
        sampler: JoinHandle<Result<Vec<ServiceMemory>>>,
    ) -> Result<Report> {
        let chat_clients = self.clients.checked_div(self.chat_share).unwrap_or(0);
        let search_clients = self.clients - chat_clients;
        let pause = Duration::from_millis(self.think_ms);
        eprintln!(
            "==> bench load: {} s of load: {search_clients} clients searching, {chat_clients} chatting, \
             {} ms between an answer and the next question{}",
            self.seconds,
            self.think_ms,
            if self.ingest_every > 0.0 { format!(", one upload every {} s", self.ingest_every) } else { String::new() }
        );
        let machine = Machine::now();
        let live = Arc::new(Live::default());
        let started = Instant::now();
        let until = started + Duration::from_secs(self.seconds);
        let mut clients = Vec::new();
        for i in 0..self.clients {
            let (api, kb, live) = (api.clone(), kb.to_string(), live.clone());
            let seed = std::process::id() as u64 * 1000 + i as u64;
            let chats = i < chat_clients;
            clients.push(std::thread::spawn(move || {
                if chats {
                    chat_client(&api, &kb, seed, pause, until, &live)
                } else {
                    search_client(&api, &kb, seed, pause, until, &live)
                }
            }));
        }
        let ingest = (self.ingest_every > 0.0).then(|| {
            let (api, kb, live) = (api.clone(), kb.to_string(), live.clone());
            let (first, every) = (self.documents, Duration::from_secs_f64(self.ingest_every));
            std::thread::spawn(move || ingest_client(&api, &kb, first, every, until, &live))
        });
        let mut said = Instant::now();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(250).min(until.saturating_duration_since(Instant::now())));
            if said.elapsed() >= Duration::from_secs(10) {
                eprintln!(
                    "==> bench load: {:.0} s, {} requests, {} errors",
                    started.elapsed().as_secs_f64(),
                    live.requests.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                );
                said = Instant::now();
            }
        }
        let mut tally = Tally::default();
        for client in clients {
            tally.merge(joined(client, "client")?);
        }
        let ingested = match ingest {
            Some(handle) => joined(handle, "ingest")?,
            None => Ingested::default(),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let ended = Instant::now();
        tally.merge(ingested.tally);
        let mut all_indexed_after_s = None;
        if !ingested.ids.is_empty() {
            eprintln!("==> bench load: waiting for the documents uploaded during the load");
            let (failed, pending) =
                wait_indexed(api, &ingested.ids, Duration::from_secs(300), "the documents uploaded during the load")?;
            for why in failed {
                let kind = why.split_once(": ").map_or(why.as_str(), |(_, w)| w);
                *tally.errors.entry(format!("ingest: {kind}")).or_default() += 1;
            }
            if pending > 0 {
                *tally.errors.entry("ingest: not indexed 300 s after the load".into()).or_default() += pending as u64;
            } else {
                all_indexed_after_s = Some(ended.elapsed().as_secs_f64());
            }
        }
        stop.store(true, Ordering::Relaxed);
        let memory = joined(sampler, "memory sampler")??;

        let search_ms = summary(&tally.search_ms);
        let goals = goals(&tally.errors, search_ms.as_ref(), self.search_p99_ms, &memory);
        Ok(Report {
            machine,
            seconds: elapsed,
            clients: self.clients,
            think_ms: self.think_ms,
            search_clients,
            chat_clients,
            documents_seeded: self.documents,
            requests: Requests {
                total: tally.requests(),
                per_second: tally.requests() as f64 / elapsed,
                search: tally.searches,
                search_per_second: tally.searches as f64 / elapsed,
                chat: tally.chats,
                sessions: tally.sessions,
                uploads: tally.uploads,
            },
            errors: tally.errors.values().sum(),
            errors_by_kind: tally.errors,
            search_ms,
            cache_hits: tally.cache_hits,
            chat_first_frame_ms: summary(&tally.chat_first_ms),
            chat_done_ms: summary(&tally.chat_done_ms),
            ingest: Ingest {
                uploaded: ingested.ids.len(),
                completed_in_load: ingested.completed_in_load,
                all_indexed_after_s,
            },
            memory,
            goals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_average_their_mean() {
        let mut rng = Rng::new(7);
        let mean = Duration::from_millis(1000);
        let pauses: Vec<Duration> = (0..20_000).map(|_| rng.pause(mean)).collect();
        let average = pauses.iter().sum::<Duration>().as_secs_f64() / pauses.len() as f64;
        assert!((0.95..1.05).contains(&average), "{average}");
        assert!(pauses.iter().all(|p| *p <= mean * 10));
        assert_eq!(rng.pause(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 90.0), Some(90.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&hundred, 100.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 50.0), Some(5.0));
    }

    #[test]
    fn summary_sorts_its_samples() {
        assert_eq!(summary(&[]), None);
        let s = summary(&[30.0, 10.0, 20.0, 40.0]).unwrap();
        assert_eq!(s, Summary { count: 4, p50: 20.0, p90: 40.0, p99: 40.0, max: 40.0 });
    }

    #[test]
    fn reads_a_head_and_a_body_by_length() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}";
        let mut r = &raw[..];
        let head = read_head(&mut r).unwrap();
        assert_eq!(head, Head { status: 201, chunked: false, length: Some(11) });
        assert_eq!(read_body(&mut r, &head).unwrap(), b"{\"a\": true}");
        let mut r = &raw[..];
        assert_eq!(json_answer(&mut r).unwrap(), json!({"a": true}));
    }

    #[test]
    fn decodes_a_chunked_body() {
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n6;ext=1\r\n: 1}\r\n\r\n0\r\n\r\n";
        let mut r = &raw[..];
        let head = read_head(&mut r).unwrap();
        assert!(head.chunked);
        assert_eq!(read_body(&mut r, &head).unwrap(), b"{\"a\": 1}\r\n");
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        let mut r = &raw[..];
        let head = read_head(&mut r).unwrap();
        assert_eq!(read_body(&mut r, &head).unwrap(), b"all of it");
    }

    #[test]
    fn tells_failures_apart() {
        let mut r = &b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad"[..];
        let e = json_answer(&mut r).unwrap_err();
        assert_eq!(e.kind(), "HTTP 502");
        assert_eq!(e.to_string(), "HTTP 502: bad");
        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnot"[..];
        assert_eq!(json_answer(&mut r).unwrap_err().kind(), "malformed answer (not JSON)");
        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{}"[..];
        assert!(matches!(json_answer(&mut r), Err(Fail::Malformed(_))));
        let mut r = &b""[..];
        assert!(matches!(read_head(&mut r), Err(Fail::Malformed(_))));
        let mut r = &b"SSH-2.0-OpenSSH\r\n\r\n"[..];
        assert!(matches!(read_head(&mut r), Err(Fail::Malformed(_))));
        let mut r = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..];
        let head = read_head(&mut r).unwrap();
        assert!(matches!(read_body(&mut r, &head), Err(Fail::Malformed(_))));
        assert_eq!(
            Fail::Connect(std::io::ErrorKind::ConnectionRefused).kind(),
            "connection failed (connection refused)"
        );
    }

    #[test]
    fn search_answers_say_whether_they_were_cached() {
        assert!(!search_cached(&json!({"success": true, "data": [], "cached": false})).unwrap());
        assert!(search_cached(&json!({"success": true, "data": [{"id": 1}], "cached": true})).unwrap());
        assert!(search_cached(&json!({"success": true, "data": []})).is_err());
        assert!(search_cached(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn server_sent_events_split_anywhere() {
        let stream = b"event: message\r\ndata: {\"done\":false}\r\n\r\n: keep-alive\n\nevent: message\ndata:{\"a\":\ndata: 1}\n\n";
        // Byte by byte gives the same events as all at once.
        let mut sse = Sse::default();
        let one_by_one: Vec<String> = stream.iter().flat_map(|b| sse.push(&[*b])).collect();
        let mut sse = Sse::default();
        assert_eq!(sse.push(stream), one_by_one);
        assert_eq!(one_by_one, ["{\"done\":false}", "{\"a\":\n1}"]);
        // An event is only complete at its blank line.
        let mut sse = Sse::default();
        assert!(sse.push(b"data: {}\n").is_empty());
        assert_eq!(sse.push(b"\n"), ["{}"]);
    }

    #[test]
    fn chat_frames_end_on_done_or_error() {
        assert!(!frame_ends(r#"{"response_type":"references","done":false}"#).unwrap());
        assert!(frame_ends(r#"{"response_type":"answer","done":true}"#).unwrap());
        let e = frame_ends(r#"{"response_type":"error","done":true,"data":{"code":"model_timeout"}}"#).unwrap_err();
        assert_eq!(e.kind(), "malformed answer (chat error frame: model_timeout)");
        assert!(frame_ends("not json").is_err());
    }

    #[test]
    fn documents_and_questions_use_the_vocabulary() {
        let words = words();
        let vocabulary: HashSet<&str> = words.iter().copied().collect();
        let doc = document(3, &words);
        assert_eq!(doc, document(3, &words), "documents are reproducible");
        assert_ne!(doc, document(4, &words));
        assert!(doc.starts_with("# Note 3: "));
        let body = doc.split_once("\n\n").unwrap().1;
        for w in body.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
            assert!(vocabulary.contains(w.to_lowercase().as_str()), "{w}");
        }
        let mut rng = Rng::new(7);
        let questions: Vec<String> = (0..200).map(|_| question(&mut rng, &words)).collect();
        assert!(questions.iter().flat_map(|q| q.split(' ')).all(|w| vocabulary.contains(w)));
        let distinct: HashSet<&String> = questions.iter().collect();
        assert!(distinct.len() > 150, "questions repeat too often: {}", distinct.len());
    }

    #[test]
    fn multipart_has_one_file_field() {
        let body = String::from_utf8(multipart("XYZ", "a.md", "hello")).unwrap();
        assert!(body.starts_with("--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.md\"\r\n"));
        assert!(body.ends_with("\r\n\r\nhello\r\n--XYZ--\r\n"));
    }

    #[test]
    fn reads_the_load_average() {
        assert_eq!(load_average_of("4.06 4.37 4.79 3/612 27309\n"), Some(4.06));
        assert_eq!(load_average_of(""), None);
    }

    #[test]
    fn says_how_the_ingest_went() {
        let ingest = |uploaded, completed_in_load, all_indexed_after_s| Ingest {
            uploaded,
            completed_in_load,
            all_indexed_after_s,
        };
        assert_eq!(ingest_line(&ingest(0, 0, None)), "none");
        assert_eq!(ingest_line(&ingest(10, 10, Some(0.0))), "10 uploaded, all indexed within it");
        assert_eq!(
            ingest_line(&ingest(10, 8, Some(3.25))),
            "10 uploaded, 8 indexed within it, the rest 3.2 s after it"
        );
        assert_eq!(ingest_line(&ingest(10, 8, None)), "10 uploaded, 8 indexed within it, the rest not indexed");
    }

    #[test]
    fn reads_the_admin_key() {
        assert_eq!(admin_key_of("A=1\nADMIN_API_KEY=abc123\nB=2\n").as_deref(), Some("abc123"));
        assert_eq!(admin_key_of("ADMIN_API_KEY=\n"), None);
        assert_eq!(admin_key_of("# nothing\n"), None);
    }

    #[test]
    fn memory_in_use_leaves_out_the_inactive_cache() {
        let v2 = HashMap::from([("inactive_file".to_string(), 300), ("anon".to_string(), 700)]);
        assert_eq!(memory_used(1000, Some(&v2)), 700);
        let v1 = HashMap::from([("total_inactive_file".to_string(), 100)]);
        assert_eq!(memory_used(1000, Some(&v1)), 900);
        assert_eq!(memory_used(1000, None), 1000);
        assert_eq!(memory_used(10, Some(&v2)), 0);
    }

    #[test]
    fn document_progress() {
        assert_eq!(progress("completed", "completed"), Progress::Completed);
        assert_eq!(progress("completed", "processing"), Progress::Pending);
        assert_eq!(progress("pending", "pending"), Progress::Pending);
        assert_eq!(progress("failed", "none"), Progress::Failed("parse failed".into()));
        assert_eq!(progress("completed", "failed"), Progress::Failed("vectors failed".into()));
    }

    fn service(name: &str, peak: f64, limit: Option<f64>) -> ServiceMemory {
        ServiceMemory {
            service: name.into(),
            peak_mib: peak,
            limit_mib: limit,
            percent: limit.map(|l| peak / l * 100.0),
            samples: 10,
            restarts: 0,
            oom_killed: false,
        }
    }

    #[test]
    fn goals_pass_and_fail() {
        let fast = Summary { count: 100, p50: 20.0, p90: 40.0, p99: 150.0, max: 300.0 };
        let slow = Summary { count: 100, p50: 20.0, p90: 40.0, p99: 250.0, max: 300.0 };
        let memory = [service("app", 100.0, Some(2048.0)), service("redis", 10.0, None)];
        let none = BTreeMap::new();
        let all = goals(&none, Some(&fast), 200.0, &memory);
        assert!(all.iter().all(|g| g.pass), "{all:?}");
        assert_eq!(all[2].detail, "highest app at 4.9 %");

        let errors = BTreeMap::from([("search: HTTP 502".to_string(), 3)]);
        let g = goals(&errors, Some(&slow), 200.0, &memory);
        assert_eq!((g[0].pass, g[0].detail.as_str()), (false, "3 × search: HTTP 502"));
        assert_eq!((g[1].pass, g[1].detail.as_str()), (false, "p99 250.0 ms"));
        assert!(!goals(&none, None, 200.0, &memory)[1].pass);

        let over = [service("app", 2048.0, Some(2048.0))];
        let g = goals(&none, Some(&fast), 200.0, &over);
        assert_eq!((g[2].pass, g[2].detail.as_str()), (false, "app 2048 of 2048 MiB"));
        let mut killed = service("docreader", 10.0, Some(4096.0));
        killed.oom_killed = true;
        assert!(!goals(&none, Some(&fast), 200.0, &[killed])[2].pass);
        assert!(!goals(&none, Some(&fast), 200.0, &[])[2].pass);
    }
}
