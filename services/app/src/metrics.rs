//! Prometheus metrics at `GET /metrics` (the text exposition format), recorded with the
//! `metrics` facade. Labels are bounded: routes are axum's route templates (never the ids in
//! a path), and nothing from a document, a query or a key is ever a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | weknora_build_info | gauge (1) | version, commit |
//! | weknora_http_requests_total | counter | method, route, status |
//! | weknora_http_request_duration_seconds | histogram | method, route |
//! | weknora_ingest_jobs_total | counter | outcome: completed, retried, failed |
//! | weknora_ingest_duration_seconds | histogram | outcome |
//! | weknora_ingest_queue | gauge, read at each scrape | state: queued, running |
//! | weknora_search_cache_total | counter | result: hit, miss |

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use weknora_buildinfo::BUILD;

use crate::server::AppState;

/// Buckets for durations in seconds: a 5 ms API call to a 5-minute parse.
const SECONDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Installs the process-wide recorder; the handle renders what it recorded.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    metrics::gauge!("weknora_build_info", "version" => BUILD.version, "commit" => BUILD.commit).set(1.0);
    Ok(handle)
}

/// Middleware: counts and times every request by method, route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    // Unmatched paths share one label, so a scanner cannot grow the series without bound.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("weknora_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("weknora_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the queue depth is read from the database now; the rest was recorded.
pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    let queue = sqlx::query_as::<_, (String, i64)>(
        "SELECT s.state, count(j.id) FROM unnest(ARRAY['queued', 'running']) AS s(state) \
         LEFT JOIN ingest_jobs j ON j.state = s.state GROUP BY s.state",
    )
    .fetch_all(&state.db)
    .await;
    match queue {
        Ok(rows) => {
            for (job_state, n) in rows {
                metrics::gauge!("weknora_ingest_queue", "state" => job_state).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the ingest queue"),
    }
    let body = state.metrics.render();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
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
