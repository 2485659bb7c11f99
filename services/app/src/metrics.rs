//! Prometheus metrics, recorded with the `metrics` facade and served at `GET /metrics`
//! (the text exposition format) by the HTTP module. Labels are bounded: routes are axum's
//! route templates (never the ids in a path), and nothing from a document, a query or a
//! key is ever a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | weknora_build_info | gauge (1) | version, commit |
//! | weknora_http_requests_total | counter | method, route, status |
//! | weknora_http_request_duration_seconds | histogram | method, route |
//! | weknora_ingest_jobs_total | counter | outcome: completed, retried, failed, lease_lost |
//! | weknora_ingest_duration_seconds | histogram | outcome |
//! | weknora_ingest_queue | gauge, read at each scrape | state: queued, running |
//! | weknora_backup_last_success_timestamp_seconds | gauge, read at each scrape | kind: archive, base, verified |
//! | weknora_search_cache_total | counter | result: hit, miss |
//! | weknora_chat_answers_total | counter | outcome: completed, stopped, failed; kind: model, extractive |
//! | weknora_chat_first_token_seconds | histogram | kind |
//! | weknora_chat_answer_seconds | histogram | outcome, kind |
//! | weknora_chat_model_errors_total | counter | code: model_unreachable, model_error, model_timeout |

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use weknora_buildinfo::BUILD;

/// Buckets for durations in seconds: a 5 ms API call to a 5-minute parse.
const SECONDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Installs the process-wide recorder (once: a second call, as from a test that builds
/// several states in one process, gets the same handle); the handle renders what it recorded.
pub fn install() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    metrics::gauge!("weknora_build_info", "version" => BUILD.version, "commit" => BUILD.commit).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A request was answered: counted and timed by method, route template and status.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let (method, route) = (method.to_string(), route.to_string());
    metrics::counter!("weknora_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("weknora_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// The ingest queue's depth by state, read from the database at each scrape.
pub fn ingest_queue(state: &str, jobs: i64) {
    metrics::gauge!("weknora_ingest_queue", "state" => state.to_string()).set(jobs as f64);
}

/// When the last backup of a kind was taken (or verified), read from the database at each
/// scrape: what the alerts on missing backups watch.
pub fn last_backup(kind: &str, unix_secs: f64) {
    metrics::gauge!("weknora_backup_last_success_timestamp_seconds", "kind" => kind.to_string()).set(unix_secs);
}

/// An ingest job ended one way or another after `started`.
pub fn ingest_finished(outcome: &'static str, started: Instant) {
    metrics::counter!("weknora_ingest_jobs_total", "outcome" => outcome).increment(1);
    metrics::histogram!("weknora_ingest_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

/// A search answered from the cache, or not.
pub fn search_cache(hit: bool) {
    metrics::counter!("weknora_search_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// An answer ended: counted by outcome and kind, timed to its first piece and its end.
pub fn chat_answer(outcome: &'static str, kind: &'static str, first_token: Option<Duration>, elapsed: Duration) {
    metrics::counter!("weknora_chat_answers_total", "outcome" => outcome, "kind" => kind).increment(1);
    if let Some(first) = first_token {
        metrics::histogram!("weknora_chat_first_token_seconds", "kind" => kind).record(first.as_secs_f64());
    }
    metrics::histogram!("weknora_chat_answer_seconds", "outcome" => outcome, "kind" => kind)
        .record(elapsed.as_secs_f64());
}

/// The chat model failed an answer.
pub fn chat_model_error(code: &'static str) {
    metrics::counter!("weknora_chat_model_errors_total", "code" => code).increment(1);
}
