//! The HTTP surface: one router per feature, composed here with request ids, request
//! metrics and the JSON fallback. Nothing imports this module but `main`.

mod body;
mod chat;
mod document_sets;
mod documents;
pub mod error;
mod extract;
mod folders;
mod knowledge_bases;
mod models;
mod questions;
mod search;
mod sessions;
mod settings;
mod suggestions;
mod system;
mod tenants;
mod transfers;
mod views;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::state::SharedState;
use error::ApiError;

pub use extract::JSON_BODY_LIMIT;
use extract::REQUEST_ID;

pub fn router(state: SharedState) -> Router {
    let max_file_bytes = (state.config.server.max_file_size_mb << 20) as usize;
    Router::new()
        .merge(system::routes())
        .merge(tenants::routes())
        .merge(settings::routes())
        .merge(knowledge_bases::routes())
        .merge(documents::routes(max_file_bytes))
        .merge(folders::routes())
        .merge(transfers::routes())
        .merge(questions::routes())
        .merge(document_sets::routes())
        .merge(search::routes())
        .merge(sessions::routes())
        .merge(chat::routes())
        .merge(suggestions::routes())
        .merge(models::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Routes that take more (uploads) set their own limit.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(track))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            let span = tracing::info_span!(
                "http",
                otel.name = %req.method(),
                otel.kind = "server",
                request_id = %header(REQUEST_ID.as_str()).unwrap_or(""),
                method = %req.method(),
                path = %req.uri().path()
            );
            // The frontend's (or any caller's) trace, when it sent one.
            weknora_telemetry::adopt(&span, header("traceparent"));
            span
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
}

/// Upstream's API families weknora does not provide, by the path segment that names them
/// (after `/api/v1/`, or after `/api/v1/knowledge-bases/{id}/`), and what they are.
const NOT_PROVIDED: [(&str, &str); 22] = [
    ("agents", "custom agents"),
    ("agent-chat", "agent chat"),
    ("auth", "sign-in with accounts (use an API key: X-API-Key)"),
    ("datasource", "data sources"),
    ("embed-channels", "embed channels"),
    ("evaluation", "evaluation tasks"),
    ("files", "the file proxy"),
    ("im-channels", "IM channels"),
    ("initialization", "the model set-up wizard (configure models with /api/v1/models)"),
    ("knowledgebase", "wikis"),
    ("mcp-oauth", "MCP services"),
    ("mcp-services", "MCP services"),
    ("memory", "memory"),
    ("organizations", "organisations and sharing"),
    ("sandbox-configs", "sandboxes"),
    ("skills", "agent skills"),
    ("storage-backends", "storage backends per tenant (storage is set per deployment: STORAGE_TYPE)"),
    ("vector-stores", "vector stores per tenant (vectors live in PostgreSQL with pgvector)"),
    ("web-search", "web search"),
    ("web-search-providers", "web search"),
    ("faq", "FAQ knowledge bases"),
    ("tags", "tags"),
];

/// No route: a family of upstream's API we do not provide says so (501, upstream's error
/// shape), so that a client written for upstream gets an answer, not what looks like a typo.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let family = match path.strip_prefix("/api/v1/") {
        Some(rest) => match rest.split('/').collect::<Vec<_>>()[..] {
            ["knowledge-bases", _, sub, ..] => Some(sub),
            [first, ..] => Some(first),
            [] => None,
        },
        None => None,
    };
    if let Some((name, what)) = family.and_then(|f| NOT_PROVIDED.iter().find(|(name, _)| *name == f)) {
        return ApiError::not_provided(what, &format!("/{name}"));
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A route that exists, with a method it does not take; axum adds the `Allow` header.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not take {method}: the Allow header lists the methods it takes"),
    )
}

/// Counts and times every request by method, route template and status.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    // Unmatched paths share one label, so a scanner cannot grow the series without bound.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    // The trace's name for the request: its method and route (the path would name one
    // span per document).
    weknora_telemetry::rename(&tracing::Span::current(), format!("{method} {route}"));
    let response = next.run(request).await;
    crate::metrics::http_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

#[derive(Clone, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::new_v4().to_string().parse().ok().map(RequestId::new)
    }
}
