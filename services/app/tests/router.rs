//! The router in-process, as axum's `examples/testing` calls it: a state from
//! `AppState::connect`, `api::router(state)`, and one `oneshot` request at a time, no
//! server and no socket. What these pin is how failures map to HTTP: the status,
//! upstream's integer code, our reason and the message.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weknora_app::config::Config;
use weknora_app::state::AppState;
use weknora_testkit::{PASSWORD, Pg, USER, free_port};

mod support;

use support::{ADMIN_KEY, config_file};

/// The configuration the spawned app would read from `env`, plus a storage folder.
fn config(env: &[(&str, String)], files: &std::path::Path) -> Config {
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.display().to_string()));
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    Config::load(&config_file(), |k| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())).unwrap()
}

/// The environment for a database at `pg_port` (nothing need listen there) and a Redis,
/// docreader and embedding model that are not asked.
fn env(pg_port: u16, migrate: bool) -> Vec<(&'static str, String)> {
    vec![
        ("DB_HOST", "127.0.0.1".into()),
        ("DB_PORT", pg_port.to_string()),
        ("DB_USER", USER.into()),
        ("DB_PASSWORD", PASSWORD.into()),
        ("DB_NAME", "postgres".into()),
        ("REDIS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("DOCREADER_ADDR", format!("127.0.0.1:{}", free_port())),
        ("AUTO_MIGRATE", migrate.to_string()),
    ]
}

/// One request through the router, with a JSON body when one is given.
async fn call(app: &axum::Router, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Answer {
    let body = body.map(|b| ("application/json".to_string(), b.as_bytes().to_vec()));
    send(app, method, path, key, body).await
}

/// One request through the router, with a body of its own type: (status, the `Allow`
/// header, the JSON body).
async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<(String, Vec<u8>)>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let body = match body {
        Some((content_type, bytes)) => {
            request = request.header("Content-Type", content_type);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer { status, allow, body }
}

struct Answer {
    status: StatusCode,
    allow: Option<String>,
    body: Value,
}

impl Answer {
    /// Upstream's error shape with this status, integer code and reason; the message.
    fn error(&self, status: u16, code: u16, reason: &str) -> &str {
        let b = &self.body;
        assert_eq!(self.status.as_u16(), status, "{b}");
        assert_eq!(b["success"], json!(false), "{b}");
        assert_eq!((&b["code"], &b["error"]["code"]), (&json!(code), &json!(code)), "{b}");
        assert_eq!(b["error"]["details"]["reason"], reason, "{b}");
        assert_eq!(b["message"], b["error"]["message"], "{b}");
        b["message"].as_str().unwrap()
    }
}

#[tokio::test]
async fn routing_auth_and_a_dead_database_map_to_upstreams_errors() {
    let files = tempfile::tempdir().unwrap();
    // Nothing listens on the database's port: the pool connects lazily, so the state builds.
    let state = AppState::connect(&config(&env(free_port(), false), files.path())).await.unwrap();
    let app = weknora_app::api::router(Arc::new(state));

    let a = call(&app, "GET", "/api/v1/no-such-thing", None, None).await;
    assert_eq!(a.error(404, 1003, "not_found"), "no such route");

    let a = call(&app, "GET", "/api/v1/agents", None, None).await;
    assert_eq!(a.error(501, 1004, "not_provided"), "weknora does not provide custom agents: upstream's /agents API");
    let a = call(&app, "GET", "/api/v1/knowledge-bases/x/tags", None, None).await;
    assert_eq!(a.error(501, 1004, "not_provided"), "weknora does not provide tags: upstream's /tags API");

    let a = call(&app, "DELETE", "/health", None, None).await;
    assert!(a.error(405, 1004, "method_not_allowed").starts_with("this route does not take DELETE"));
    assert!(a.allow.as_deref().is_some_and(|v| v.contains("GET")), "{:?}", a.allow);

    let a = call(&app, "GET", "/api/v1/knowledge-bases", None, None).await;
    assert_eq!(a.error(401, 1001, "unauthorized"), "missing X-API-Key header");

    // The key is looked up in a database that does not answer: 503, not 500 or 401.
    let a = call(&app, "GET", "/api/v1/knowledge-bases", Some(ADMIN_KEY), None).await;
    assert_eq!(a.error(503, 1008, "database_unavailable"), "the database does not answer; see GET /ready");

    let a = call(&app, "GET", "/health", None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn rejected_requests_and_domain_errors_map_to_upstreams_errors() {
    let pg = Pg::debian();
    let files = tempfile::tempdir().unwrap();
    let state = AppState::connect(&config(&env(pg.port, true), files.path())).await.unwrap();
    assert!(weknora_app::db::tenants::bootstrap(&state.db, ADMIN_KEY).await.unwrap());
    let app = weknora_app::api::router(Arc::new(state));
    let key = Some(ADMIN_KEY);

    let a = call(&app, "GET", "/api/v1/knowledge-bases", Some("not-a-key"), None).await;
    assert_eq!(a.error(401, 1001, "unauthorized"), "invalid API key");

    // Path, query and body rejections name what is at fault, as 400s.
    let a = call(&app, "GET", "/api/v1/knowledge-bases/not-a-uuid", key, None).await;
    assert_eq!(
        a.error(400, 1000, "invalid_argument"),
        "id: `not-a-uuid` is not valid: UUID parsing failed: invalid character: found `n` at 0"
    );
    let a = call(&app, "POST", "/api/v1/knowledge-bases", key, Some("{")).await;
    assert!(a.error(400, 1000, "invalid_argument").starts_with("request body: "));
    let a = call(&app, "POST", "/api/v1/knowledge-bases", key, Some(r#"{"name": 5}"#)).await;
    assert!(a.error(400, 1000, "invalid_argument").starts_with("request body: "), "wrong shape is 400, not 422");
    let a = call(&app, "POST", "/api/v1/knowledge-bases", key, Some(r#"{"name": " "}"#)).await;
    assert_eq!(a.error(400, 1000, "invalid_argument"), "name: a knowledge base needs a name");

    // Text PostgreSQL cannot hold is the request's fault.
    let a = call(&app, "POST", "/api/v1/knowledge-bases", key, Some(r#"{"name": "a\u0000b"}"#)).await;
    assert!(a.error(400, 1000, "invalid_argument").contains("NUL character"));

    // Another tenant's id or none at all: the same 404.
    let missing = uuid::Uuid::new_v4();
    let a = call(&app, "GET", &format!("/api/v1/knowledge-bases/{missing}"), key, None).await;
    assert_eq!(a.error(404, 1003, "not_found"), "no such knowledge base");

    // The domain's errors (search, models) map in the HTTP layer.
    let search = format!("/api/v1/knowledge-bases/{missing}/hybrid-search");
    let a = call(&app, "POST", &search, key, Some(r#"{"query_text": "anything"}"#)).await;
    assert_eq!(a.error(404, 1003, "not_found"), "no such knowledge base");
    let a = call(&app, "GET", &format!("/api/v1/models/{missing}"), key, None).await;
    assert_eq!(a.error(404, 1003, "not_found"), "no such model");

    let created = call(&app, "POST", "/api/v1/knowledge-bases", key, Some(r#"{"name": "kb"}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["data"]["id"].as_str().unwrap();
    let search = format!("/api/v1/knowledge-bases/{id}/hybrid-search");
    let a = call(&app, "POST", &search, key, Some(r#"{"query_text": "  ,;  "}"#)).await;
    assert_eq!(a.error(400, 1000, "invalid_argument"), "query: the query has no searchable words");

    // A knowledge base the path names is checked before the body is read.
    let manual = |kb: &str| format!("/api/v1/knowledge-bases/{kb}/knowledge/manual");
    let a = call(&app, "POST", &manual(&missing.to_string()), key, Some("{")).await;
    assert_eq!(a.error(404, 1003, "not_found"), "no such knowledge base");
    let a = call(&app, "POST", &manual(id), key, Some("{")).await;
    assert!(a.error(400, 1000, "invalid_argument").starts_with("request body: "));

    // The same file twice: 409 with the document that holds it as `data`, and upstream's
    // word for it as the top-level code.
    let upload = || Some(support::multipart("notes.txt", b"the same bytes"));
    let path = format!("/api/v1/knowledge-bases/{id}/knowledge/file");
    let first = send(&app, "POST", &path, key, upload()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = send(&app, "POST", &path, key, upload()).await;
    let b = &again.body;
    assert_eq!(again.status, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        (&b["code"], &b["error"]["code"], &b["error"]["details"]["reason"]),
        (&json!("duplicate_file"), &json!(1005), &json!("duplicate")),
        "{b}"
    );
    assert_eq!(b["data"]["id"], first.body["data"]["id"], "{b}");
    assert!(
        b["message"].as_str().unwrap().starts_with("the knowledge base has a file with the same content already"),
        "{b}"
    );
}
