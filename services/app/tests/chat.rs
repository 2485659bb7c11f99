//! Chat: sessions, streamed answers with citations, models, stop, timeouts and failures,
//! against the real app, docreader, PostgreSQL and Redis. The one stand-in is the language
//! model, which no package or registry here provides: `FakeModel` is a streaming server on
//! loopback speaking OpenAI's protocol (`/v1/chat/completions`, SSE) or Ollama's
//! (`/api/chat`, JSON lines), whose every answer follows a script the test gives it.

mod support;
mod wire;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use weknora_testkit::{Pg, Redis, free_port};

// ---------------------------------------------------------------------------------------
// The stand-in language model.

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Ollama,
}

/// One step of a scripted answer.
enum Step {
    Piece(&'static str),
    /// Waits until the test says go on.
    Hold(Receiver<()>),
    /// Ends the answer properly ([DONE], or `done: true`).
    End,
    /// Closes the connection in the middle of the answer.
    Break,
    /// Sends nothing more; the connection stays open until the client closes it.
    Stall,
    /// Sends pieces forever, until writing fails because the client closed.
    Endless,
    /// Answers this status and body instead of a stream.
    Status(u16, &'static str),
}

/// What the model was sent.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: String,
    body: Value,
}

struct FakeModel {
    port: u16,
    scripts: Arc<Mutex<VecDeque<Vec<Step>>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Told each time the app closes a connection to the model.
    closed: Receiver<()>,
}

impl FakeModel {
    fn start(wire: Wire) -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let scripts: Arc<Mutex<VecDeque<Vec<Step>>>> = Default::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let (closed_tx, closed) = channel();
        let (s, r) = (scripts.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let script =
                    s.lock().unwrap().pop_front().unwrap_or_else(|| vec![Step::Piece("(unscripted)"), Step::End]);
                let (r, closed_tx) = (r.clone(), closed_tx.clone());
                std::thread::spawn(move || serve(conn, wire, script, &r, &closed_tx));
            }
        });
        FakeModel { port, scripts, seen, closed }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next answer's script.
    fn script(&self, steps: Vec<Step>) {
        self.scripts.lock().unwrap().push_back(steps);
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the app has closed a connection to the model.
    fn wait_closed(&self, what: &str) {
        self.closed
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{what}: the model's connection was left open"));
    }
}

/// One piece of an answer on the wire.
fn piece(wire: Wire, text: &str) -> String {
    match wire {
        Wire::OpenAi => format!("data: {}\n\n", json!({"choices": [{"delta": {"content": text}}]})),
        Wire::Ollama => format!("{}\n", json!({"message": {"role": "assistant", "content": text}, "done": false})),
    }
}

fn serve(mut conn: TcpStream, wire: Wire, script: Vec<Step>, seen: &Mutex<Vec<Seen>>, closed: &Sender<()>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let (mut length, mut authorization) = (0, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => authorization = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
    seen.lock().unwrap().push(Seen { path, authorization, body: serde_json::from_slice(&body).unwrap_or(Value::Null) });

    let mut steps = script.into_iter().peekable();
    if let Some(Step::Status(code, text)) = steps.peek() {
        let _ =
            write!(conn, "HTTP/1.1 {code} Failed\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        return;
    }
    let kind = if wire == Wire::OpenAi { "text/event-stream" } else { "application/x-ndjson" };
    let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nConnection: close\r\n\r\n");
    for step in steps {
        let written = match step {
            Step::Piece(text) => conn.write_all(piece(wire, text).as_bytes()),
            Step::Hold(go) => {
                let _ = go.recv_timeout(Duration::from_secs(60));
                Ok(())
            }
            Step::End => match wire {
                Wire::OpenAi => conn.write_all(b"data: [DONE]\n\n"),
                Wire::Ollama => {
                    conn.write_all(b"{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true}\n")
                }
            },
            Step::Break => return,
            Step::Stall => break,
            Step::Endless => loop {
                if conn.write_all(piece(wire, " more").as_bytes()).is_err() {
                    let _ = closed.send(());
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            },
            Step::Status(..) => unreachable!("a status comes first"),
        };
        if written.is_err() {
            let _ = closed.send(());
            return;
        }
    }
    // Until the client closes its end.
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = [0u8; 256];
    loop {
        match reader.read(&mut rest) {
            Ok(0) => {
                let _ = closed.send(());
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client side: the app's stream of frames, read as it comes.

struct Frames {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub head: String,
}

impl Frames {
    /// `POST /api/v1/knowledge-chat/{session}`.
    fn ask(port: u16, key: &str, session: &str, body: &Value) -> Frames {
        Frames::request(port, key, "POST", &format!("/api/v1/knowledge-chat/{session}"), &body.to_string())
    }

    /// Upstream's continue-stream: `GET /api/v1/sessions/continue-stream/{session}?message_id=`.
    fn resume(port: u16, key: &str, session: &str, message: &str) -> Frames {
        Frames::request(
            port,
            key,
            "GET",
            &format!("/api/v1/sessions/continue-stream/{session}?message_id={message}"),
            "",
        )
    }

    /// A request as HTTP/1.0, so the answer is not chunked.
    fn request(port: u16, key: &str, method: &str, path: &str, body: &str) -> Frames {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: localhost\r\nX-API-Key: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Frames { reader, status, head }
    }

    /// The rest of a JSON error answer.
    fn error(mut self) -> Value {
        let mut body = String::new();
        self.reader.read_to_string(&mut body).unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// The next frame (`event: message`), or None at the end of the stream.
    fn next(&mut self) -> Option<Value> {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue; // a keep-alive comment's end
                }
                assert_eq!(event, "message", "every frame is `event: message`");
                let frame: Value = serde_json::from_str(&data).unwrap();
                wire::decode::<wire::StreamResponse>(&frame); // as upstream's SDK reads it
                return Some(frame);
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }

    /// The next frame of this `response_type`, past the others.
    fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().unwrap_or_else(|| panic!("the stream ended before a `{kind}` frame"));
            if frame["response_type"] == kind {
                return frame;
            }
        }
    }

    /// Every frame to the end.
    fn all(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.next() {
            out.push(f);
        }
        out
    }
}

/// The text of the answer frames.
fn answer_text(frames: &[Value]) -> String {
    frames.iter().filter(|f| f["response_type"] == "answer").filter_map(|f| f["content"].as_str()).collect()
}

/// The frames' `response_type`s in order, runs of answer pieces as one `answer*`.
fn kinds(frames: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = Vec::new();
    for f in frames {
        let kind = f["response_type"].as_str().unwrap();
        match kind {
            "answer" if f["done"] == true => kinds.push("answer(done)"),
            "answer" if kinds.last() == Some(&"answer*") => {}
            "answer" => kinds.push("answer*"),
            other => kinds.push(other),
        }
    }
    kinds
}

/// The references frame.
fn references(frames: &[Value]) -> &Value {
    frames.iter().find(|f| f["response_type"] == "references").expect("a references frame")
}

/// The frame that ended the answer: `answer` marked done, or `error`.
fn end(frames: &[Value]) -> &Value {
    let ended = |f: &&Value| f["done"] == true && (f["response_type"] == "answer" || f["response_type"] == "error");
    frames.iter().rfind(ended).expect("an answer's last frame")
}

// ---------------------------------------------------------------------------------------

struct Stack {
    _pg: Pg,
    _redis: Redis,
    _docreader: Proc,
    _files: tempfile::TempDir,
    log: tempfile::NamedTempFile,
    apps: Vec<Proc>,
    pg_url: String,
    redis_port: u16,
    env: Vec<(String, String)>,
}

/// Deletes `key` from the stack's Redis (as its protocol spells `DEL key`).
fn redis_del(stack: &Stack, key: &str) {
    let mut conn = TcpStream::connect(("127.0.0.1", stack.redis_port)).unwrap();
    write!(conn, "*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n", key.len()).unwrap();
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply).unwrap();
    assert_eq!(reply.trim_end(), ":1", "{key} was kept in Redis");
}

impl Stack {
    fn start() -> Stack {
        let pg = Pg::debian();
        let redis = Redis::start();
        let (docreader, docreader_port) = docreader();
        let files = tempfile::tempdir().unwrap();
        let mut env = admin_env(pg.port, &redis.addr(), docreader_port, files.path());
        env.push(("MODELS_ENCRYPTION_KEY".into(), "a-test-encryption-key-of-some-length".into()));
        env.push(("LOG_LEVEL".into(), "debug".into()));
        let pg_url = pg.url("postgres");
        let redis_port = redis.port;
        Stack {
            _pg: pg,
            _redis: redis,
            _docreader: docreader,
            _files: files,
            log: tempfile::NamedTempFile::new().unwrap(),
            apps: Vec::new(),
            pg_url,
            redis_port,
            env,
        }
    }

    /// Another app process on this database, with `extra` settings; every app logs to one file.
    fn app(&mut self, extra: &[(&str, String)]) -> u16 {
        let port = free_port();
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "WEKNORA__SERVER__PORT");
        env.push(("WEKNORA__SERVER__PORT".into(), port.to_string()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let child = Command::new(APP)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(self.log.reopen().unwrap()))
            .stderr(Stdio::from(self.log.reopen().unwrap()))
            .spawn()
            .unwrap();
        self.apps.push(Proc(child));
        wait_until("weknora-app", || healthcheck(port));
        port
    }
}

const ADMIN: [(&str, &str); 1] = [("X-API-Key", ADMIN_KEY)];

const DOC: &str = "# Backups\n\nThe nightly backup of the vault runs at 02:00 and a restore drill checks it every Friday.\n\n\
                   # Retention\n\nOffsite copies are kept for ninety days.\n";

/// A knowledge base with the document parsed; its id.
fn knowledge_base(port: u16) -> String {
    let path = create_kb(port, "ops");
    let (status, _, doc) = upload(port, &format!("{path}/knowledge/file"), ADMIN_KEY, "backups.md", DOC.as_bytes());
    assert!((200..300).contains(&status), "{doc}");
    let parsed = wait_parsed(port, ADMIN_KEY, doc["data"]["id"].as_str().unwrap());
    assert_eq!(parsed["parse_status"], "completed", "{parsed}");
    path.rsplit('/').next().unwrap().to_string()
}

fn session(port: u16, kb: &str) -> String {
    let (status, _, s) = call(port, "POST", "/api/v1/sessions", &ADMIN, Some(&json!({ "knowledge_base_id": kb })));
    assert_eq!(status, 201, "{s}");
    s["data"]["id"].as_str().unwrap().to_string()
}

fn messages(port: u16, session: &str) -> Vec<Value> {
    let (status, _, m) = get(port, &format!("/api/v1/sessions/{session}/messages"), &ADMIN);
    assert_eq!(status, 200, "{m}");
    m["data"].as_array().unwrap().clone()
}

fn model(port: u16, base_url: &str, provider: &str, key: &str) -> String {
    let body = json!({
        "name": "fake-chat", "type": "KnowledgeQA", "source": "remote", "description": "stand-in",
        "parameters": { "base_url": base_url, "api_key": key, "provider": provider },
    });
    let (status, _, m) = call(port, "POST", "/api/v1/models", &ADMIN, Some(&body));
    assert_eq!(status, 201, "{m}");
    m["data"]["id"].as_str().unwrap().to_string()
}

const KEY: &str = "sk-test-3f9a2c7e51d04b8a9e6f";

#[test]
fn answers_stream_with_references_first_from_fake_openai_and_ollama_models_and_fall_back_to_extractive() {
    let mut stack = Stack::start();
    let port = stack.app(&[]);
    let kb = knowledge_base(port);

    // No chat model at all: the extractive answer, cited, marked as such.
    let s = session(port, &kb);
    let frames = Frames::ask(port, ADMIN_KEY, &s, &json!({ "query": "When does the nightly backup run?" }));
    assert_eq!(frames.status, 200);
    assert!(
        frames.head.contains("text/event-stream") && frames.head.contains("x-accel-buffering: no"),
        "{}",
        frames.head
    );
    let frames = frames.all();
    // Upstream's frames in upstream's order; the first question names the session.
    assert_eq!(
        kinds(&frames),
        ["agent_query", "references", "session_title", "answer*", "answer(done)", "complete"],
        "{frames:?}"
    );
    let refs = references(&frames)["knowledge_references"].as_array().unwrap();
    assert!(refs[0]["content"].as_str().unwrap().contains("02:00"), "{refs:?}");
    for field in ["id", "knowledge_id", "chunk_index", "knowledge_title", "score", "match_type", "chunk_type"] {
        assert!(refs[0].get(field).is_some(), "references carry `{field}` as search hits do: {refs:?}");
    }
    let text = answer_text(&frames);
    assert!(
        text.starts_with("No chat model is configured") && text.contains("02:00") && text.contains("[1]"),
        "{text}"
    );
    let last = end(&frames);
    assert_eq!(
        (last["done"].as_bool(), last["data"]["answer_kind"].as_str()),
        (Some(true), Some("extractive")),
        "{last}"
    );
    assert_eq!(frames[3]["data"]["answer_kind"], "extractive", "{frames:?}");
    let complete = frames.last().unwrap();
    assert_eq!((complete["done"].as_bool(), complete["data"]["status"].as_str()), (Some(true), Some("completed")));
    assert!(complete["data"]["total_duration_ms"].is_number(), "{complete}");
    let stored = messages(port, &s);
    // The answer's message id, first thing in the stream (what stop and continue-stream take).
    let query = &frames[0];
    assert_eq!((query["done"].as_bool(), query["session_id"].as_str()), (Some(true), Some(s.as_str())), "{query}");
    assert_eq!(query["assistant_message_id"], stored[1]["id"], "{query}");
    assert_eq!(query["data"]["assistant_message_id"], stored[1]["id"], "{query}");
    assert_eq!(frames[2]["content"], "When does the nightly backup run?", "{frames:?}");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0]["role"].as_str(), stored[0]["content"].as_str()),
        (Some("user"), Some("When does the nightly backup run?"))
    );
    assert_eq!(
        (stored[1]["status"].as_str(), stored[1]["answer_kind"].as_str()),
        (Some("completed"), Some("extractive"))
    );
    assert_eq!(stored[1]["content"].as_str(), Some(text.as_str()));
    let (_, _, named) = get(port, &format!("/api/v1/sessions/{s}"), &ADMIN);
    assert_eq!(
        named["data"]["title"], "When does the nightly backup run?",
        "a session is named after its first question"
    );

    // A tenant's model speaking OpenAI's protocol, chosen per request.
    let openai = FakeModel::start(Wire::OpenAi);
    let model_id = model(port, &openai.url(), "openai", KEY);
    openai.script(vec![Step::Piece("The backup runs "), Step::Piece("at 02:00 [1]."), Step::End]);
    let ask = json!({ "query": "When does the nightly backup run?", "summary_model_id": model_id });
    let s = session(port, &kb);
    let frames = Frames::ask(port, ADMIN_KEY, &s, &ask).all();
    assert_eq!(answer_text(&frames), "The backup runs at 02:00 [1].");
    let last = end(&frames);
    assert_eq!(last["data"]["answer_kind"], "model", "{last}");
    assert_eq!(last["data"]["model"], "fake-chat", "which model answered");
    assert!(last["data"]["first_token_ms"].is_number() && last["data"]["duration_ms"].is_number(), "{last}");
    let ids: Vec<&Value> = frames.iter().map(|f| &f["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]) && ids[0].as_str().is_some_and(|s| !s.is_empty()), "one request id");
    // [1] is the first reference, and the model was given it as passage [1].
    let refs = references(&frames)["knowledge_references"].as_array().unwrap();
    let seen = openai.requests();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].authorization, format!("Bearer {KEY}"), "the stored key is sent to the model");
    assert_eq!(seen[0].body["stream"], true);
    let system = seen[0].body["messages"][0]["content"].as_str().unwrap();
    let first = refs[0]["content"].as_str().unwrap();
    assert!(system.contains(&format!("[1] (backups.md)\n{first}")), "{system}");
    assert!(system.contains("Cite the passages"), "English instructions for an English question");
    // A second question in the session: the first turn goes into the prompt.
    openai.script(vec![Step::Piece("Ninety days [2]."), Step::End]);
    let ask = json!({ "query": "And how long are offsite copies kept?", "summary_model_id": model_id });
    let frames = Frames::ask(port, ADMIN_KEY, &s, &ask).all();
    assert_eq!(answer_text(&frames), "Ninety days [2].");
    let history = &openai.requests()[1].body["messages"];
    let roles: Vec<&str> = history.as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "{history}");
    assert_eq!(history[2]["content"], "The backup runs at 02:00 [1].");
    // A question in Chinese gets Chinese instructions.
    openai.script(vec![Step::Piece("02:00 [1]。"), Step::End]);
    let ask = json!({ "query": "备份什么时候运行？", "summary_model_id": model_id });
    Frames::ask(port, ADMIN_KEY, &session(port, &kb), &ask).all();
    let system = openai.requests()[2].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.starts_with("你只根据"), "{system}");

    // A model speaking Ollama's protocol, chosen for the knowledge base.
    let ollama = FakeModel::start(Wire::Ollama);
    let ollama_id = model(port, &ollama.url(), "ollama", "");
    let (status, _, body) = call(
        port,
        "PUT",
        &format!("/api/v1/knowledge-bases/{kb}"),
        &ADMIN,
        Some(&json!({ "summary_model_id": ollama_id })),
    );
    assert_eq!((status, body["data"]["summary_model_id"].as_str()), (200, Some(ollama_id.as_str())), "{body}");
    ollama.script(vec![Step::Piece("At "), Step::Piece("02:00 [1]."), Step::End]);
    let frames = Frames::ask(port, ADMIN_KEY, &session(port, &kb), &json!({ "query": "When is the backup?" })).all();
    assert_eq!(answer_text(&frames), "At 02:00 [1].", "{frames:?}");
    let seen = ollama.requests();
    assert_eq!((seen[0].path.as_str(), seen[0].authorization.as_str()), ("/api/chat", ""), "no key, no header");

    // Another tenant sees none of it.
    let (_, _, other) = call(port, "POST", "/api/v1/tenants", &ADMIN, Some(&json!({"name": "acme"})));
    let other_key = other["data"]["api_key"].as_str().unwrap().to_string();
    let theirs = [("X-API-Key", other_key.as_str())];
    let f = Frames::ask(port, &other_key, &s, &json!({ "query": "When?", "knowledge_base_ids": [kb] }));
    assert_eq!(f.status, 404);
    assert_eq!(f.error()["error"]["details"]["reason"], "not_found");
    for path in [
        format!("/api/v1/sessions/{s}"),
        format!("/api/v1/sessions/{s}/messages"),
        format!("/api/v1/models/{model_id}"),
    ] {
        assert_eq!(get(port, &path, &theirs).0, 404, "{path}");
    }
    assert_eq!(call(port, "POST", &format!("/api/v1/sessions/{s}/stop"), &theirs, None).0, 404);
    let (_, _, listed) = get(port, "/api/v1/sessions", &theirs);
    assert_eq!(listed["total"], 0, "{listed}");
    // Their own session cannot reach our knowledge base or model either.
    let (_, _, mine) = call(port, "POST", "/api/v1/sessions", &theirs, Some(&json!({})));
    let theirs_s = mine["data"]["id"].as_str().unwrap();
    assert_eq!(
        Frames::ask(port, &other_key, theirs_s, &json!({ "query": "When?", "knowledge_base_ids": [kb] })).status,
        404
    );
    let ask = json!({ "query": "When?", "knowledge_base_ids": [kb], "summary_model_id": model_id });
    assert_eq!(Frames::ask(port, &other_key, theirs_s, &ask).status, 404);

    // Bad questions are plain JSON errors that say what to fix.
    let f = Frames::ask(port, ADMIN_KEY, &s, &json!({ "query": "  " }));
    assert_eq!(f.status, 400);
    let (_, _, bare) = call(port, "POST", "/api/v1/sessions", &ADMIN, Some(&json!({})));
    let f = Frames::ask(port, ADMIN_KEY, bare["data"]["id"].as_str().unwrap(), &json!({ "query": "When?" }));
    assert_eq!(f.status, 400);
    assert!(f.error()["error"]["message"].as_str().unwrap().contains("knowledge_base_id"));

    // Sessions: a page, an update, a delete.
    let (_, _, page) = get(port, "/api/v1/sessions?page=1&page_size=2", &ADMIN);
    assert_eq!((page["data"].as_array().unwrap().len(), page["page_size"].as_i64()), (2, Some(2)), "{page}");
    assert!(page["total"].as_i64().unwrap() >= 5);
    let (status, _, renamed) =
        call(port, "PUT", &format!("/api/v1/sessions/{s}"), &ADMIN, Some(&json!({"title": "backups"})));
    assert_eq!((status, renamed["data"]["title"].as_str()), (200, Some("backups")));
    assert_eq!(call(port, "DELETE", &format!("/api/v1/sessions/{s}"), &ADMIN, None).0, 200);
    assert_eq!(get(port, &format!("/api/v1/sessions/{s}"), &ADMIN).0, 404);

    // Metrics: answers by outcome and kind, time to first piece.
    let (_, _, text) = get(port, "/metrics", &[]);
    let text = text.as_str().unwrap();
    assert!(metric(text, "weknora_chat_answers_total{outcome=\"completed\",kind=\"model\"}") >= 4.0, "{text}");
    assert!(metric(text, "weknora_chat_answers_total{outcome=\"completed\",kind=\"extractive\"}") >= 1.0);
    assert!(metric(text, "weknora_chat_first_token_seconds_count{kind=\"model\"}") >= 4.0);

    // The key: never answered, never logged, never in the database (or a dump of it) in clear.
    let (_, _, listed) = get(port, "/api/v1/models", &ADMIN);
    assert_eq!(listed["data"][0]["parameters"]["api_key"], "***", "{listed}");
    assert!(!listed.to_string().contains(KEY));
    let (status, _, kept) = call(
        port,
        "PUT",
        &format!("/api/v1/models/{model_id}"),
        &ADMIN,
        Some(&json!({"description": "renamed", "parameters": {"api_key": "***"}})),
    );
    assert_eq!((status, kept["data"]["parameters"]["api_key"].as_str()), (200, Some("***")), "{kept}");
    openai.script(vec![Step::Piece("ok"), Step::End]);
    Frames::ask(port, ADMIN_KEY, &session(port, &kb), &json!({ "query": "When?", "summary_model_id": model_id })).all();
    assert_eq!(openai.requests().last().unwrap().authorization, format!("Bearer {KEY}"), "`***` keeps the stored key");
    let dump = Command::new("pg_dump").arg(&stack.pg_url).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert!(!dump.stdout.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in the database in clear");
    assert!(String::from_utf8_lossy(&dump.stdout).contains("fake-chat"), "the dump has the model");
    drop(stack.apps.drain(..));
    let log = std::fs::read_to_string(stack.log.path()).unwrap();
    assert!(log.contains("models: added"), "the log is the app's: {log}");
    assert!(!log.contains(KEY), "the key is in the log");
}

#[test]
fn stops_on_any_replica_reconnects_failures_and_timeouts_end_answers_as_upstream_does() {
    let mut stack = Stack::start();
    let openai = FakeModel::start(Wire::OpenAi);
    // The built-in model (LLM_*), with short timeouts and one answer per tenant at a time.
    let builtin = [
        ("LLM_PROVIDER", "generic".into()),
        ("LLM_BASE_URL", openai.url()),
        ("LLM_MODEL_NAME", "builtin-chat".into()),
        ("LLM_API_KEY", "sk-builtin-77aa".into()),
        ("WEKNORA__CHAT__FIRST_TOKEN_TIMEOUT_SECS", "2".into()),
        ("WEKNORA__CHAT__TOTAL_TIMEOUT_SECS", "6".into()),
        ("WEKNORA__CHAT__MAX_CONCURRENT_PER_TENANT", "1".into()),
    ];
    let port = stack.app(&builtin);
    let (_, _, info) = get(port, "/api/v1/system/info", &[]);
    assert_eq!(info["data"]["chat"], json!({"answers": "model", "provider": "generic", "model": "builtin-chat"}));
    let kb = knowledge_base(port);
    let ask = json!({ "query": "When does the nightly backup run?" });

    // stop: the answer ends marked stopped, what was said is kept, the model's connection closes.
    let (go, hold) = channel();
    openai.script(vec![Step::Piece("The backup"), Step::Hold(hold), Step::Endless]);
    let s = session(port, &kb);
    let mut frames = Frames::ask(port, ADMIN_KEY, &s, &ask);
    frames.until("references");
    assert_eq!(frames.until("answer")["content"], "The backup");
    // While it runs: the session is busy, and the tenant has no room for another answer.
    let busy = Frames::ask(port, ADMIN_KEY, &s, &ask);
    assert_eq!((busy.status, busy.error()["error"]["details"]["reason"].as_str()), (409, Some("answer_running")));
    let other = Frames::ask(port, ADMIN_KEY, &session(port, &kb), &ask);
    assert_eq!((other.status, other.error()["error"]["details"]["reason"].as_str()), (429, Some("too_many_answers")));
    go.send(()).unwrap();
    let (status, _, stopped) = call(port, "POST", &format!("/api/v1/sessions/{s}/stop"), &ADMIN, None);
    assert_eq!((status, stopped["data"]["stopped"].as_bool()), (200, Some(true)), "{stopped}");
    let rest = frames.all();
    let last = end(&rest);
    assert_eq!((last["done"].as_bool(), last["data"]["status"].as_str()), (Some(true), Some("stopped")), "{last}");
    openai.wait_closed("stop");
    let stored = messages(port, &s);
    assert_eq!(stored[1]["status"], "stopped");
    assert!(stored[1]["content"].as_str().unwrap().starts_with("The backup"), "{stored:?}");
    assert_eq!(stored[1]["is_completed"], false);
    let (_, _, again) = call(port, "POST", &format!("/api/v1/sessions/{s}/stop"), &ADMIN, None);
    assert_eq!(again["data"]["stopped"], false, "nothing runs any more");
    let ended = json!({"message_id": stored[1]["id"]});
    let (_, _, stale) = call(port, "POST", &format!("/api/v1/sessions/{s}/stop"), &ADMIN, Some(&ended));
    assert_eq!(stale["data"]["stopped"], false, "a stop for an answer that ended stops nothing");

    // The client goes away: the answer goes on, as upstream's do. A client that comes back,
    // here to another replica, replays what it missed and follows the rest to the end.
    let (go, hold) = channel();
    openai.script(vec![Step::Piece("Partial"), Step::Hold(hold), Step::Piece(" and the rest."), Step::End]);
    let s = session(port, &kb);
    let mut frames = Frames::ask(port, ADMIN_KEY, &s, &ask);
    let message = frames.until("agent_query")["assistant_message_id"].as_str().unwrap().to_string();
    assert_eq!(frames.until("answer")["content"], "Partial");
    drop(frames);
    let replica = stack.app(&builtin);
    let mut resumed = Frames::resume(replica, ADMIN_KEY, &s, &message);
    assert_eq!(resumed.status, 200, "{}", resumed.head);
    let first = resumed.next().unwrap();
    assert_eq!(
        (first["response_type"].as_str(), first["assistant_message_id"].as_str()),
        (Some("agent_query"), Some(&*message))
    );
    assert_eq!(resumed.until("answer")["content"], "Partial", "what the client missed is replayed");
    go.send(()).unwrap();
    let rest = resumed.all();
    assert_eq!(answer_text(&rest), " and the rest.");
    assert_eq!(kinds(&rest).last(), Some(&"complete"), "{rest:?}");
    let stored = messages(port, &s);
    assert_eq!(
        (stored[1]["status"].as_str(), stored[1]["content"].as_str()),
        (Some("completed"), Some("Partial and the rest."))
    );
    // A stop asked of another replica stops the answer where it runs.
    openai.script(vec![Step::Piece("Long"), Step::Endless]);
    let long = session(port, &kb);
    let mut frames = Frames::ask(port, ADMIN_KEY, &long, &ask);
    assert_eq!(frames.until("answer")["content"], "Long");
    let (status, _, stopped) = call(replica, "POST", &format!("/api/v1/sessions/{long}/stop"), &ADMIN, None);
    assert_eq!((status, stopped["data"]["stopped"].as_bool()), (200, Some(true)), "{stopped}");
    let rest = frames.all();
    assert_eq!(end(&rest)["data"]["status"], "stopped", "{:?}", kinds(&rest));
    openai.wait_closed("stop asked of another replica");
    assert_eq!(messages(port, &long)[1]["status"], "stopped");
    // An answer that ended is replayed whole while its frames are kept.
    let replayed = Frames::resume(port, ADMIN_KEY, &s, &message).all();
    assert_eq!(kinds(&replayed), ["agent_query", "references", "session_title", "answer*", "answer(done)", "complete"]);
    assert_eq!(answer_text(&replayed), "Partial and the rest.");
    // No such answer in this session, and no message named: upstream's error bodies.
    let other_session = session(port, &kb);
    let missing = Frames::resume(port, ADMIN_KEY, &other_session, &message);
    assert_eq!((missing.status, missing.error()["error"]["details"]["reason"].as_str()), (404, Some("not_found")));
    let unnamed = Frames::request(port, ADMIN_KEY, "GET", &format!("/api/v1/sessions/continue-stream/{s}"), "");
    assert_eq!(
        (unnamed.status, unnamed.error()["error"]["details"]["reason"].as_str()),
        (400, Some("invalid_argument"))
    );
    // Nothing kept (the answer ended before frames were kept, or Redis lost them): 404 saying so.
    redis_del(&stack, &format!("weknora:answer:{message}"));
    let gone = Frames::resume(port, ADMIN_KEY, &s, &message);
    let body = gone.error();
    assert_eq!(body["error"]["details"]["reason"], "no_stream_events", "{body}");

    // Failures: an error frame that says what failed, and the answer stored as failed.
    let failing = |steps: Vec<Step>, code: &str, says: &str| -> (Vec<Value>, Vec<Value>) {
        openai.script(steps);
        let s = session(port, &kb);
        let frames = Frames::ask(port, ADMIN_KEY, &s, &ask).all();
        assert_eq!(kinds(&frames).last(), Some(&"error"), "an error ends the stream, with no `complete`: {frames:?}");
        let last = end(&frames);
        assert_eq!((last["response_type"].as_str(), last["done"].as_bool()), (Some("error"), Some(true)), "{frames:?}");
        assert_eq!(last["data"]["code"], code, "{last}");
        assert!(last["content"].as_str().unwrap().contains(says), "{last}");
        let stored = messages(port, &s);
        assert_eq!(stored[1]["status"], "failed", "{stored:?}");
        assert_eq!(stored[1]["error"], last["content"]);
        (frames, stored)
    };
    failing(vec![Step::Status(500, r#"{"error":{"message":"the GPU caught fire"}}"#)], "model_error", "HTTP 500");
    let (frames, stored) = failing(vec![Step::Piece("Half an"), Step::Break], "model_error", "broke off");
    assert_eq!(answer_text(&frames), "Half an");
    assert_eq!(stored[1]["content"], "Half an", "the part said before the failure is kept");
    failing(vec![Step::Stall], "model_timeout", "sent nothing within 2 s");
    openai.wait_closed("first-token timeout");
    let (_, stored) = failing(vec![Step::Piece("Slow"), Step::Stall], "model_timeout", "did not finish within 6 s");
    assert_eq!(stored[1]["content"], "Slow");
    openai.wait_closed("total timeout");
    let key = openai.requests()[0].authorization.clone();
    assert_eq!(key, "Bearer sk-builtin-77aa", "the built-in model's key is sent");

    // Upstream's title generation: by the built-in model, its quotes taken off, and stored.
    openai.script(vec![Step::Piece("“Nightly "), Step::Piece("backup schedule”"), Step::End]);
    let s = session(port, &kb);
    let conversation = json!({"messages": [{"role": "user", "content": "When does the nightly backup run?"}]});
    let path = format!("/api/v1/sessions/{s}/generate_title");
    let (status, _, titled) = call(port, "POST", &path, &ADMIN, Some(&conversation));
    assert_eq!((status, titled["data"].as_str()), (200, Some("Nightly backup schedule")), "{titled}");
    let (_, _, read) = get(port, &format!("/api/v1/sessions/{s}"), &ADMIN);
    assert_eq!(read["data"]["title"], "Nightly backup schedule");
    let asked = openai.requests().last().unwrap().body["messages"][1]["content"].clone();
    assert_eq!(asked, "When does the nightly backup run?");
    // A model that fails: the question titles the session.
    openai.script(vec![Step::Status(500, r#"{"error":{"message":"down"}}"#)]);
    let (status, _, titled) = call(port, "POST", &path, &ADMIN, Some(&conversation));
    assert_eq!((status, titled["data"].as_str()), (200, Some("When does the nightly backup run?")), "{titled}");

    // Upstream's follow-up suggestions: made by the built-in model when asked, then kept.
    openai.script(vec![Step::Piece("The backup runs at 02:00 [1]."), Step::End]);
    let s = session(port, &kb);
    let frames = Frames::ask(port, ADMIN_KEY, &s, &ask).all();
    let message = frames[0]["assistant_message_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/sessions/{s}/messages/{message}/suggestions");
    let (status, _, none) = get(port, &path, &ADMIN);
    assert_eq!((status, none["error"]["details"]["reason"].as_str()), (404, Some("not_found")), "{none}");
    openai.script(vec![
        Step::Piece("1. How long are copies kept?\n2) “Who runs the "),
        Step::Piece("restore drill?”\n- How long are copies kept?\n3. Where are the copies?"),
        Step::End,
    ]);
    let (status, _, made) = call(port, "POST", &path, &ADMIN, Some(&json!({"regenerate": false})));
    assert_eq!(status, 200, "{made}");
    let made = made["data"].clone();
    assert_eq!((made["status"].as_str(), made["allow_regenerate"].as_bool()), (Some("ready"), Some(true)), "{made}");
    let texts: Vec<&str> = made["questions"].as_array().unwrap().iter().map(|q| q["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["How long are copies kept?", "Who runs the restore drill?", "Where are the copies?"]);
    assert!(
        made["questions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["source"] == "llm" && q["id"].as_str().is_some_and(|i| i.len() == 36))
    );
    let asked = openai.requests().last().unwrap().body["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(
        asked.contains("When does the nightly backup run?") && asked.contains("02:00"),
        "the model sees the exchange: {asked}"
    );
    let calls = openai.requests().len();
    let (_, _, read) = get(port, &path, &ADMIN);
    let (_, _, again) = call(port, "POST", &path, &ADMIN, None);
    assert_eq!((&read["data"], &again["data"]), (&made, &made), "kept, not made again");
    assert_eq!(openai.requests().len(), calls, "no model call for a kept set");
    openai.script(vec![Step::Piece("Is there an offsite copy?"), Step::End]);
    let (_, _, remade) = call(port, "POST", &path, &ADMIN, Some(&json!({"regenerate": true})));
    let remade = remade["data"].clone();
    assert_eq!((&remade["id"], remade["questions"].as_array().unwrap().len()), (&made["id"], 1), "{remade}");
    let question = remade["questions"][0]["id"].as_str().unwrap();
    assert_ne!(question, made["questions"][0]["id"].as_str().unwrap(), "new questions, new ids");
    // What readers did: recorded for the set's own questions only.
    let events = format!("/api/v1/sessions/{s}/suggestion-events");
    let click = json!({"suggestion_set_id": made["id"], "question_id": question, "event_type": "click"});
    let (status, _, recorded) = call(port, "POST", &events, &ADMIN, Some(&click));
    assert_eq!((status, recorded["data"]["recorded"].as_bool()), (200, Some(true)), "{recorded}");
    let shown = json!({"suggestion_set_id": made["id"], "question_id": "", "event_type": "impression"});
    assert_eq!(call(port, "POST", &events, &ADMIN, Some(&shown)).0, 200);
    let stale =
        json!({"suggestion_set_id": made["id"], "question_id": made["questions"][0]["id"], "event_type": "click"});
    assert_eq!(call(port, "POST", &events, &ADMIN, Some(&stale)).0, 404, "a question of the set before");
    let wrong = json!({"suggestion_set_id": made["id"], "event_type": "like"});
    let (status, _, body) = call(port, "POST", &events, &ADMIN, Some(&wrong));
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("impression, click, dismiss, regenerate"), "{body}");
    let elsewhere = format!("/api/v1/sessions/{long}/suggestion-events");
    assert_eq!(call(port, "POST", &elsewhere, &ADMIN, Some(&click)).0, 404, "another session's set");
    let counted = Command::new("psql")
        .args([
            &stack.pg_url,
            "-XAtqc",
            "SELECT event_type, question_id <> '' FROM message_suggestion_events ORDER BY id",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&counted.stdout), "click|t\nimpression|f\n");
    // A model that fails: a failed set saying why, which the next request retries.
    openai.script(vec![Step::Status(500, r#"{"error":{"message":"down"}}"#)]);
    let (_, _, failed) = call(port, "POST", &path, &ADMIN, Some(&json!({"regenerate": true})));
    assert_eq!(failed["data"]["status"], "failed", "{failed}");
    assert!(failed["data"]["error"].as_str().unwrap().contains("500"), "{failed}");
    openai.script(vec![Step::Piece("What is restored on Fridays?"), Step::End]);
    let (_, _, retried) = call(port, "POST", &path, &ADMIN, None);
    assert_eq!(retried["data"]["status"], "ready", "{retried}");
    // Only a completed answer is followed by suggestions.
    let stopped = messages(port, &long)[1]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/sessions/{long}/messages/{stopped}/suggestions");
    let (status, _, refused) = call(port, "POST", &path, &ADMIN, None);
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("this answer is stopped"), "{refused}");

    // A model that is not there at all.
    let id = model(port, &format!("http://127.0.0.1:{}", free_port()), "openai", "");
    let s = session(port, &kb);
    let frames = Frames::ask(port, ADMIN_KEY, &s, &json!({ "query": "When?", "summary_model_id": id })).all();
    let last = end(&frames);
    assert_eq!(last["data"]["code"], "model_unreachable", "{last}");
    assert!(last["content"].as_str().unwrap().contains("does not answer"), "{last}");

    let (_, _, text) = get(port, "/metrics", &[]);
    let text = text.as_str().unwrap();
    assert!(metric(text, "weknora_chat_model_errors_total{code=\"model_timeout\"}") >= 2.0, "{text}");
    assert!(metric(text, "weknora_chat_answers_total{outcome=\"stopped\",kind=\"model\"}") >= 1.0, "{text}");
    drop(stack.apps.drain(..));
    let log = std::fs::read_to_string(stack.log.path()).unwrap();
    assert!(!log.contains("sk-builtin-77aa"), "the built-in key is in the log");
}
