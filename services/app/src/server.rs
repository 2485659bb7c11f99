//! The HTTP surface: health, readiness (names what is down), system information, the
//! JSON error shape and request ids. Knowledge-base routes join here as they land.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use weknora_buildinfo::BUILD;

use crate::config::Config;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AppState {
    pub config: Config,
    pub db: PgPool,
    pub redis: redis::Client,
    /// The cache's connection, opened on first use and re-established by itself.
    pub redis_conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// Where uploads are kept (OpenDAL: a local folder by default).
    pub storage: opendal::Operator,
    pub jieba: jieba_rs::Jieba,
    /// Wakes an idle ingest worker when a job is queued.
    pub new_job: tokio::sync::Notify,
    /// Names this process's ingest workers in job leases.
    pub instance: String,
    /// Renders the Prometheus metrics this process recorded.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// `{"success": false, "error": {"code": ..., "message": ...}}` with a status.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(field: &str, message: &str) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_argument", message: format!("{field}: {message}") }
    }

    /// A database error: a unique violation becomes 409 with `conflict`, the rest 500.
    pub fn from_db(e: sqlx::Error, conflict: &str) -> ApiError {
        if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
            return ApiError { status: StatusCode::CONFLICT, code: "conflict", message: conflict.into() };
        }
        internal(e)
    }
}

/// An unexpected failure: logged in full, answered with a short message and the request id.
pub fn internal(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "database error");
    let (status, code, message) = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database does not answer; see GET /ready")
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the log has the details under this request id",
        ),
    };
    ApiError { status, code, message: message.into() }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "success": false, "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

#[derive(Clone, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::new_v4().to_string().parse().ok().map(RequestId::new)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/system/info", get(system_info))
        .route("/metrics", get(crate::metrics::render))
        .merge(crate::auth::routes())
        .merge(crate::knowledge_bases::routes())
        .merge(crate::knowledge::routes((state.config.server.max_file_size_mb << 20) as usize))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
}

async fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such route".into() }
}

/// Liveness: the process answers. Dependencies are /ready's business.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn check_database(db: &PgPool) -> Result<(), String> {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(db);
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

async fn check_redis(client: &redis::Client) -> Result<(), String> {
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

async fn check_docreader(addr: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner()
            .status();
        if status == ServingStatus::Serving { Ok(()) } else { Err(format!("reports {status:?}")) }
    };
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())))
}

/// Readiness: the database, redis and docreader all answer. 503 names what is down.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (db, redis, docreader) = tokio::join!(
        check_database(&state.db),
        check_redis(&state.redis),
        check_docreader(&state.config.docreader.addr)
    );
    let results = [("database", db), ("redis", redis), ("docreader", docreader)];
    let down: Vec<&str> = results.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| *n).collect();
    let checks: serde_json::Map<String, Value> = results
        .iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!({ "ok": true }),
                Err(e) => json!({ "ok": false, "error": e }),
            };
            (name.to_string(), v)
        })
        .collect();
    if down.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready", "checks": checks }))).into_response()
    } else {
        let message = format!("not ready: {} down", down.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready", "message": message, "checks": checks })))
            .into_response()
    }
}

/// What is running: build metadata, schema version, and the optional capabilities the
/// database and configuration give.
async fn system_info(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let unavailable = |e: sqlx::Error| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "database_unavailable",
        message: format!("the database does not answer: {e}"),
    };
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&state.db)
        .await
        .map_err(unavailable)?;
    let schema_version: Option<i64> = if migrated {
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.db)
            .await
            .map_err(unavailable)?
    } else {
        None
    };
    let (pgvector, pg_search): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('chunk_embeddings') IS NOT NULL, to_regclass('chunks_bm25_idx') IS NOT NULL",
    )
    .fetch_one(&state.db)
    .await
    .map_err(unavailable)?;
    Ok(Json(json!({
        "success": true,
        "data": {
            "version": BUILD.version,
            "commit": BUILD.commit,
            "build_time": BUILD.build_time,
            "toolchain": BUILD.toolchain,
            "schema_version": schema_version,
            "capabilities": {
                "pgvector": pgvector,
                "pg_search": pg_search,
                "storage": state.config.storage.kind,
                "graph": state.config.graph.enabled,
            },
            "limits": { "max_file_size_mb": state.config.server.max_file_size_mb },
        }
    })))
}
