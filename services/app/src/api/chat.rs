//! Upstream's knowledge chat: `POST /api/v1/knowledge-chat/{session_id}` answers a
//! question as server-sent events (`event: message`, upstream's frames: references first,
//! then the answer piece by piece, then `done` or `error`), and
//! `POST /api/v1/sessions/{id}/stop` stops a session's running answer, and
//! `GET /api/v1/sessions/continue-stream/{id}?message_id=` replays an answer's frames and
//! follows the rest (on any replica). What can be known before the answer starts (no
//! session, no knowledge base, a busy session) is a plain JSON error; what happens after is
//! an error frame.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::body::{Envelope, Mentioned, blank_id, fold_mentions, id_list, null_as_default};
use super::error::ApiError;
use super::extract::{Caller, Json, OptionalJson, Path, Query, REQUEST_ID};
use crate::answer::replay;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-chat/{id}", post(knowledge_chat))
        .route("/api/v1/sessions/{id}/stop", post(stop))
        .route("/api/v1/sessions/continue-stream/{id}", get(continue_stream))
}

/// Upstream's request, read as leniently as upstream reads it: `null` lists are empty, `""`
/// ids unset, fields we do not use (`agent_id`, `web_search_enabled`, ...) ignored.
#[derive(Deserialize)]
struct Ask {
    query: String,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_base_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    mentioned_items: Vec<Mentioned>,
    #[serde(default, alias = "model_id", deserialize_with = "blank_id")]
    summary_model_id: Option<Uuid>,
}

async fn knowledge_chat(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    Path(session): Path<Uuid>,
    Json(body): Json<Ask>,
) -> Result<Response, ApiError> {
    let query = body.query.trim();
    if query.is_empty() {
        return Err(ApiError::bad_request("query", "the question is empty"));
    }
    if query.chars().count() > 4000 {
        return Err(ApiError::bad_request("query", "a question has at most 4000 characters"));
    }
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (mut knowledge_bases, mut knowledge_ids) = (body.knowledge_base_ids, body.knowledge_ids);
    fold_mentions(&body.mentioned_items, &mut knowledge_bases, &mut knowledge_ids);
    let question = crate::answer::chat::Question {
        tenant: caller.tenant_id,
        session,
        request_id,
        query,
        knowledge_bases,
        knowledge_ids: &knowledge_ids,
        model: body.summary_model_id,
    };
    let frames = crate::answer::chat::ask(&state, question).await?;
    Ok(event_stream(frames))
}

/// How often a quiet stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Frames (JSON) as server-sent events, each as it comes, written as upstream's server
/// writes them: `event:message` and `data:{...}` with no space after the colon. The SSE
/// standard lets a parser drop one such space, and browsers do, but upstream's Go SDK
/// compares `event:` with `message` as written (its `ContinueStream` skips every frame
/// of `event: message`).
fn event_stream(mut frames: tokio::sync::mpsc::Receiver<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let mut quiet = tokio::time::interval(KEEP_ALIVE);
        quiet.tick().await;
        loop {
            let out = tokio::select! {
                frame = frames.recv() => match frame {
                    Some(json) => format!("event:message\ndata:{json}\n\n"),
                    None => return,
                },
                _ = quiet.tick() => ":\n\n".to_string(),
            };
            // The client went away: the answer goes on without it.
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // Proxies (nginx) pass each frame on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
struct Continue {
    #[serde(default, deserialize_with = "blank_id")]
    message_id: Option<Uuid>,
}

/// Upstream's continue-stream: the answer's frames from its first, then the rest as they
/// come, until its last. An answer that ended is replayed while its frames are kept
/// (`replay::KEPT_AFTER_SECS`).
async fn continue_stream(
    State(state): State<SharedState>,
    caller: Caller,
    Path(session): Path<Uuid>,
    Query(q): Query<Continue>,
) -> Result<Response, ApiError> {
    caller.own_session(&state, session).await?;
    let message = q.message_id.ok_or_else(|| {
        ApiError::bad_request(
            "message_id",
            "name the answer to continue: its id, from agent_query or /messages/{session_id}/load",
        )
    })?;
    let tenant = caller.tenant_id;
    if crate::db::sessions::answer_status(&state.db, tenant, session, message).await?.is_none() {
        return Err(ApiError::not_found("answer in this session (message_id)"));
    }
    let db = state.db.clone();
    let running = move || {
        let db = db.clone();
        async move {
            let status = crate::db::sessions::answer_status(&db, tenant, session, message).await;
            matches!(status.as_ref().map(|s| s.as_deref()), Ok(Some("streaming")) | Err(_))
        }
    };
    match replay::follow(&state, message, running).await {
        Ok(frames) => Ok(event_stream(frames)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize)]
struct Stopped {
    stopped: bool,
}

/// Upstream's stop request names the answer (`message_id`, from `agent_query`).
#[derive(Deserialize)]
struct Stop {
    #[serde(default, deserialize_with = "blank_id")]
    message_id: Option<Uuid>,
}

/// Stops the session's running answer, on whichever replica runs it; with a `message_id`,
/// only when that is the answer running (a stop meant for an answer that has ended stops
/// nothing newer).
async fn stop(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    OptionalJson(body): OptionalJson<Stop>,
) -> Result<Envelope<Stopped>, ApiError> {
    caller.own_session(&state, id).await?;
    let streaming = crate::db::sessions::streaming_answer(&state.db, caller.tenant_id, id).await?;
    let named = body.and_then(|b| b.message_id);
    let Some(message) = streaming.filter(|m| named.is_none_or(|n| n == *m)) else {
        return Ok(Envelope::new(Stopped { stopped: false }));
    };
    // Here, or on the replica that runs it.
    let stopped = state.answers.stop(id) || replay::ask_stop(&state, message).await;
    Ok(Envelope::new(Stopped { stopped }))
}
