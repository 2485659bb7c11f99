//! What every request handler and background worker shares: configuration, the database
//! pool, Redis, storage, the docreader client, and this process's identity.

use std::sync::Arc;

use sqlx::PgPool;

use crate::answers::Answers;
use crate::config::Config;
use crate::crypt::Sealer;
use crate::db::chunks::VectorSearch;
use crate::docreader::Docreader;
use crate::embedding::Embedder;
use crate::llm::ChatModel;

pub struct AppState {
    pub config: Config,
    pub db: PgPool,
    pub redis: redis::Client,
    /// The cache's connection, opened on first use and re-established by itself.
    pub redis_conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// Where uploads are kept (OpenDAL: a local folder by default).
    pub storage: opendal::Operator,
    pub docreader: Docreader,
    /// The embedding model, when one is configured.
    pub embedder: Option<Embedder>,
    /// How vectors are searched, when the database has pgvector.
    pub vectors: Option<VectorSearch>,
    /// The built-in chat model (LLM_*), when one is configured.
    pub chat_model: Option<ChatModel>,
    /// Opens and seals the API keys of tenants' models.
    pub sealer: Sealer,
    /// The answers streaming now.
    pub answers: Answers,
    pub jieba: jieba_rs::Jieba,
    /// Wakes an idle ingest worker when a job is queued.
    pub new_job: tokio::sync::Notify,
    /// Names this process's ingest workers in job leases.
    pub instance: String,
    /// Renders the Prometheus metrics this process recorded.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Set on SIGTERM: `/ready` answers 503 while the app drains (`server.drain_secs`).
    pub draining: std::sync::atomic::AtomicBool,
}

/// The state as handlers receive it.
pub type SharedState = Arc<AppState>;
