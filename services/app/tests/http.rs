//! The app binary against real PostgreSQL, Redis and docreader, over HTTP.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weknora_testkit::{PASSWORD, Pg, Redis, S3Server, free_port, serve_page};

mod support;
use support::*;

#[test]
fn ready_with_every_dependency_up_and_info_reports_the_schema() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let (_app, port) = start_app(&app_env(pg.port, &redis.addr(), dr_port, free_port()));

    let (status, _, body) = get(port, "/ready", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let (status, _, body) = get(port, "/api/v1/system/info", &[]);
    assert_eq!(status, 200, "{body}");
    let info = &body["data"];
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["schema_version"], 20261207200000i64, "AUTO_MIGRATE applied every migration");
    assert_eq!(info["capabilities"]["pgvector"], false, "plain PostgreSQL 15 has no pgvector");
    assert_eq!(info["capabilities"]["storage"], "local");
    assert_eq!(info["chat"], serde_json::json!({"answers": "extractive", "provider": null, "model": null}));
    assert_eq!(info["limits"]["max_file_size_mb"], 50, "the default upload limit, for clients to show");
    assert!(info["toolchain"].as_str().unwrap().starts_with("rustc 1."));

    let (_, head, _) = get(port, "/health", &[("X-Request-ID", "trace-me-42")]);
    assert!(head.contains("x-request-id: trace-me-42"), "{head}");
    let (_, head, _) = get(port, "/health", &[]);
    assert!(head.contains("x-request-id: "), "a request id is generated: {head}");

    let (status, _, body) = get(port, "/api/v1/nope", &[]);
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["details"]["reason"], "not_found");
}

#[test]
fn ready_names_what_is_down_while_health_stays_up() {
    let pg = Pg::debian();
    let mut env = app_env(pg.port, &format!("127.0.0.1:{}", free_port()), free_port(), free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    let (_app, port) = start_app(&env);
    let (status, _, body) = get(port, "/ready", &[]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "not ready: docreader down", "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true);
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    let (status, _, _) = get(port, "/health", &[]);
    assert_eq!(status, 200);

    // Without Redis, search still answers, uncached.
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "k"})));
    let path = format!("/api/v1/knowledge-bases/{}/hybrid-search?query=backup", kb["data"]["id"].as_str().unwrap());
    let (status, _, hits) = get(port, &path, &admin);
    assert_eq!((status, hits["cached"].as_bool()), (200, Some(false)), "{hits}");
}

#[test]
fn a_replica_is_not_ready_until_the_schema_is_migrated_for_it() {
    // As in a cluster: the app never migrates at start; the migration Job (`migrate`) does.
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let mut env = app_env(pg.port, &redis.addr(), dr_port, free_port());
    env.retain(|(k, _)| k != "AUTO_MIGRATE");
    env.push(("AUTO_MIGRATE".into(), "false".into()));
    let (_app, port) = start_app(&env);

    let (status, _, body) = get(port, "/ready", &[]);
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("schema is behind this build (not migrated, needs 20261207200000)")
            && message.contains("run the migrations"),
        "{message}"
    );
    assert_eq!(get(port, "/health", &[]).0, 200, "alive all the same: not restarted for it");

    let migrated = Command::new(APP).arg("migrate").envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let (status, _, body) = get(port, "/ready", &[]);
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("ready")), "{body}");
}

#[test]
fn on_sigterm_the_app_drains_not_ready_then_stops() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let mut env = app_env(pg.port, &redis.addr(), dr_port, free_port());
    env.push(("WEKNORA__SERVER__DRAIN_SECS".into(), "3".into()));
    let (mut app, port) = start_app(&env);
    assert_eq!(get(port, "/ready", &[]).0, 200);

    let term = Command::new("kill").args(["-TERM", &app.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Still serving, but telling the load balancer to stop sending.
    let (status, _, body) = get(port, "/ready", &[]);
    assert_eq!((status, body["message"].as_str()), (503, Some("not ready: shutting down")), "{body}");
    assert_eq!(get(port, "/health", &[]).0, 200);
    assert!(app.0.try_wait().unwrap().is_none(), "it stopped before draining");
    let status = app.0.wait().unwrap();
    assert!(status.success(), "a drained app exits 0: {status}");
}

fn run_app(env: &[(String, String)]) -> Output {
    Command::new(APP).envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
}

#[test]
fn a_failed_auto_migrate_stops_the_app_naming_the_database_never_the_password() {
    let dead = free_port();
    let out = run_app(&app_env(dead, "127.0.0.1:1", 1, free_port()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AUTO_MIGRATE failed") && stderr.contains(&format!("127.0.0.1:{dead}/postgres")),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD) && !String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
}

#[test]
fn migrate_applies_pending_migrations_once_and_names_a_dead_database() {
    let pg = Pg::debian();
    let env = app_env(pg.port, "127.0.0.1:1", 1, free_port());
    let migrate = |env: &[(String, String)]| {
        Command::new(APP).arg("migrate").envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
    };
    let newest = weknora_app::MIGRATOR.iter().map(|m| m.version).max().unwrap();
    let count = weknora_app::MIGRATOR.iter().filter(|m| !m.migration_type.is_down_migration()).count();
    let first = migrate(&env);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains(&format!("schema at version {newest} ({count} migrations applied)")), "{stdout}");
    let again = migrate(&env);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(0 migrations applied)"));
    let dead = free_port();
    let out = migrate(&app_env(dead, "127.0.0.1:1", 1, free_port()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("127.0.0.1:{dead}/postgres")), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
}

#[test]
fn bad_configuration_stops_the_app_naming_the_variable() {
    let mut env = app_env(1, "127.0.0.1:1", 1, free_port());
    env.push(("DB_PORT".into(), "five-four-three-two".into()));
    let out = run_app(&env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB_PORT=`five-four-three-two`"));
}

#[test]
fn healthcheck_fails_when_nothing_listens_and_version_prints_build_metadata() {
    assert!(!healthcheck(free_port()));
    let out = Command::new(APP).arg("--version").output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("weknora-app {} (commit ", env!("CARGO_PKG_VERSION"))), "{line}");
}

#[test]
fn tenants_are_isolated_and_knowledge_bases_have_crud() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let mut env = app_env(pg.port, &redis.addr(), free_port(), free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    let (app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];

    // No key, a bad key: 401.
    let (status, _, body) = get(port, "/api/v1/knowledge-bases", &[]);
    assert_eq!((status, body["error"]["message"].as_str()), (401, Some("missing X-API-Key header")));
    let (status, _, _) = get(port, "/api/v1/knowledge-bases", &[("X-API-Key", "wk_nope")]);
    assert_eq!(status, 401);

    // The bootstrap tenant creates a second tenant, which gets its own admin key.
    let (status, _, tenant) = get(port, "/api/v1/tenants/current", &admin);
    assert_eq!((status, tenant["data"]["name"].as_str()), (200, Some("default")));
    let (status, _, created) =
        call(port, "POST", "/api/v1/tenants", &admin, Some(&serde_json::json!({"name": "acme"})));
    assert_eq!(status, 201, "{created}");
    let other_key = created["data"]["api_key"].as_str().unwrap().to_string();
    let other = [("X-API-Key", other_key.as_str())];

    // CRUD with defaults from the configuration.
    let (status, _, kb) =
        call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "运维手册"})));
    assert_eq!(status, 201, "{kb}");
    let kb = &kb["data"];
    assert_eq!((kb["chunk_size"].as_i64(), kb["chunk_overlap"].as_i64()), (Some(512), Some(50)));
    let path = format!("/api/v1/knowledge-bases/{}", kb["id"].as_str().unwrap());
    let (status, _, body) =
        call(port, "PUT", &path, &admin, Some(&serde_json::json!({"chunk_size": 800, "description": "ops"})));
    assert_eq!((status, body["data"]["chunk_size"].as_i64()), (200, Some(800)), "{body}");
    let (status, _, body) = call(port, "PUT", &path, &admin, Some(&serde_json::json!({"chunk_overlap": 800})));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("chunk_overlap:"), "{body}");
    let (status, _, _) =
        call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "运维手册"})));
    assert_eq!(status, 409, "names are unique within a tenant");
    let (status, _, _) =
        call(port, "POST", "/api/v1/knowledge-bases", &other, Some(&serde_json::json!({"name": "运维手册"})));
    assert_eq!(status, 201, "but not across tenants");

    // The other tenant sees none of it: 404 on every route of that knowledge base.
    for method in ["GET", "PUT", "DELETE"] {
        let body = (method == "PUT").then(|| serde_json::json!({"name": "stolen"}));
        let (status, _, _) = call(port, method, &path, &other, body.as_ref());
        assert_eq!(status, 404, "{method} {path} with another tenant's key");
    }
    let (_, _, listed) = get(port, "/api/v1/knowledge-bases", &other);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // A member key cannot create tenants or keys.
    let (_, _, member) =
        call(port, "POST", "/api/v1/api-keys", &admin, Some(&serde_json::json!({"name": "ci", "role": "member"})));
    let member_key = member["data"]["api_key"].as_str().unwrap().to_string();
    let (status, _, _) = call(
        port,
        "POST",
        "/api/v1/tenants",
        &[("X-API-Key", member_key.as_str())],
        Some(&serde_json::json!({"name": "x"})),
    );
    assert_eq!(status, 403);

    // Parameters and bodies that do not parse answer in the JSON error shape, naming them.
    for (method, bad, named) in [
        ("GET", "/api/v1/knowledge/not-a-uuid".to_string(), "id: `not-a-uuid`"),
        ("GET", format!("{path}/knowledge?page=two"), "page"),
        ("GET", format!("{path}/hybrid-search?query=x&top_k=ten"), "top_k"),
        ("GET", format!("{path}/hybrid-search"), "query"),
        ("PUT", path.clone(), "chunk_size"),
    ] {
        let body = (method == "PUT").then(|| serde_json::json!({"chunk_size": "big"}));
        let (status, head, error) = call(port, method, &bad, &admin, body.as_ref());
        assert!(head.contains("content-type: application/json"), "{method} {bad}: {head}");
        // A body of the wrong shape too is 400 with upstream's code for it, 1000.
        assert_eq!((status, error["success"].as_bool()), (400, Some(false)), "{method} {bad}: {error}");
        assert_eq!((error["code"].as_u64(), error["error"]["code"].as_u64()), (Some(1000), Some(1000)), "{error}");
        assert_eq!(error["error"]["details"]["reason"], "invalid_argument", "{method} {bad}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{method} {bad}: `{message}` does not name {named}");
    }

    // A path in an upload's name is kept for display, never used: no file type from it.
    let (status, _, doc) =
        upload(port, &format!("{path}/knowledge/file"), ADMIN_KEY, "../../../etc/passwd", b"root:x:0:0");
    assert_eq!(status, 201, "{doc}");
    assert_eq!(
        (doc["data"]["source"].as_str(), doc["data"]["file_type"].as_str()),
        (Some("../../../etc/passwd"), Some(""))
    );
    let (_, _, doc) = upload(port, &format!("{path}/knowledge/file"), ADMIN_KEY, "../reports/Q3.Summary.MD", b"# Q3");
    assert_eq!(doc["data"]["file_type"], "md", "{doc}");

    let (status, _, _) = call(port, "DELETE", &path, &admin, None);
    assert_eq!(status, 200);
    let (status, _, _) = get(port, &path, &admin);
    assert_eq!(status, 404);

    // Restarting with the same ADMIN_API_KEY creates nothing new.
    drop(app);
    let (_app, port) = start_app(&env);
    let (_, _, tenant) = get(port, "/api/v1/tenants/current", &admin);
    assert_eq!(tenant["data"]["name"], "default");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docreader/tests/fixtures").join(name)).unwrap()
}

#[test]
fn documents_are_parsed_chunked_searched_and_deleted() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let files = tempfile::tempdir().unwrap();
    let mut env = app_env(pg.port, &redis.addr(), dr_port, free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.path().display().to_string()));
    env.push(("MAX_FILE_SIZE_MB".into(), "1".into()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "docs"})));
    let kb_id = kb["data"]["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/knowledge-bases/{kb_id}");

    let md = "# 运维手册\n\n数据库备份每天凌晨执行。\n\nRestore drills run every month on a fresh machine.\n";
    let mut ids = Vec::new();
    for (name, bytes) in [
        ("ops.md", md.as_bytes().to_vec()),
        ("sample.pdf", fixture("sample.pdf")),
        ("sample.docx", fixture("sample.docx")),
    ] {
        let (status, _, body) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, name, &bytes);
        assert_eq!(status, 201, "{name}: {body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let doc = wait_parsed(port, ADMIN_KEY, id);
        assert_eq!(doc["parse_status"], "completed", "{doc}");
        assert!(doc["chunk_count"].as_i64().unwrap() > 0, "{doc}");
    }
    let (_, _, listed) = get(port, &format!("{base}/knowledge?page_size=2"), &admin);
    assert_eq!(listed["total"], 3, "{listed}");
    let newest: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!(newest, ["sample.docx", "sample.pdf"], "newest first, one page: {listed}");
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{}", ids[0]), &admin);
    assert!(chunks["data"][0]["content"].as_str().unwrap().contains("数据库备份"), "{chunks}");

    let search = |q: &str| get(port, &format!("{base}/hybrid-search?query={q}"), &admin).2;
    let hits = search("restore%20drills");
    assert!(hits["data"][0]["content"].as_str().unwrap().contains("Restore drills"), "{hits}");
    assert_eq!(hits["terms"], serde_json::json!(["restore", "drills"]), "the words searched for, to highlight");
    // PostgreSQL 15 without pgvector: keyword retrieval only, and the answer says why.
    assert_eq!(
        (hits["retrieval"].as_str(), hits["data"][0]["match_kind"].as_str(), hits["data"][0]["match_type"].as_u64()),
        (Some("keyword"), Some("keyword"), Some(1)),
        "upstream's integer for a keyword match beside our word"
    );
    assert!(hits["notice"].as_str().unwrap().contains("no pgvector"), "{hits}");
    let (_, _, info) = get(port, "/api/v1/system/info", &[]);
    assert_eq!(info["data"]["retrieval"]["retrievers"], serde_json::json!(["keyword"]), "{info}");
    let hits = search("%E5%A4%87%E4%BB%BD"); // 备份
    assert!(
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["content"].as_str().unwrap().contains("数据库备份每天凌晨执行")),
        "{hits}"
    );
    let hits = search("nightly%20at%20two");
    assert_eq!(hits["data"][0]["knowledge_title"], "sample.pdf", "{hits}");
    assert_eq!(hits["cached"], false);
    assert_eq!(search("nightly%20at%20two")["cached"], true, "the same search again comes from Redis");

    // Another tenant sees none of it.
    let (_, _, other) = call(port, "POST", "/api/v1/tenants", &admin, Some(&serde_json::json!({"name": "other"})));
    let other_key = other["data"]["api_key"].as_str().unwrap().to_string();
    let other = [("X-API-Key", other_key.as_str())];
    assert_eq!(get(port, &format!("/api/v1/knowledge/{}", ids[0]), &other).0, 404);
    assert_eq!(get(port, &format!("/api/v1/chunks/{}", ids[0]), &other).0, 404);
    assert_eq!(get(port, &format!("{base}/hybrid-search?query=backup"), &other).0, 404);
    assert_eq!(get(port, &format!("{base}/knowledge"), &other).0, 404);
    assert_eq!(upload(port, &format!("{base}/knowledge/file"), &other_key, "x.md", b"x").0, 404);

    // Oversize: 413 naming the limit, and nothing stored.
    let stored_before = files_under(files.path()).len();
    let (status, _, body) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, "big.txt", &vec![b'a'; 3 << 20]);
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1 MB"), "{body}");
    assert_eq!(files_under(files.path()).len(), stored_before);

    // Delete removes the chunks and the stored file.
    let (status, _, _) = call(port, "DELETE", &format!("/api/v1/knowledge/{}", ids[0]), &admin, None);
    assert_eq!(status, 200);
    assert_eq!(get(port, &format!("/api/v1/chunks/{}", ids[0]), &admin).0, 404);
    assert!(!files_under(files.path()).iter().any(|p| p.ends_with("ops.md")), "the stored file is gone");
    let hits = search("restore%20drills");
    assert!(!hits["data"].as_array().unwrap().iter().any(|h| h["knowledge_id"] == ids[0].as_str()), "{hits}");
    assert_eq!(search("nightly%20at%20two")["cached"], false, "a change to the knowledge base invalidates its cache");

    // Deleting the knowledge base removes its documents' files too.
    assert!(!files_under(files.path()).is_empty());
    let (status, _, _) = call(port, "DELETE", &base, &admin, None);
    assert_eq!(status, 200);
    assert_eq!(files_under(files.path()), Vec::<PathBuf>::new(), "files of a deleted knowledge base are left");

    // Metrics: route templates as labels (never ids), ingest outcomes, the cache, the queue.
    let (status, _, text) = get(port, "/metrics", &[]);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    assert!(text.lines().any(|l| l.starts_with("weknora_build_info{")), "{text}");
    assert!(text.contains(r#"route="/api/v1/knowledge-bases/{id}/hybrid-search""#), "{text}");
    assert!(text.contains("weknora_http_request_duration_seconds_bucket{"), "{text}");
    assert!(!text.contains(&kb_id) && !text.contains(&ids[0]), "an id became a label:\n{text}");
    assert!(metric(text, r#"weknora_ingest_jobs_total{outcome="completed"}"#) >= ids.len() as f64, "{text}");
    assert!(metric(text, r#"weknora_search_cache_total{result="hit"}"#) >= 1.0, "{text}");
    assert!(metric(text, r#"weknora_search_cache_total{result="miss"}"#) >= 1.0, "{text}");
    assert_eq!(metric(text, r#"weknora_ingest_queue{state="queued"}"#), 0.0, "{text}");
}

/// The value of the sample `series` (name and labels exactly as rendered) in a Prometheus text.

#[test]
fn with_docreader_down_a_job_retries_then_fails_with_the_reason_and_the_app_stays_up() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let files = tempfile::tempdir().unwrap();
    let mut env = app_env(pg.port, &redis.addr(), free_port(), free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.path().display().to_string()));
    env.push(("WEKNORA__INGEST__MAX_ATTEMPTS".into(), "3".into()));
    env.push(("WEKNORA__INGEST__RETRY_BASE_MS".into(), "100".into()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "docs"})));
    let path = format!("/api/v1/knowledge-bases/{}/knowledge/manual", kb["data"]["id"].as_str().unwrap());
    let (status, _, body) =
        call(port, "POST", &path, &admin, Some(&serde_json::json!({"title": "note", "content": "some text"})));
    assert_eq!(status, 201, "{body}");
    let doc = wait_parsed(port, ADMIN_KEY, body["data"]["id"].as_str().unwrap());
    assert_eq!(doc["parse_status"], "failed");
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.contains("docreader") && error.contains("unreachable") && error.contains("after 3 attempts"),
        "{error}"
    );
    assert!(healthcheck(port));
    assert_eq!(get(port, "/ready", &[]).0, 503);
    let text = get(port, "/metrics", &[]).2.as_str().unwrap().to_string();
    assert_eq!(metric(&text, r#"weknora_ingest_jobs_total{outcome="retried"}"#), 2.0, "{text}");
    assert_eq!(metric(&text, r#"weknora_ingest_jobs_total{outcome="failed"}"#), 1.0, "{text}");

    // Once docreader is back, a reparse succeeds.
    let dr_port: u16 =
        env.iter().find(|(k, _)| k == "DOCREADER_ADDR").unwrap().1.rsplit(':').next().unwrap().parse().unwrap();
    let (_docreader, _) = docreader_on(dr_port, &[]);
    let id = body["data"]["id"].as_str().unwrap();
    let (status, _, _) = call(port, "POST", &format!("/api/v1/knowledge/{id}/reparse"), &admin, None);
    assert_eq!(status, 202);
    assert_eq!(wait_parsed(port, ADMIN_KEY, id)["parse_status"], "completed");
}

#[test]
fn a_url_document_is_fetched_by_docreader_and_searchable() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader_on(free_port(), &[("DOCREADER_URL_ALLOWLIST", "127.0.0.1")]);
    let files = tempfile::tempdir().unwrap();
    let mut env = app_env(pg.port, &redis.addr(), dr_port, free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.path().display().to_string()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "web"})));
    let base = format!("/api/v1/knowledge-bases/{}", kb["data"]["id"].as_str().unwrap());
    let page = serve_page(
        "<html><body><h1>Intranet page</h1><p>Failover runs through the standby region.</p></body></html>",
        1,
    );
    let (status, _, body) = call(
        port,
        "POST",
        &format!("{base}/knowledge/url"),
        &admin,
        Some(&serde_json::json!({"url": format!("http://127.0.0.1:{page}/wiki/failover")})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(wait_parsed(port, ADMIN_KEY, body["data"]["id"].as_str().unwrap())["parse_status"], "completed");
    let (_, _, hits) = get(port, &format!("{base}/hybrid-search?query=standby%20region"), &admin);
    assert!(
        hits["data"][0]["content"].as_str().unwrap().contains("Failover runs through the standby region"),
        "{hits}"
    );
}

#[test]
fn a_job_interrupted_by_a_crash_completes_after_restart_without_duplicate_chunks() {
    let pg = Pg::debian();
    let redis = Redis::start();
    // A docreader that accepts connections and never answers keeps the job running.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let files = tempfile::tempdir().unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), hung_port, files.path());
    env.push(("WEKNORA__INGEST__LEASE_SECS".into(), "2".into()));
    env.push(("WEKNORA__INGEST__DOCREADER_TIMEOUT_SECS".into(), "120".into()));
    let (app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let base = create_kb(port, "docs");
    let text = "Backups run nightly. ".repeat(200);
    let (_, _, body) = call(
        port,
        "POST",
        &format!("{base}/knowledge/manual"),
        &admin,
        Some(&serde_json::json!({"title": "ops", "content": text})),
    );
    let id = body["data"]["id"].as_str().unwrap().to_string();
    wait_until("the job to be running", || {
        get(port, &format!("/api/v1/knowledge/{id}"), &admin).2["data"]["parse_status"] == "processing"
    });
    drop(app); // SIGKILL mid-ingest: the job stays `running` with its lease

    let (_docreader, dr_port) = docreader();
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| if k == "DOCREADER_ADDR" { (k, format!("127.0.0.1:{dr_port}")) } else { (k, v) })
        .collect();
    let (_app, port) = start_app(&env);
    let doc = wait_parsed(port, ADMIN_KEY, &id);
    assert_eq!(doc["parse_status"], "completed", "{doc}");
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{id}?page_size=200"), &admin);
    let positions: Vec<i64> =
        chunks["data"].as_array().unwrap().iter().map(|c| c["position"].as_i64().unwrap()).collect();
    assert_eq!(chunks["total"].as_i64(), doc["chunk_count"].as_i64());
    assert_eq!(positions, (0..positions.len() as i64).collect::<Vec<_>>(), "each chunk once, in order");
    drop(hung);
}

const S3_SECRET_KEY: &str = S3Server::SECRET_KEY;

fn s3_env(env: &mut Vec<(String, String)>, s3: &S3Server, bucket: &str, secret: &str) {
    env.extend(s3.env(bucket, secret));
}

#[test]
fn with_minio_storage_uploads_live_in_the_bucket_and_a_wrong_bucket_or_key_stops_the_app() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let s3 = S3Server::start(std::net::Ipv4Addr::LOCALHOST.into(), "weknora");
    let base_env = app_env(pg.port, &redis.addr(), dr_port, free_port());

    // A missing bucket or a wrong key: the app refuses to start, says which settings to
    // check, and never prints the secret.
    for (bucket, secret, expected) in [
        ("no-such-bucket", S3_SECRET_KEY, "NoSuchBucket"),
        ("weknora", "wrong-secret-that-must-not-show", "SignatureDoesNotMatch"),
    ] {
        let mut env = base_env.clone();
        s3_env(&mut env, &s3, bucket, secret);
        let out = run_app(&env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the app started with bucket {bucket}");
        assert!(err.contains(expected) && err.contains("STORAGE_TYPE=minio"), "{err}");
        assert!(err.contains(&format!("bucket `{bucket}`")) && err.contains("MINIO_SECRET_ACCESS_KEY"), "{err}");
        assert!(!err.contains(secret) && !err.contains(S3_SECRET_KEY), "a secret was printed: {err}");
    }

    let mut env = base_env;
    s3_env(&mut env, &s3, "weknora", S3_SECRET_KEY);
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, info) = get(port, "/api/v1/system/info", &[]);
    assert_eq!(info["data"]["capabilities"]["storage"], "minio", "{info}");
    let (_, _, kb) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&serde_json::json!({"name": "s3"})));
    let base = format!("/api/v1/knowledge-bases/{}", kb["data"]["id"].as_str().unwrap());
    let md = b"# Object storage\n\nUploads are kept in the MinIO bucket and parsed from there.\n";
    let (status, _, body) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, "bucket.md", md);
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(wait_parsed(port, ADMIN_KEY, &id)["parse_status"], "completed");
    let stored: Vec<PathBuf> = files_under(&s3.root.path().join("weknora"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "bucket.md"))
        .collect();
    assert_eq!(stored.len(), 1, "the upload is an object in the bucket");
    assert_eq!(std::fs::read(&stored[0]).unwrap(), md);
    let (_, _, hits) = get(port, &format!("{base}/hybrid-search?query=bucket"), &admin);
    assert!(hits["data"][0]["content"].as_str().unwrap().contains("MinIO bucket"), "{hits}");

    // The bucket round trip of backups: `storage export` writes every object to a tar, and
    // `storage import` makes a second bucket hold exactly those (a stale object goes).
    let storage = |env: &[(String, String)], action: &str, input: &[u8]| -> Output {
        let mut child = Command::new(APP)
            .args(["storage", action])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "storage {action}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(S3_SECRET_KEY), "the secret was printed");
        out
    };
    let exported = storage(&env, "export", b"").stdout;
    let mut tar = tar::Archive::new(exported.as_slice());
    let entries: Vec<(String, Vec<u8>)> = tar
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            (e.path().unwrap().display().to_string(), bytes)
        })
        .collect();
    assert_eq!(entries.len(), 1, "{:?}", entries.iter().map(|e| &e.0).collect::<Vec<_>>());
    assert!(entries[0].0.starts_with("files/") && entries[0].0.ends_with("bucket.md"), "{}", entries[0].0);
    assert_eq!(entries[0].1, md);
    let copy = s3.root.path().join("weknora-copy");
    std::fs::create_dir_all(copy.join("stale")).unwrap();
    std::fs::write(copy.join("stale/old.pdf"), b"from before").unwrap();
    let mut copy_env = env.clone();
    copy_env.retain(|(k, _)| k != "MINIO_BUCKET_NAME");
    copy_env.push(("MINIO_BUCKET_NAME".into(), "weknora-copy".into()));
    let imported = storage(&copy_env, "import", &exported);
    assert!(String::from_utf8_lossy(&imported.stderr).contains("imported 1 files"), "{imported:?}");
    let copied = files_under(&copy);
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(std::fs::read(&copied[0]).unwrap(), md);
    assert_eq!(storage(&copy_env, "export", b"").stdout, exported, "the copy exports as the original");

    let (status, _, _) = call(port, "DELETE", &format!("/api/v1/knowledge/{id}"), &admin, None);
    assert_eq!(status, 200);
    assert!(!stored[0].exists(), "deleting the document deletes its object");
}

/// A web server on loopback that holds every request until the test lets it go, then
/// answers `/ok` with a page and anything else with 404. Requests it received are counted.
struct HeldServer {
    port: u16,
    release: std::sync::mpsc::Sender<()>,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldServer {
    fn start() -> HeldServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                count.fetch_add(1, Ordering::SeqCst);
                if released.recv().is_err() {
                    return;
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let body = "<html><body><p>Lease rules keep a slow worker honest.</p></body></html>";
                let _ = if head.starts_with("GET /ok ") {
                    write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                };
            }
        });
        HeldServer { port, release, received }
    }

    fn requests(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A worker whose lease ran out while docreader was still fetching is taken over; when
/// its parse then ends (a page to store, or an error to retry), it writes nothing, and
/// the job's final state is the one its new owner wrote.
#[test]
fn a_worker_that_lost_its_lease_cannot_overwrite_the_new_owners_outcome() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader_on(free_port(), &[("DOCREADER_URL_ALLOWLIST", "127.0.0.1")]);
    let files = tempfile::tempdir().unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    // One worker, busy with the held page, so that only the test takes the job over.
    env.push(("WEKNORA__INGEST__WORKERS".into(), "1".into()));
    env.push(("WEKNORA__INGEST__LEASE_SECS".into(), "1".into()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let base = create_kb(port, "lease");
    let server = HeldServer::start();

    // The page answers (complete), then 404 (a transient error: requeue).
    for (n, path) in [(1, "ok"), (2, "missing")] {
        let url = format!("http://127.0.0.1:{}/{path}", server.port);
        let (status, _, body) =
            call(port, "POST", &format!("{base}/knowledge/url"), &admin, Some(&serde_json::json!({"url": url})));
        assert_eq!(status, 201, "{body}");
        let id = body["data"]["id"].as_str().unwrap().to_string();
        wait_until("docreader to fetch the held page", || server.requests() == n);
        wait_until("the worker's lease to run out", || {
            psql(&pg, &format!("SELECT lease_expires_at < now() FROM ingest_jobs WHERE knowledge_id = '{id}'"))
                == [["t"]]
        });
        // The test takes the job over, as another worker's claim would.
        let taken = psql(
            &pg,
            &format!(
                "UPDATE ingest_jobs SET lease_owner = 'new-owner', lease_expires_at = now() + interval '1 hour', \
                 attempts = attempts + 1 WHERE knowledge_id = '{id}' AND state = 'running' \
                 AND lease_expires_at < now() RETURNING id"
            ),
        );
        assert_eq!(taken.len(), 1, "the job was not running with an expired lease");
        server.release.send(()).unwrap();
        wait_until("the old worker to give the job up", || {
            counted(
                get(port, "/metrics", &[]).2.as_str().unwrap(),
                r#"weknora_ingest_jobs_total{outcome="lease_lost"}"#,
            ) == Some(n as f64)
        });
        let job = format!(
            "SELECT j.state, j.lease_owner, coalesce(j.last_error, ''), k.parse_status, \
             (SELECT count(*) FROM chunks WHERE knowledge_id = k.id) \
             FROM ingest_jobs j JOIN knowledge k ON k.id = j.knowledge_id WHERE k.id = '{id}'"
        );
        assert_eq!(psql(&pg, &job), [["running", "new-owner", "", "processing", "0"]], "the old worker wrote");

        // The new owner ends the job its own way; that is what stays.
        psql(
            &pg,
            &format!(
                "WITH j AS (UPDATE ingest_jobs SET state = 'failed', last_error = 'ended by the new owner', \
                 lease_owner = NULL, lease_expires_at = NULL, finished_at = now() \
                 WHERE knowledge_id = '{id}' AND lease_owner = 'new-owner' RETURNING knowledge_id) \
                 UPDATE knowledge SET parse_status = 'failed', error = 'ended by the new owner' \
                 WHERE id IN (SELECT knowledge_id FROM j)"
            ),
        );
        let doc = wait_parsed(port, ADMIN_KEY, &id);
        assert_eq!(
            (doc["parse_status"].as_str(), doc["error"].as_str()),
            (Some("failed"), Some("ended by the new owner"))
        );
    }
    let text = get(port, "/metrics", &[]).2.as_str().unwrap().to_string();
    for outcome in ["completed", "retried", "failed"] {
        let series = format!("weknora_ingest_jobs_total{{outcome=\"{outcome}\"}}");
        assert_eq!(counted(&text, &series), None, "nothing but lost leases was recorded: {text}");
    }
}
