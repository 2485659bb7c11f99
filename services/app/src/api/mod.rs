//! The HTTP surface: one router per feature, composed here with request ids, request
//! metrics and the JSON fallback. Nothing imports this module but `main`.

mod body;
mod chat;
mod documents;
mod extract;
mod knowledge_bases;
mod models;
mod search;
mod sessions;
mod system;
mod tenants;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::SharedState;

pub use extract::JSON_BODY_LIMIT;
use extract::REQUEST_ID;

pub fn router(state: SharedState) -> Router {
    let max_file_bytes = (state.config.server.max_file_size_mb << 20) as usize;
    Router::new()
        .merge(system::routes())
        .merge(tenants::routes())
        .merge(knowledge_bases::routes())
        .merge(documents::routes(max_file_bytes))
        .merge(search::routes())
        .merge(sessions::routes())
        .merge(chat::routes())
        .merge(models::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Routes that take more (uploads) set their own limit.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(track))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
}

async fn not_found() -> ApiError {
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
