//! What every request handler and background worker shares: configuration, the database
//! pool, Redis, storage, the docreader client, and this process's identity.
//! [`AppState::connect`] is the one place that builds it: `main` serves it, and tests can
//! build one in-process and hand it to `api::router`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::answers::Answers;
use crate::clients::docreader::Docreader;
use crate::clients::embedding::Embedder;
use crate::clients::llm::ChatModel;
use crate::config::Config;
use crate::crypt::Sealer;
use crate::db::chunks::VectorSearch;

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

impl AppState {
    /// Builds the state from the configuration: the database pool (migrated first when
    /// `server.auto_migrate`, so that pgvector is seen), the Redis client, the storage
    /// (checked), the docreader, embedding and chat model clients, and the metrics
    /// recorder. Nothing is served and no worker starts: `main` does that.
    pub async fn connect(config: &Config) -> Result<AppState> {
        let (pool, where_db) = database(config);
        if config.server.auto_migrate {
            tracing::info!(database = %where_db, "AUTO_MIGRATE: applying pending migrations");
            crate::db::migrations::MIGRATOR.run(&pool).await.with_context(|| {
                format!(
                    "AUTO_MIGRATE failed against {where_db}; the app does not start on a schema it cannot trust (run `cargo xtask migrate status`)"
                )
            })?;
        }
        let redis = redis::Client::open(redis_url(config)).context("REDIS_ADDR is not a valid address")?;
        let storage = crate::storage::open(&config.storage).await?;
        let instance = format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "app".into()), std::process::id());
        Ok(AppState {
            chat_model: ChatModel::built_in(config)?,
            sealer: Sealer::new(&config.models.encryption_key.0),
            answers: Default::default(),
            docreader: Docreader::new(config)?,
            embedder: Embedder::from_config(config)?,
            vectors: vector_search(&pool).await,
            config: config.clone(),
            db: pool,
            redis,
            redis_conn: tokio::sync::OnceCell::new(),
            storage,
            jieba: jieba_rs::Jieba::new(),
            new_job: tokio::sync::Notify::new(),
            instance,
            metrics: crate::metrics::install()?,
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// The database pool (connecting lazily) and `user@host:port/name` for messages.
pub fn database(config: &Config) -> (PgPool, String) {
    let db = &config.database;
    let options = PgConnectOptions::new_without_pgpass()
        .host(&db.host)
        .port(db.port)
        .username(&db.user)
        .password(&db.password.0)
        .database(&db.name);
    let pool =
        PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(options);
    (pool, where_db(config))
}

/// The database as messages name it: `user@host:port/name`.
pub fn where_db(config: &Config) -> String {
    let db = &config.database;
    format!("{}@{}:{}/{}", db.user, db.host, db.port, db.name)
}

fn redis_url(config: &Config) -> String {
    let r = &config.redis;
    let auth = if r.password.0.is_empty() { String::new() } else { format!(":{}@", percent(&r.password.0)) };
    format!("redis://{auth}{}/{}", r.addr, r.db)
}

/// A URL's password escapes everything but unreserved characters.
fn percent(s: &str) -> String {
    const USERINFO: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, USERINFO).to_string()
}

/// How vectors are searched, or None without pgvector (or before the schema is migrated).
async fn vector_search(pool: &PgPool) -> Option<VectorSearch> {
    let version = crate::db::system::pgvector(pool).await.ok().flatten()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Some(VectorSearch { iterative_scan: (major, minor) >= (0, 8) })
}
