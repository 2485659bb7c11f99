//! Search: upstream's `POST /api/v1/knowledge-search` over one or more knowledge bases,
//! and `GET /api/v1/knowledge-bases/{id}/hybrid-search` over one. Both answer hits in
//! upstream's shape (`match_type` says how each matched), the segmented `terms` (for
//! highlighting), the retrieval used and, when it was keyword-only, why.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::Envelope;
use super::extract::{Caller, Json, Path, Query};
use crate::db::chunks::Hit;
use crate::error::ApiError;
use crate::retrieval::{Question, Retrieved, SearchError};
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-bases/{id}/hybrid-search", get(hybrid_search))
        .route("/api/v1/knowledge-search", post(knowledge_search))
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::NotFound => ApiError::not_found("knowledge base"),
            SearchError::NoWords => ApiError::bad_request("query", "the query has no searchable words"),
            SearchError::ModelMismatch(message) => {
                ApiError::new(StatusCode::CONFLICT, "embedding_model_mismatch", message)
            }
            SearchError::Database(e) => e.into(),
        }
    }
}

/// What a search reports beside its hits.
#[derive(Serialize)]
struct Searched {
    terms: Vec<String>,
    retrieval: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    cached: bool,
}

type Answer = Envelope<Vec<Hit>, Searched>;

fn answer(r: Retrieved) -> Answer {
    Envelope::with(r.hits, Searched { terms: r.terms, retrieval: r.retrieval, notice: r.notice, cached: r.cached })
}

fn top_k(state: &AppState, asked: Option<i64>) -> usize {
    asked.unwrap_or(state.config.retrieval.top_k as i64).clamp(1, 200) as usize
}

#[derive(Deserialize)]
struct SearchQuery {
    query: String,
    top_k: Option<i64>,
}

async fn hybrid_search(
    State(state): State<SharedState>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Query(q): Query<SearchQuery>,
) -> Result<Answer, ApiError> {
    if q.query.trim().is_empty() {
        return Err(ApiError::bad_request("query", "the query is empty"));
    }
    let question = Question {
        tenant: caller.tenant_id,
        knowledge_bases: &[kb],
        knowledge_ids: &[],
        query: &q.query,
        top_k: top_k(&state, q.top_k),
    };
    Ok(answer(crate::retrieval::search(&state, &question).await?))
}

#[derive(Deserialize)]
struct KnowledgeSearch {
    query: String,
    knowledge_base_id: Option<Uuid>,
    #[serde(default)]
    knowledge_base_ids: Vec<Uuid>,
    #[serde(default)]
    knowledge_ids: Vec<Uuid>,
    top_k: Option<i64>,
}

async fn knowledge_search(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<KnowledgeSearch>,
) -> Result<Answer, ApiError> {
    let mut knowledge_bases = body.knowledge_base_ids;
    knowledge_bases.extend(body.knowledge_base_id);
    if knowledge_bases.is_empty() {
        return Err(ApiError::bad_request("knowledge_base_ids", "name at least one knowledge base to search"));
    }
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("query", "the query is empty"));
    }
    let question = Question {
        tenant: caller.tenant_id,
        knowledge_bases: &knowledge_bases,
        knowledge_ids: &body.knowledge_ids,
        query: &body.query,
        top_k: top_k(&state, body.top_k),
    };
    Ok(answer(crate::retrieval::search(&state, &question).await?))
}
