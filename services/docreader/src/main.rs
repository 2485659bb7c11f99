//! weknora-docreader: serves the DocReader gRPC API, or (`healthcheck`) asks a running
//! server whether it is SERVING — the image's healthcheck, since a scratch image has no
//! probe tools.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use docreader::config::Config;
use docreader::proto::doc_reader_server::DocReaderServer;
use docreader::service::{DocReaderService, TokenAuth};
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use weknora_buildinfo::BUILD;

#[derive(Parser)]
#[command(name = "weknora-docreader", about = "gRPC document parser (DocReader)", disable_version_flag = true)]
struct Cli {
    /// Print the build metadata and exit.
    #[arg(long, short = 'V')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Exit 0 when the local server reports SERVING, 1 otherwise.
    Healthcheck {
        /// Where the server listens (default: 127.0.0.1 and DOCREADER_GRPC_PORT).
        #[arg(long)]
        addr: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", BUILD.line("weknora-docreader"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match runtime.block_on(serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Healthcheck { addr } => {
            let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", config.port));
            match runtime.block_on(healthcheck(&addr)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Spans still buffered are sent when this goes, after the server stopped.
    let telemetry = weknora_telemetry::init("weknora-docreader", &config.log_level, config.log_json);
    if telemetry.exporting() {
        tracing::info!("traces: exported over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    // Parser panics are contained per request; log them as one structured line.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic contained: the request fails, the server keeps serving");
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    if config.metrics_port != 0 {
        let at = SocketAddr::from(([0, 0, 0, 0], config.metrics_port));
        docreader::metrics::serve(at, config.max_workers).map_err(anyhow::Error::msg)?;
    }
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<DocReaderServer<DocReaderService>>().await;
    let max = config.max_bytes();
    let auth = TokenAuth::new(config.auth_token.as_deref());
    tracing::info!(
        version = BUILD.version,
        commit = BUILD.commit,
        %addr,
        max_file_size_mb = config.max_file_size_mb,
        workers = config.max_workers,
        metrics_port = config.metrics_port,
        auth = config.auth_token.is_some(),
        "docreader listening"
    );
    let service = DocReaderServer::new(DocReaderService::new(config))
        // Room for the request's other fields on top of the content limit, so an
        // oversize file gets our message naming the limit.
        .max_decoding_message_size(max + (1 << 20))
        .max_encoding_message_size(max.saturating_mul(4) + (1 << 20));
    Server::builder()
        .layer(tower::util::MapResponseLayer::new(move |res| oversize_as_resource_exhausted(res, max)))
        .add_service(health)
        .add_service(tonic::service::interceptor::InterceptedService::new(service, auth))
        .serve_with_shutdown(addr, shutdown())
        .await?;
    tracing::info!("docreader stopped");
    Ok(())
}

/// tonic refuses a message above the decoding limit with OUT_OF_RANGE and a message in
/// bytes; operators and the app expect RESOURCE_EXHAUSTED naming the setting.
fn oversize_as_resource_exhausted<B>(mut res: http::Response<B>, max_bytes: usize) -> http::Response<B> {
    let headers = res.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|s| s == "11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if out_of_range && too_large {
        let message =
            format!("the request is larger than the {} MB limit (DOCREADER_GRPC_MAX_FILE_SIZE_MB)", max_bytes >> 20);
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(value) = http::HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
    }
    res
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

async fn healthcheck(addr: &str) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    let channel = endpoint.connect().await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: "docreader.DocReader".into() })
        .await
        .map_err(|e| e.message().to_string())?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {other:?}")),
    }
}
