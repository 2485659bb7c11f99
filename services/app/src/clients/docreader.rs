//! The client for docreader (gRPC), built once at start and shared: a tonic channel is
//! cheap to clone and reconnects by itself (resolving the name again), so neither a job
//! nor `/ready` opens a connection of its own.

use std::time::Duration;

use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::Instrument;
use weknora_docreader_proto::ReadRequest;
use weknora_docreader_proto::doc_reader_client::DocReaderClient;

use crate::config::Config;

/// What a failed read means for the job.
#[derive(Debug)]
pub enum ReadError {
    /// Worth another try (docreader down, timed out, overloaded).
    Transient(String),
    /// The document itself is at fault (unsupported, malformed, too large).
    Permanent(String),
}

#[derive(Clone)]
pub struct Docreader {
    channel: Channel,
    addr: String,
    /// `Bearer <GRPC_AUTH_TOKEN>`, when a token is configured.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Largest request we send: the largest upload and room for the rest of the message.
    max_request: usize,
    /// Largest answer we accept (see `max_answer_bytes`).
    max_answer: usize,
}

/// Markdown can be larger than its source (a zipped spreadsheet becomes tables), so an
/// answer may be four times the upload limit; nothing larger is decoded.
pub fn max_answer_bytes(max_file_size_mb: u64) -> usize {
    ((max_file_size_mb as usize) << 20).saturating_mul(4)
}

impl Docreader {
    /// The channel connects on first use, so the app starts while docreader is still down.
    pub fn new(config: &Config) -> anyhow::Result<Docreader> {
        let addr = config.docreader.addr.clone();
        let uri = if addr.contains("://") { addr.clone() } else { format!("http://{addr}") };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| anyhow::anyhow!("DOCREADER_ADDR `{addr}` is not a valid address: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(config.ingest.docreader_timeout_secs))
            .connect_lazy();
        let token = &config.docreader.auth_token.0;
        let authorization = if token.is_empty() {
            None
        } else {
            Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("GRPC_AUTH_TOKEN has characters a header cannot carry"))?,
            )
        };
        let limit = (config.server.max_file_size_mb as usize) << 20;
        Ok(Docreader {
            channel,
            addr,
            authorization,
            max_request: limit + (1 << 20),
            max_answer: max_answer_bytes(config.server.max_file_size_mb),
        })
    }

    /// Parses a document into markdown.
    pub async fn read(&self, request: ReadRequest) -> Result<String, ReadError> {
        let mut client = DocReaderClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_answer)
            .max_encoding_message_size(self.max_request);
        let span = tracing::info_span!("docreader", otel.name = "docreader.Read", otel.kind = "client", file = %request.file_name);
        let mut call = tonic::Request::new(request);
        if let Some(value) = &self.authorization {
            call.metadata_mut().insert("authorization", value.clone());
        }
        if let Some(value) = weknora_telemetry::traceparent(&span).and_then(|v| v.parse().ok()) {
            call.metadata_mut().insert("traceparent", value);
        }
        match client.read(call).instrument(span).await {
            Ok(response) => Ok(response.into_inner().markdown_content),
            Err(status) => {
                let reason = match status.code() {
                    Code::Unavailable => format!("docreader at {} is unreachable: {}", self.addr, status.message()),
                    _ => format!("docreader: {}", status.message()),
                };
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled | Code::Unknown => {
                        Err(ReadError::Transient(reason))
                    }
                    _ => Err(ReadError::Permanent(reason)),
                }
            }
        }
    }

    /// grpc.health.v1: Ok when docreader reports SERVING within `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let check = async {
            let status = HealthClient::new(self.channel.clone())
                .check(HealthCheckRequest { service: String::new() })
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner()
                .status();
            if status == ServingStatus::Serving { Ok(()) } else { Err(format!("reports {status:?}")) }
        };
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs())))
    }
}
