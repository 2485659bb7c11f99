//! Chat sessions and their messages, per tenant: another tenant's session is a 404.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::body::{Deleted, Envelope, Page, PageQuery, some_or_null};
use super::extract::{Caller, Json, Path, Query};
use super::knowledge_bases::own_knowledge_base;
use crate::db;
use crate::db::sessions::{Message, Session};
use crate::error::ApiError;
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/sessions", get(list).post(create))
        .route("/api/v1/sessions/{id}", get(read).put(update).delete(remove))
        .route("/api/v1/sessions/{id}/messages", get(messages))
        // Upstream's path for the same.
        .route("/api/v1/messages/{id}/load", get(messages))
}

#[derive(Deserialize, Default)]
struct Fields {
    title: Option<String>,
    #[serde(default, deserialize_with = "some_or_null")]
    knowledge_base_id: Option<Option<Uuid>>,
}

fn checked_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.chars().count() > 200 {
        return Err(ApiError::bad_request("title", "a title has at most 200 characters"));
    }
    Ok(title.to_string())
}

async fn checked_kb(state: &AppState, caller: &Caller, kb: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
    if let Some(id) = kb {
        own_knowledge_base(state, caller, id).await?;
    }
    Ok(kb)
}

pub(super) async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<Session, ApiError> {
    db::sessions::get(&state.db, caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("session"))
}

async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Fields>,
) -> Result<Envelope<Session>, ApiError> {
    let title = checked_title(body.title.as_deref().unwrap_or(""))?;
    let kb = checked_kb(&state, &caller, body.knowledge_base_id.flatten()).await?;
    Ok(Envelope::created(db::sessions::create(&state.db, caller.tenant_id, &title, kb).await?))
}

async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> Result<Page<Session>, ApiError> {
    let (rows, total) = db::sessions::list(&state.db, caller.tenant_id, page.size(), page.offset()).await?;
    Ok(Page::page(rows, page, total))
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Session>, ApiError> {
    Ok(Envelope::new(fetch(&state, &caller, id).await?))
}

async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Fields>,
) -> Result<Envelope<Session>, ApiError> {
    let session = fetch(&state, &caller, id).await?;
    let title = checked_title(body.title.as_deref().unwrap_or(&session.title))?;
    let kb = match body.knowledge_base_id {
        Some(kb) => checked_kb(&state, &caller, kb).await?,
        None => session.knowledge_base_id,
    };
    let updated = db::sessions::update(&state.db, caller.tenant_id, id, &title, kb)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    Ok(Envelope::new(updated))
}

async fn remove(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Deleted>, ApiError> {
    // A running answer of the session stops first.
    state.answers.stop(id);
    if !db::sessions::delete(&state.db, caller.tenant_id, id).await? {
        return Err(ApiError::not_found("session"));
    }
    Ok(Envelope::new(Deleted { id, deleted: true }))
}

#[derive(Deserialize)]
struct Window {
    limit: Option<i64>,
    before_time: Option<chrono::DateTime<chrono::Utc>>,
}

async fn messages(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(window): Query<Window>,
) -> Result<Envelope<Vec<Message>>, ApiError> {
    fetch(&state, &caller, id).await?;
    let limit = window.limit.unwrap_or(50).clamp(1, 500);
    Ok(Envelope::new(db::sessions::messages(&state.db, caller.tenant_id, id, window.before_time, limit).await?))
}
