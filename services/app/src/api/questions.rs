//! Upstream's generated questions of a chunk (questions a model wrote for it, searched
//! beside its text). weknora generates none, so a chunk has none to delete: the route
//! answers so, in upstream's shape, for the caller's own chunks (another's is a 404).

use axum::Router;
use axum::extract::State;
use axum::routing::delete;
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Caller, OptionalJson, Path};
use crate::db;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/chunks/by-id/{id}/questions", delete(remove_question))
        // Where upstream's Go SDK sends it (`DeleteGeneratedQuestion`).
        .route("/api/v1/chunks/{knowledge_id}/delete-question", delete(remove_question))
}

#[derive(Deserialize)]
struct QuestionRef {
    #[serde(default)]
    question_id: String,
}

/// The chunk first (404 when it is not the caller's), then `question_id` (400 when
/// missing); then, as upstream answers for a question a chunk does not have, 400.
async fn remove_question(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    OptionalJson(body): OptionalJson<QuestionRef>,
) -> Result<(), ApiError> {
    db::chunks::get(&state.db, caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("chunk"))?;
    let question = body.map(|b| b.question_id.trim().to_string()).unwrap_or_default();
    if question.is_empty() {
        return Err(ApiError::bad_request("question_id", "required: the id of the generated question to delete"));
    }
    let shown: String = question.chars().take(100).collect();
    Err(ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "no_such_question",
        format!(
            "chunk {id} has no generated question `{shown}`: weknora does not generate questions for chunks, so \
             there is none to delete"
        ),
    ))
}
