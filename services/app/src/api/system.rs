//! Health, readiness (naming what is down), system information and the metrics page.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use weknora_buildinfo::BUILD;

use super::body::Envelope;
use crate::db;
use crate::error::ApiError;
use crate::state::{AppState, SharedState};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/system/info", get(info))
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

async fn check_redis(client: &redis::Client) -> Result<(), redis::RedisError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
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
        within(check_redis(&state.redis)),
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
