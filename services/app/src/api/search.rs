//! Search: upstream's `POST /api/v1/knowledge-search` over one or more knowledge bases,
//! and `/api/v1/knowledge-bases/{id}/hybrid-search` over one, as upstream has it (POST, or
//! GET, with a JSON body of `SearchParams`) and as our UI asks (GET `?query=&top_k=`). All
//! answer hits in upstream's shape (`match_type` upstream's integer, `match_kind` our word),
//! the segmented `terms` (for highlighting), the retrieval used and, when it was
//! keyword-only, why.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Envelope, Mentioned, fold_mentions, id_list, null_as_default};
use super::error::ApiError;
use super::extract::{Caller, Json, OptionalJson, OwnedKnowledgeBase, Query};
use crate::db::chunks::Hit;
use crate::search::retrieval::{Off, Question, Retrieved};
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-bases/{id}/hybrid-search", post(hybrid_search).get(hybrid_search))
        .route("/api/v1/knowledge-search", post(knowledge_search))
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

/// Our UI's query string: `?query=&top_k=`.
#[derive(Deserialize)]
struct SearchQuery {
    query: Option<String>,
    top_k: Option<i64>,
}

/// Upstream's `SearchParams`, the JSON body of a hybrid search. `match_count` is how many
/// hits to answer; `knowledge_base_ids`, when given, replace the path's knowledge base;
/// `disable_keywords_match` and `disable_vector_match` turn a retriever off. Upstream's
/// per-request thresholds are ignored: ours are set per deployment (`retrieval.*`).
#[derive(Deserialize, Default)]
struct SearchParams {
    #[serde(default)]
    query_text: String,
    match_count: Option<i64>,
    #[serde(default)]
    disable_keywords_match: bool,
    #[serde(default)]
    disable_vector_match: bool,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_base_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_ids: Vec<Uuid>,
}

/// A hybrid search, as upstream asks it (a JSON body) or as our UI does (the query string).
async fn hybrid_search(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    Query(q): Query<SearchQuery>,
    OptionalJson(body): OptionalJson<SearchParams>,
) -> Result<Answer, ApiError> {
    let params = body.unwrap_or_else(|| SearchParams {
        query_text: q.query.unwrap_or_default(),
        match_count: q.top_k,
        ..SearchParams::default()
    });
    if params.query_text.trim().is_empty() {
        return Err(ApiError::bad_request("query_text", "the query is empty: send query_text (or ?query=)"));
    }
    if params.disable_keywords_match && params.disable_vector_match {
        return Err(ApiError::bad_request(
            "disable_vector_match",
            "both retrievers are turned off: leave keyword or vector matching on",
        ));
    }
    let knowledge_bases = if params.knowledge_base_ids.is_empty() { vec![kb] } else { params.knowledge_base_ids };
    let question = Question {
        tenant: caller.tenant_id,
        knowledge_bases: &knowledge_bases,
        knowledge_ids: &params.knowledge_ids,
        query: &params.query_text,
        top_k: top_k(&state, params.match_count),
        off: Off { keyword: params.disable_keywords_match, vector: params.disable_vector_match },
    };
    Ok(answer(crate::search::retrieval::search(&state, &question).await?))
}

/// Upstream's request, read as leniently as upstream reads it.
#[derive(Deserialize)]
struct KnowledgeSearch {
    query: String,
    #[serde(default, deserialize_with = "super::body::blank_id")]
    knowledge_base_id: Option<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_base_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    mentioned_items: Vec<Mentioned>,
    top_k: Option<i64>,
}

async fn knowledge_search(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<KnowledgeSearch>,
) -> Result<Answer, ApiError> {
    let (mut knowledge_bases, mut knowledge_ids) = (body.knowledge_base_ids, body.knowledge_ids);
    knowledge_bases.extend(body.knowledge_base_id);
    fold_mentions(&body.mentioned_items, &mut knowledge_bases, &mut knowledge_ids);
    if knowledge_bases.is_empty() {
        // Documents named alone: their knowledge bases, as upstream searches.
        knowledge_bases = crate::db::documents::knowledge_bases_of(&state.db, caller.tenant_id, &knowledge_ids).await?;
    }
    if knowledge_bases.is_empty() {
        return Err(ApiError::bad_request(
            "knowledge_base_ids",
            "name at least one knowledge base (knowledge_base_ids) or document (knowledge_ids) to search",
        ));
    }
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("query", "the query is empty"));
    }
    let question = Question {
        tenant: caller.tenant_id,
        knowledge_bases: &knowledge_bases,
        knowledge_ids: &knowledge_ids,
        query: &body.query,
        top_k: top_k(&state, body.top_k),
        off: Off::default(),
    };
    Ok(answer(crate::search::retrieval::search(&state, &question).await?))
}
