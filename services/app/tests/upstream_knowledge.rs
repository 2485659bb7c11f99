//! Upstream's knowledge routes beyond upload and read, driven as its Go SDK and frontend
//! send them: editing a manual entry, cancelling a parse, preview, the search across
//! knowledge bases, batch reparse and delete, and the routes for features we lack (501).
//! Answers are checked for the names and JSON types upstream's `Knowledge` decodes, and
//! another tenant's key must find nothing. The app, docreader, PostgreSQL and Redis are real.

mod support;
mod wire;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use weknora_testkit::{Pg, Redis};
use wire::upstream_error;

const ADMIN: [(&str, &str); 1] = [("X-API-Key", ADMIN_KEY)];

/// What the SDK's `Knowledge` decodes, strictly (`tests/wire`).
fn decodes_as_upstream_knowledge(k: &Value) {
    wire::decode::<wire::Knowledge>(k);
}

/// A second tenant and its API key.
fn other_tenant(port: u16, name: &str) -> String {
    let (status, _, made) = call(port, "POST", "/api/v1/tenants", &ADMIN, Some(&json!({ "name": name })));
    assert_eq!(status, 201, "{made}");
    made["data"]["api_key"].as_str().unwrap().to_string()
}

/// A new knowledge base of the admin's tenant: its id.
fn kb(port: u16, name: &str) -> String {
    create_kb(port, name).rsplit('/').next().unwrap().to_string()
}

fn manual(port: u16, kb: &str, title: &str, content: &str) -> String {
    let body = json!({"title": title, "content": content, "status": "publish", "tag_id": "", "channel": ""});
    let (status, _, doc) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb}/knowledge/manual"), &ADMIN, Some(&body));
    assert_eq!(status, 201, "{doc}");
    doc["data"]["id"].as_str().unwrap().to_string()
}

fn file(port: u16, kb: &str, name: &str, bytes: &[u8]) -> String {
    let (status, _, doc) =
        upload(port, &format!("/api/v1/knowledge-bases/{kb}/knowledge/file"), ADMIN_KEY, name, bytes);
    assert_eq!(status, 201, "{doc}");
    doc["data"]["id"].as_str().unwrap().to_string()
}

/// The text of a document's chunks, joined.
fn chunk_text(port: u16, id: &str) -> String {
    let (status, _, chunks) = get(port, &format!("/api/v1/chunks/{id}?page_size=200"), &ADMIN);
    assert_eq!(status, 200, "{chunks}");
    chunks["data"].as_array().unwrap().iter().map(|c| c["content"].as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The stored files of a document.
fn stored(files: &Path, id: &str) -> Vec<PathBuf> {
    files_under(files).into_iter().filter(|p| p.to_string_lossy().contains(id)).collect()
}

fn doc(port: u16, id: &str) -> Value {
    let (status, _, body) = get(port, &format!("/api/v1/knowledge/{id}"), &ADMIN);
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[test]
fn upstreams_knowledge_routes_edit_preview_search_and_batch() {
    let stack = admin_stack();
    let (port, files) = (stack.port, &stack.files);
    let other_key = other_tenant(port, "rival");
    let other = [("X-API-Key", other_key.as_str())];
    let (kb1, kb2) = (kb(port, "comets"), kb(port, "handbooks"));

    let notes = b"# Comet notes\n\nComets are icy bodies that grow tails near the Sun.\n";
    let notes_id = file(port, &kb1, "comet-notes.txt", notes);
    let page_id = file(port, &kb1, "comet-page.html", b"<html><body><p>Comet page</p></body></html>");
    let handbook_id = manual(port, &kb2, "Comet handbook", "# Comets\n\nThe tail always points away from the Sun.");
    for id in [&notes_id, &page_id, &handbook_id] {
        assert_eq!(wait_parsed(port, ADMIN_KEY, id)["parse_status"], "completed");
    }

    // PUT /knowledge/manual/{id}: the new text replaces the old once parsed again, and the
    // old text's file goes.
    let path = format!("/api/v1/knowledge/manual/{handbook_id}");
    let v2 = "# Comets v2\n\nPerihelion passes are logged every week.";
    let (status, _, edited) =
        call(port, "PUT", &path, &ADMIN, Some(&json!({"title": "Comet handbook v2", "content": v2})));
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["success"], true);
    let k = &edited["data"];
    decodes_as_upstream_knowledge(k);
    assert_eq!((k["id"].as_str(), k["type"].as_str()), (Some(handbook_id.as_str()), Some("manual")), "{k}");
    assert_eq!((k["title"].as_str(), k["parse_status"].as_str()), (Some("Comet handbook v2"), Some("pending")), "{k}");
    assert_eq!(k["file_size"].as_u64(), Some(v2.len() as u64), "{k}");
    assert_eq!(wait_parsed(port, ADMIN_KEY, &handbook_id)["parse_status"], "completed");
    let text = chunk_text(port, &handbook_id);
    assert!(text.contains("Perihelion passes") && !text.contains("points away"), "{text}");
    let kept = stored(files.path(), &handbook_id);
    assert_eq!(kept.len(), 1, "the old text's file is removed: {kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), v2);

    // Only a title: renamed, the text and its chunks as they were.
    let (status, _, renamed) = call(port, "PUT", &path, &ADMIN, Some(&json!({"title": " Comet handbook v3 "})));
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        (renamed["data"]["title"].as_str(), renamed["data"]["parse_status"].as_str()),
        (Some("Comet handbook v3"), Some("completed"))
    );
    assert_eq!(stored(files.path(), &handbook_id), kept);

    // What cannot be done says why, in upstream's error shape.
    let (status, _, blank) = call(port, "PUT", &path, &ADMIN, Some(&json!({"content": "  \n"})));
    assert_eq!(status, 400, "{blank}");
    upstream_error(&blank, 1000, "invalid_argument");
    assert!(blank["message"].as_str().unwrap().starts_with("content:"), "{blank}");
    let (status, _, draft) = call(port, "PUT", &path, &ADMIN, Some(&json!({"content": "x", "status": "draft"})));
    assert_eq!(status, 400, "{draft}");
    assert!(draft["message"].as_str().unwrap().contains("drafts are not provided"), "{draft}");
    let not_manual = format!("/api/v1/knowledge/manual/{notes_id}");
    let (status, _, refused) = call(port, "PUT", &not_manual, &ADMIN, Some(&json!({"content": "new"})));
    assert_eq!(status, 400, "{refused}");
    upstream_error(&refused, 1000, "not_manual");
    assert!(refused["message"].as_str().unwrap().contains("came from a file"), "{refused}");
    let (status, _, theirs) = call(port, "PUT", &path, &other, Some(&json!({"content": "stolen"})));
    assert_eq!(status, 404, "{theirs}");
    upstream_error(&theirs, 1003, "not_found");
    assert_eq!(doc(port, &handbook_id)["title"], "Comet handbook v3", "nothing changed");
    assert!(chunk_text(port, &handbook_id).contains("Perihelion"));

    // Preview: inline, typed by extension, cached privately; HTML only ever as a download.
    let preview = |id: &str, headers: &[(&str, &str)]| {
        exchange(port, "GET", &format!("/api/v1/knowledge/{id}/preview"), headers, None).unwrap()
    };
    let shown = preview(&notes_id, &ADMIN);
    assert_eq!((shown.status, &shown.body[..]), (200, &notes[..]));
    assert_eq!(shown.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(shown.header("content-disposition").unwrap().starts_with("inline; filename=\"comet-notes.txt\""));
    assert_eq!(shown.header("cache-control"), Some("private, max-age=3600"));
    assert_eq!(shown.header("x-content-type-options"), Some("nosniff"));
    let html = preview(&page_id, &ADMIN);
    assert_eq!((html.status, html.header("content-type")), (200, Some("application/octet-stream")));
    assert!(html.header("content-disposition").unwrap().starts_with("attachment;"), "{}", html.head);
    let typed = preview(&handbook_id, &ADMIN);
    assert_eq!((typed.status, typed.header("content-type")), (200, Some("text/markdown; charset=utf-8")));
    assert_eq!(typed.body, v2.as_bytes());
    assert!(
        typed.header("content-disposition").unwrap().contains("filename=\"comet handbook v3.md\""),
        "{}",
        typed.head
    );
    // The download is the same file, as an attachment (a manual entry's text too, as upstream serves it).
    let down = exchange(port, "GET", &format!("/api/v1/knowledge/{handbook_id}/download"), &ADMIN, None).unwrap();
    assert_eq!(
        (down.status, down.header("content-type"), &down.body[..]),
        (200, Some("application/octet-stream"), v2.as_bytes())
    );
    assert!(down.header("content-disposition").unwrap().starts_with("attachment; filename=\"comet handbook v3.md\""));
    assert_eq!(preview(&notes_id, &other).status, 404, "another tenant's key finds nothing");
    let (status, _, url_doc) = call(
        port,
        "POST",
        &format!("/api/v1/knowledge-bases/{kb1}/knowledge/url"),
        &ADMIN,
        Some(&json!({"url": "http://127.0.0.1:9/comet-feed", "title": "Comet feed"})),
    );
    assert_eq!(status, 201, "{url_doc}");
    let url_id = url_doc["data"]["id"].as_str().unwrap().to_string();
    let (status, _, none) = get(port, &format!("/api/v1/knowledge/{url_id}/preview"), &ADMIN);
    assert_eq!(status, 404, "{none}");
    assert!(none["message"].as_str().unwrap().contains("came from a URL"), "{none}");

    // GET /knowledge/search: every knowledge base of the caller's, `data` a list with
    // `has_more` beside it, as the SDK's FilterKnowledge reads it.
    let search = |query: &str, headers: &[(&str, &str)]| {
        let (status, _, found) = get(port, &format!("/api/v1/knowledge/search?{query}"), headers);
        assert_eq!(status, 200, "{query}: {found}");
        wire::decode::<wire::FilterKnowledgeResponse>(&found);
        found
    };
    let found = search("keyword=COMET&offset=0&limit=20", &ADMIN);
    let hits = found["data"].as_array().unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [url_id.as_str(), handbook_id.as_str(), page_id.as_str(), notes_id.as_str()],
        "newest first: {found}"
    );
    assert_eq!((found["has_more"].as_bool(), found["total"].as_i64()), (Some(false), Some(4)), "{found}");
    for hit in hits {
        decodes_as_upstream_knowledge(hit);
    }
    assert_eq!(hits[1]["knowledge_base_name"], "handbooks");
    assert_eq!(hits[3]["knowledge_base_name"], "comets");
    let page = search("keyword=comet&offset=1&limit=2", &ADMIN);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!((page["data"][0]["id"].as_str(), page["has_more"].as_bool()), (Some(handbook_id.as_str()), Some(true)));
    let last = search("keyword=comet&offset=3&limit=2", &ADMIN);
    assert_eq!((last["data"].as_array().unwrap().len(), last["has_more"].as_bool()), (1, Some(false)));
    // File types as the SDK sends them (repeated) or as the docs write them (comma-separated).
    let typed = search("keyword=comet&offset=0&limit=20&file_types=txt&file_types=md", &ADMIN);
    let ids: Vec<&str> = typed["data"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [handbook_id.as_str(), notes_id.as_str()], "{typed}");
    let urls = search("file_types=url,.TXT", &ADMIN);
    assert_eq!(urls["total"], 2, "{urls}");
    assert_eq!(search("keyword=v3", &ADMIN)["data"][0]["id"], handbook_id.as_str(), "the new title is found");
    assert_eq!(search("keyword=%25", &ADMIN)["total"], 0, "`%` matches itself");
    assert_eq!(search("", &ADMIN)["total"], 4, "no keyword: everything");
    let theirs = search("keyword=comet", &other);
    assert_eq!((theirs["data"].as_array().map(Vec::len), theirs["total"].as_i64()), (Some(0), Some(0)), "{theirs}");
    let (status, _, agent) = get(port, "/api/v1/knowledge/search?keyword=comet&agent_id=7", &ADMIN);
    assert_eq!(status, 501, "{agent}");
    upstream_error(&agent, 1004, "not_provided");
    assert!(agent["message"].as_str().unwrap().contains("custom agents"), "{agent}");
    let (status, _, bad) = get(port, "/api/v1/knowledge/search?keyword=comet&limit=ten", &ADMIN);
    assert_eq!(status, 400, "{bad}");
    upstream_error(&bad, 1000, "invalid_argument");

    // Cancelling a parse that has ended is refused, as upstream refuses it.
    let (status, _, ended) = call(port, "POST", &format!("/api/v1/knowledge/{notes_id}/cancel-parse"), &ADMIN, None);
    assert_eq!(status, 400, "{ended}");
    upstream_error(&ended, 1000, "parse_ended");
    assert!(ended["message"].as_str().unwrap().contains("(completed)"), "{ended}");

    // POST /knowledge/batch-reparse within one knowledge base.
    let reparse = |body: Value, headers: &[(&str, &str)]| {
        call(port, "POST", "/api/v1/knowledge/batch-reparse", headers, Some(&body))
    };
    let (status, _, queued) =
        reparse(json!({"kb_id": kb1, "ids": [notes_id, page_id, notes_id], "process_config": null}), &ADMIN);
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["message"], "Batch reparse queued");
    assert_eq!(queued["data"], json!({"task_id": "", "reparse_count": 2, "already_parsing": []}), "{queued}");
    for id in [&notes_id, &page_id] {
        assert_eq!(wait_parsed(port, ADMIN_KEY, id)["parse_status"], "completed");
    }
    let (status, _, mixed) = reparse(json!({"kb_id": kb1, "ids": [notes_id, handbook_id]}), &ADMIN);
    assert_eq!(status, 400, "{mixed}");
    upstream_error(&mixed, 1000, "invalid_argument");
    assert!(
        mixed["message"].as_str().unwrap().contains(&format!("document {handbook_id} is not in knowledge base {kb1}"))
    );

    // POST /knowledge/batch-delete: all or none, only in the caller's knowledge base.
    let delete = |body: Value, headers: &[(&str, &str)]| {
        call(port, "POST", "/api/v1/knowledge/batch-delete", headers, Some(&body))
    };
    let nobody = uuid::Uuid::new_v4().to_string();
    for (body, reason) in [
        (json!({"kb_id": kb1, "ids": [notes_id, handbook_id]}), "is not in knowledge base"),
        (json!({"kb_id": kb1, "ids": [notes_id, nobody]}), "there is no document"),
        (json!({"kb_id": kb1, "ids": []}), "name 1 to 200 documents"),
        (json!({"kb_id": kb1, "ids": null}), "name 1 to 200 documents"),
        (json!({"kb_id": "", "ids": [notes_id]}), "kb_id:"),
        (json!({"kb_id": kb1, "ids": ["kb-1"]}), "`kb-1` is not a valid UUID"),
        (json!({"kb_id": kb1, "ids": (0..201).map(|_| uuid::Uuid::new_v4()).collect::<Vec<_>>()}), "name 1 to 200"),
    ] {
        let (status, _, refused) = delete(body.clone(), &ADMIN);
        assert_eq!(status, 400, "{body}: {refused}");
        assert!(refused["message"].as_str().unwrap().contains(reason), "{body}: {refused}");
    }
    let (status, _, theirs) = delete(json!({"kb_id": kb1, "ids": [notes_id]}), &other);
    assert_eq!(status, 404, "another tenant's key does not find the knowledge base: {theirs}");
    upstream_error(&theirs, 1003, "not_found");
    let their_kb = {
        let (status, _, made) = call(port, "POST", "/api/v1/knowledge-bases", &other, Some(&json!({"name": "theirs"})));
        assert_eq!(status, 201, "{made}");
        made["data"]["id"].as_str().unwrap().to_string()
    };
    let (status, _, theirs) = delete(json!({"kb_id": their_kb, "ids": [notes_id]}), &other);
    assert_eq!(status, 400, "{theirs}");
    assert!(theirs["message"].as_str().unwrap().contains("there is no document"), "{theirs}");
    let (status, _, theirs) = reparse(json!({"kb_id": their_kb, "ids": [notes_id]}), &other);
    assert_eq!(status, 400, "{theirs}");
    assert_eq!(doc(port, &notes_id)["parse_status"], "completed", "nothing was done");
    assert_eq!(stored(files.path(), &notes_id).len(), 1);

    let (status, _, deleted) = delete(json!({"kb_id": kb1, "ids": [notes_id, page_id]}), &ADMIN);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["data"], json!({"task_id": "", "deleted_count": 2}), "{deleted}");
    assert_eq!(deleted["message"], "Batch delete done");
    for id in [&notes_id, &page_id] {
        assert_eq!(get(port, &format!("/api/v1/knowledge/{id}"), &ADMIN).0, 404);
        assert!(stored(files.path(), id).is_empty(), "its file is removed");
    }
    assert_eq!(search("keyword=comet", &ADMIN)["total"], 2, "{url_id} and the handbook remain");

    // Upstream's routes for what weknora lacks answer 501 as upstream's `/tags` does here.
    let (status, _, tags) =
        call(port, "PUT", "/api/v1/knowledge/tags", &ADMIN, Some(&json!({"updates": {handbook_id.clone(): null}})));
    assert_eq!(status, 501, "{tags}");
    upstream_error(&tags, 1004, "not_provided");
    assert_eq!(tags["message"], "weknora does not provide tags: upstream's /knowledge/tags API");
    let (status, _, family) = get(port, "/api/v1/tags", &ADMIN);
    assert_eq!((status, &family["error"]["details"]), (501, &tags["error"]["details"]), "{family}");
    let (status, _, refused) = call(port, "PUT", "/api/v1/knowledge/tags", &ADMIN, Some(&json!({"updates": {}})));
    assert_eq!(status, 400, "what upstream refuses is refused: {refused}");
    upstream_error(&refused, 1000, "invalid_argument");
    assert_eq!(call(port, "PUT", "/api/v1/knowledge/tags", &[], Some(&json!({"updates": {"x": null}}))).0, 401);
    // Image information: for a chunk of the caller's document, 501 naming why; else 404.
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{handbook_id}"), &ADMIN);
    let chunk = chunks["data"][0]["id"].as_str().unwrap().to_string();
    let image_info = json!({"image_info": "{\"alt_text\":\"tail\"}"});
    let image = |doc: &str, chunk: &str, headers: &[(&str, &str)]| {
        call(port, "PUT", &format!("/api/v1/knowledge/image/{doc}/{chunk}"), headers, Some(&image_info))
    };
    let (status, _, lacking) = image(&handbook_id, &chunk, &ADMIN);
    assert_eq!(status, 501, "{lacking}");
    upstream_error(&lacking, 1004, "not_provided");
    assert!(lacking["message"].as_str().unwrap().contains("no chunk has an image"), "{lacking}");
    for (doc, chunk, headers) in [
        (handbook_id.as_str(), chunk.as_str(), &other[..]),
        (url_id.as_str(), chunk.as_str(), &ADMIN[..]),
        (handbook_id.as_str(), nobody.as_str(), &ADMIN[..]),
    ] {
        let (status, _, missing) = image(doc, chunk, headers);
        assert_eq!(status, 404, "{missing}");
        upstream_error(&missing, 1003, "not_found");
    }
}

/// Cancelling parses that are queued and running, and editing a manual entry under parse,
/// with a docreader that never answers holding both workers: a cancelled or superseded
/// parse's worker, when it comes back, writes nothing.
#[test]
fn a_cancelled_or_superseded_parse_stays_so_when_its_worker_comes_back() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), hung.local_addr().unwrap().port(), files.path());
    env.push(("WEKNORA__INGEST__WORKERS".into(), "2".into()));
    env.push(("WEKNORA__INGEST__DOCREADER_TIMEOUT_SECS".into(), "120".into()));
    let (app, port) = start_app(&env);
    let other_key = other_tenant(port, "rival");
    let kb = kb(port, "ops");
    let status_of = |id: &str| doc(port, id)["parse_status"].as_str().unwrap().to_string();
    let live_jobs = |id: &str| {
        psql(
            &pg,
            &format!("SELECT count(*) FROM ingest_jobs WHERE knowledge_id = '{id}' AND state IN ('queued', 'running')"),
        )[0][0]
            .clone()
    };

    // A running parse (its worker waits on docreader) is cancelled.
    let a = manual(port, &kb, "restores", "Restores are drilled monthly.");
    wait_until("A's parse to run", || status_of(&a) == "processing");
    let cancel = |id: &str, key: &str| {
        call(port, "POST", &format!("/api/v1/knowledge/{id}/cancel-parse"), &[("X-API-Key", key)], None)
    };
    let (status, _, cancelled) = cancel(&a, ADMIN_KEY);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        (cancelled["success"].as_bool(), cancelled["message"].as_str()),
        (Some(true), Some("Knowledge parse cancelled"))
    );
    let k = &cancelled["data"];
    decodes_as_upstream_knowledge(k);
    assert_eq!(
        (k["parse_status"].as_str(), k["error_message"].as_str(), k["enable_status"].as_str()),
        (Some("cancelled"), Some("parse cancelled by the user"), Some("disabled")),
        "{k}"
    );
    assert_eq!(live_jobs(&a), "0");
    let job = psql(
        &pg,
        &format!("SELECT state, coalesce(lease_owner, '-'), last_error FROM ingest_jobs WHERE knowledge_id = '{a}'"),
    );
    assert_eq!(job, [["failed", "-", "parse cancelled by the user"]], "the worker's lease is gone");
    let (status, _, again) = cancel(&a, ADMIN_KEY);
    assert_eq!((status, again["data"]["parse_status"].as_str()), (200, Some("cancelled")), "cancelling again: {again}");
    let (status, _, theirs) = cancel(&a, &other_key);
    assert_eq!(status, 404, "{theirs}");
    upstream_error(&theirs, 1003, "not_found");
    let (_, _, listed) = get(port, &format!("/api/v1/knowledge-bases/{kb}/knowledge?parse_status=cancelled"), &ADMIN);
    assert_eq!((listed["total"].as_i64(), listed["data"][0]["id"].as_str()), (Some(1), Some(a.as_str())), "{listed}");

    // A manual entry edited while its parse runs: that parse is ended, the new text's is
    // queued (no worker is free: it stays pending), and only the new text is stored.
    let b = manual(port, &kb, "failover", "Failover goes to the old region.");
    wait_until("B's parse to run", || status_of(&b) == "processing");
    let new_text = "Failover goes to the standby region.";
    let (status, _, edited) = call(
        port,
        "PUT",
        &format!("/api/v1/knowledge/manual/{b}"),
        &ADMIN,
        Some(&json!({"title": "", "content": new_text})),
    );
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (edited["data"]["title"].as_str(), edited["data"]["parse_status"].as_str()),
        (Some("failover"), Some("pending"))
    );
    let jobs = psql(
        &pg,
        &format!("SELECT state, coalesce(last_error, '-') FROM ingest_jobs WHERE knowledge_id = '{b}' ORDER BY id"),
    );
    assert_eq!(jobs, [["failed", "superseded: the text was edited"], ["queued", "-"]]);
    let kept = stored(files.path(), &b);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), new_text);

    // A batch reparse leaves the document whose parse is queued as it is, and queues A's.
    let (status, _, batch) =
        call(port, "POST", "/api/v1/knowledge/batch-reparse", &ADMIN, Some(&json!({"kb_id": kb, "ids": [a, b]})));
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["data"], json!({"task_id": "", "reparse_count": 1, "already_parsing": [b]}), "{batch}");
    assert_eq!(status_of(&a), "pending");

    // Queued parses are cancelled too.
    for id in [&a, &b] {
        let (status, _, cancelled) = cancel(id, ADMIN_KEY);
        assert_eq!((status, cancelled["data"]["parse_status"].as_str()), (200, Some("cancelled")), "{cancelled}");
        assert_eq!(live_jobs(id), "0");
    }

    // The hung docreader goes: both workers come back, find their leases gone, write nothing.
    drop(hung);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = get(port, "/metrics", &[]).2.as_str().unwrap().to_string();
        if counted(&metrics, r#"weknora_ingest_jobs_total{outcome="lease_lost"}"#) == Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the workers did not come back: {metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in [&a, &b] {
        let k = doc(port, id);
        assert_eq!(
            (k["parse_status"].as_str(), k["error_message"].as_str()),
            (Some("cancelled"), Some("parse cancelled by the user"))
        );
        assert_eq!(live_jobs(id), "0");
    }

    // With a docreader that answers, a reparse parses them again; B has its new text.
    drop(app);
    let (_docreader, dr_port) = docreader();
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| if k == "DOCREADER_ADDR" { (k, format!("127.0.0.1:{dr_port}")) } else { (k, v) })
        .collect();
    let (_app, port) = start_app(&env);
    let (status, _, batch) =
        call(port, "POST", "/api/v1/knowledge/batch-reparse", &ADMIN, Some(&json!({"kb_id": kb, "ids": [a, b]})));
    assert_eq!((status, batch["data"]["reparse_count"].as_u64()), (200, Some(2)), "{batch}");
    for id in [&a, &b] {
        let k = wait_parsed(port, ADMIN_KEY, id);
        assert_eq!((k["parse_status"].as_str(), k["error_message"].as_str()), (Some("completed"), Some("")), "{k}");
    }
    assert_eq!(chunk_text(port, &b), new_text);
}
