//! A client written for upstream WeKnora, against ours: requests as upstream's Go SDK
//! sends them (its whole objects with zeros, `""` ids and `null` lists for what is unset,
//! fields we do not use), and answers checked for the names and JSON types its structs
//! decode (an integer `match_type`, no UUID where it wants an integer `tenant_id`, integer
//! error codes): every answer is decoded into mirrors of the SDK's wire types (`wire`),
//! strictly, so a wrong JSON type fails. The app, docreader, PostgreSQL and Redis are real;
//! no chat model is configured, so answers are extractive.

mod support;
mod wire;

use serde_json::{Value, json};
use support::*;
use wire::{Envelope, Paged, decode, upstream_error};

const ADMIN: [(&str, &str); 1] = [("X-API-Key", ADMIN_KEY)];

/// What the SDK's `SearchResult` decodes, with upstream's integer `match_type`.
fn decodes_as_upstream_hit(hit: &Value) {
    let hit: wire::SearchResult = decode(hit);
    assert!(matches!(hit.match_type, 0 | 1), "match_type is upstream's integer: {hit:?}");
}

/// The SDK's `Session` has `tenant_id uint64`: a UUID there fails its decoding.
fn decodes_as_upstream_session(session: &Value) {
    let s: wire::Session = decode(session);
    assert!(s.tenant_id > 0, "{s:?}");
    assert!(session["is_pinned"].is_boolean(), "{session}");
}

/// The frames of a `text/event-stream` answer as upstream's SDK's `ContinueStream` reads
/// them: an `event:` line's value as written (no space dropped) must be `message`.
fn sdk_frames(body: &str) -> Vec<Value> {
    let (mut event, mut data, mut out) = ("", "", Vec::new());
    for line in body.lines() {
        if line.is_empty() {
            if !data.is_empty() && event == "message" {
                out.push(serde_json::from_str(data).unwrap());
            }
            (event, data) = ("", "");
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v;
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v;
        }
    }
    out
}

/// The `data:` lines of a `text/event-stream` answer, as JSON.
fn frames(body: &str) -> Vec<Value> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect()
}

#[test]
fn a_client_written_for_upstream_works_unchanged() {
    let stack = admin_stack();
    let port = stack.port;

    // CreateKnowledgeBase sends its whole object: "" model ids, zero counts and ids, null
    // configs, and the chunking settings nested.
    let kb = json!({
        "id": "", "name": "运维手册", "type": "document", "is_temporary": false, "is_pinned": false,
        "description": "ops", "tenant_id": 0,
        "chunking_config": {"chunk_size": 300, "chunk_overlap": 30, "separators": null},
        "image_processing_config": {"model_id": ""}, "faq_config": null,
        "embedding_model_id": "", "summary_model_id": "", "vlm_config": {"enabled": false, "model_id": ""},
        "storage_provider_config": null, "extract_config": null, "auto_tag_config": null,
        "created_at": "0001-01-01T00:00:00Z", "updated_at": "0001-01-01T00:00:00Z",
        "knowledge_count": 0, "chunk_count": 0, "is_processing": false, "processing_count": 0
    });
    let (status, _, created) = call(port, "POST", "/api/v1/knowledge-bases", &ADMIN, Some(&kb));
    assert_eq!(status, 201, "{created}");
    let kb = &created["data"];
    decode::<Envelope<wire::KnowledgeBase>>(&created);
    assert_eq!(
        kb["chunking_config"],
        json!({"chunk_size": 300, "chunk_overlap": 30, "separators": kb["split_markers"]})
    );
    assert_eq!((kb["type"].as_str(), kb["is_pinned"].as_bool()), (Some("document"), Some(false)), "{kb}");
    assert!(kb.get("tenant_id").is_none_or(Value::is_u64), "{kb}");
    let kb_id = kb["id"].as_str().unwrap().to_string();

    // UpdateKnowledgeBase: `{name, description, config: {chunking_config}}`.
    let update = json!({"name": "", "description": "runbooks",
        "config": {"chunking_config": {"chunk_size": 400, "chunk_overlap": 40, "separators": ["\n\n"]},
                   "image_processing_config": {"model_id": ""}, "faq_config": null}});
    let (status, _, updated) = call(port, "PUT", &format!("/api/v1/knowledge-bases/{kb_id}"), &ADMIN, Some(&update));
    assert_eq!(status, 200, "{updated}");
    let chunking = &updated["data"]["chunking_config"];
    decode::<Envelope<wire::KnowledgeBase>>(&updated);
    assert_eq!(*chunking, json!({"chunk_size": 400, "chunk_overlap": 40, "separators": ["\n\n"]}), "{updated}");
    assert_eq!(updated["data"]["name"], "运维手册", "a blank name keeps the name");

    // CreateManualKnowledge, then the Knowledge object under upstream's names.
    let manual =
        json!({"title": "backups", "content": "# Backups\n\nThe nightly backup runs at 02:00 and is kept 30 days."});
    let (status, _, doc) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb_id}/knowledge/manual"), &ADMIN, Some(&manual));
    assert_eq!(status, 201, "{doc}");
    decode::<Envelope<wire::Knowledge>>(&doc);
    let doc_id = doc["data"]["id"].as_str().unwrap().to_string();
    let doc = wait_parsed(port, ADMIN_KEY, &doc_id);
    decode::<wire::Knowledge>(&doc);
    assert_eq!((doc["type"].as_str(), doc["enable_status"].as_str()), (Some("manual"), Some("enabled")), "{doc}");
    assert_eq!((doc["error_message"].as_str(), doc["file_size"].is_i64()), (Some(""), true), "{doc}");

    // A file uploaded twice: 409 with the document that has it, as the SDK's ErrDuplicateFile reads it.
    let file_path = format!("/api/v1/knowledge-bases/{kb_id}/knowledge/file");
    let runbook = b"# Restore drills\n\nRestore drills run monthly on a fresh machine.\n";
    let (status, _, file) = upload(port, &file_path, ADMIN_KEY, "drills.md", runbook);
    assert_eq!(status, 201, "{file}");
    decode::<Envelope<wire::Knowledge>>(&file);
    let file_id = file["data"]["id"].as_str().unwrap().to_string();
    let (status, _, again) = upload(port, &file_path, ADMIN_KEY, "drills-copy.md", runbook);
    assert_eq!((status, again["data"]["id"].as_str()), (409, Some(file_id.as_str())), "{again}");
    decode::<wire::Knowledge>(&again["data"]);
    // Upstream answers this one with a word as its top-level code, which its SDK decodes.
    assert_eq!((again["code"].as_str(), again["error"]["code"].as_u64()), (Some("duplicate_file"), Some(1005)));
    assert!(again["message"].as_str().unwrap().contains("same content"), "{again}");
    let file = wait_parsed(port, ADMIN_KEY, &file_id);
    assert_eq!(
        (file["file_name"].as_str(), file["file_size"].as_u64()),
        (Some("drills.md"), Some(runbook.len() as u64))
    );
    // The original back, named as sent.
    let reply = exchange(port, "GET", &format!("/api/v1/knowledge/{file_id}/download"), &ADMIN, None).unwrap();
    assert_eq!((reply.status, &reply.body[..]), (200, &runbook[..]));
    assert!(
        reply.header("content-disposition").unwrap().contains("filename=\"drills.md\""),
        "{:?}",
        reply.header("content-disposition")
    );
    // Listing filters, batch reads, renames.
    let list = |query: &str| get(port, &format!("/api/v1/knowledge-bases/{kb_id}/knowledge?{query}"), &ADMIN).2;
    assert_eq!(list("page=1&page_size=10")["total"], 2);
    decode::<Paged<wire::Knowledge>>(&list("page=1&page_size=10"));
    let found = list("keyword=DRILL&file_type=md&parse_status=completed");
    assert_eq!(
        (found["total"].as_i64(), found["data"][0]["id"].as_str()),
        (Some(1), Some(file_id.as_str())),
        "{found}"
    );
    assert_eq!(list("keyword=100%25")["total"], 0, "`%` matches itself");
    let (_, _, batch) = get(port, &format!("/api/v1/knowledge/batch?ids={file_id}&ids={doc_id}"), &ADMIN);
    decode::<Envelope<Vec<wire::Knowledge>>>(&batch);
    let ids: Vec<&str> = batch["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [file_id.as_str(), doc_id.as_str()], "in the order asked: {batch}");
    let renamed = json!({"id": file_id, "title": "Restore drills", "file_name": "drills.md", "file_size": 0});
    let (status, _, renamed) = call(port, "PUT", &format!("/api/v1/knowledge/{file_id}"), &ADMIN, Some(&renamed));
    assert_eq!((status, renamed["data"]["title"].as_str()), (200, Some("Restore drills")), "{renamed}");
    decode::<Envelope<wire::Knowledge>>(&renamed);
    // Chunks under upstream's names, and one by its id.
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{file_id}?page=1&page_size=25"), &ADMIN);
    decode::<Paged<wire::Chunk>>(&chunks);
    let chunk = &chunks["data"][0];
    assert_eq!(
        (chunk["chunk_index"].as_i64(), chunk["knowledge_id"].as_str()),
        (Some(0), Some(file_id.as_str())),
        "{chunk}"
    );
    assert!(chunk["start_at"].is_i64() && chunk["end_at"].is_i64() && chunk["is_enabled"] == true, "{chunk}");
    let (status, _, one) = get(port, &format!("/api/v1/chunks/by-id/{}", chunk["id"].as_str().unwrap()), &ADMIN);
    assert_eq!((status, &one["data"]["content"]), (200, &chunk["content"]), "{one}");
    decode::<Envelope<wire::Chunk>>(&one);

    // The knowledge base's counts and upstream's pin toggle.
    let (_, _, counted) = get(port, &format!("/api/v1/knowledge-bases/{kb_id}"), &ADMIN);
    decode::<Envelope<wire::KnowledgeBase>>(&counted);
    let counts = (&counted["data"]["knowledge_count"], &counted["data"]["processing_count"]);
    assert_eq!(counts, (&json!(2), &json!(0)), "{counted}");
    assert!(counted["data"]["chunk_count"].as_i64().unwrap() >= 2, "{counted}");
    let pin = format!("/api/v1/knowledge-bases/{kb_id}/pin");
    let (status, _, pinned) = call(port, "PUT", &pin, &ADMIN, None);
    assert_eq!((status, pinned["data"]["is_pinned"].as_bool()), (200, Some(true)), "{pinned}");
    assert!(pinned["data"]["pinned_at"].is_string(), "{pinned}");
    decode::<Envelope<wire::KnowledgeBase>>(&pinned);
    let (_, _, unpinned) = call(port, "PUT", &pin, &ADMIN, None);
    assert_eq!((unpinned["data"]["is_pinned"].as_bool(), &unpinned["data"]["pinned_at"]), (Some(false), &Value::Null));

    // UpdateChunk: searched by its new words at once; DeleteChunk: gone, and counted so.
    let chunk_path = format!("/api/v1/chunks/{file_id}/{}", chunk["id"].as_str().unwrap());
    let edit = json!({"content": "Restore drills run weekly on a spare machine named kestrel.", "chunk_index": 0});
    let (status, _, edited) = call(port, "PUT", &chunk_path, &ADMIN, Some(&edit));
    assert_eq!((status, edited["data"]["content"].as_str()), (200, edit["content"].as_str()), "{edited}");
    decode::<Envelope<wire::Chunk>>(&edited);
    let kestrel = json!({"query_text": "kestrel", "match_count": 5});
    let (_, _, hits) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb_id}/hybrid-search"), &ADMIN, Some(&kestrel));
    assert_eq!(hits["data"][0]["id"], chunk["id"], "{hits}");
    let (status, _, gone) = call(port, "DELETE", &chunk_path, &ADMIN, None);
    assert_eq!((status, gone["data"]["deleted"].as_bool()), (200, Some(true)), "{gone}");
    assert_eq!(call(port, "DELETE", &chunk_path, &ADMIN, None).0, 404);
    let (_, _, hits) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb_id}/hybrid-search"), &ADMIN, Some(&kestrel));
    assert_eq!(hits["data"], json!([]), "{hits}");
    let (_, _, doc_now) = get(port, &format!("/api/v1/knowledge/{file_id}"), &ADMIN);
    assert_eq!(doc_now["data"]["chunk_count"], file["chunk_count"].as_i64().unwrap() - 1, "{doc_now}");

    // A duplicate: the settings, none of the documents, named after the source.
    let dup = format!("/api/v1/knowledge-bases/{kb_id}/duplicate");
    let (status, _, copy) = call(port, "POST", &dup, &ADMIN, None);
    assert_eq!((status, copy["data"]["source_id"].as_str()), (201, Some(kb_id.as_str())), "{copy}");
    decode::<Envelope<wire::DuplicateKnowledgeBaseResponse>>(&copy);
    let copied = &copy["data"]["knowledge_base"];
    assert_eq!(
        (copied["name"].as_str(), copied["knowledge_count"].as_i64()),
        (Some("运维手册 Copy"), Some(0)),
        "{copy}"
    );
    assert_eq!(copied["chunking_config"], counted["data"]["chunking_config"], "{copy}");
    let (_, _, again) = call(port, "POST", &dup, &ADMIN, None);
    assert_eq!(again["data"]["knowledge_base"]["name"], "运维手册 Copy 2", "{again}");
    for made in [&copy, &again] {
        let path = format!("/api/v1/knowledge-bases/{}", made["data"]["target_id"].as_str().unwrap());
        assert_eq!(call(port, "DELETE", &path, &ADMIN, None).0, 200);
    }

    // HybridSearch: POST with upstream's SearchParams.
    let params = json!({"query_text": "nightly backup", "vector_threshold": 0.5, "keyword_threshold": 0.3,
        "match_count": 5, "disable_keywords_match": false, "disable_vector_match": false});
    let path = format!("/api/v1/knowledge-bases/{kb_id}/hybrid-search");
    let (status, _, hits) = call(port, "POST", &path, &ADMIN, Some(&params));
    assert_eq!(status, 200, "{hits}");
    decode::<Envelope<Vec<wire::SearchResult>>>(&hits);
    let hit = &hits["data"][0];
    decodes_as_upstream_hit(hit);
    assert_eq!((hit["match_type"].as_i64(), hit["knowledge_base_id"].as_str()), (Some(1), Some(kb_id.as_str())));
    // Its switches: vector matching off leaves keyword; keyword off leaves nothing on this
    // PostgreSQL without pgvector, and the refusal says why.
    let switched = |off: &str| {
        let mut body = params.clone();
        body[off] = json!(true);
        call(port, "POST", &path, &ADMIN, Some(&body))
    };
    let (status, _, keyword) = switched("disable_vector_match");
    assert_eq!((status, keyword["retrieval"].as_str()), (200, Some("keyword")), "{keyword}");
    let (status, _, nothing) = switched("disable_keywords_match");
    assert_eq!(status, 400, "{nothing}");
    assert!(nothing["error"]["message"].as_str().unwrap().contains("no pgvector"), "{nothing}");
    // The same body on GET, as upstream's handler also reads it.
    let (status, _, hits) = call(port, "GET", &path, &ADMIN, Some(&params));
    assert_eq!((status, hits["data"][0]["id"].as_str()), (200, hit["id"].as_str()), "{hits}");

    // SearchKnowledge naming documents only: their knowledge base is searched.
    let search = json!({"query": "backup", "knowledge_ids": [doc_id], "knowledge_base_ids": null, "tag_ids": null});
    let (status, _, found) = call(port, "POST", "/api/v1/knowledge-search", &ADMIN, Some(&search));
    assert_eq!(status, 200, "{found}");
    decode::<Envelope<Vec<wire::SearchResult>>>(&found);
    decodes_as_upstream_hit(&found["data"][0]);

    // CreateSession: upstream's sessions hold no knowledge base.
    let (status, _, session) =
        call(port, "POST", "/api/v1/sessions", &ADMIN, Some(&json!({"title": "", "description": "on-call"})));
    assert_eq!(status, 201, "{session}");
    decode::<Envelope<wire::Session>>(&session);
    decodes_as_upstream_session(&session["data"]);
    assert_eq!(session["data"]["description"], "on-call");
    let session_id = session["data"]["id"].as_str().unwrap().to_string();
    // Twelve more: upstream's page is ten sessions; the pinned one comes first.
    let more: Vec<String> = (0..12)
        .map(|n| {
            let (_, _, s) = call(port, "POST", "/api/v1/sessions", &ADMIN, Some(&json!({"title": format!("s{n}")})));
            s["data"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let (status, _, pinned) = call(port, "POST", &format!("/api/v1/sessions/{session_id}/pin"), &ADMIN, None);
    assert_eq!((status, pinned["data"]["is_pinned"].as_bool()), (200, Some(true)), "{pinned}");
    let (_, _, listed) = get(port, "/api/v1/sessions", &ADMIN);
    assert_eq!((listed["page_size"].as_i64(), listed["total"].as_i64()), (Some(10), Some(13)), "{listed}");
    decode::<Paged<wire::Session>>(&listed);
    // Upstream's keyword filter: words of the title or description; `%` matches itself.
    let (_, _, found) = get(port, "/api/v1/sessions?keyword=ON-CALL", &ADMIN);
    assert_eq!(
        (found["total"].as_i64(), found["data"][0]["id"].as_str()),
        (Some(1), Some(session_id.as_str())),
        "{found}"
    );
    let (_, _, s1) = get(port, "/api/v1/sessions?keyword=s1&page_size=20", &ADMIN);
    assert_eq!(s1["total"], 3, "s1, s10, s11: {s1}");
    assert_eq!(get(port, "/api/v1/sessions?keyword=%25", &ADMIN).2["total"], 0);
    assert_eq!(listed["data"][0]["id"], session_id.as_str(), "pinned first: {listed}");
    listed["data"].as_array().unwrap().iter().for_each(decodes_as_upstream_session);
    let (status, _, unpinned) = call(port, "DELETE", &format!("/api/v1/sessions/{session_id}/pin"), &ADMIN, None);
    assert_eq!((status, unpinned["data"]["is_pinned"].as_bool()), (200, Some(false)), "{unpinned}");
    // BatchDeleteSessions: DELETE with `{"ids"}`.
    let (status, _, gone) = call(port, "DELETE", "/api/v1/sessions/batch", &ADMIN, Some(&json!({"ids": more})));
    assert_eq!((status, gone["data"]["deleted"].as_u64()), (200, Some(12)), "{gone}");
    let (_, _, listed) = get(port, "/api/v1/sessions", &ADMIN);
    assert_eq!(listed["total"], 1, "{listed}");

    // KnowledgeQAStream as the SDK sends it: null lists, "" ids, agent fields.
    let ask = json!({"query": "When does the nightly backup run?", "knowledge_base_ids": null,
        "knowledge_ids": [doc_id], "agent_enabled": false, "agent_id": "", "web_search_enabled": false,
        "summary_model_id": "", "disable_title": false, "mentioned_items": null});
    let body = ask.to_string();
    let reply = exchange(
        port,
        "POST",
        &format!("/api/v1/knowledge-chat/{session_id}"),
        &ADMIN,
        Some(("application/json", body.as_bytes())),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let frames = frames(&String::from_utf8_lossy(&reply.body));
    frames.iter().for_each(|f| drop(decode::<wire::StreamResponse>(f)));
    let kinds: Vec<&str> = frames.iter().map(|f| f["response_type"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..3], ["agent_query", "references", "session_title"], "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"complete"), "{kinds:?}");
    assert_eq!(frames[0]["session_id"], session_id.as_str());
    let message_id = frames[0]["assistant_message_id"].as_str().unwrap();
    frames[1]["knowledge_references"].as_array().unwrap().iter().for_each(decodes_as_upstream_hit);
    assert!(frames.iter().any(|f| f["response_type"] == "answer" && f["content"].as_str().unwrap().contains("02:00")));

    // ContinueStream: the ended answer replayed, frame for frame, as the SDK parses it.
    let path = format!("/api/v1/sessions/continue-stream/{session_id}?message_id={message_id}");
    let replay = exchange(port, "GET", &path, &ADMIN, None).unwrap();
    assert_eq!(replay.status, 200, "{}", String::from_utf8_lossy(&replay.body));
    assert_eq!(sdk_frames(&String::from_utf8_lossy(&replay.body)), frames, "the same frames, as the SDK reads them");
    assert_eq!(sdk_frames(&String::from_utf8_lossy(&reply.body)), frames, "the answer itself, as the SDK reads it");

    // Suggestions with no chat model to make them: a set that says so, not an error.
    let path = format!("/api/v1/sessions/{session_id}/messages/{message_id}/suggestions");
    let (status, _, set) = call(port, "POST", &path, &ADMIN, Some(&json!({"regenerate": false})));
    assert_eq!(status, 200, "{set}");
    decode::<Envelope<wire::MessageSuggestionSet>>(&set);
    let set = &set["data"];
    assert_eq!(
        (set["status"].as_str(), set["suppression_reason"].as_str()),
        (Some("suppressed"), Some("no_chat_model"))
    );
    assert_eq!((set["allow_regenerate"].as_bool(), set["questions"].as_array().map(Vec::len)), (Some(false), Some(0)));
    assert_eq!(
        (set["session_id"].as_str(), set["assistant_message_id"].as_str()),
        (Some(session_id.as_str()), Some(message_id))
    );
    let (status, _, read) = get(port, &path, &ADMIN);
    assert_eq!((status, &read["data"]["id"]), (200, &set["id"]), "{read}");

    // LoadMessages: the stored answer's references decode too.
    let (status, _, messages) = get(port, &format!("/api/v1/messages/{session_id}/load?limit=20"), &ADMIN);
    assert_eq!(status, 200, "{messages}");
    decode::<Envelope<Vec<wire::Message>>>(&messages);
    let answer = &messages["data"][1];
    assert_eq!(answer["id"], message_id, "the answer agent_query announced");
    answer["knowledge_references"].as_array().unwrap().iter().for_each(decodes_as_upstream_hit);
    // SearchMessages: the question-and-answer pairs by their words, in the sessions named.
    let search = json!({"query": "nightly backup", "mode": "hybrid", "limit": 10, "session_ids": [session_id]});
    let (status, _, found) = call(port, "POST", "/api/v1/messages/search", &ADMIN, Some(&search));
    assert_eq!((status, found["data"]["total"].as_i64()), (200, Some(1)), "{found}");
    decode::<Envelope<wire::MessageSearchResult>>(&found);
    let item = &found["data"]["items"][0];
    assert_eq!(
        (item["session_id"].as_str(), item["match_type"].as_str()),
        (Some(session_id.as_str()), Some("keyword"))
    );
    assert!(item["answer_content"].as_str().unwrap().contains("02:00") && item["score"] == 1.0, "{item}");
    let elsewhere = json!({"query": "nightly backup", "session_ids": [uuid::Uuid::new_v4()]});
    let (_, _, none) = call(port, "POST", "/api/v1/messages/search", &ADMIN, Some(&elsewhere));
    assert_eq!(none["data"]["total"], 0, "{none}");
    let (_, _, stats) = get(port, "/api/v1/messages/chat-history-stats", &ADMIN);
    decode::<Envelope<wire::ChatHistoryKBStats>>(&stats);
    assert_eq!(stats["data"]["enabled"], false, "{stats}");

    // GenerateTitle with no chat model: the first question, and a stop for an ended answer.
    let conversation = json!({"messages": [{"role": "user", "content": "When does the nightly backup run?"}]});
    let path = format!("/api/v1/sessions/{session_id}/generate_title");
    let (status, _, titled) = call(port, "POST", &path, &ADMIN, Some(&conversation));
    assert_eq!((status, titled["data"].as_str()), (200, Some("When does the nightly backup run?")), "{titled}");
    let stop = json!({"message_id": message_id});
    let (_, _, stopped) = call(port, "POST", &format!("/api/v1/sessions/{session_id}/stop"), &ADMIN, Some(&stop));
    assert_eq!(stopped["data"]["stopped"], false, "{stopped}");
    // DeleteMessage, then clearing the session's messages.
    let question = messages["data"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/messages/{session_id}/{question}");
    let (status, _, deleted) = call(port, "DELETE", &path, &ADMIN, None);
    assert_eq!((status, deleted["data"]["deleted"].as_bool()), (200, Some(true)), "{deleted}");
    let (status, _, again) = call(port, "DELETE", &path, &ADMIN, None);
    assert_eq!(status, 404, "{again}");
    let (status, _, cleared) = call(port, "DELETE", &format!("/api/v1/sessions/{session_id}/messages"), &ADMIN, None);
    assert_eq!((status, cleared["data"]["deleted"].as_u64()), (200, Some(1)), "{cleared}");
    let (_, _, messages) = get(port, &format!("/api/v1/messages/{session_id}/load"), &ADMIN);
    assert_eq!(messages["data"], json!([]), "{messages}");

    // Tenants and their keys by upstream's integer ids.
    let (_, _, tenants) = get(port, "/api/v1/tenants", &ADMIN);
    decode::<Envelope<wire::TenantList>>(&tenants);
    let tenant = tenants["data"]["items"][0]["id"].as_u64().unwrap();
    assert_eq!(session["data"]["tenant_id"].as_u64(), Some(tenant), "{tenants}");
    let (status, _, read) = get(port, &format!("/api/v1/tenants/{tenant}"), &ADMIN);
    assert_eq!((status, read["data"]["name"].as_str()), (200, Some("default")), "{read}");
    decode::<Envelope<wire::Tenant>>(&read);
    let (status, _, other) = get(port, &format!("/api/v1/tenants/{}", tenant + 1000), &ADMIN);
    assert_eq!(status, 404);
    upstream_error(&other, 1003, "not_found");
    let update = json!({"id": tenant, "name": "", "description": "ops team", "status": "active", "business": ""});
    let (status, _, updated) = call(port, "PUT", &format!("/api/v1/tenants/{tenant}"), &ADMIN, Some(&update));
    assert_eq!((status, updated["data"]["name"].as_str()), (200, Some("default")), "a blank name keeps it: {updated}");
    decode::<Envelope<wire::Tenant>>(&updated);
    assert_eq!(updated["data"]["description"], "ops team");
    let keys_path = format!("/api/v1/tenants/{tenant}/api-keys");
    let (status, _, made) = call(port, "POST", &keys_path, &ADMIN, Some(&json!({"name": "ci", "role": "contributor"})));
    assert_eq!(status, 201, "{made}");
    let key: wire::TenantAPIKey = decode::<Envelope<_>>(&made).data;
    assert!(key.token.is_some_and(|t| t.starts_with("wk_")), "CreatedTenantAPIKey carries the token");
    let (token, key_id) = (made["data"]["token"].as_str().unwrap().to_string(), made["data"]["id"].as_u64().unwrap());
    assert_eq!(
        (made["data"]["role"].as_str(), made["data"]["tenant_id"].as_u64()),
        (Some("contributor"), Some(tenant))
    );
    let theirs = [("X-API-Key", token.as_str())];
    assert_eq!(get(port, "/api/v1/knowledge-bases", &theirs).0, 200, "the new key works");
    let (status, _, forbidden) = get(port, &keys_path, &theirs);
    assert_eq!(status, 403, "a contributor key does not manage keys");
    upstream_error(&forbidden, 1002, "forbidden");
    let (status, _, viewer) = call(port, "POST", &keys_path, &ADMIN, Some(&json!({"name": "ro", "role": "viewer"})));
    assert_eq!(status, 400, "never widened to a key that may write: {viewer}");
    let (_, _, listed) = get(port, &keys_path, &ADMIN);
    decode::<Envelope<Vec<wire::TenantAPIKey>>>(&listed);
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!format!("{listed:?}").contains(&token) && !format!("{listed:?}").contains(ADMIN_KEY), "{listed:?}");
    let admin_key_id = listed.iter().find(|k| k["role"] == "admin").unwrap()["id"].as_u64().unwrap();
    let (status, _, last) = call(port, "DELETE", &format!("{keys_path}/{admin_key_id}"), &ADMIN, None);
    assert_eq!(status, 409, "the last admin key stays: {last}");
    upstream_error(&last, 1005, "conflict");
    let (status, _, revoked) = call(port, "DELETE", &format!("{keys_path}/{key_id}"), &ADMIN, None);
    assert_eq!((status, revoked["data"]["revoked"].as_bool()), (200, Some(true)), "{revoked}");
    assert_eq!(get(port, "/api/v1/knowledge-bases", &theirs).0, 401, "a revoked key is refused at once");

    // Models: upstream's create and update (`parameters: null`, a blank name keeps it), providers.
    let spec = json!({"name": "qwen2.5:7b", "display_name": "", "type": "KnowledgeQA", "source": "remote",
        "description": "", "is_default": false,
        "parameters": {"base_url": "http://127.0.0.1:9/v1", "api_key": "", "provider": "openai"}});
    let (status, _, model) = call(port, "POST", "/api/v1/models", &ADMIN, Some(&spec));
    assert_eq!((status, model["data"]["display_name"].as_str()), (201, Some("qwen2.5:7b")), "{model}");
    decode::<Envelope<wire::Model>>(&model);
    assert!(model["data"].get("tenant_id").is_none_or(Value::is_u64), "{model}");
    let update =
        json!({"name": "", "display_name": "", "description": "local", "parameters": null, "is_default": false});
    let path = format!("/api/v1/models/{}", model["data"]["id"].as_str().unwrap());
    let (status, _, updated) = call(port, "PUT", &path, &ADMIN, Some(&update));
    assert_eq!((status, updated["data"]["name"].as_str()), (200, Some("qwen2.5:7b")), "{updated}");
    decode::<Envelope<wire::Model>>(&updated);
    assert_eq!(updated["data"]["description"], "local");
    let (_, _, providers) = get(port, "/api/v1/models/providers?model_type=Embedding", &ADMIN);
    decode::<Envelope<Vec<wire::ModelProvider>>>(&providers);
    let values: Vec<&str> =
        providers["data"].as_array().unwrap().iter().map(|p| p["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["openai", "generic", "ollama"], "{providers}");
    // System info under upstream's names too.
    let (_, _, info) = get(port, "/api/v1/system/info", &[]);
    decode::<Envelope<wire::SystemInfo>>(&info);
    assert_eq!(info["data"]["db_version"], info["data"]["schema_version"].to_string(), "{info}");
    assert_eq!(info["data"]["commit_id"], info["data"]["commit"], "{info}");

    // Errors in upstream's shape with its integer codes.
    let (status, _, missing) = get(port, &format!("/api/v1/knowledge-bases/{}", uuid::Uuid::new_v4()), &ADMIN);
    assert_eq!(status, 404);
    upstream_error(&missing, 1003, "not_found");
    let (status, _, unauthorized) = get(port, "/api/v1/knowledge-bases", &[("X-API-Key", "sk-nope")]);
    assert_eq!(status, 401);
    upstream_error(&unauthorized, 1001, "unauthorized");
    // A body of the wrong type is a bad request (400), as upstream answers.
    let (status, _, wrong) =
        call(port, "POST", "/api/v1/knowledge-search", &ADMIN, Some(&json!({"query": 7, "knowledge_ids": [doc_id]})));
    assert_eq!(status, 400, "{wrong}");
    upstream_error(&wrong, 1000, "invalid_argument");
    // ReparseKnowledge decodes the document, queued again.
    let (status, _, reparsed) = call(port, "POST", &format!("/api/v1/knowledge/{doc_id}/reparse"), &ADMIN, None);
    assert_eq!(status, 202, "{reparsed}");
    let reparsed: wire::Knowledge = decode::<Envelope<_>>(&reparsed).data;
    assert_eq!(reparsed.id, doc_id);
    // Queued; a worker may have taken it by the time it is read back.
    assert!(matches!(reparsed.parse_status.as_str(), "pending" | "processing"), "{reparsed:?}");
    wait_parsed(port, ADMIN_KEY, &doc_id);
    // Clearing a knowledge base's documents keeps the knowledge base.
    let (status, _, cleared) =
        call(port, "DELETE", &format!("/api/v1/knowledge-bases/{kb_id}/knowledge"), &ADMIN, None);
    assert_eq!((status, cleared["data"]["deleted"].as_i64()), (200, Some(2)), "{cleared}");
    assert_eq!(list("page=1")["total"], 0);
    assert_eq!(get(port, &format!("/api/v1/knowledge-bases/{kb_id}"), &ADMIN).0, 200);
    // Upstream's families we do not provide say so in upstream's shape; a typo is still a 404.
    for (path, named) in [
        ("/api/v1/agents", "custom agents"),
        ("/api/v1/auth/login", "sign-in with accounts"),
        (&format!("/api/v1/knowledge-bases/{kb_id}/tags") as &str, "tags"),
    ] {
        let (status, _, body) = get(port, path, &ADMIN);
        assert_eq!(status, 501, "{path}: {body}");
        upstream_error(&body, 1004, "not_provided");
        assert!(body["error"]["message"].as_str().unwrap().contains(named), "{path}: {body}");
    }
    assert_eq!(get(port, "/api/v1/knowlege-bases", &ADMIN).0, 404);
    // What is not an id is still refused, naming it.
    let bad = json!({"query": "x", "knowledge_ids": ["doc-1"]});
    let (status, _, bad) = call(port, "POST", "/api/v1/knowledge-search", &ADMIN, Some(&bad));
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("`doc-1` is not a valid UUID"), "{bad}");
}
