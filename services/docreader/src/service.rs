//! The DocReader gRPC service: requests in, parsed documents out. Parsing runs on
//! blocking threads under a concurrency bound and a deadline, with panics contained, so
//! no document can take the server down or hold it hostage.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::fetch::{FetchError, Fetcher};
use crate::metrics;
use crate::parse::{self, Document, FILE_TYPES, Limits, ParseError};
use crate::proto::doc_reader_server::DocReader;
use crate::proto::read_stream_response::Payload;
use crate::proto::{
    ImageRef, ListEnginesRequest, ListEnginesResponse, ParserEngineInfo, ReadRequest, ReadResponse, ReadStreamMeta,
    ReadStreamResponse,
};

/// The one engine this server has; requests may name it, or leave the engine empty.
pub const ENGINE: &str = "builtin";
const IMAGE_DIR: &str = "images";

pub struct DocReaderService {
    config: Arc<Config>,
    limits: Limits,
    workers: Arc<Semaphore>,
    fetcher: Fetcher,
}

impl DocReaderService {
    pub fn new(config: Config) -> DocReaderService {
        let fetcher = Fetcher::new(config.url_allowlist.clone(), config.url_timeout, config.max_bytes());
        DocReaderService {
            limits: config.limits(),
            workers: Arc::new(Semaphore::new(config.max_workers)),
            fetcher,
            config: Arc::new(config),
        }
    }

    /// Reads one request's document, in the caller's trace when its metadata names one.
    async fn process(&self, request: Request<ReadRequest>) -> Result<(Document, String), Status> {
        let traceparent = request.metadata().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_string);
        let req = request.into_inner();
        let request_id = if req.request_id.is_empty() { new_request_id() } else { req.request_id.clone() };
        let span = tracing::info_span!(
            "read",
            otel.name = "docreader.Read",
            otel.kind = "server",
            request_id = %request_id,
            file = %req.file_name,
            file_type = %req.file_type
        );
        weknora_telemetry::adopt(&span, traceparent.as_deref());
        let _in_flight = metrics::Gauge::up("weknora_docreader_in_flight");
        let started = Instant::now();
        let format = format_label(&req);
        // One deadline for the whole request: fetching a URL, queueing and parsing.
        let timeout = self.config.request_timeout;
        let label = if req.file_name.is_empty() { req.url.clone() } else { req.file_name.clone() };
        let work = self.process_in_span(req, &request_id, format).instrument(span.clone());
        let result = tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            metrics::refused("timeout");
            Err(Status::deadline_exceeded(format!(
                "{label}: not read within {}s (DOCREADER_REQUEST_TIMEOUT_SECS)",
                timeout.as_secs()
            )))
        });
        metrics::finished(format, result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok), started.elapsed());
        if let Err(status) = &result {
            span.in_scope(|| warn!(code = ?status.code(), reason = %status.message(), "read failed"));
        }
        result.map(|doc| (doc, request_id))
    }

    async fn process_in_span(
        &self,
        req: ReadRequest,
        request_id: &str,
        format: &'static str,
    ) -> Result<Document, Status> {
        let started = Instant::now();
        let engine = req.config.as_ref().map(|c| c.parser_engine.as_str()).unwrap_or("");
        if !matches!(engine, "" | ENGINE | "default") {
            metrics::refused("bad_request");
            return Err(Status::invalid_argument(format!(
                "parser engine `{engine}` is not available here; available: {ENGINE} (see ListEngines)"
            )));
        }
        let (bytes, file_name, file_type) = if !req.file_content.is_empty() {
            (req.file_content, req.file_name, req.file_type)
        } else if !req.url.is_empty() {
            let fetched = self.fetcher.fetch(&req.url).await.map_err(|e| match e {
                FetchError::Refused(m) => {
                    metrics::refused("url_not_allowed");
                    Status::permission_denied(m)
                }
                FetchError::TooLarge(m) => {
                    metrics::refused("too_large");
                    Status::resource_exhausted(m)
                }
                FetchError::Failed(m) => Status::unavailable(m),
            })?;
            let name = if req.file_name.is_empty() { fetched.file_name } else { req.file_name };
            let kind = if req.file_type.is_empty() { fetched.file_type } else { req.file_type };
            (fetched.bytes, name, kind)
        } else if !req.file_name.is_empty() {
            (Vec::new(), req.file_name, req.file_type)
        } else {
            metrics::refused("bad_request");
            return Err(Status::invalid_argument("the request has neither file_content nor url"));
        };
        let label = if file_name.is_empty() { "(unnamed file)".to_string() } else { file_name.clone() };
        if bytes.len() > self.limits.max_bytes {
            metrics::refused("too_large");
            return Err(Status::resource_exhausted(format!(
                "{label}: the file is {} bytes; the limit is {} MB (DOCREADER_GRPC_MAX_FILE_SIZE_MB)",
                bytes.len(),
                self.config.max_file_size_mb
            )));
        }
        // Waiting for a worker counts against the request's deadline (see `process`).
        let permit = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        let limits = self.limits;
        let (name, kind) = (file_name.clone(), file_type.clone());
        let source_bytes = bytes.len();
        metrics::document(format, source_bytes);
        // The permit moves into the thread: a parse that outlives its deadline still
        // counts against the bound until it really ends.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _parsing = metrics::Gauge::up("weknora_docreader_parsing");
            std::panic::catch_unwind(AssertUnwindSafe(|| parse::parse(&bytes, &name, &kind, &limits)))
        });
        let parsed = match task.await {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(panic)) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                return Err(Status::internal(format!(
                    "{label}: the parser failed on this file ({why}); the server keeps serving"
                )));
            }
            Err(e) => return Err(Status::internal(format!("{label}: parser task failed: {e}"))),
        };
        let mut doc = parsed.map_err(|e| match e {
            ParseError::TooLarge(m) => {
                metrics::refused("too_large");
                Status::resource_exhausted(format!("{label}: {m}"))
            }
            ParseError::Unsupported(m) => {
                metrics::refused("unsupported_format");
                Status::invalid_argument(format!("{label}: {m}"))
            }
            ParseError::Malformed(m) => Status::invalid_argument(format!("{label}: {m}")),
        })?;
        doc.metadata.insert("parser_engine".into(), ENGINE.into());
        doc.metadata.insert("request_id".into(), request_id.into());
        if !req.title.is_empty() {
            doc.metadata.entry("title".into()).or_insert(req.title);
        }
        info!(
            format = doc.metadata.get("format").map(String::as_str).unwrap_or(""),
            bytes = source_bytes,
            markdown_bytes = doc.markdown.len(),
            images = doc.images.len(),
            ms = started.elapsed().as_millis() as u64,
            "read"
        );
        Ok(doc)
    }
}

/// The request's format as a metrics label: the parser's name for the declared type (or
/// the file name's extension); `unknown` when neither says (a URL read), `unsupported`
/// for a type the parser does not take.
fn format_label(req: &ReadRequest) -> &'static str {
    if req.file_name.is_empty() && req.file_type.is_empty() {
        return "unknown";
    }
    parse::format_for(&req.file_name, &req.file_type).map_or("unsupported", parse::Format::name)
}

fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("dr-{nanos:x}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn image_refs(doc: &mut Document) -> Vec<ImageRef> {
    std::mem::take(&mut doc.images)
        .into_iter()
        .map(|i| ImageRef {
            filename: i.filename,
            original_ref: i.original_ref,
            mime_type: i.mime_type,
            storage_key: String::new(),
            image_data: i.data,
        })
        .collect()
}

fn metadata(doc: &Document) -> HashMap<String, String> {
    doc.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DocReader for DocReaderService {
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let (mut doc, _) = self.process(request).await?;
        let image_refs = image_refs(&mut doc);
        Ok(Response::new(ReadResponse {
            metadata: metadata(&doc),
            markdown_content: doc.markdown,
            image_dir_path: IMAGE_DIR.into(),
            image_refs,
            error: String::new(),
        }))
    }

    type ReadStreamStream = ReadStream;

    async fn read_stream(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let (mut doc, _) = self.process(request).await?;
        let images = image_refs(&mut doc);
        let meta = ReadStreamMeta {
            metadata: metadata(&doc),
            markdown_content: doc.markdown,
            image_dir_path: IMAGE_DIR.into(),
            error: String::new(),
            image_count: images.len() as u32,
        };
        let frames = std::iter::once(Payload::Meta(meta))
            .chain(images.into_iter().map(Payload::Image))
            .map(|p| Ok(ReadStreamResponse { payload: Some(p) }));
        Ok(Response::new(Box::pin(tokio_stream::iter(frames))))
    }

    async fn list_engines(&self, _: Request<ListEnginesRequest>) -> Result<Response<ListEnginesResponse>, Status> {
        Ok(Response::new(ListEnginesResponse {
            engines: vec![ParserEngineInfo {
                name: ENGINE.into(),
                description: "Rust parsers: text (any encoding), markdown, HTML, PDF text layer, DOCX, XLSX/XLS/ODS, CSV, PPTX, EPUB; images returned as is".into(),
                file_types: FILE_TYPES.iter().map(|t| t.to_string()).collect(),
                available: true,
                unavailable_reason: String::new(),
            }],
        }))
    }
}

/// With a token configured, every DocReader call must carry `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct TokenAuth {
    expected: Option<Arc<Vec<u8>>>,
}

impl TokenAuth {
    pub fn new(token: Option<&str>) -> TokenAuth {
        TokenAuth { expected: token.map(|t| Arc::new(format!("Bearer {t}").into_bytes())) }
    }
}

impl tonic::service::Interceptor for TokenAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let Some(given) = request.metadata().get("authorization") else {
            metrics::refused("unauthenticated");
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata (GRPC_AUTH_TOKEN is set)",
            ));
        };
        let given = given.as_bytes();
        // Constant time in the token's content.
        let same = given.len() == expected.len()
            && given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            Ok(request)
        } else {
            metrics::refused("unauthenticated");
            Err(Status::unauthenticated("invalid token"))
        }
    }
}
