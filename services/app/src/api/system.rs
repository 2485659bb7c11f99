//! Health, readiness (naming what is down), system information and the metrics page; and
//! upstream's system routes, answered for this deployment: its capabilities, its document
//! reader (docreader, over gRPC) and its file storage, each checked when asked.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use weknora_buildinfo::BUILD;

use super::body::Envelope;
use super::error::ApiError;
use super::extract::{Caller, OptionalJson};
use crate::db;
use crate::state::{AppState, SharedState};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/system/info", get(info))
        .route("/api/v1/system/capabilities", get(capabilities))
        .route("/api/v1/system/parser-engines", get(parser_engines))
        .route("/api/v1/system/parser-engines/check", post(check_parser_engines))
        .route("/api/v1/system/docreader/reconnect", post(reconnect_docreader))
        .route("/api/v1/system/storage-engine-status", get(storage_status))
        .route("/api/v1/system/storage-engine-check", post(check_storage))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// Liveness: the process answers. Dependencies are /ready's business.
async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Ok, or why not, within `CHECK_TIMEOUT`.
async fn within<E: std::fmt::Display>(check: impl Future<Output = Result<(), E>>) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

#[derive(Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Checks {
    database: Check,
    redis: Check,
    docreader: Check,
    /// The embedding model, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    embedder: Option<Check>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    checks: Checks,
}

/// Readiness: the database and docreader answer, and the schema is the one this build was
/// made for (or newer: during a rolling update the old replicas serve beside the new); 503
/// names what is not. So a new replica waits for the migrations (the migration Job, or
/// `cargo xtask migrate`) before it takes traffic. Redis or the embedding model being down
/// only degrades the app (200, `degraded`, naming them): without Redis answers are not
/// cached; without the model search answers by keyword and embedding jobs wait for it.
async fn ready(State(state): State<SharedState>) -> Response {
    let embedder = async {
        match &state.embedder {
            Some(e) => Some(e.check(CHECK_TIMEOUT).await),
            None => None,
        }
    };
    let (database, redis, docreader, embedder) = tokio::join!(
        within(schema_current(&state.db)),
        within(crate::search::cache::ping(&state.redis)),
        state.docreader.check(CHECK_TIMEOUT),
        embedder
    );
    let mut down: Vec<String> = [("database", &database), ("docreader", &docreader)]
        .iter()
        .filter_map(|(name, r)| match r {
            Err(e) if e.starts_with(SCHEMA_BEHIND) => Some(e.clone()),
            Err(_) => Some(format!("{name} down")),
            Ok(()) => None,
        })
        .collect();
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        down.push("shutting down".into());
    }
    let mut degraded = Vec::new();
    if redis.is_err() {
        degraded.push("redis is down (answers are not cached)");
    }
    if embedder.as_ref().is_some_and(Result::is_err) {
        degraded.push("the embedding model is down (search answers by keyword only)");
    }
    let check = |r: Result<(), String>| Check { ok: r.is_ok(), error: r.err() };
    let checks = Checks {
        database: check(database),
        redis: check(redis),
        docreader: check(docreader),
        embedder: embedder.map(check),
    };
    if down.is_empty() && !degraded.is_empty() {
        let message = Some(format!("degraded: {}", degraded.join("; ")));
        (StatusCode::OK, Json(Readiness { status: "degraded", message, checks })).into_response()
    } else if down.is_empty() {
        (StatusCode::OK, Json(Readiness { status: "ready", message: None, checks })).into_response()
    } else {
        let message = Some(format!("not ready: {}", down.join(", ")));
        (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { status: "not_ready", message, checks })).into_response()
    }
}

const SCHEMA_BEHIND: &str = "the database schema is behind this build";

/// The database answers with a schema at least as new as this build's newest migration.
async fn schema_current(db: &sqlx::PgPool) -> Result<(), String> {
    let needed = db::migrations::newest();
    match db::system::schema_version(db).await.map_err(|e| e.to_string())? {
        Some(at) if at >= needed => Ok(()),
        at => Err(format!(
            "{SCHEMA_BEHIND} ({}, needs {needed}): run the migrations (`cargo xtask migrate`, or the migration Job)",
            at.map_or("not migrated".to_string(), |v| format!("at {v}"))
        )),
    }
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    commit: &'static str,
    build_time: &'static str,
    toolchain: &'static str,
    schema_version: Option<i64>,
    #[serde(flatten)]
    upstream: UpstreamInfo,
    capabilities: Capabilities,
    retrieval: RetrievalInfo,
    chat: ChatInfo,
    limits: Limits,
}

/// The same facts under upstream's names, for its clients.
#[derive(Serialize)]
struct UpstreamInfo {
    edition: &'static str,
    commit_id: &'static str,
    /// The schema version, as upstream's string.
    db_version: String,
    keyword_index_engine: &'static str,
    vector_store_engine: &'static str,
    graph_database_engine: &'static str,
    minio_enabled: bool,
}

#[derive(Serialize)]
struct RetrievalInfo {
    /// keyword, and vector when the database has pgvector and a model is configured.
    retrievers: Vec<&'static str>,
    /// How the lists are combined: `rrf` with more than one retriever.
    fusion: Option<&'static str>,
    rrf_k: u32,
    embedding: Option<EmbeddingInfo>,
}

#[derive(Serialize)]
struct EmbeddingInfo {
    provider: String,
    model: String,
    /// 0: taken from the model's answers.
    dimensions: usize,
}

#[derive(Serialize)]
struct Capabilities {
    pgvector: bool,
    pg_search: bool,
    storage: String,
    graph: bool,
}

/// How questions are answered when neither the request nor its knowledge base names a
/// tenant's model: by the built-in model, or extractively.
#[derive(Serialize)]
struct ChatInfo {
    answers: &'static str,
    provider: Option<String>,
    model: Option<String>,
}

#[derive(Serialize)]
struct Limits {
    max_file_size_mb: u64,
}

/// What is running: build metadata, schema version, and the optional capabilities the
/// database and configuration give.
async fn info(State(state): State<SharedState>) -> Result<Envelope<Info>, ApiError> {
    let unavailable = |e: sqlx::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!("the database does not answer: {e}"),
        )
    };
    let schema_version = db::system::schema_version(&state.db).await.map_err(unavailable)?;
    let (pgvector, pg_search) = db::system::capabilities(&state.db).await.map_err(unavailable)?;
    Ok(Envelope::new(Info {
        version: BUILD.version,
        commit: BUILD.commit,
        build_time: BUILD.build_time,
        toolchain: BUILD.toolchain,
        schema_version,
        upstream: UpstreamInfo {
            edition: "weknora",
            commit_id: BUILD.commit,
            db_version: schema_version.map(|v| v.to_string()).unwrap_or_default(),
            keyword_index_engine: if pg_search { "paradedb" } else { "postgres" },
            vector_store_engine: if pgvector { "pgvector" } else { "" },
            graph_database_engine: "",
            minio_enabled: state.config.storage.kind != "local",
        },
        capabilities: Capabilities {
            pgvector,
            pg_search,
            storage: state.config.storage.kind.clone(),
            graph: state.config.graph.enabled,
        },
        retrieval: retrieval_info(&state),
        chat: ChatInfo {
            answers: if state.chat_model.is_some() { "model" } else { "extractive" },
            provider: state.chat_model.as_ref().map(|_| state.config.chat.provider.clone()),
            model: state.chat_model.as_ref().map(|m| m.name().to_string()),
        },
        limits: Limits { max_file_size_mb: state.config.server.max_file_size_mb },
    }))
}

fn retrieval_info(state: &AppState) -> RetrievalInfo {
    let vector = state.vectors.is_some() && state.embedder.is_some();
    RetrievalInfo {
        retrievers: if vector { vec!["keyword", "vector"] } else { vec!["keyword"] },
        fusion: vector.then_some("rrf"),
        rrf_k: state.config.retrieval.rrf_k,
        embedding: state.embedder.as_ref().map(|e| EmbeddingInfo {
            provider: state.config.embedding.provider.clone(),
            model: e.model().to_string(),
            dimensions: e.dimensions(),
        }),
    }
}

/// `GET /metrics`: the queue depth and the last backups are read from the database now; the
/// rest was recorded.
async fn metrics(State(state): State<SharedState>) -> Response {
    match db::jobs::queue_depth(&state.db).await {
        Ok(rows) => rows.iter().for_each(|(job_state, n)| crate::metrics::ingest_queue(job_state, *n)),
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the ingest queue"),
    }
    match db::system::last_backups(&state.db).await {
        Ok(rows) => rows.iter().for_each(|(kind, at)| crate::metrics::last_backup(kind, *at)),
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the backups"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Upstream's deployment capabilities (what its web interface shows), each with the family
/// of upstream's routes it stands for where weknora does not provide it (those answer 501):
/// `None` where it does.
const CAPABILITIES: [(&str, Option<&str>); 10] = [
    ("organizations", Some("organizations")),
    ("agents", Some("agents")),
    ("integrations.im", Some("im-channels")),
    ("integrations.embed", Some("embed-channels")),
    // API keys: /api/v1/tenants/{id}/api-keys.
    ("integrations.api", None),
    ("settings.mcp", Some("mcp-services")),
    ("settings.websearch", Some("web-search")),
    ("settings.vectorstore", Some("vector-stores")),
    ("settings.storage", Some("storage-backends")),
    ("settings.sandbox", Some("sandbox-configs")),
];

#[derive(Serialize)]
struct Capability {
    supported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
struct DeploymentCapabilities {
    edition: &'static str,
    capabilities: std::collections::BTreeMap<&'static str, Capability>,
}

/// Any key: which of upstream's features this deployment has (`route_not_registered`, as
/// upstream says, where it has not).
async fn capabilities(_caller: Caller) -> Envelope<DeploymentCapabilities> {
    let capabilities = CAPABILITIES
        .iter()
        .map(|(name, missing)| {
            let capability =
                Capability { supported: missing.is_none(), reason: missing.map(|_| "route_not_registered") };
            (*name, capability)
        })
        .collect();
    Envelope::new(DeploymentCapabilities { edition: "weknora", capabilities })
}

/// A document parser as upstream lists them.
#[derive(Serialize)]
struct ParserEngine {
    name: &'static str,
    label: &'static str,
    description: String,
    available: bool,
}

/// The docreader, asked now whether it serves.
async fn docreader_engine(state: &AppState) -> ParserEngine {
    let checked = state.docreader.check(CHECK_TIMEOUT).await;
    let description = match &checked {
        Ok(()) => "weknora's document reader (gRPC, DOCREADER_ADDR): files and web pages into markdown".to_string(),
        Err(e) => format!("weknora's document reader (gRPC, DOCREADER_ADDR) does not answer: {e}"),
    };
    ParserEngine { name: "docreader", label: "DocReader", description, available: checked.is_ok() }
}

#[derive(Serialize)]
struct Connected {
    connected: bool,
}

/// Any key: weknora's one parser, the docreader, and whether it answers now.
async fn parser_engines(State(state): State<SharedState>, _caller: Caller) -> Envelope<Vec<ParserEngine>, Connected> {
    let engine = docreader_engine(&state).await;
    let connected = engine.available;
    Envelope::with(vec![engine], Connected { connected })
}

/// `addr` without its scheme and trailing slash: `http://docreader:50051/` -> `docreader:50051`.
fn bare(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest).trim().trim_end_matches('/')
}

/// A body naming a docreader (`addr`) must name the deployment's: weknora reads documents
/// with DOCREADER_ADDR's only, and contacts no other address it is given.
fn the_deployments_docreader(state: &AppState, body: Option<&Value>) -> Result<(), ApiError> {
    let asked = body.and_then(|b| b.get("addr")).and_then(Value::as_str).map(str::trim).filter(|a| !a.is_empty());
    let ours = &state.config.docreader.addr;
    match asked {
        Some(addr) if bare(addr) != bare(ours) => Err(ApiError::bad_request(
            "addr",
            &format!(
                "weknora reads documents with the deployment's docreader only (DOCREADER_ADDR, `{ours}`); it does not \
                 contact `{addr}`: change DOCREADER_ADDR and restart to use another"
            ),
        )),
        _ => Ok(()),
    }
}

/// Admin keys: the docreader checked now (an `addr` must be the deployment's).
async fn check_parser_engines(
    State(state): State<SharedState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<Value>,
) -> Result<Envelope<Vec<ParserEngine>>, ApiError> {
    caller.require_admin()?;
    the_deployments_docreader(&state, body.as_ref())?;
    Ok(Envelope::new(vec![docreader_engine(&state).await]))
}

#[derive(Serialize)]
struct Reconnected {
    addr: String,
    connected: bool,
}

/// Admin keys: connects to the deployment's docreader now (its connection is also
/// re-established by itself when it drops), and answers whether it serves; 503 naming the
/// failure when it does not. An `addr` must be the deployment's.
async fn reconnect_docreader(
    State(state): State<SharedState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<Value>,
) -> Result<Envelope<Reconnected>, ApiError> {
    caller.require_admin()?;
    the_deployments_docreader(&state, body.as_ref())?;
    let addr = state.config.docreader.addr.clone();
    match state.docreader.check(CHECK_TIMEOUT).await {
        Ok(()) => Ok(Envelope::new(Reconnected { addr, connected: true })),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "docreader_unavailable",
            format!("the docreader at {addr} (DOCREADER_ADDR) does not answer: {e}"),
        )),
    }
}

/// The storage engines weknora has (STORAGE_TYPE), by upstream's names.
const STORAGE_ENGINES: [(&str, &str); 3] =
    [("local", "a folder on the app's volume"), ("minio", "MinIO object storage"), ("s3", "AWS S3 object storage")];

#[derive(Serialize)]
struct StorageEngine {
    name: &'static str,
    allowed: bool,
    available: bool,
    description: String,
}

#[derive(Serialize)]
struct StorageStatus {
    engines: Vec<StorageEngine>,
    allowed_providers: Vec<String>,
    minio_env_available: bool,
}

/// Any key: the deployment's storage (STORAGE_TYPE, the only one allowed: files are stored
/// where the deployment says) and whether it works now (it takes a small file, gives it back
/// and deletes it); the engines it could be set to instead, neither allowed nor available.
async fn storage_status(State(state): State<SharedState>, _caller: Caller) -> Envelope<StorageStatus> {
    let kind = state.config.storage.kind.as_str();
    let answers = crate::storage::probe(&state.storage, CHECK_TIMEOUT).await;
    let engines = STORAGE_ENGINES
        .iter()
        .map(|(name, what)| {
            let ours = *name == kind;
            let description = match (ours, &answers) {
                (true, Ok(())) => format!("{what} (STORAGE_TYPE={kind})"),
                (true, Err(e)) => format!("{what} (STORAGE_TYPE={kind}) does not answer: {e}"),
                (false, _) => format!("{what}: not this deployment's (STORAGE_TYPE={kind})"),
            };
            StorageEngine { name, allowed: ours, available: ours && answers.is_ok(), description }
        })
        .collect();
    Envelope::new(StorageStatus {
        engines,
        allowed_providers: vec![kind.to_string()],
        minio_env_available: kind == "minio",
    })
}

#[derive(Serialize)]
struct StorageCheck {
    ok: bool,
    message: String,
    bucket_created: bool,
}

/// Admin keys: the deployment's storage checked now, by writing a small file, reading it
/// back and deleting it. A `provider` must be the deployment's; the settings of another
/// engine in the body are not used (weknora contacts no storage it is given).
async fn check_storage(
    State(state): State<SharedState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<Value>,
) -> Result<Envelope<StorageCheck>, ApiError> {
    caller.require_admin()?;
    let kind = &state.config.storage.kind;
    let provider = body.as_ref().and_then(|b| b.get("provider")).and_then(Value::as_str).map(str::trim);
    if let Some(provider) = provider.filter(|p| !p.is_empty() && p != kind) {
        return Err(ApiError::bad_request(
            "provider",
            &format!(
                "weknora stores files where the deployment says (STORAGE_TYPE={kind}); it does not check `{provider}`"
            ),
        ));
    }
    let checked = crate::storage::probe(&state.storage, CHECK_TIMEOUT * 5).await;
    let message = match &checked {
        Ok(()) => format!("the deployment's storage (STORAGE_TYPE={kind}) took a file, gave it back and deleted it"),
        Err(e) => format!("the deployment's storage (STORAGE_TYPE={kind}) failed: {e}"),
    };
    Ok(Envelope::new(StorageCheck { ok: checked.is_ok(), message, bucket_created: false }))
}
