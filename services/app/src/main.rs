//! weknora-app: serves the HTTP API, or (`healthcheck`) asks a running app whether it is
//! alive — the image's healthcheck, since a scratch image has no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use weknora_app::config::Config;
use weknora_app::state::AppState;
use weknora_buildinfo::BUILD;

#[derive(Parser)]
#[command(name = "weknora-app", about = "The weknora HTTP API", disable_version_flag = true)]
struct Cli {
    /// Print the build metadata and exit.
    #[arg(long, short = 'V')]
    version: bool,
    /// The configuration file.
    #[arg(long, env = "WEKNORA_CONFIG", default_value = "config/config.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending migrations (the ones built into this binary) and exit: how
    /// `cargo xtask start` migrates a stack whose database port is not published.
    Migrate,
    /// Make the vectors of every knowledge base (or one) again with the configured
    /// embedding model: queues the embed jobs that the running app's workers then do.
    Reindex {
        /// Only this knowledge base (its id).
        #[arg(long)]
        kb: Option<uuid::Uuid>,
    },
    /// The stored files (the folder or the MinIO/S3 bucket) as a tar: `export` writes them
    /// to stdout, `import` makes the storage hold exactly those of a tar on stdin. How
    /// `cargo xtask backup` and `restore` reach a bucket.
    Storage {
        #[command(subcommand)]
        action: StorageAction,
    },
    /// Exit 0 when the local app answers GET /health with 200.
    Healthcheck {
        /// Where the app listens (default: 127.0.0.1 and the configured port).
        #[arg(long)]
        addr: Option<String>,
    },
}

#[derive(Subcommand)]
enum StorageAction {
    Export,
    Import,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", BUILD.line("weknora-app"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&cli.config, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck { addr } => {
            healthcheck(&addr.unwrap_or_else(|| format!("127.0.0.1:{}", config.server.port)))
        }
        Command::Migrate => one_off(migrate(config)),
        Command::Reindex { kb } => one_off(reindex(config, kb)),
        Command::Storage { action } => one_off(storage(config, action)),
        Command::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(serve(config))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-off command (migrate, reindex) on a single-threaded runtime.
fn one_off(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

async fn migrate(config: Config) -> Result<()> {
    let (pool, where_db) = weknora_app::state::database(&config);
    let before = current_version(&pool).await;
    weknora_app::MIGRATOR
        .run(&pool)
        .await
        .with_context(|| format!("migrating {where_db} failed; nothing after the failed migration was applied"))?;
    let after = current_version(&pool).await;
    let applied = weknora_app::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && m.version > before && m.version <= after)
        .count();
    println!("{where_db}: schema at version {after} ({applied} migrations applied)");
    Ok(())
}

async fn reindex(config: Config, only: Option<uuid::Uuid>) -> Result<()> {
    use weknora_app::db::knowledge_bases::{self, Reindex};
    let embedder = weknora_app::clients::embedding::Embedder::from_config(&config)?;
    let (pool, where_db) = weknora_app::state::database(&config);
    if weknora_app::db::system::pgvector(&pool).await.with_context(|| format!("reading {where_db}"))?.is_none() {
        anyhow::bail!("{where_db} has no pgvector (or is not migrated): vectors cannot be stored there");
    }
    let all = knowledge_bases::all(&pool).await.with_context(|| format!("reading {where_db}"))?;
    let chosen: Vec<_> = all.into_iter().filter(|(id, ..)| only.is_none_or(|o| o == *id)).collect();
    if let Some(id) = only
        && chosen.is_empty()
    {
        anyhow::bail!("no knowledge base has the id {id}");
    }
    let mut busy = 0;
    for (id, name, own_model) in chosen {
        // A knowledge base with its own embedding model is embedded with it by the workers.
        let model = match (own_model, &embedder) {
            (Some(_), _) => "its own embedding model".to_string(),
            (None, Some(e)) => e.model().to_string(),
            (None, None) => {
                println!("{id} {name}: skipped, no embedding model is configured (EMBEDDING_BASE_URL)");
                continue;
            }
        };
        match knowledge_bases::reindex(&pool, None, id, config.ingest.max_attempts).await? {
            Reindex::Queued(n) => println!("{id} {name}: {n} documents queued for {model}"),
            Reindex::Busy => {
                busy += 1;
                println!("{id} {name}: skipped, documents are being parsed or embedded; run reindex again later");
            }
            Reindex::NotFound => {}
        }
    }
    anyhow::ensure!(busy == 0, "{busy} knowledge bases were busy and not reindexed");
    Ok(())
}

async fn storage(config: Config, action: StorageAction) -> Result<()> {
    let op = weknora_app::storage::open(&config.storage).await?;
    match action {
        StorageAction::Export => {
            let n = weknora_app::storage::export(&op, std::io::BufWriter::new(std::io::stdout().lock())).await?;
            eprintln!("exported {n} files from {} storage", config.storage.kind);
        }
        StorageAction::Import => {
            let (written, deleted) = weknora_app::storage::import(&op, std::io::stdin().lock()).await?;
            eprintln!("imported {written} files into {} storage; deleted {deleted} others", config.storage.kind);
        }
    }
    Ok(())
}

/// The newest applied migration; 0 before the first.
async fn current_version(pool: &sqlx::PgPool) -> i64 {
    weknora_app::db::system::schema_version(pool).await.ok().flatten().unwrap_or(0)
}

async fn serve(config: Config) -> Result<()> {
    // Spans still buffered are sent when this goes, after the server stopped.
    let telemetry = weknora_telemetry::init("weknora-app", &config.log.level, config.log.format == "json");
    if telemetry.exporting() {
        tracing::info!("traces: exported over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    let state = Arc::new(AppState::connect(&config).await?);
    let addr: SocketAddr = format!("{}:{}", config.server.host, config.server.port)
        .parse()
        .with_context(|| format!("server.host `{}` is not an IP address", config.server.host))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let where_db = weknora_app::state::where_db(&config);
    tracing::info!(version = BUILD.version, commit = BUILD.commit, %addr, database = %where_db, "weknora-app listening");
    startup(&state).await;
    weknora_app::ingest::spawn_workers(state.clone());
    weknora_app::transfers::spawn_worker(state.clone());
    let app = weknora_app::api::router(state.clone());
    axum::serve(listener, app).with_graceful_shutdown(drain(state)).await?;
    tracing::info!("weknora-app stopped");
    Ok(())
}

/// The chores of a start, none of which stops it: the first tenant from ADMIN_API_KEY, what
/// retrieval and chat will use, documents left without vectors, answers a stopped app left
/// streaming, and the jobs it left unfinished.
async fn startup(state: &AppState) {
    let (config, pool) = (&state.config, &state.db);
    if !config.auth.admin_api_key.0.is_empty() {
        match weknora_app::db::tenants::bootstrap(pool, &config.auth.admin_api_key.0).await {
            Ok(true) => tracing::info!("created the first tenant `default` with ADMIN_API_KEY as its admin key"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not create the first tenant from ADMIN_API_KEY (is the schema migrated?)")
            }
        }
    }
    match (&state.embedder, &state.vectors) {
        (Some(e), Some(_)) => {
            tracing::info!(model = e.model(), at = e.base_url(), "retrieval: keyword and vector, fused")
        }
        (None, _) => tracing::info!("retrieval: keyword only (no embedding model: set EMBEDDING_BASE_URL)"),
        (Some(_), None) => {
            tracing::warn!("retrieval: keyword only: the database has no pgvector (see docs/operations.md)")
        }
    }
    if state.embedder.is_some()
        && state.vectors.is_some()
        && let Ok(n) = weknora_app::db::documents::without_vectors(pool).await
        && n > 0
    {
        tracing::warn!(
            documents = n,
            "documents parsed before an embedding model was configured have no vectors: run `cargo xtask reindex` to give them some"
        );
    }
    match &state.chat_model {
        Some(m) => tracing::info!(model = m.name(), at = config.chat_base_url(), "chat: the built-in model answers"),
        None => tracing::info!(
            "chat: no built-in model (LLM_BASE_URL): answers are extractive unless a tenant adds a model"
        ),
    }
    match weknora_app::db::sessions::abandon_stale(pool, config.chat.total_timeout_secs + 60).await {
        Ok(n) if n > 0 => {
            tracing::warn!(answers = n, "chat: answers left streaming by a stopped app are marked failed")
        }
        _ => {}
    }
    weknora_app::ingest::report_unfinished(state).await;
}

/// Waits for SIGTERM (or Ctrl-C), then keeps serving `server.drain_secs` while `/ready`
/// answers 503, so that a load balancer (Swarm's, Kubernetes') stops sending requests to this
/// replica before it stops accepting them; then the requests in flight finish.
async fn drain(state: weknora_app::state::SharedState) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    let secs = state.config.server.drain_secs;
    state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    if secs > 0 {
        tracing::info!(secs, "stopping: draining before closing the listener");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

/// A plain HTTP/1.1 GET of /health: the scratch image has no HTTP client to call.
fn healthcheck(addr: &str) -> Result<()> {
    let timeout = Duration::from_secs(3);
    let socket: SocketAddr = addr.parse().with_context(|| format!("`{addr}` is not HOST:PORT"))?;
    let mut stream =
        TcpStream::connect_timeout(&socket, timeout).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.take(4096).read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or("");
    anyhow::ensure!(status.split_whitespace().nth(1) == Some("200"), "GET /health answered `{status}`");
    Ok(())
}
