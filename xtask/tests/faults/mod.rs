//! The fault suite, on a running stack: 200 documents of mixed formats are ingested while
//! the app, docreader, the embedder, PostgreSQL and Redis are each killed with SIGKILL in
//! turn (the kernel's kill of the container's main process, as a crash: `docker kill`
//! would count as an operator's stop) and brought back by the restart policy alone.
//! Afterwards every document completed, or failed with its reason when the file is bad;
//! no chunk is duplicated, no completed document misses a vector, no job is left queued or
//! running. Then Redis is stopped: search still answers, uncached, and `/ready` says
//! degraded. (A full data volume is tested on the app itself: services/app/tests/disk_full.rs.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{container_of, curl, knowledge_search};
use crate::support::docker;

/// The services killed, in this order, each after a fifth of the documents was uploaded.
const KILLED: [&str; 5] = ["app", "docreader", "embedder", "postgres", "redis"];
const DOCUMENTS: usize = 200;
/// Fixture files of the binary formats, each uploaded once.
const FIXTURES: [&str; 7] =
    ["sample.docx", "sample.xlsx", "sample.pdf", "sample.pptx", "sample.epub", "sample.ods", "sample.xls"];

/// One document to upload: its name, its bytes, and whether it is genuinely bad.
struct Doc {
    name: String,
    bytes: Vec<u8>,
    bad: bool,
}

/// 200 documents: text formats (each with its own marker word), the binary fixtures, and
/// three bad files (garbage called a PDF, garbage called a DOCX, a zip bomb).
fn documents() -> Vec<Doc> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/docreader/tests/fixtures");
    let mut docs: Vec<Doc> = FIXTURES
        .iter()
        .map(|f| Doc { name: f.to_string(), bytes: std::fs::read(fixtures.join(f)).unwrap(), bad: false })
        .collect();
    docs.push(Doc { name: "broken.pdf".into(), bytes: b"%PDF-1.7\nthis is not a PDF at all\n".repeat(20), bad: true });
    docs.push(Doc { name: "broken.docx".into(), bytes: vec![0x5a; 4096], bad: true });
    docs.push(Doc { name: "bomb.docx".into(), bytes: std::fs::read(fixtures.join("bomb.docx")).unwrap(), bad: true });
    let body = |i: usize| -> String {
        (0..12)
            .map(|s| {
                format!(
                    "Paragraph {s} of faultdoc{i:03}: the ingest keeps working while its services crash and come back, \
                     and every passage is stored once."
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let mut i = 0;
    while docs.len() < DOCUMENTS {
        let (name, text) = match i % 4 {
            0 => (format!("faultdoc{i:03}.md"), format!("# faultdoc{i:03}\n\n{}", body(i))),
            1 => (format!("faultdoc{i:03}.txt"), body(i)),
            2 => (
                format!("faultdoc{i:03}.html"),
                format!("<html><body><h1>faultdoc{i:03}</h1><p>{}</p></body></html>", body(i)),
            ),
            _ => (format!("faultdoc{i:03}.csv"), format!("id,text\n{i},\"{}\"\n", body(i).replace('\n', " "))),
        };
        docs.push(Doc { name, bytes: text.into_bytes(), bad: false });
        i += 1;
    }
    docs
}

/// Uploads one document through the frontend, trying again while the app is down (a client
/// would); the new document's id.
fn upload(front: &str, key: &str, kb: &str, doc: &Doc, dir: &Path) -> String {
    let file = dir.join(&doc.name);
    std::fs::write(&file, &doc.bytes).unwrap();
    let form = format!("file=@{};filename={}", file.display(), doc.name);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = curl(front, key, &["-F", &form], &format!("/api/v1/knowledge-bases/{kb}/knowledge/file"));
        if status == 201 {
            return body["data"]["id"].as_str().unwrap().to_string();
        }
        // Connection refused, or nginx's 502/503/504 while the app restarts.
        assert!([0, 502, 503, 504].contains(&status), "uploading {}: {status} {body}", doc.name);
        assert!(
            Instant::now() < deadline,
            "{}: the app did not take uploads again in 120 s: {status} {body}",
            doc.name
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// SIGKILL to the service's main process, from the host: a crash, not a stop. Waits until
/// the restart policy has brought it back and its healthcheck passes.
fn crash_and_wait(project: &str, service: &str) -> Duration {
    let id = container_of(project, service);
    let restarts = || docker(&["inspect", "-f", "{{.RestartCount}}", &id]);
    let before = restarts();
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id]);
    assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success(), "kill -9 {pid} ({service})");
    let killed = Instant::now();
    loop {
        let state =
            docker(&["inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", &id]);
        if restarts() != before && state == "running healthy" {
            return killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(180),
            "{service} not back and healthy 180 s after a crash: {state}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Rows of a query, as `|`-separated text, run by psql in the postgres container.
pub fn sql(project: &str, query: &str) -> Vec<String> {
    let id = container_of(project, "postgres");
    let psql = format!("psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -tA -v ON_ERROR_STOP=1 -c \"{query}\"");
    let out = docker(&["exec", &id, "sh", "-c", &psql]);
    out.lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

pub fn ingest_survives_each_service_crashing_in_turn(project: &str, front: &str, app: &str, key: &str) {
    let started = Instant::now();
    let (status, kb) = curl(
        front,
        key,
        &["-X", "POST", "-H", "content-type: application/json", "-d", r#"{"name":"faults"}"#],
        "/api/v1/knowledge-bases",
    );
    assert_eq!(status, 201, "{kb}");
    let kb = kb["data"]["id"].as_str().unwrap().to_string();
    let docs = documents();
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let mut recovery = Vec::new();
    for (batch, service) in docs.chunks(DOCUMENTS / KILLED.len()).zip(KILLED) {
        ids.extend(batch.iter().map(|d| upload(front, key, &kb, d, dir.path())));
        // The batch is being parsed and embedded now: crash one service under it.
        recovery.push((service, crash_and_wait(project, service)));
    }
    eprintln!("faults: recovery after SIGKILL: {recovery:?}");

    // Everything reaches an end, with no manual step.
    let kb_filter = format!("knowledge_base_id = '{kb}'");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open = sql(
            project,
            &format!(
                "SELECT count(*) FROM knowledge WHERE {kb_filter} AND (parse_status NOT IN ('completed', 'failed') \
                 OR vector_status NOT IN ('completed', 'failed', 'none'))"
            ),
        );
        if open == ["0"] {
            break;
        }
        let jobs = sql(
            project,
            "SELECT kind, state, attempts, coalesce(last_error, '') FROM ingest_jobs WHERE state <> 'succeeded'",
        );
        assert!(Instant::now() < deadline, "{open:?} documents unfinished after 300 s; jobs: {jobs:#?}");
        std::thread::sleep(Duration::from_secs(1));
    }

    let rows = sql(
        project,
        &format!(
            "SELECT id, source, parse_status, vector_status, coalesce(error, '') FROM knowledge WHERE {kb_filter}"
        ),
    );
    assert_eq!(rows.len(), DOCUMENTS, "a document was lost or duplicated: {rows:#?}");
    for row in &rows {
        let f: Vec<&str> = row.splitn(5, '|').collect();
        assert!(ids.iter().any(|id| id == f[0]), "a document nobody uploaded: {row}");
        let bad = docs.iter().find(|d| d.name == f[1]).unwrap_or_else(|| panic!("{row}")).bad;
        if bad {
            assert!(f[2] == "failed" && f[4].len() > 10, "a bad file must fail with its reason: {row}");
        } else {
            assert_eq!((f[2], f[3]), ("completed", "completed"), "{row}");
        }
    }
    let duplicated = sql(
        project,
        &format!(
            "SELECT knowledge_id, position, count(*) FROM chunks WHERE {kb_filter} GROUP BY 1, 2 HAVING count(*) > 1"
        ),
    );
    assert!(duplicated.is_empty(), "duplicated chunks: {duplicated:?}");
    let miscounted = sql(
        project,
        &format!(
            "SELECT k.source FROM knowledge k WHERE k.{kb_filter} AND k.chunk_count <> \
             (SELECT count(*) FROM chunks c WHERE c.knowledge_id = k.id)"
        ),
    );
    assert!(miscounted.is_empty(), "chunk counts that disagree with the chunks: {miscounted:?}");
    let without_vectors = sql(
        project,
        &format!(
            "SELECT k.source, count(*) FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id \
             WHERE k.{kb_filter} AND k.parse_status = 'completed' \
             AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e WHERE e.chunk_id = c.id) GROUP BY 1"
        ),
    );
    assert!(without_vectors.is_empty(), "completed documents with chunks lacking a vector: {without_vectors:?}");
    let stuck = sql(project, "SELECT id, kind, state FROM ingest_jobs WHERE state IN ('queued', 'running')");
    assert!(stuck.is_empty(), "jobs left behind: {stuck:?}");
    // And what was stored is found: a marker word of a document of each batch.
    for i in [0, 47, 95, 140, 189] {
        let (status, hits) = knowledge_search(front, key, &kb, &format!("faultdoc{i:03}"));
        assert_eq!(status, 200, "{hits}");
        assert!(hits["data"][0]["content"].as_str().unwrap_or("").contains(&format!("faultdoc{i:03}")), "{i}: {hits}");
    }

    // Redis down (stopped, so no restart policy brings it back): degraded, not down.
    let redis = container_of(project, "redis");
    docker(&["stop", &redis]);
    let ready = curl(app, key, &[], "/ready");
    let (status, hits) = knowledge_search(front, key, &kb, "faultdoc047");
    docker(&["start", &redis]);
    assert_eq!(status, 200, "search without Redis: {hits}");
    assert!(hits["data"][0]["content"].as_str().unwrap_or("").contains("faultdoc047"), "{hits}");
    assert_eq!(hits["cached"], false, "{hits}");
    assert_eq!((ready.0, ready.1["status"].as_str()), (200, Some("degraded")), "/ready without Redis: {}", ready.1);
    assert!(ready.1["message"].as_str().unwrap().contains("redis"), "{}", ready.1);
    eprintln!("faults: {} documents through 5 crashes in {:?}", DOCUMENTS, started.elapsed());
}
