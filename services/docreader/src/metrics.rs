//! Prometheus metrics, recorded with the `metrics` facade and served over HTTP at
//! `/metrics` on DOCREADER_METRICS_PORT (9464; 0 serves none), apart from the gRPC port.
//! Labels are bounded: a format is one of the parser's format names (or `unknown`,
//! `unsupported`), never a file name.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | weknora_docreader_build_info | gauge (1) | version, commit |
//! | weknora_docreader_requests_total | counter | format, outcome |
//! | weknora_docreader_request_duration_seconds | histogram | format, outcome |
//! | weknora_docreader_document_bytes | histogram (documents read) | format |
//! | weknora_docreader_in_flight | gauge | — (requests being handled, queued ones included) |
//! | weknora_docreader_parsing | gauge | — (documents being parsed: workers in use) |
//! | weknora_docreader_workers | gauge | — (DOCREADER_GRPC_MAX_WORKERS) |
//! | weknora_docreader_refusals_total | counter | reason: too_large, unsupported_format, url_not_allowed, bad_request, unauthenticated, timeout |

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tonic::Code;
use weknora_buildinfo::BUILD;

/// Seconds: a 5 ms text file to a 5-minute scanned PDF.
const SECONDS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 300.0];
/// Bytes: 1 KiB to 64 MiB, by fours.
const BYTES: [f64; 9] = [1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];

/// Starts the metrics listener on `addr` (call it within the runtime).
pub fn serve(addr: SocketAddr, workers: usize) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES))
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("the metrics listener on {addr} cannot start: {e} (DOCREADER_METRICS_PORT)"))?;
    metrics::gauge!("weknora_docreader_build_info", "version" => BUILD.version, "commit" => BUILD.commit).set(1.0);
    metrics::gauge!("weknora_docreader_workers").set(workers as f64);
    Ok(())
}

/// A request answered (`Code::Ok`) or not, in its format, after `elapsed`.
pub fn finished(format: &'static str, code: Code, elapsed: Duration) {
    let outcome = outcome(code);
    metrics::counter!("weknora_docreader_requests_total", "format" => format, "outcome" => outcome).increment(1);
    metrics::histogram!("weknora_docreader_request_duration_seconds", "format" => format, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A document's size, once it is in hand (sent, or fetched from its URL).
pub fn document(format: &'static str, bytes: usize) {
    metrics::histogram!("weknora_docreader_document_bytes", "format" => format).record(bytes as f64);
}

/// A request turned away before any parsing, and why.
pub fn refused(reason: &'static str) {
    metrics::counter!("weknora_docreader_refusals_total", "reason" => reason).increment(1);
}

/// What a status says of a request, as a label.
fn outcome(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::InvalidArgument => "invalid",
        Code::ResourceExhausted => "too_large",
        Code::PermissionDenied => "refused",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "timeout",
        Code::Unauthenticated => "unauthenticated",
        _ => "failed",
    }
}

/// Adds one to a gauge for as long as it lives.
pub struct Gauge(&'static str);

impl Gauge {
    pub fn up(name: &'static str) -> Gauge {
        metrics::gauge!(name).increment(1.0);
        Gauge(name)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_a_few_words() {
        assert_eq!(outcome(Code::Ok), "ok");
        assert_eq!(outcome(Code::ResourceExhausted), "too_large");
        assert_eq!(outcome(Code::Internal), "failed");
        assert_eq!(outcome(Code::Unknown), "failed");
    }
}
