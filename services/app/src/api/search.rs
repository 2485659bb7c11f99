//! Search in a knowledge base: keyword retrieval over the app-segmented full-text index
//! (Chinese works on plain PostgreSQL), cached in Redis. `terms` are the words searched
//! for, so a client can highlight them.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::Envelope;
use super::extract::{Caller, Path, Query};
use super::knowledge_bases::own_knowledge_base;
use crate::chunker::{search_tokens, tsquery};
use crate::db;
use crate::db::chunks::Hit;
use crate::error::ApiError;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/api/v1/knowledge-bases/{id}/hybrid-search", get(search))
}

#[derive(Deserialize)]
struct SearchQuery {
    query: String,
    top_k: Option<i64>,
}

/// What a search reports beside its hits.
#[derive(Serialize)]
struct Searched {
    terms: Vec<String>,
    retrieval: &'static str,
    cached: bool,
}

async fn search(
    State(state): State<SharedState>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Query(q): Query<SearchQuery>,
) -> Result<Envelope<Vec<Hit>, Searched>, ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    let terms = search_tokens(&state.jieba, &q.query);
    let query = tsquery(&terms);
    if query.is_empty() {
        return Err(ApiError::bad_request("query", "the query has no searchable words"));
    }
    let top_k = q.top_k.unwrap_or(state.config.retrieval.top_k as i64).clamp(1, 200);
    let cache_key = crate::cache::search_key(&state, caller.tenant_id, kb, top_k, &query).await;
    if let Some(key) = &cache_key
        && let Some(cached) = crate::cache::get(&state, key).await
        && let Ok(hits) = serde_json::from_str::<Vec<Hit>>(&cached)
    {
        crate::metrics::search_cache(true);
        return Ok(Envelope::with(hits, Searched { terms, retrieval: "keyword", cached: true }));
    }
    crate::metrics::search_cache(false);
    let hits = db::chunks::keyword_search(&state.db, caller.tenant_id, kb, &query, top_k).await?;
    if let Some(key) = &cache_key
        && let Ok(json) = serde_json::to_string(&hits)
    {
        crate::cache::put(&state, key, &json).await;
    }
    Ok(Envelope::with(hits, Searched { terms, retrieval: "keyword", cached: false }))
}
