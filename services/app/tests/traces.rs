//! Traces: one upload is one trace, from the HTTP request through the ingest job to
//! docreader's gRPC call, exported over OTLP/gRPC to a receiver this test runs; and the
//! JSON log lines of that work carry its trace ID.

use std::collections::HashMap;
use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use weknora_testkit::{Pg, Redis, free_port, wait_listening};

mod support;
use support::*;

/// A span as received: the service that sent it, and its IDs in hex.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace: String,
    id: String,
    parent: String,
}

/// An OTLP trace receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                self.0.lock().unwrap().push(Got {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the receiver on its own runtime thread: its port and what it received.
fn receiver() -> (u16, Receiver) {
    let port = free_port();
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move {
            let addr = ([127, 0, 0, 1], port).into();
            tonic::transport::Server::builder().add_service(service).serve(addr).await.unwrap();
        });
    });
    wait_listening(port, "the OTLP receiver");
    (port, receiver)
}

#[test]
fn an_upload_is_one_trace_from_the_request_through_the_job_to_docreader() {
    let pg = Pg::debian();
    let redis = Redis::start();
    let (otlp, received) = receiver();
    let export = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{otlp}")),
        // Export every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let export_env: Vec<(&str, &str)> = export.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_docreader, dr_port) = docreader_on(free_port(), &export_env);
    let files = tempfile::tempdir().unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    env.extend(export.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env.push(("LOG_FORMAT".into(), "json".into()));
    env.push(("LOG_LEVEL".into(), "info".into()));
    let log_path = files.path().join("app.log");
    let port: u16 = env.iter().find(|(k, _)| k == "WEKNORA__SERVER__PORT").unwrap().1.parse().unwrap();
    let _app = Proc(
        Command::new(APP)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(File::create(&log_path).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_until("weknora-app", || healthcheck(port));

    // The browser's trace (as the frontend passes it on): the upload's span is its child.
    let trace = format!("{:032x}", rand_u128());
    let caller = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{caller}-01");
    let kb = create_kb(port, "traced");
    let (content_type, body) = multipart("traced.md", b"# Traced\n\nOne upload, one trace.\n");
    let headers = [("X-API-Key", ADMIN_KEY), ("traceparent", traceparent.as_str())];
    let (status, _, doc) = send(port, "POST", &format!("{kb}/knowledge/file"), &headers, &content_type, &body);
    assert_eq!(status, 201, "{doc}");

    // The spans of the trace: the request, the parse job, its call, docreader's read.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Got> = received.0.lock().unwrap().iter().filter(|s| s.trace == trace).cloned().collect();
        let done =
            spans.iter().any(|s| s.service == "weknora-docreader") && spans.iter().any(|s| s.name == "ingest parse");
        if done {
            break spans;
        }
        assert!(Instant::now() < deadline, "the trace is incomplete after 30 s: {spans:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_id: HashMap<&str, &Got> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let find = |service: &str, name: &str, kind: SpanKind| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.kind == kind as i32)
            .unwrap_or_else(|| panic!("no {service} span {name} ({kind:?}) in {spans:#?}"))
    };
    let request = find("weknora-app", "POST /api/v1/knowledge-bases/{id}/knowledge/file", SpanKind::Server);
    assert_eq!(request.parent, caller, "the request's span is not the caller's child");
    let job = find("weknora-app", "ingest parse", SpanKind::Consumer);
    assert_eq!(job.parent, request.id, "the job's span is not the request's child");
    let call = find("weknora-app", "docreader.Read", SpanKind::Client);
    assert_eq!(call.parent, job.id, "the docreader call is not the job's child");
    let read = find("weknora-docreader", "docreader.Read", SpanKind::Server);
    assert_eq!(read.parent, call.id, "docreader's span is not the call's child");
    assert!(by_id.contains_key(read.parent.as_str()));

    // The app's JSON log lines written in the job carry its trace and span.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        let completed = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "ingest: completed" && l["trace_id"] == trace.as_str());
        if let Some(line) = completed {
            assert_eq!(line["span_id"], job.id.as_str(), "{line}");
            assert_eq!(line["span"], "ingest", "{line}");
            assert!(line["job"].is_number() && line["timestamp"].is_string(), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no `ingest: completed` line with the trace ID:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// 128 random bits, from the standard library's randomly seeded hasher.
fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    let (a, b) = (RandomState::new().hash_one(1u8), RandomState::new().hash_one(2u8));
    (u128::from(a) << 64) | u128::from(b)
}
