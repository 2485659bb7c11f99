//! Chat sessions and their messages, per tenant: another tenant's session is a 404.

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Deleted, Envelope, Page, PageQuery, some_or_null};
use super::error::ApiError;
use super::extract::{Caller, Json, Path, Query};
use crate::db;
use crate::db::sessions::{Message, Session};
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/sessions", get(list).post(create))
        .route("/api/v1/sessions/batch", delete(remove_many))
        .route("/api/v1/sessions/{id}", get(read).put(update).delete(remove))
        .route("/api/v1/sessions/{id}/pin", post(pin).delete(unpin))
        .route("/api/v1/sessions/{id}/generate_title", post(generate_title))
        .route("/api/v1/sessions/{id}/messages", get(messages).delete(clear))
        // Upstream's paths for the messages.
        .route("/api/v1/messages/{id}/load", get(messages))
        .route("/api/v1/messages/search", post(search_messages))
        .route("/api/v1/messages/chat-history-stats", get(chat_history_stats))
        .route("/api/v1/messages/{session}/{id}", delete(remove_message))
}

#[derive(Deserialize, Default)]
struct Fields {
    title: Option<String>,
    description: Option<String>,
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
        caller.own_knowledge_base(state, id).await?;
    }
    Ok(kb)
}

async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Fields>,
) -> Result<Envelope<Session>, ApiError> {
    let title = checked_title(body.title.as_deref().unwrap_or(""))?;
    let description = checked_description(body.description.as_deref().unwrap_or(""))?;
    let kb = checked_kb(&state, &caller, body.knowledge_base_id.flatten()).await?;
    let fields = db::sessions::Fields { title: &title, description: &description, knowledge_base: kb };
    Ok(Envelope::created(db::sessions::create(&state.db, caller.tenant_id, &fields).await?))
}

fn checked_description(description: &str) -> Result<String, ApiError> {
    if description.chars().count() > 2000 {
        return Err(ApiError::bad_request("description", "a description has at most 2000 characters"));
    }
    Ok(description.trim().to_string())
}

/// Upstream's session filter: words of the title (or description).
#[derive(serde::Deserialize)]
struct Filter {
    keyword: Option<String>,
}

async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
    Query(filter): Query<Filter>,
) -> Result<Page<Session>, ApiError> {
    // Upstream lists ten sessions a page unless asked otherwise.
    let page = page.or_size(10);
    let keyword = filter.keyword.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let (rows, total) = db::sessions::list(&state.db, caller.tenant_id, keyword, page.size(), page.offset()).await?;
    Ok(Page::page(rows, page, total))
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Session>, ApiError> {
    Ok(Envelope::new(caller.own_session(&state, id).await?))
}

async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Fields>,
) -> Result<Envelope<Session>, ApiError> {
    let session = caller.own_session(&state, id).await?;
    let title = checked_title(body.title.as_deref().unwrap_or(&session.title))?;
    let description = checked_description(body.description.as_deref().unwrap_or(&session.description))?;
    let kb = match body.knowledge_base_id {
        Some(kb) => checked_kb(&state, &caller, kb).await?,
        None => session.knowledge_base_id,
    };
    let fields = db::sessions::Fields { title: &title, description: &description, knowledge_base: kb };
    let updated = db::sessions::update(&state.db, caller.tenant_id, id, &fields)
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

async fn pin(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Session>, ApiError> {
    let pinned = db::sessions::pin(&state.db, caller.tenant_id, id, true).await?;
    Ok(Envelope::new(pinned.ok_or_else(|| ApiError::not_found("session"))?))
}

async fn unpin(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Session>, ApiError> {
    let unpinned = db::sessions::pin(&state.db, caller.tenant_id, id, false).await?;
    Ok(Envelope::new(unpinned.ok_or_else(|| ApiError::not_found("session"))?))
}

/// Upstream's title request: the conversation so far (its first question is what counts).
#[derive(Deserialize, Default)]
struct Conversation {
    #[serde(default, deserialize_with = "super::body::null_as_default")]
    messages: Vec<Said>,
}

#[derive(Deserialize)]
struct Said {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: String,
}

/// Titles the session (by the built-in chat model when there is one) and answers the title.
async fn generate_title(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    super::extract::OptionalJson(body): super::extract::OptionalJson<Conversation>,
) -> Result<Envelope<String>, ApiError> {
    caller.own_session(&state, id).await?;
    let sent = body.unwrap_or_default().messages.into_iter().find(|m| m.role == "user" && !m.content.trim().is_empty());
    let question = match sent {
        Some(m) => m.content,
        None => db::sessions::first_question(&state.db, caller.tenant_id, id).await?.ok_or_else(|| {
            ApiError::bad_request("messages", "the session has no question yet: send `messages` or ask first")
        })?,
    };
    let title = crate::answer::chat::generate_title(&state, &question).await;
    db::sessions::retitle(&state.db, caller.tenant_id, id, &title).await?;
    Ok(Envelope::new(title))
}

/// Upstream's batch delete: `{"ids": [...]}`.
#[derive(Deserialize)]
struct Ids {
    #[serde(default, deserialize_with = "super::body::id_list")]
    ids: Vec<Uuid>,
}

#[derive(Serialize)]
struct Removed {
    /// Those of the ids that were the tenant's sessions (others' are skipped, not reported).
    deleted: u64,
}

async fn remove_many(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Ids>,
) -> Result<Envelope<Removed>, ApiError> {
    if body.ids.is_empty() {
        return Err(ApiError::bad_request("ids", "name the sessions to delete"));
    }
    for id in &body.ids {
        state.answers.stop(*id);
    }
    Ok(Envelope::new(Removed { deleted: db::sessions::delete_many(&state.db, caller.tenant_id, &body.ids).await? }))
}

/// Deletes the session's messages: its running answer stops first.
async fn clear(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Removed>, ApiError> {
    caller.own_session(&state, id).await?;
    state.answers.stop(id);
    Ok(Envelope::new(Removed { deleted: db::sessions::clear(&state.db, caller.tenant_id, id).await? }))
}

async fn remove_message(
    State(state): State<SharedState>,
    caller: Caller,
    Path((session, id)): Path<(Uuid, Uuid)>,
) -> Result<Envelope<Deleted>, ApiError> {
    if !db::sessions::delete_message(&state.db, caller.tenant_id, session, id).await? {
        return Err(ApiError::not_found("message"));
    }
    Ok(Envelope::new(Deleted { id, deleted: true }))
}

/// Upstream's history search: `{query, mode, limit, session_ids}`.
#[derive(Deserialize)]
struct HistorySearch {
    #[serde(default)]
    query: String,
    #[serde(default)]
    mode: String,
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::body::id_list")]
    session_ids: Vec<Uuid>,
}

#[derive(Serialize)]
struct FoundView {
    #[serde(flatten)]
    found: db::sessions::Found,
    /// How it matched: by its words (chat history has no vectors here).
    match_type: &'static str,
}

#[derive(Serialize)]
struct History {
    items: Vec<FoundView>,
    total: i64,
}

/// Searches the tenant's questions and answers by their words. Upstream's `vector` and
/// `hybrid` modes are answered by words too (chat history is not embedded here), and every
/// item says so in `match_type`.
async fn search_messages(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<HistorySearch>,
) -> Result<Envelope<History>, ApiError> {
    if !matches!(body.mode.as_str(), "" | "keyword" | "vector" | "hybrid") {
        return Err(ApiError::bad_request("mode", "mode is keyword, vector or hybrid"));
    }
    let terms = crate::chunker::query_terms(&state.jieba, &body.query);
    if body.query.trim().is_empty() || terms.is_empty() {
        return Err(ApiError::bad_request("query", "the query has no searchable words"));
    }
    let limit = body.limit.filter(|l| *l > 0).unwrap_or(20).min(200);
    let (found, total) = db::sessions::search(&state.db, caller.tenant_id, &terms, &body.session_ids, limit).await?;
    let items = found.into_iter().map(|found| FoundView { found, match_type: "keyword" }).collect();
    Ok(Envelope::new(History { items, total }))
}

/// Upstream's chat-history knowledge base: chat history is not indexed into one here.
#[derive(Serialize)]
struct HistoryStats {
    enabled: bool,
    indexed_message_count: i64,
    has_indexed_messages: bool,
}

async fn chat_history_stats(_caller: Caller) -> Envelope<HistoryStats> {
    Envelope::new(HistoryStats { enabled: false, indexed_message_count: 0, has_indexed_messages: false })
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
    caller.own_session(&state, id).await?;
    // Upstream's default: the last 20.
    let limit = window.limit.unwrap_or(20).clamp(1, 500);
    Ok(Envelope::new(db::sessions::messages(&state.db, caller.tenant_id, id, window.before_time, limit).await?))
}
