//! Upstream's tenant, tenant-settings, system and generated-question routes as its Go SDK
//! and web interface call them: field names and JSON types as its structs decode them,
//! errors in its shape, cross-tenant access for the deployment's key only, a tenant's
//! deletion taking all of its data (rows and files) and nothing of another's, and system
//! checks that really ask the docreader and the storage. The app, docreader and PostgreSQL
//! are real.

mod support;
mod wire;

use std::path::Path;

use serde_json::{Value, json};
use support::*;
use weknora_testkit::{Pg, Redis};
use wire::upstream_error;

const ADMIN: [(&str, &str); 1] = [("X-API-Key", ADMIN_KEY)];

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// What the SDK's `Tenant` decodes: an integer id, its strings, integer bytes used.
fn decodes_as_upstream_tenant(tenant: &Value) {
    let t: wire::Tenant = wire::decode(tenant);
    assert!(t.id > 0 && t.status == "active", "{tenant}");
}

/// A new tenant made by the deployment's key: its id and its admin key.
fn new_tenant(port: u16, name: &str) -> (u64, String) {
    let body = json!({"name": name, "description": format!("{name} team"), "business": "", "storage_quota": 0,
        "retriever_engines": {"engines": null}});
    let (status, _, created) = call(port, "POST", "/api/v1/tenants", &ADMIN, Some(&body));
    assert_eq!(status, 201, "{created}");
    decodes_as_upstream_tenant(&created["data"]);
    assert_eq!(created["data"]["storage_used"], 0);
    (created["data"]["id"].as_u64().unwrap(), created["data"]["api_key"].as_str().unwrap().to_string())
}

/// Rows of the tenant (by its number) in every table that holds a tenant's data.
fn rows_of(pg: &Pg, number: u64) -> Vec<(String, i64)> {
    let tables =
        ["api_keys", "knowledge_bases", "knowledge", "ingest_jobs", "chunks", "chat_sessions", "chat_messages"];
    let mut counts: Vec<(String, i64)> = tables
        .iter()
        .map(|t| {
            let sql =
                format!("SELECT count(*) FROM {t} WHERE tenant_id = (SELECT id FROM tenants WHERE number = {number})");
            (t.to_string(), psql(pg, &sql)[0][0].parse().unwrap())
        })
        .collect();
    for (t, sql) in [
        (
            "models",
            format!("SELECT count(*) FROM models WHERE tenant_id = (SELECT id FROM tenants WHERE number = {number})"),
        ),
        (
            "tenant_settings",
            format!(
                "SELECT count(*) FROM tenant_settings WHERE tenant_id = (SELECT id FROM tenants WHERE number = {number})"
            ),
        ),
    ] {
        counts.push((t.to_string(), psql(pg, &sql)[0][0].parse().unwrap()));
    }
    counts
}

/// Rows anywhere whose tenant is gone (there must never be any).
fn orphans(pg: &Pg) -> i64 {
    let tables = [
        "api_keys",
        "knowledge_bases",
        "knowledge",
        "ingest_jobs",
        "chunks",
        "chat_sessions",
        "chat_messages",
        "models",
        "tenant_settings",
    ];
    tables
        .iter()
        .map(|t| {
            let sql = format!("SELECT count(*) FROM {t} WHERE tenant_id NOT IN (SELECT id FROM tenants)");
            psql(pg, &sql)[0][0].parse::<i64>().unwrap()
        })
        .sum()
}

/// The stored files (their paths under the storage folder).
fn stored(files: &Path) -> Vec<String> {
    files_under(files).iter().map(|f| f.strip_prefix(files).unwrap().display().to_string()).collect()
}

#[test]
fn tenants_across_the_deployment_and_their_settings() {
    let stack = admin_stack();
    let (port, pg, files) = (stack.port, &stack.pg, &stack.files);

    // CreateTenant by the deployment's key: the tenant with its first admin key.
    let (acme, acme_key) = new_tenant(port, "acme");
    let (globex, globex_key) = new_tenant(port, "globex");
    let acme_h = [("X-API-Key", acme_key.as_str())];
    let globex_h = [("X-API-Key", globex_key.as_str())];
    let (_, _, current) = get(port, "/api/v1/tenants/current", &ADMIN);
    let default = current["data"]["id"].as_u64().unwrap();

    // A tenant's own keys do not reach across tenants: 403 naming what is needed.
    for (method, path) in
        [("GET", "/api/v1/tenants/all"), ("GET", "/api/v1/tenants/search?keyword=a"), ("POST", "/api/v1/tenants")]
    {
        let body = (method == "POST").then(|| json!({"name": "initech"}));
        let (status, _, refused) = call(port, method, path, &acme_h, body.as_ref());
        assert_eq!(status, 403, "{method} {path}: {refused}");
        upstream_error(&refused, 1002, "forbidden");
        assert!(message(&refused).contains("ADMIN_API_KEY"), "{refused}");
    }

    // ListAllTenants and SearchTenants by the deployment's key.
    let (status, _, all) = get(port, "/api/v1/tenants/all", &ADMIN);
    assert_eq!(status, 200, "{all}");
    let items = all["data"]["items"].as_array().unwrap();
    items.iter().for_each(decodes_as_upstream_tenant);
    let ids: Vec<u64> = items.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [default, acme, globex], "{all}");
    let search = |query: &str| {
        let (status, _, found) = get(port, &format!("/api/v1/tenants/search?{query}"), &ADMIN);
        assert_eq!(status, 200, "{query}: {found}");
        let data = &found["data"];
        wire::decode::<wire::TenantSearch>(data);
        data["items"].as_array().unwrap().iter().for_each(decodes_as_upstream_tenant);
        data.clone()
    };
    let found = search("keyword=ACM&page=1&page_size=10");
    assert_eq!((found["total"].as_i64(), found["items"][0]["id"].as_u64()), (Some(1), Some(acme)), "{found}");
    let found = search("keyword=team");
    assert_eq!(found["total"], 2, "descriptions are searched too: {found}");
    let found = search(&format!("tenant_id={globex}&page=1&page_size=20"));
    assert_eq!((found["total"].as_i64(), found["items"][0]["name"].as_str()), (Some(1), Some("globex")), "{found}");
    let found = search("page=2&page_size=1");
    assert_eq!(
        (found["total"].as_i64(), found["page"].as_i64(), found["page_size"].as_i64()),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(found["items"][0]["id"].as_u64(), Some(acme), "{found}");
    assert_eq!(search("keyword=100%25")["total"], 0, "`%` matches itself");

    // GetTenant: the deployment's key reads any; a tenant's key another's: 404, as any id
    // of another tenant.
    let (status, _, read) = get(port, &format!("/api/v1/tenants/{acme}"), &ADMIN);
    assert_eq!((status, read["data"]["name"].as_str()), (200, Some("acme")), "{read}");
    let (status, _, other) = get(port, &format!("/api/v1/tenants/{acme}"), &globex_h);
    assert_eq!(status, 404, "{other}");
    upstream_error(&other, 1003, "not_found");
    // UpdateTenant likewise: the deployment's key any, a tenant's key its own.
    let update = json!({"id": acme, "name": "", "description": "acme ops", "status": "active", "business": ""});
    let (status, _, updated) = call(port, "PUT", &format!("/api/v1/tenants/{acme}"), &ADMIN, Some(&update));
    assert_eq!((status, updated["data"]["description"].as_str()), (200, Some("acme ops")), "{updated}");
    assert_eq!(updated["data"]["name"], "acme", "a blank name keeps it");
    assert_eq!(call(port, "PUT", &format!("/api/v1/tenants/{acme}"), &globex_h, Some(&update)).0, 404);

    // Acme's data: a knowledge base with a file and a text, a session, a model, a second
    // key, a setting.
    let (status, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &acme_h, Some(&json!({"name": "ops"})));
    assert_eq!(status, 201, "{kb}");
    let kb = kb["data"]["id"].as_str().unwrap().to_string();
    let (status, _, file) = upload(
        port,
        &format!("/api/v1/knowledge-bases/{kb}/knowledge/file"),
        &acme_key,
        "runbook.md",
        b"# Runbook\n\nRestart the pager relay on Tuesdays.\n",
    );
    assert_eq!(status, 201, "{file}");
    let file = file["data"]["id"].as_str().unwrap().to_string();
    let text = json!({"title": "notes", "content": "The relay lives in rack 12."});
    let (_, _, note) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb}/knowledge/manual"), &acme_h, Some(&text));
    let note = note["data"]["id"].as_str().unwrap().to_string();
    wait_parsed(port, &acme_key, &file);
    wait_parsed(port, &acme_key, &note);
    let (status, _, session) = call(port, "POST", "/api/v1/sessions", &acme_h, Some(&json!({"title": "pager"})));
    assert_eq!(status, 201, "{session}");
    let ask = json!({"query": "Where does the relay live?", "knowledge_base_ids": [kb]});
    let path = format!("/api/v1/knowledge-chat/{}", session["data"]["id"].as_str().unwrap());
    assert_eq!(call(port, "POST", &path, &acme_h, Some(&ask)).0, 200);
    let model = json!({"name": "qwen2.5:7b", "type": "KnowledgeQA",
        "parameters": {"base_url": "http://127.0.0.1:9/v1", "provider": "openai"}});
    assert_eq!(call(port, "POST", "/api/v1/models", &acme_h, Some(&model)).0, 201);
    let keys_path = format!("/api/v1/tenants/{acme}/api-keys");
    let (_, _, member) = call(port, "POST", &keys_path, &acme_h, Some(&json!({"name": "ci", "role": "contributor"})));
    let member_key = member["data"]["token"].as_str().unwrap().to_string();
    let member_h = [("X-API-Key", member_key.as_str())];
    let (_, _, tenant) = get(port, &format!("/api/v1/tenants/{acme}"), &acme_h);
    let (_, _, docs) = get(port, &format!("/api/v1/knowledge-bases/{kb}/knowledge"), &acme_h);
    let sizes: i64 = docs["data"].as_array().unwrap().iter().map(|d| d["file_size"].as_i64().unwrap()).sum();
    assert!(sizes > 0, "{docs}");
    assert_eq!(tenant["data"]["storage_used"], sizes, "its documents' bytes: {tenant}");

    // Tenant settings (`/tenants/kv/{key}`), the tenant being the key's.
    let kv = |key: &str| format!("/api/v1/tenants/kv/{key}");
    let (status, _, unset) = get(port, &kv("retrieval-config"), &acme_h);
    assert_eq!(status, 200, "{unset}");
    assert_eq!(
        unset["data"],
        json!({"embedding_top_k": 0, "vector_threshold": 0.0, "keyword_threshold": 0.0, "rerank_top_k": 0,
               "rerank_threshold": 0.0, "rerank_model_id": "", "rrf_k": 0, "rrf_vector_weight": 0.0,
               "rrf_keyword_weight": 0.0}),
        "upstream's unset values"
    );
    let setting = json!({"embedding_top_k": 30, "vector_threshold": 0.4, "keyword_threshold": 0.3,
        "rerank_top_k": 10, "rerank_threshold": -1.5, "rerank_model_id": "", "extra": "dropped"});
    let (status, _, saved) = call(port, "PUT", &kv("retrieval-config"), &acme_h, Some(&setting));
    assert_eq!(status, 200, "{saved}");
    assert!(saved["message"].as_str().unwrap().contains("each knowledge base's own retrieval settings"), "{saved}");
    let (_, _, read) = get(port, &kv("retrieval-config"), &acme_h);
    assert_eq!(read["data"], saved["data"]);
    assert!(read["data"]["embedding_top_k"].is_i64() && read["data"]["rerank_threshold"] == -1.5, "{read}");
    assert!(read["data"].get("extra").is_none(), "{read}");
    let (_, _, theirs) = get(port, &kv("retrieval-config"), &globex_h);
    assert_eq!(theirs["data"], unset["data"], "another tenant's settings are its own");
    let (status, _, refused) =
        call(port, "PUT", &kv("retrieval-config"), &acme_h, Some(&json!({"vector_threshold": 1.5})));
    assert_eq!(status, 400, "{refused}");
    upstream_error(&refused, 1000, "invalid_argument");
    assert_eq!(message(&refused), "vector_threshold: a number from 0 to 1");
    let (status, _, _) = call(port, "PUT", &kv("retrieval-config"), &member_h, Some(&setting));
    assert_eq!(status, 403, "a contributor key reads settings but does not change them");
    assert_eq!(get(port, &kv("retrieval-config"), &member_h).0, 200);
    let conversation = json!({"max_rounds": 5, "enable_rewrite": true, "summary": {"temperature": 0.3,
        "max_completion_tokens": 2048}});
    let (status, _, saved) = call(port, "PUT", &kv("conversation-config"), &acme_h, Some(&conversation));
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (saved["data"]["max_rounds"].as_i64(), saved["data"]["summary"]["max_completion_tokens"].as_i64()),
        (Some(5), Some(2048))
    );
    let (status, _, refused) =
        call(port, "PUT", &kv("conversation-config"), &acme_h, Some(&json!({"summary": {"temperature": 2.5}})));
    assert_eq!((status, message(&refused)), (400, "summary.temperature: a number from 0 to 2"), "{refused}");
    // Unknown keys: 400 naming the keys there are.
    for method in ["GET", "PUT"] {
        let body = (method == "PUT").then(|| json!({}));
        let (status, _, unknown) = call(port, method, &kv("memory-config"), &acme_h, body.as_ref());
        assert_eq!(status, 400, "{unknown}");
        upstream_error(&unknown, 1000, "invalid_argument");
        assert!(message(&unknown).contains("`memory-config` is no setting"), "{unknown}");
        for key in ["agent-config", "retrieval-config", "prompt-templates", "storage-engine-config"] {
            assert!(message(&unknown).contains(key), "{unknown}");
        }
    }
    // Features weknora does not have: 501, as their routes.
    for key in ["agent-config", "web-search-config"] {
        let (status, _, missing) = get(port, &kv(key), &acme_h);
        assert_eq!(status, 501, "{missing}");
        upstream_error(&missing, 1004, "not_provided");
    }
    // The deployment's, shown as they are and not changed here.
    let (_, _, prompts) = get(port, &kv("prompt-templates"), &member_h);
    assert!(
        prompts["data"]["system_prompt"][0]["content"].as_str().unwrap().contains("numbered passages"),
        "{prompts}"
    );
    assert_eq!(call(port, "PUT", &kv("prompt-templates"), &acme_h, Some(&json!({}))).0, 400);
    let (status, _, storage) = get(port, &kv("storage-engine-config"), &acme_h);
    assert_eq!((status, storage["data"]["default_provider"].as_str()), (200, Some("local")), "{storage}");
    assert_eq!(get(port, &kv("storage-engine-config"), &member_h).0, 403, "admin keys only, as upstream");
    let (status, _, refused) =
        call(port, "PUT", &kv("storage-engine-config"), &acme_h, Some(&json!({"default_provider": "cos"})));
    assert_eq!(status, 501, "{refused}");
    assert!(message(&refused).contains("STORAGE_TYPE=local"), "{refused}");
    let (status, _, parser) = get(port, &kv("parser-engine-config"), &acme_h);
    assert_eq!((status, parser["data"]["mineru_endpoint"].as_str()), (200, Some("")), "{parser}");
    let on = json!({"enabled": true, "embedding_model_id": "m"});
    let (status, _, refused) = call(port, "PUT", &kv("chat-history-config"), &acme_h, Some(&on));
    assert_eq!(status, 501, "{refused}");
    let (status, _, off) = call(port, "PUT", &kv("chat-history-config"), &acme_h, Some(&json!({"enabled": false})));
    assert_eq!((status, off["data"]["enabled"].as_bool()), (200, Some(false)), "{off}");

    // API principal: `tenant` is what weknora does; the per-user modes are not provided.
    let principal = format!("/api/v1/tenants/{acme}/api-principal-config");
    let (status, _, config) = get(port, &principal, &acme_h);
    assert_eq!(status, 200, "{config}");
    wire::decode::<wire::APIPrincipalConfig>(&config["data"]);
    assert_eq!(
        config["data"],
        json!({"mode": "tenant", "direct_header_name": "X-External-User-ID",
               "signed_token_header_name": "X-External-User-Token", "require_direct_header": false,
               "has_hmac_secret": false})
    );
    let (status, _, set) = call(port, "PUT", &principal, &acme_h, Some(&json!({"mode": "tenant"})));
    assert_eq!((status, set["data"]["mode"].as_str()), (200, Some("tenant")), "{set}");
    let direct =
        json!({"mode": "direct_header", "direct_header_name": "X-External-User-ID", "require_direct_header": true});
    let (status, _, refused) = call(port, "PUT", &principal, &acme_h, Some(&direct));
    assert_eq!(status, 501, "{refused}");
    upstream_error(&refused, 1004, "not_provided");
    let (status, _, refused) = call(port, "PUT", &principal, &acme_h, Some(&json!({"mode": "users"})));
    assert_eq!(
        (status, message(&refused)),
        (400, "mode: `users` is no mode: tenant (direct_header and signed_token are not provided)")
    );
    assert_eq!(get(port, &principal, &member_h).0, 403, "owners (admin keys) only");
    assert_eq!(get(port, &principal, &globex_h).0, 404, "another tenant's");

    // Generated questions: a chunk has none; another tenant's chunk is a 404.
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{note}"), &acme_h);
    let chunk = chunks["data"][0]["id"].as_str().unwrap().to_string();
    let questions = format!("/api/v1/chunks/by-id/{chunk}/questions");
    let (status, _, none) = call(port, "DELETE", &questions, &acme_h, Some(&json!({"question_id": "q-00000001"})));
    assert_eq!(status, 400, "{none}");
    upstream_error(&none, 1000, "no_such_question");
    assert!(message(&none).contains("no generated question `q-00000001`"), "{none}");
    let (status, _, missing) = call(port, "DELETE", &questions, &acme_h, None);
    assert_eq!(status, 400, "{missing}");
    assert!(message(&missing).starts_with("question_id: required"), "{missing}");
    // Where the Go SDK sends it.
    let sdk = format!("/api/v1/chunks/{chunk}/delete-question");
    let (status, _, none) = call(port, "DELETE", &sdk, &acme_h, Some(&json!({"question_id": "q-1"})));
    assert_eq!((status, none["error"]["details"]["reason"].as_str()), (400, Some("no_such_question")), "{none}");
    for path in [&questions, &sdk] {
        let (status, _, theirs) = call(port, "DELETE", path, &globex_h, Some(&json!({"question_id": "q-1"})));
        assert_eq!(status, 404, "{path}: {theirs}");
        upstream_error(&theirs, 1003, "not_found");
    }

    // DeleteTenant. Another tenant's key: 404, and nothing of acme's goes.
    let before = rows_of(pg, acme);
    assert!(before.iter().all(|(_, n)| *n > 0), "acme has something in every table: {before:?}");
    let (status, _, theirs) = call(port, "DELETE", &format!("/api/v1/tenants/{acme}"), &globex_h, None);
    assert_eq!(status, 404, "{theirs}");
    upstream_error(&theirs, 1003, "not_found");
    let (status, _, theirs) = call(port, "DELETE", &format!("/api/v1/tenants/{default}"), &acme_h, None);
    assert_eq!(status, 404, "{theirs}");
    // A contributor key does not delete its tenant.
    let (status, _, refused) = call(port, "DELETE", &format!("/api/v1/tenants/{acme}"), &member_h, None);
    assert_eq!(status, 403, "{refused}");
    assert_eq!(rows_of(pg, acme), before, "nothing of acme's went");
    // The tenant holding the deployment's key stays.
    let (status, _, kept) = call(port, "DELETE", &format!("/api/v1/tenants/{default}"), &ADMIN, None);
    assert_eq!(status, 409, "{kept}");
    upstream_error(&kept, 1005, "conflict");
    assert!(message(&kept).contains("ADMIN_API_KEY"), "{kept}");

    // The deployment's key deletes acme: its rows and its files, nothing of globex's.
    let (status, _, globex_kb) =
        call(port, "POST", "/api/v1/knowledge-bases", &globex_h, Some(&json!({"name": "ops"})));
    assert_eq!(status, 201, "{globex_kb}");
    let globex_kb = globex_kb["data"]["id"].as_str().unwrap().to_string();
    let (status, _, globex_file) = upload(
        port,
        &format!("/api/v1/knowledge-bases/{globex_kb}/knowledge/file"),
        &globex_key,
        "plan.md",
        b"# Plan\n\nShip on Friday.\n",
    );
    assert_eq!(status, 201, "{globex_file}");
    wait_parsed(port, &globex_key, globex_file["data"]["id"].as_str().unwrap());
    let files_before = stored(files.path());
    assert_eq!(files_before.len(), 3, "acme's file and text, globex's file: {files_before:?}");
    let (status, _, deleted) = call(port, "DELETE", &format!("/api/v1/tenants/{acme}"), &ADMIN, None);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        (deleted["success"].as_bool(), deleted["message"].as_str()),
        (Some(true), Some("Workspace deleted successfully"))
    );
    assert_eq!((deleted["data"]["id"].as_u64(), deleted["data"]["deleted"].as_bool()), (Some(acme), Some(true)));
    assert_eq!(
        deleted["data"]["removed"],
        json!({"knowledge_bases": 1, "documents": 2, "chunks": before.iter().find(|(t, _)| t == "chunks").unwrap().1,
               "sessions": 1, "models": 1, "api_keys": 2})
    );
    assert!(rows_of(pg, acme).iter().all(|(_, n)| *n == 0));
    assert_eq!(orphans(pg), 0, "no row is left without its tenant");
    let files_after = stored(files.path());
    assert_eq!(files_after.len(), 1, "acme's file is gone, globex's stays: {files_after:?}");
    assert!(files_before.contains(&files_after[0]));
    for key in [&acme_h, &member_h] {
        let (status, _, gone) = get(port, "/api/v1/knowledge-bases", key);
        assert_eq!(status, 401, "acme's keys went with it: {gone}");
    }
    assert_eq!(get(port, &format!("/api/v1/tenants/{acme}"), &ADMIN).0, 404);
    assert_eq!(call(port, "DELETE", &format!("/api/v1/tenants/{acme}"), &ADMIN, None).0, 404);
    assert_eq!(get(port, &format!("/api/v1/knowledge-bases/{globex_kb}"), &globex_h).0, 200);
    let (_, _, all) = get(port, "/api/v1/tenants/all", &ADMIN);
    assert_eq!(all["data"]["items"].as_array().unwrap().len(), 2, "{all}");

    // A tenant's admin key deletes its own tenant (the key goes with it).
    let (status, _, deleted) = call(port, "DELETE", &format!("/api/v1/tenants/{globex}"), &globex_h, None);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(get(port, "/api/v1/knowledge-bases", &globex_h).0, 401);
    assert!(stored(files.path()).is_empty(), "{:?}", stored(files.path()));
    assert_eq!(orphans(pg), 0);
    let (_, _, all) = get(port, "/api/v1/tenants/all", &ADMIN);
    assert_eq!(all["data"]["items"][0]["id"].as_u64(), Some(default), "{all}");
}

#[test]
fn the_system_routes_ask_the_docreader_and_the_storage() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let dr_port = weknora_testkit::free_port();
    let (docreader, _) = docreader_on(dr_port, &[]);
    let files = tempfile::tempdir().unwrap();
    let storage = files.path().join("files");
    let env = admin_env(pg.port, &redis.addr(), dr_port, &storage);
    let (_app, port) = start_app(&env);
    let keys_path = {
        let (_, _, current) = get(port, "/api/v1/tenants/current", &ADMIN);
        format!("/api/v1/tenants/{}/api-keys", current["data"]["id"])
    };
    let (_, _, member) = call(port, "POST", &keys_path, &ADMIN, Some(&json!({"name": "ci", "role": "contributor"})));
    let member_key = member["data"]["token"].as_str().unwrap().to_string();
    let member_h = [("X-API-Key", member_key.as_str())];

    // Every system route needs a key (only /system/info is public).
    for (method, path) in [
        ("GET", "/api/v1/system/capabilities"),
        ("GET", "/api/v1/system/parser-engines"),
        ("POST", "/api/v1/system/parser-engines/check"),
        ("POST", "/api/v1/system/docreader/reconnect"),
        ("GET", "/api/v1/system/storage-engine-status"),
        ("POST", "/api/v1/system/storage-engine-check"),
    ] {
        let (status, _, refused) = call(port, method, path, &[], None);
        assert_eq!(status, 401, "{method} {path}: {refused}");
    }

    // Capabilities: what is unsupported is what answers 501.
    let (status, _, caps) = get(port, "/api/v1/system/capabilities", &member_h);
    assert_eq!((status, caps["data"]["edition"].as_str()), (200, Some("weknora")), "{caps}");
    wire::decode::<wire::DeploymentCapabilitiesData>(&caps["data"]);
    let caps = caps["data"]["capabilities"].as_object().unwrap().clone();
    assert_eq!(caps.len(), 10, "upstream's ten: {caps:?}");
    for (name, capability) in &caps {
        assert!(capability["supported"].is_boolean(), "{name}: {capability}");
        let family = match name.as_str() {
            "organizations" => "organizations",
            "agents" => "agents",
            "integrations.im" => "im-channels",
            "integrations.embed" => "embed-channels",
            "integrations.api" => continue,
            "settings.mcp" => "mcp-services",
            "settings.websearch" => "web-search",
            "settings.vectorstore" => "vector-stores",
            "settings.storage" => "storage-backends",
            "settings.sandbox" => "sandbox-configs",
            other => panic!("a capability upstream does not have: {other}"),
        };
        let status = get(port, &format!("/api/v1/{family}"), &ADMIN).0;
        assert_eq!(capability["supported"] == true, status != 501, "{name}: /api/v1/{family} answers {status}");
        assert_eq!(capability["reason"], "route_not_registered", "{name}");
    }
    assert_eq!(caps["integrations.api"], json!({"supported": true}));
    assert_eq!(get(port, &keys_path, &ADMIN).0, 200, "API keys are there");

    // Parser engines: the docreader, asked now.
    let (status, _, engines) = get(port, "/api/v1/system/parser-engines", &member_h);
    assert_eq!((status, engines["connected"].as_bool()), (200, Some(true)), "{engines}");
    wire::decode::<Vec<wire::ParserEngine>>(&engines["data"]);
    let engine = &engines["data"][0];
    assert_eq!((engine["name"].as_str(), engine["available"].as_bool()), (Some("docreader"), Some(true)), "{engine}");
    assert!(engine["label"].is_string() && engine["description"].is_string(), "{engine}");
    let ours = json!({"addr": format!("http://127.0.0.1:{dr_port}")});
    let (status, _, checked) = call(port, "POST", "/api/v1/system/parser-engines/check", &ADMIN, Some(&ours));
    assert_eq!((status, checked["data"][0]["available"].as_bool()), (200, Some(true)), "{checked}");
    let elsewhere = json!({"addr": "http://169.254.169.254:80"});
    for path in ["/api/v1/system/parser-engines/check", "/api/v1/system/docreader/reconnect"] {
        let (status, _, refused) = call(port, "POST", path, &ADMIN, Some(&elsewhere));
        assert_eq!(status, 400, "{path}: {refused}");
        upstream_error(&refused, 1000, "invalid_argument");
        assert!(message(&refused).contains("DOCREADER_ADDR"), "{refused}");
        assert_eq!(call(port, "POST", path, &member_h, None).0, 403, "{path}: admin keys only");
    }
    let (status, _, reconnected) = call(port, "POST", "/api/v1/system/docreader/reconnect", &ADMIN, Some(&json!({})));
    assert_eq!((status, reconnected["data"]["connected"].as_bool()), (200, Some(true)), "{reconnected}");

    // The docreader down: said so; back on its address: reconnected.
    drop(docreader);
    let (status, _, engines) = get(port, "/api/v1/system/parser-engines", &member_h);
    assert_eq!((status, engines["connected"].as_bool()), (200, Some(false)), "{engines}");
    assert_eq!(engines["data"][0]["available"], false, "{engines}");
    let (status, _, down) = call(port, "POST", "/api/v1/system/docreader/reconnect", &ADMIN, None);
    assert_eq!(status, 503, "{down}");
    upstream_error(&down, 1008, "docreader_unavailable");
    let (_docreader, _) = docreader_on(dr_port, &[]);
    let (status, _, reconnected) = call(port, "POST", "/api/v1/system/docreader/reconnect", &ADMIN, None);
    assert_eq!((status, reconnected["data"]["connected"].as_bool()), (200, Some(true)), "{reconnected}");

    // Storage: the deployment's, checked by a file written, read back and deleted.
    let (status, _, status_body) = get(port, "/api/v1/system/storage-engine-status", &member_h);
    assert_eq!(status, 200, "{status_body}");
    let data = &status_body["data"];
    wire::decode::<wire::StorageEngineStatusResponse>(data);
    assert_eq!(
        (data["allowed_providers"].clone(), data["minio_env_available"].as_bool()),
        (json!(["local"]), Some(false))
    );
    for engine in data["engines"].as_array().unwrap() {
        let ours = engine["name"] == "local";
        assert_eq!((engine["allowed"].as_bool(), engine["available"].as_bool()), (Some(ours), Some(ours)), "{engine}");
        assert!(engine["description"].is_string(), "{engine}");
    }
    let check = |body: Value| call(port, "POST", "/api/v1/system/storage-engine-check", &ADMIN, Some(&body));
    let (status, _, checked) = check(json!({"provider": "local"}));
    assert_eq!(status, 200, "{checked}");
    wire::decode::<wire::StorageCheckResponse>(&checked["data"]);
    assert_eq!((checked["data"]["ok"].as_bool(), checked["data"]["message"].is_string()), (Some(true), true));
    assert!(files_under(&storage).is_empty(), "the check's file is deleted: {:?}", files_under(&storage));
    let (status, _, refused) = check(json!({"provider": "minio", "minio": {"endpoint": "10.0.0.1:9000"}}));
    assert_eq!(status, 400, "{refused}");
    assert!(message(&refused).contains("STORAGE_TYPE=local"), "{refused}");
    assert_eq!(call(port, "POST", "/api/v1/system/storage-engine-check", &member_h, None).0, 403);
    // The storage folder replaced by a file: the check fails, naming the step.
    std::fs::remove_dir_all(&storage).unwrap();
    std::fs::write(&storage, b"not a folder").unwrap();
    let (status, _, failed) = check(json!({}));
    assert_eq!((status, failed["data"]["ok"].as_bool()), (200, Some(false)), "{failed}");
    assert!(failed["data"]["message"].as_str().unwrap().contains("writing a test file failed"), "{failed}");
    let (_, _, status_body) = get(port, "/api/v1/system/storage-engine-status", &member_h);
    let local =
        status_body["data"]["engines"].as_array().unwrap().iter().find(|e| e["name"] == "local").unwrap().clone();
    assert_eq!(local["available"], false, "{local}");
    std::fs::remove_file(&storage).unwrap();
    std::fs::create_dir(&storage).unwrap();
    assert_eq!(check(json!({})).2["data"]["ok"], true);
}

#[test]
fn with_minio_the_storage_checks_and_a_tenants_deletion_reach_the_bucket() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let s3 = weknora_testkit::S3Server::start(std::net::Ipv4Addr::LOCALHOST.into(), "weknora");
    let mut env = app_env(pg.port, &redis.addr(), dr_port, weknora_testkit::free_port());
    env.extend(s3.env("weknora", weknora_testkit::S3Server::SECRET_KEY));
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    let (_app, port) = start_app(&env);

    let (status, _, engines) = get(port, "/api/v1/system/storage-engine-status", &ADMIN);
    assert_eq!(status, 200, "{engines}");
    let data = &engines["data"];
    assert_eq!(
        (data["allowed_providers"].clone(), data["minio_env_available"].as_bool()),
        (json!(["minio"]), Some(true))
    );
    let minio = data["engines"].as_array().unwrap().iter().find(|e| e["name"] == "minio").unwrap().clone();
    assert_eq!((minio["allowed"].as_bool(), minio["available"].as_bool()), (Some(true), Some(true)), "{minio}");

    // A tenant with a file in the bucket; the check leaves nothing behind.
    let (tenant, key) = new_tenant(port, "initech");
    let h = [("X-API-Key", key.as_str())];
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &h, Some(&json!({"name": "ops"})));
    let kb = kb["data"]["id"].as_str().unwrap().to_string();
    let (status, _, doc) = upload(
        port,
        &format!("/api/v1/knowledge-bases/{kb}/knowledge/file"),
        &key,
        "tps.md",
        b"# TPS\n\nCover sheets.\n",
    );
    assert_eq!(status, 201, "{doc}");
    wait_parsed(port, &key, doc["data"]["id"].as_str().unwrap());
    let check =
        || call(port, "POST", "/api/v1/system/storage-engine-check", &ADMIN, Some(&json!({"provider": "minio"})));
    let (status, _, checked) = check();
    assert_eq!((status, checked["data"]["ok"].as_bool()), (200, Some(true)), "{checked}");
    let objects: Vec<String> = s3.objects("weknora").into_iter().map(|(k, _)| k).collect();
    assert_eq!(objects.len(), 1, "the tenant's file only: {objects:?}");
    assert!(objects[0].ends_with("/tps.md"), "{objects:?}");

    // Deleting the tenant empties its part of the bucket.
    let (status, _, deleted) = call(port, "DELETE", &format!("/api/v1/tenants/{tenant}"), &ADMIN, None);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(s3.objects("weknora"), vec![], "the tenant's files are gone from the bucket");

    // The bucket unusable (a file where its folder was): the check fails, naming the step.
    std::fs::remove_dir_all(s3.root.path().join("weknora")).unwrap();
    std::fs::write(s3.root.path().join("weknora"), b"not a bucket").unwrap();
    let (status, _, failed) = check();
    assert_eq!((status, failed["data"]["ok"].as_bool()), (200, Some(false)), "{failed}");
    assert!(failed["data"]["message"].as_str().unwrap().contains("writing a test file failed"), "{failed}");
}
