//! Upstream's folders, moves and copies, as its clients call them: a folder upload
//! (`fileName` with the file's path), the folder tree, renaming a folder and filing
//! documents; moving documents to another knowledge base and copying a knowledge base with
//! its documents, both tasks polled by id; and none of it reaching another tenant. The app,
//! docreader, PostgreSQL and Redis are real. The second test has vectors (pgvector in the
//! local PostgreSQL image, and a stand-in embedding model) and checks they stay consistent
//! with the knowledge base they end up in.

mod support;
mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use weknora_testkit::{Need, require};
use weknora_testkit::{Pg, Redis};

const ADMIN: [(&str, &str); 1] = [("X-API-Key", ADMIN_KEY)];

/// Uploads `bytes` as upstream's SDK does a folder upload: the file, then `fileName` with
/// its path in the folder.
fn upload_in_folder(port: u16, kb: &str, key: &str, relative: &str, bytes: &[u8]) -> (u16, Value) {
    let boundary = "weknora-moves-boundary";
    let base = relative.rsplit(['/', '\\']).next().unwrap();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{base}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"fileName\"\r\n\r\n{relative}\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    let path = format!("/api/v1/knowledge-bases/{kb}/knowledge/file");
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, _, answer) = send(port, "POST", &path, &[("X-API-Key", key)], &content_type, &body);
    (status, answer)
}

fn new_kb(port: u16, key: &str, body: Value) -> String {
    let (status, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &[("X-API-Key", key)], Some(&body));
    assert_eq!(status, 201, "{kb}");
    kb["data"]["id"].as_str().unwrap().to_string()
}

fn add_text(port: u16, key: &str, kb: &str, title: &str, content: &str) -> String {
    let path = format!("/api/v1/knowledge-bases/{kb}/knowledge/manual");
    let (status, _, doc) =
        call(port, "POST", &path, &[("X-API-Key", key)], Some(&json!({"title": title, "content": content})));
    assert_eq!(status, 201, "{doc}");
    doc["data"]["id"].as_str().unwrap().to_string()
}

/// Polls a task's progress (`path`) until it ends; its last progress.
fn wait_task(port: u16, key: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = get(port, path, &[("X-API-Key", key)]);
        assert_eq!(status, 200, "{path}: {body}");
        let progress = &body["data"];
        // As upstream's SDK decodes it: a copy's progress, or a move's.
        if path.contains("/copy/") {
            wire::decode::<wire::KBCloneProgress>(progress);
        } else {
            wire::decode::<wire::KnowledgeMoveProgress>(progress);
        }
        if matches!(progress["status"].as_str(), Some("completed" | "failed")) {
            return progress.clone();
        }
        assert!(Instant::now() < deadline, "{path} still {progress} after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn listed(port: u16, key: &str, kb: &str, query: &str) -> Value {
    let (status, _, list) =
        get(port, &format!("/api/v1/knowledge-bases/{kb}/knowledge?{query}"), &[("X-API-Key", key)]);
    assert_eq!(status, 200, "{list}");
    list
}

fn titles(list: &Value) -> Vec<String> {
    let mut t: Vec<String> =
        list["data"].as_array().unwrap().iter().map(|d| d["title"].as_str().unwrap().to_string()).collect();
    t.sort();
    t
}

fn doc(port: u16, key: &str, id: &str) -> Value {
    let (status, _, body) = get(port, &format!("/api/v1/knowledge/{id}"), &[("X-API-Key", key)]);
    assert_eq!(status, 200, "{body}");
    wire::decode::<wire::Knowledge>(&body["data"]);
    body["data"].clone()
}

fn download(port: u16, key: &str, id: &str) -> (u16, Vec<u8>) {
    let reply =
        exchange(port, "GET", &format!("/api/v1/knowledge/{id}/download"), &[("X-API-Key", key)], None).unwrap();
    (reply.status, reply.body)
}

/// The contents of the hits a keyword search of `kb` finds for `query`.
fn found(port: u16, key: &str, kb: &str, query: &str) -> Vec<String> {
    let body = json!({"query": query, "knowledge_base_ids": [kb]});
    let (status, _, hits) = call(port, "POST", "/api/v1/knowledge-search", &[("X-API-Key", key)], Some(&body));
    assert_eq!(status, 200, "{hits}");
    hits["data"].as_array().unwrap().iter().map(|h| h["content"].as_str().unwrap().to_string()).collect()
}

fn error_reason(body: &Value) -> &str {
    body["error"]["details"]["reason"].as_str().unwrap_or_default()
}

const INTRO: &[u8] = b"# Intro\n\nThe lighthouse keeper logs every passing ship in the harbour ledger.\n";
const SPEC: &str = "The flood gate opens at high tide. The pump room holds three diesel pumps. \
                    The north wall was rebuilt after the storm. Sandbags are kept behind the chapel. \
                    The harbour master keeps the spare keys. The ferry stops running at ten.";

#[test]
fn folders_moves_and_copies_work_as_upstreams_clients_call_them() {
    let stack = admin_stack();
    let (port, pg) = (stack.port, &stack.pg);

    let src = new_kb(port, ADMIN_KEY, json!({"name": "harbour"}));
    // A different chunking, so that a move that parses again shows it.
    let dst = new_kb(
        port,
        ADMIN_KEY,
        json!({"name": "archive", "chunking_config": {"chunk_size": 100, "chunk_overlap": 10, "separators": null}}),
    );

    // ---- folders ----
    // A folder upload: the file, then `fileName` with its path (either separator).
    let (status, intro) = upload_in_folder(port, &src, ADMIN_KEY, "docs/intro.md", INTRO);
    assert_eq!(status, 201, "{intro}");
    assert_eq!(
        (intro["data"]["folder_path"].as_str(), intro["data"]["file_name"].as_str(), intro["data"]["title"].as_str()),
        (Some("docs"), Some("intro.md"), Some("intro.md")),
        "{intro}"
    );
    let intro = intro["data"]["id"].as_str().unwrap().to_string();
    let (status, spec) = upload_in_folder(port, &src, ADMIN_KEY, "docs\\spec\\v1\\..\\spec.md", SPEC.as_bytes());
    assert_eq!((status, spec["data"]["folder_path"].as_str()), (201, Some("docs/spec/v1")), "{spec}");
    let spec = spec["data"]["id"].as_str().unwrap().to_string();
    let (status, _, notes) =
        upload(port, &format!("/api/v1/knowledge-bases/{src}/knowledge/file"), ADMIN_KEY, "notes.md", b"Tide notes.");
    assert_eq!((status, notes["data"]["folder_path"].as_str()), (201, Some("")), "{notes}");
    let notes = notes["data"]["id"].as_str().unwrap().to_string();
    let memo = add_text(port, ADMIN_KEY, &src, "memo", "The chapel bell rings at noon.");
    for id in [&intro, &spec, &notes, &memo] {
        assert_eq!(wait_parsed(port, ADMIN_KEY, id)["parse_status"], "completed");
    }
    let spec_chunks = doc(port, ADMIN_KEY, &spec)["chunk_count"].as_i64().unwrap();

    let tree = |kb: &str| {
        let (status, _, tree) = get(port, &format!("/api/v1/knowledge-bases/{kb}/knowledge/folders"), &ADMIN);
        assert_eq!(status, 200, "{tree}");
        wire::decode::<wire::KnowledgeFolderTree>(&tree["data"]);
        tree["data"].clone()
    };
    let t = tree(&src);
    assert_eq!((t["root_document_count"].as_i64(), t["total_document_count"].as_i64()), (Some(2), Some(4)), "{t}");
    let docs = &t["folders"][0];
    assert_eq!(
        (docs["path"].as_str(), docs["name"].as_str(), docs["document_count"].as_i64(), docs["total_count"].as_i64()),
        (Some("docs"), Some("docs"), Some(1), Some(2)),
        "{t}"
    );
    let spec_node = &docs["children"][0];
    assert_eq!((spec_node["path"].as_str(), spec_node["document_count"].as_i64()), (Some("docs/spec"), Some(0)));
    assert_eq!(spec_node["children"][0]["path"], "docs/spec/v1", "{t}");
    assert_eq!(spec_node["children"][0]["total_count"], 1, "{t}");

    // Listing one folder, a folder with its subfolders, the root, and everything.
    assert_eq!(titles(&listed(port, ADMIN_KEY, &src, "folder_path=docs")), ["intro.md"]);
    assert_eq!(
        titles(&listed(port, ADMIN_KEY, &src, "folder_path=docs&folder_recursive=true")),
        ["intro.md", "spec.md"]
    );
    assert_eq!(titles(&listed(port, ADMIN_KEY, &src, "folder_path=")), ["memo", "notes.md"]);
    assert_eq!(listed(port, ADMIN_KEY, &src, "")["total"], 4);
    assert_eq!(listed(port, ADMIN_KEY, &src, "folder_path=docs/")["total"], 1, "the path is read normalized");

    // Filing documents: into a new folder, and back to the root (Go sends "" for it).
    let file_into = |body: Value| call(port, "POST", "/api/v1/knowledge/folder", &ADMIN, Some(&body));
    let (status, _, filed) =
        file_into(json!({"kb_id": src, "knowledge_ids": [notes, memo, dst], "folder_path": "/archive/2026/"}));
    assert_eq!(status, 200, "{filed}");
    wire::decode::<wire::FolderMoved>(&filed["data"]);
    assert_eq!(filed["data"], json!({"moved_count": 2, "folder_path": "archive/2026"}), "ids of nothing move nothing");
    assert_eq!(doc(port, ADMIN_KEY, &memo)["folder_path"], "archive/2026");
    let (_, _, back) = file_into(json!({"kb_id": src, "knowledge_ids": [memo], "folder_path": ""}));
    assert_eq!(back["data"], json!({"moved_count": 1, "folder_path": ""}), "{back}");
    let (status, _, bad) = file_into(json!({"kb_id": src, "knowledge_ids": null}));
    assert_eq!((status, error_reason(&bad)), (400, "invalid_argument"), "{bad}");
    let (status, _, _) = file_into(json!({"kb_id": "", "knowledge_ids": [memo]}));
    assert_eq!(status, 400);

    // Renaming (moving) a folder with its subfolders, merged with what is there.
    let folders = format!("/api/v1/knowledge-bases/{src}/knowledge/folders");
    let rename = |body: Value| call(port, "PUT", &folders, &ADMIN, Some(&body));
    let (status, _, renamed) = rename(json!({"from": "docs", "to": "handbook/docs"}));
    assert_eq!(status, 200, "{renamed}");
    wire::decode::<wire::FolderMoved>(&renamed["data"]);
    assert_eq!(renamed["data"], json!({"moved_count": 2, "folder_path": "handbook/docs"}));
    assert_eq!(doc(port, ADMIN_KEY, &spec)["folder_path"], "handbook/docs/spec/v1");
    let (_, _, merged) = rename(json!({"from": "archive", "to": "handbook"}));
    assert_eq!(merged["data"]["moved_count"], 1, "{merged}");
    assert_eq!(doc(port, ADMIN_KEY, &notes)["folder_path"], "handbook/2026");
    let t = tree(&src);
    assert_eq!((t["folders"].as_array().unwrap().len(), t["folders"][0]["total_count"].as_i64()), (1, Some(3)), "{t}");
    let (status, _, into_itself) = rename(json!({"from": "handbook", "to": "handbook/inner"}));
    assert_eq!(status, 400, "{into_itself}");
    assert_eq!(rename(json!({"from": "", "to": "x"})).0, 400);
    assert_eq!(rename(json!({"from": "x", "to": "/"})).0, 400);
    let (status, _, nothing) = rename(json!({"from": "no-such-folder", "to": "y"}));
    assert_eq!((status, nothing["data"]["moved_count"].as_i64()), (200, Some(0)));

    // ---- move targets ----
    let (status, _, model) = call(
        port,
        "POST",
        "/api/v1/models",
        &ADMIN,
        Some(&json!({"name": "other-embedder", "type": "Embedding", "source": "remote",
                     "parameters": {"base_url": "http://127.0.0.1:9", "provider": "generic"}})),
    );
    assert_eq!(status, 201, "{model}");
    let other_model = new_kb(
        port,
        ADMIN_KEY,
        json!({"name": "elsewhere", "embedding_model_id": model["data"]["id"].as_str().unwrap()}),
    );
    let (status, _, targets) = get(port, &format!("/api/v1/knowledge-bases/{src}/move-targets"), &ADMIN);
    assert_eq!(status, 200, "{targets}");
    wire::decode::<Vec<wire::MoveTarget>>(&targets["data"]);
    let ids: Vec<&str> = targets["data"].as_array().unwrap().iter().map(|kb| kb["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [dst.as_str()], "only other knowledge bases with the same embedding model: {targets}");
    assert_eq!(targets["data"][0]["type"], "document");

    // ---- moves ----
    let move_docs =
        |key: &str, body: Value| call(port, "POST", "/api/v1/knowledge/move", &[("X-API-Key", key)], Some(&body));
    let asked = |ids: &[&str], target: &str, mode: &str| json!({"knowledge_ids": ids, "source_kb_id": src, "target_kb_id": target, "mode": mode});
    for (body, status, why) in [
        (asked(&[&intro], &dst, "copy"), 400, "an unknown mode"),
        (asked(&[&intro], &src, "reuse_vectors"), 400, "the source as the target"),
        (asked(&[&intro], &other_model, "reuse_vectors"), 400, "another embedding model"),
        (asked(&[], &dst, "reuse_vectors"), 400, "no documents"),
        (asked(&[&dst], &dst, "reuse_vectors"), 404, "an id of no document"),
        (
            json!({"knowledge_ids": [intro], "source_kb_id": src, "target_kb_id": "", "mode": "reparse"}),
            400,
            "no target",
        ),
    ] {
        let (got, _, answer) = move_docs(ADMIN_KEY, body);
        assert_eq!(got, status, "{why}: {answer}");
    }
    let (status, _, started) = move_docs(ADMIN_KEY, asked(&[&intro], &dst, "reuse_vectors"));
    assert_eq!(status, 200, "{started}");
    wire::decode::<wire::MoveKnowledgeResponse>(&started["data"]);
    let started = &started["data"];
    assert_eq!(
        (started["source_kb_id"].as_str(), started["target_kb_id"].as_str(), started["knowledge_count"].as_i64()),
        (Some(src.as_str()), Some(dst.as_str()), Some(1)),
        "{started}"
    );
    assert_eq!(started["message"], "Knowledge move task started");
    let move_task = started["task_id"].as_str().unwrap().to_string();
    let moved = wait_task(port, ADMIN_KEY, &format!("/api/v1/knowledge/move/progress/{move_task}"));
    assert_eq!(
        (moved["status"].as_str(), moved["progress"].as_i64(), moved["total"].as_i64(), moved["failed"].as_i64()),
        (Some("completed"), Some(100), Some(1), Some(0)),
        "{moved}"
    );
    assert_eq!(
        (moved["source_kb_id"].as_str(), moved["target_kb_id"].as_str()),
        (Some(src.as_str()), Some(dst.as_str()))
    );
    let intro_doc = doc(port, ADMIN_KEY, &intro);
    assert_eq!(
        (
            intro_doc["knowledge_base_id"].as_str(),
            intro_doc["folder_path"].as_str(),
            intro_doc["parse_status"].as_str()
        ),
        (Some(dst.as_str()), Some("handbook/docs"), Some("completed")),
        "a move keeps the document's folder and its chunks: {intro_doc}"
    );
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{intro}"), &ADMIN);
    assert!(chunks["data"].as_array().unwrap().iter().all(|c| c["knowledge_base_id"] == dst.as_str()), "{chunks}");
    assert!(found(port, ADMIN_KEY, &dst, "lighthouse").iter().any(|c| c.contains("lighthouse keeper")));
    assert!(found(port, ADMIN_KEY, &src, "lighthouse").is_empty(), "nothing of it is left in the source");
    // Once moved, it is no longer in the source.
    let (status, _, again) = move_docs(ADMIN_KEY, asked(&[&intro], &dst, "reuse_vectors"));
    assert_eq!(status, 400, "{again}");

    // `reparse`: parsed again in the target, with the target's chunking.
    let (status, _, started) = move_docs(ADMIN_KEY, asked(&[&spec], &dst, "reparse"));
    assert_eq!(status, 200, "{started}");
    let task = started["data"]["task_id"].as_str().unwrap();
    assert_eq!(wait_task(port, ADMIN_KEY, &format!("/api/v1/knowledge/move/progress/{task}"))["status"], "completed");
    let spec_doc = wait_parsed(port, ADMIN_KEY, &spec);
    assert_eq!(
        (spec_doc["knowledge_base_id"].as_str(), spec_doc["parse_status"].as_str()),
        (Some(dst.as_str()), Some("completed"))
    );
    assert!(spec_doc["chunk_count"].as_i64().unwrap() > spec_chunks, "chunked at 100: {spec_doc}");

    // A document that is gone by the time the worker comes to it is counted as failed, with
    // the reason; the others move. (The task is written as the API writes one, so that the
    // document is gone for sure.)
    let tenant = &psql(pg, &format!("SELECT tenant_id FROM knowledge_bases WHERE id = '{src}'"))[0][0];
    let ghost = "0b5e0b5e-0000-4000-8000-000000000001";
    psql(
        pg,
        &format!(
            "INSERT INTO transfer_tasks (tenant_id, id, kind, source_kb_id, target_kb_id, knowledge_ids, mode) \
             VALUES ('{tenant}', 'kg_move_ghost', 'move', '{src}', '{dst}', ARRAY['{ghost}', '{memo}']::uuid[], \
             'reuse_vectors')"
        ),
    );
    let mixed = wait_task(port, ADMIN_KEY, "/api/v1/knowledge/move/progress/kg_move_ghost");
    assert_eq!(
        (mixed["status"].as_str(), mixed["processed"].as_i64(), mixed["failed"].as_i64()),
        (Some("completed"), Some(2), Some(1)),
        "{mixed}"
    );
    assert!(
        mixed["message"].as_str().unwrap().contains("1 failed, the first because the document was deleted"),
        "{mixed}"
    );
    assert_eq!(doc(port, ADMIN_KEY, &memo)["knowledge_base_id"], dst.as_str());
    psql(
        pg,
        &format!(
            "INSERT INTO transfer_tasks (tenant_id, id, kind, source_kb_id, target_kb_id, knowledge_ids, mode) \
             VALUES ('{tenant}', 'kg_move_lost', 'move', '{src}', '{dst}', ARRAY['{ghost}']::uuid[], 'reparse')"
        ),
    );
    let lost = wait_task(port, ADMIN_KEY, "/api/v1/knowledge/move/progress/kg_move_lost");
    assert_eq!((lost["status"].as_str(), lost["failed"].as_i64()), (Some("failed"), Some(1)), "all failed: {lost}");
    assert!(lost["error"].as_str().unwrap().contains("deleted"), "{lost}");

    // ---- copies ----
    let copy = |key: &str, body: Value| {
        call(
            port,
            "POST",
            "/api/v1/knowledge-bases/copy",
            &[("X-API-Key", key), ("Accept-Language", "en")],
            Some(&body),
        )
    };
    let (status, _, started) = copy(ADMIN_KEY, json!({"source_id": dst, "target_id": "", "task_id": "harbour-copy-1"}));
    assert_eq!(status, 200, "{started}");
    wire::decode::<wire::CopyKnowledgeBaseResponse>(&started["data"]);
    assert_eq!(
        started["data"],
        json!({"task_id": "harbour-copy-1", "source_id": dst, "target_id": "", "message": "Knowledge base copy task started"})
    );
    let (status, _, taken) = copy(ADMIN_KEY, json!({"source_id": dst, "task_id": "harbour-copy-1"}));
    assert_eq!(status, 409, "a task id is the tenant's once: {taken}");
    let (status, _, _) = copy(ADMIN_KEY, json!({"source_id": dst, "task_id": "no/slashes"}));
    assert_eq!(status, 400);
    let copied = wait_task(port, ADMIN_KEY, "/api/v1/knowledge-bases/copy/progress/harbour-copy-1");
    assert_eq!(
        (
            copied["status"].as_str(),
            copied["total"].as_i64(),
            copied["processed"].as_i64(),
            copied["progress"].as_i64()
        ),
        (Some("completed"), Some(3), Some(3), Some(100)),
        "{copied}"
    );
    assert_eq!(copied["source_id"], dst.as_str());
    let copy_kb = copied["target_id"].as_str().unwrap().to_string();
    let (_, _, kb) = get(port, &format!("/api/v1/knowledge-bases/{copy_kb}"), &ADMIN);
    assert_eq!(
        (kb["data"]["name"].as_str(), kb["data"]["chunk_size"].as_i64(), kb["data"]["knowledge_count"].as_i64()),
        (Some("archive Copy"), Some(100), Some(3)),
        "the copy has the source's settings and documents: {kb}"
    );
    let copies = listed(port, ADMIN_KEY, &copy_kb, "");
    assert_eq!(titles(&copies), ["intro.md", "memo", "spec.md"]);
    let copy_of =
        |title: &str| copies["data"].as_array().unwrap().iter().find(|d| d["title"] == title).unwrap().clone();
    let (intro_copy, spec_copy) = (copy_of("intro.md"), copy_of("spec.md"));
    assert_ne!(intro_copy["id"].as_str(), Some(intro.as_str()));
    assert_eq!(
        (intro_copy["folder_path"].as_str(), intro_copy["parse_status"].as_str(), spec_copy["chunk_count"].as_i64()),
        (Some("handbook/docs"), Some("completed"), spec_doc["chunk_count"].as_i64()),
        "{copies}"
    );
    let intro_copy = intro_copy["id"].as_str().unwrap().to_string();
    assert_eq!(download(port, ADMIN_KEY, &intro_copy), (200, INTRO.to_vec()));
    assert!(found(port, ADMIN_KEY, &copy_kb, "pumps").iter().any(|c| c.contains("diesel pumps")));
    // A task taken over from a worker that died (its lease ran out) carries on where it
    // stopped: the documents it did are not copied twice.
    psql(
        pg,
        "UPDATE transfer_tasks SET status = 'processing', lease_owner = 'dead-worker', \
         lease_expires_at = now() - interval '1 second' WHERE id = 'harbour-copy-1'",
    );
    let resumed = wait_task(port, ADMIN_KEY, "/api/v1/knowledge-bases/copy/progress/harbour-copy-1");
    assert_eq!((resumed["status"].as_str(), resumed["processed"].as_i64()), (Some("completed"), Some(3)), "{resumed}");
    assert_eq!(listed(port, ADMIN_KEY, &copy_kb, "")["total"], 3, "nothing copied twice");
    // Files of their own, not shared: deleting the copy's file leaves the original's.
    let keys =
        psql(pg, &format!("SELECT object_key FROM knowledge WHERE id IN ('{intro}', '{intro_copy}') ORDER BY id"));
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0][0], keys[1][0], "{keys:?}");
    let (status, _, _) = call(port, "DELETE", &format!("/api/v1/knowledge/{intro_copy}"), &ADMIN, None);
    assert_eq!(status, 200);
    assert_eq!(download(port, ADMIN_KEY, &intro), (200, INTRO.to_vec()), "the original keeps its file");

    // Into an existing knowledge base: what it has already (the same file) is not copied again.
    let (status, _, started) = copy(ADMIN_KEY, json!({"source_id": dst, "target_id": copy_kb}));
    assert_eq!((status, started["data"]["target_id"].as_str()), (200, Some(copy_kb.as_str())), "{started}");
    assert!(started["data"]["task_id"].as_str().unwrap().starts_with("kb_clone_"), "{started}");
    let path = format!("/api/v1/knowledge-bases/copy/progress/{}", started["data"]["task_id"].as_str().unwrap());
    let again = wait_task(port, ADMIN_KEY, &path);
    assert_eq!((again["status"].as_str(), again["total"].as_i64()), (Some("completed"), Some(1)), "{again}");
    assert_eq!(titles(&listed(port, ADMIN_KEY, &copy_kb, "")), ["intro.md", "memo", "spec.md"]);
    let (status, _, refused) = copy(ADMIN_KEY, json!({"source_id": dst, "target_id": other_model}));
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("different embedding models"), "{refused}");

    // Deleting the source leaves the copy whole: its files, chunks and documents.
    let (status, _, _) = call(port, "DELETE", &format!("/api/v1/knowledge-bases/{dst}"), &ADMIN, None);
    assert_eq!(status, 200);
    let copies = listed(port, ADMIN_KEY, &copy_kb, "");
    for d in copies["data"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        if d["type"] == "file" {
            let (status, bytes) = download(port, ADMIN_KEY, id);
            assert!(status == 200 && !bytes.is_empty(), "{d}");
        }
        let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{id}"), &ADMIN);
        assert_eq!(chunks["total"], d["chunk_count"], "{d}: {chunks}");
    }
    assert!(found(port, ADMIN_KEY, &copy_kb, "lighthouse").iter().any(|c| c.contains("lighthouse keeper")));
    // Tasks keep answering after their knowledge bases are gone.
    let (status, _, _) = get(port, &format!("/api/v1/knowledge/move/progress/{move_task}"), &ADMIN);
    assert_eq!(status, 200);
    // A copy's id is no move's, and the reverse.
    let (status, _, _) = get(port, "/api/v1/knowledge/move/progress/harbour-copy-1", &ADMIN);
    assert_eq!(status, 404);
    let (status, _, _) = get(port, &format!("/api/v1/knowledge-bases/copy/progress/{move_task}"), &ADMIN);
    assert_eq!(status, 404);

    // ---- another tenant sees and moves none of it ----
    let (status, _, other) = call(port, "POST", "/api/v1/tenants", &ADMIN, Some(&json!({"name": "bravo"})));
    assert_eq!(status, 201, "{other}");
    let b_key = other["data"]["api_key"].as_str().unwrap().to_string();
    let b = [("X-API-Key", b_key.as_str())];
    let b_one = new_kb(port, &b_key, json!({"name": "one"}));
    let b_two = new_kb(port, &b_key, json!({"name": "two"}));
    for (method, path, body) in [
        ("GET", format!("/api/v1/knowledge-bases/{src}/knowledge/folders"), None),
        (
            "PUT",
            format!("/api/v1/knowledge-bases/{src}/knowledge/folders"),
            Some(json!({"from": "handbook", "to": "stolen"})),
        ),
        (
            "POST",
            "/api/v1/knowledge/folder".into(),
            Some(json!({"kb_id": src, "knowledge_ids": [notes], "folder_path": "x"})),
        ),
        ("GET", format!("/api/v1/knowledge-bases/{src}/move-targets"), None),
        ("GET", format!("/api/v1/knowledge/move/progress/{move_task}"), None),
        ("GET", "/api/v1/knowledge-bases/copy/progress/harbour-copy-1".into(), None),
        ("POST", "/api/v1/knowledge-bases/copy".into(), Some(json!({"source_id": copy_kb}))),
        ("POST", "/api/v1/knowledge-bases/copy".into(), Some(json!({"source_id": b_one, "target_id": copy_kb}))),
        (
            "POST",
            "/api/v1/knowledge/move".into(),
            Some(
                json!({"knowledge_ids": [notes], "source_kb_id": src, "target_kb_id": b_one, "mode": "reuse_vectors"}),
            ),
        ),
        (
            "POST",
            "/api/v1/knowledge/move".into(),
            Some(
                json!({"knowledge_ids": [notes], "source_kb_id": b_one, "target_kb_id": b_two, "mode": "reuse_vectors"}),
            ),
        ),
    ] {
        let (status, _, answer) = call(port, method, &path, &b, body.as_ref());
        assert_eq!(status, 404, "{method} {path} as another tenant: {answer}");
        assert!(!answer.to_string().contains("handbook"), "{answer}");
    }
    assert_eq!(doc(port, ADMIN_KEY, &notes)["folder_path"], "handbook/2026", "unchanged");
    assert_eq!(doc(port, ADMIN_KEY, &notes)["knowledge_base_id"], src.as_str(), "unmoved");
    // Task ids are each tenant's own: B may name one as A did.
    add_text(port, &b_key, &b_one, "b memo", "Bravo's own text.");
    let (status, _, mine) = copy(&b_key, json!({"source_id": b_one, "task_id": "harbour-copy-1"}));
    assert_eq!(status, 200, "{mine}");
    let b_copy = wait_task(port, &b_key, "/api/v1/knowledge-bases/copy/progress/harbour-copy-1");
    assert_eq!((b_copy["source_id"].as_str(), b_copy["status"].as_str()), (Some(b_one.as_str()), Some("completed")));
    let b_copies = listed(port, &b_key, b_copy["target_id"].as_str().unwrap(), "");
    let b_copied = b_copies["data"][0]["id"].as_str().unwrap();
    assert_eq!(wait_parsed(port, &b_key, b_copied)["parse_status"], "completed", "{b_copies}");
    let (_, _, a_copy) = get(port, "/api/v1/knowledge-bases/copy/progress/harbour-copy-1", &ADMIN);
    assert_eq!(a_copy["data"]["source_id"], dst.as_str(), "A's task is A's: {a_copy}");
}

// ---- with vectors ----

/// A stand-in embedding model speaking OpenAI's protocol: each text's vector counts its
/// words in 8 buckets, so that a question with a passage's words finds it.
fn fake_embedder() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if first {
                            first = false;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let data: Vec<Value> = request["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(index, text)| json!({"index": index, "embedding": vector(text.as_str().unwrap())}))
                        .collect();
                    let answer = json!({"data": data, "model": request["model"]}).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(answer.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.01f32; 8];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word.to_lowercase().bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        v[(hash % 8) as usize] += 1.0;
    }
    v
}

fn wait_vectors(port: u16, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = doc(port, ADMIN_KEY, id);
        if matches!(d["vector_status"].as_str(), Some("completed" | "failed")) {
            return d;
        }
        assert!(Instant::now() < deadline, "no vectors after 60 s: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (model, knowledge base) of each vector of the document's chunks.
fn vectors_of(pg: &Pg, id: &str) -> Vec<(String, String)> {
    psql(
        pg,
        &format!(
            "SELECT e.model, e.knowledge_base_id FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id \
             WHERE c.knowledge_id = '{id}' ORDER BY c.position"
        ),
    )
    .into_iter()
    .map(|row| (row[0].clone(), row[1].clone()))
    .collect()
}

#[test]
fn vectors_move_and_copy_with_their_documents_and_are_made_again_where_they_do_not_fit() {
    require!(Need::DockerEngine);
    let pg = Pg::local_image();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let files = tempfile::tempdir().unwrap();
    let embedder = fake_embedder();
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    env.extend([
        ("EMBEDDING_PROVIDER".to_string(), "generic".to_string()),
        ("EMBEDDING_BASE_URL".into(), format!("http://127.0.0.1:{embedder}")),
        ("EMBEDDING_MODEL_NAME".into(), "fake-a".into()),
    ]);
    let (_app, port) = start_app(&env);

    let src = new_kb(port, ADMIN_KEY, json!({"name": "harbour"}));
    let dst = new_kb(port, ADMIN_KEY, json!({"name": "archive"}));
    let texts = [
        ("keeper", "The lighthouse keeper logs every passing ship."),
        ("pumps", "The pump room holds three diesel pumps."),
        ("bell", "The chapel bell rings at noon."),
        ("ferry", "The ferry stops running at ten."),
    ];
    let ids: Vec<String> = texts.iter().map(|(title, text)| add_text(port, ADMIN_KEY, &src, title, text)).collect();
    for id in &ids {
        assert_eq!(wait_vectors(port, id)["vector_status"], "completed");
    }
    let search = |kb: &str, query: &str| {
        // By meaning only: the keyword retriever is off.
        let body = json!({"query_text": query, "disable_keywords_match": true});
        let path = format!("/api/v1/knowledge-bases/{kb}/hybrid-search");
        let (status, _, hits) = call(port, "POST", &path, &ADMIN, Some(&body));
        assert_eq!(status, 200, "{hits}");
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["knowledge_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let move_one = |id: &str, mode: &str| {
        let body = json!({"knowledge_ids": [id], "source_kb_id": src, "target_kb_id": dst, "mode": mode});
        let (status, _, started) = call(port, "POST", "/api/v1/knowledge/move", &ADMIN, Some(&body));
        assert_eq!(status, 200, "{started}");
        let task = started["data"]["task_id"].as_str().unwrap().to_string();
        wait_task(port, ADMIN_KEY, &format!("/api/v1/knowledge/move/progress/{task}"))
    };

    // reuse_vectors: the vectors go with their chunks, and the target records their model.
    assert_eq!(move_one(&ids[0], "reuse_vectors")["status"], "completed");
    assert!(
        vectors_of(&pg, &ids[0]).iter().all(|(m, kb)| m == "fake-a" && *kb == dst),
        "{:?}",
        vectors_of(&pg, &ids[0])
    );
    assert!(!vectors_of(&pg, &ids[0]).is_empty());
    let (_, _, kb) = get(port, &format!("/api/v1/knowledge-bases/{dst}"), &ADMIN);
    assert_eq!(kb["data"]["embedding_model"], "fake-a", "{kb}");
    assert!(
        search(&dst, "lighthouse keeper logs every passing ship").contains(&ids[0]),
        "found by meaning in the target"
    );
    assert!(!search(&src, "lighthouse keeper logs every passing ship").contains(&ids[0]));

    // reparse: parsed and embedded again in the target.
    assert_eq!(move_one(&ids[1], "reparse")["status"], "completed");
    assert_eq!(wait_parsed(port, ADMIN_KEY, &ids[1])["knowledge_base_id"], dst.as_str());
    assert_eq!(wait_vectors(port, &ids[1])["vector_status"], "completed");
    assert!(vectors_of(&pg, &ids[1]).iter().all(|(m, kb)| m == "fake-a" && *kb == dst));

    // A copy has vectors of its own: the same model, another knowledge base, other chunks.
    let body = json!({"source_id": src, "task_id": "harbour-vectors"});
    let (status, _, _) = call(port, "POST", "/api/v1/knowledge-bases/copy", &ADMIN, Some(&body));
    assert_eq!(status, 200);
    let copied = wait_task(port, ADMIN_KEY, "/api/v1/knowledge-bases/copy/progress/harbour-vectors");
    assert_eq!((copied["status"].as_str(), copied["total"].as_i64()), (Some("completed"), Some(2)), "{copied}");
    let copy_kb = copied["target_id"].as_str().unwrap().to_string();
    let copies = listed(port, ADMIN_KEY, &copy_kb, "");
    for d in copies["data"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        assert_eq!(d["vector_status"], "completed", "{d}");
        let v = vectors_of(&pg, id);
        assert!(!v.is_empty() && v.iter().all(|(m, kb)| m == "fake-a" && *kb == copy_kb), "{v:?}");
    }
    let bell_copy = copies["data"].as_array().unwrap().iter().find(|d| d["title"] == "bell").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(search(&copy_kb, "chapel bell rings at noon").contains(&bell_copy));

    // A target indexed with another model (say, before the model changed and it was
    // reindexed): the moved vectors do not fit it, so none of them stay; they are made
    // again, which with the target's old vectors needs the target reindexed.
    psql(&pg, &format!("UPDATE knowledge_bases SET embedding_model = 'legacy' WHERE id = '{dst}'"));
    let moved = move_one(&ids[3], "reuse_vectors");
    assert_eq!((moved["status"].as_str(), moved["failed"].as_i64()), (Some("completed"), Some(0)), "{moved}");
    assert!(
        vectors_of(&pg, &ids[3]).iter().all(|(m, _)| m == "legacy"),
        "no vector of another model: {:?}",
        vectors_of(&pg, &ids[3])
    );
    let after = wait_vectors(port, &ids[3]);
    assert_eq!(after["vector_status"], "failed", "{after}");
    assert!(after["vector_error"].as_str().unwrap().contains("reindex"), "{after}");
    let (status, _, _) = call(port, "POST", &format!("/api/v1/knowledge-bases/{dst}/reindex"), &ADMIN, None);
    assert_eq!(status, 202);
    for id in [&ids[0], &ids[1], &ids[3]] {
        assert_eq!(wait_vectors(port, id)["vector_status"], "completed");
        assert!(vectors_of(&pg, id).iter().all(|(m, kb)| m == "fake-a" && *kb == dst));
    }

    // Deleting the source takes its vectors, and none of the copy's.
    let (status, _, _) = call(port, "DELETE", &format!("/api/v1/knowledge-bases/{src}"), &ADMIN, None);
    assert_eq!(status, 200);
    assert!(search(&copy_kb, "chapel bell rings at noon").contains(&bell_copy));
    let left = psql(&pg, &format!("SELECT count(*) FROM chunk_embeddings WHERE knowledge_base_id = '{src}'"));
    assert_eq!(left[0][0], "0");
}
