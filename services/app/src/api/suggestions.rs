//! Upstream's follow-up suggestions: `POST /api/v1/sessions/{id}/messages/{message}/suggestions`
//! makes (or, with `regenerate`, remakes) the questions a reader might ask after a completed
//! answer, by the chat model that would answer; `GET` reads them; and
//! `POST /api/v1/sessions/{id}/suggestion-events` records what the reader did with them
//! (`impression`, `click`, `dismiss`, `regenerate`). Without a chat model a set is
//! `suppressed`, saying so; a model that fails makes a `failed` set, which the next `POST`
//! retries. Suggestions are made when asked for, not after every answer: a model call per
//! answer nobody reads is not spent.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Envelope, blank_id};
use super::error::ApiError;
use super::extract::{Caller, OptionalJson, Path};
use crate::answer::chat::Answerer;
use crate::db::suggestions::{Outcome, Suggested, SuggestionSet};
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/sessions/{id}/messages/{message}/suggestions", get(read).post(make))
        .route("/api/v1/sessions/{id}/suggestion-events", post(event))
}

/// A set in upstream's shape, with what made it (or why it failed) beside.
#[derive(Serialize)]
struct Wire {
    id: Uuid,
    session_id: Uuid,
    assistant_message_id: Uuid,
    status: String,
    allow_regenerate: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    suppression_reason: String,
    questions: Vec<Suggested>,
    #[serde(skip_serializing_if = "String::is_empty")]
    model: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

impl From<SuggestionSet> for Wire {
    fn from(s: SuggestionSet) -> Wire {
        Wire {
            allow_regenerate: s.status != "suppressed",
            id: s.id,
            session_id: s.session_id,
            assistant_message_id: s.assistant_message_id,
            status: s.status,
            suppression_reason: s.suppression_reason,
            questions: s.questions.0,
            model: s.model,
            error: s.error,
        }
    }
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path((session, message)): Path<(Uuid, Uuid)>,
) -> Result<Envelope<Wire>, ApiError> {
    caller.own_session(&state, session).await?;
    let set = crate::db::suggestions::get(&state.db, caller.tenant_id, session, message).await?;
    let set =
        set.ok_or_else(|| ApiError::not_found("suggestions for this answer: POST to the same path makes them"))?;
    Ok(Envelope::new(set.into()))
}

#[derive(Deserialize, Default)]
struct Make {
    #[serde(default)]
    regenerate: bool,
}

async fn make(
    State(state): State<SharedState>,
    caller: Caller,
    Path((session, message)): Path<(Uuid, Uuid)>,
    OptionalJson(body): OptionalJson<Make>,
) -> Result<Envelope<Wire>, ApiError> {
    let tenant = caller.tenant_id;
    let s = caller.own_session(&state, session).await?;
    let exchange = crate::db::sessions::exchange(&state.db, tenant, session, message).await?;
    let (status, question, answer) = exchange.ok_or_else(|| ApiError::not_found("answer in this session"))?;
    if status != "completed" {
        return Err(ApiError::conflict(&format!(
            "this answer is {status}: suggestions follow a completed answer (GET /api/v1/messages/{{session_id}}/load \
             says how each ended)"
        )));
    }
    let regenerate = body.unwrap_or_default().regenerate;
    if let Some(set) = crate::db::suggestions::get(&state.db, tenant, session, message).await?
        && !regenerate
        && set.status != "failed"
    {
        return Ok(Envelope::new(set.into()));
    }
    let knowledge_bases: Vec<Uuid> = s.knowledge_base_id.into_iter().collect();
    let answerer = crate::answer::chat::choose(&state, tenant, None, &knowledge_bases).await?;
    let (questions, model, failure) = match &answerer {
        Answerer::Extractive => (Vec::new(), String::new(), None),
        Answerer::Model(model) => match crate::answer::chat::suggest(model, &question, &answer).await {
            Ok(texts) if texts.is_empty() => {
                (Vec::new(), model.name().to_string(), Some("the model suggested no question".to_string()))
            }
            Ok(texts) => {
                let questions =
                    texts.into_iter().map(|text| Suggested { id: Uuid::new_v4(), text, source: "llm".into() });
                (questions.collect(), model.name().to_string(), None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "suggestions: the chat model could not suggest questions");
                (Vec::new(), model.name().to_string(), Some(e))
            }
        },
    };
    let outcome = Outcome {
        status: match (&answerer, &failure) {
            (Answerer::Extractive, _) => "suppressed",
            (_, Some(_)) => "failed",
            _ => "ready",
        },
        suppression_reason: if matches!(answerer, Answerer::Extractive) { "no_chat_model" } else { "" },
        questions: &questions,
        model: &model,
        error: failure.as_deref().unwrap_or(""),
    };
    Ok(Envelope::new(crate::db::suggestions::put(&state.db, tenant, session, message, &outcome).await?.into()))
}

#[derive(Deserialize)]
struct Event {
    #[serde(default, deserialize_with = "blank_id")]
    suggestion_set_id: Option<Uuid>,
    #[serde(default, deserialize_with = "blank_id")]
    question_id: Option<Uuid>,
    #[serde(default)]
    event_type: String,
}

#[derive(Serialize)]
struct Recorded {
    recorded: bool,
}

const EVENTS: [&str; 4] = ["impression", "click", "dismiss", "regenerate"];

async fn event(
    State(state): State<SharedState>,
    caller: Caller,
    Path(session): Path<Uuid>,
    super::extract::Json(body): super::extract::Json<Event>,
) -> Result<Envelope<Recorded>, ApiError> {
    caller.own_session(&state, session).await?;
    let set = body.suggestion_set_id.ok_or_else(|| ApiError::bad_request("suggestion_set_id", "name the set"))?;
    if !EVENTS.contains(&body.event_type.as_str()) {
        return Err(ApiError::bad_request("event_type", &format!("one of {}", EVENTS.join(", "))));
    }
    let recorded = crate::db::suggestions::record_event(
        &state.db,
        caller.tenant_id,
        session,
        set,
        body.question_id,
        &body.event_type,
    )
    .await?;
    if !recorded {
        return Err(ApiError::not_found("suggestion set (with that question) in this session"));
    }
    Ok(Envelope::new(Recorded { recorded }))
}
