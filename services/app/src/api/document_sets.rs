//! Routes over several documents at once, as upstream has them under `/knowledge/`: a
//! search across the caller's knowledge bases, and a batch reparse or delete within one
//! knowledge base; and upstream's batch update of tags, a feature weknora lacks (501).
//!
//! Upstream runs a batch as a background task and answers the task's id. Here the batch is
//! done before the answer, in one transaction: a delete deletes; a reparse queues each
//! document's parse, which runs as any parse does, its progress in the document's
//! `parse_status`. There is no task to follow, so `task_id` is `""`.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Envelope, Message, blank_id, id_list, query_pairs};
use super::error::ApiError;
use super::extract::{Caller, Json};
use super::views::{DocumentView as View, document_view as view};
use crate::db;
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge/search", get(search))
        .route("/api/v1/knowledge/batch-reparse", post(batch_reparse))
        .route("/api/v1/knowledge/batch-delete", post(batch_delete))
        .route("/api/v1/knowledge/tags", put(tags))
}

/// The most documents a batch names, as upstream allows.
const MAX_BATCH: usize = 200;

/// Upstream's search query: `keyword` (or `query`), `offset`, `limit` and `file_types`
/// (comma-separated, or repeated as its Go SDK sends them).
#[derive(Debug, PartialEq)]
struct SearchQuery {
    keyword: Option<String>,
    offset: i64,
    limit: i64,
    /// File extensions, and source types (`url`, `manual`) where those are named.
    file_types: Vec<String>,
    source_types: Vec<String>,
    /// A shared agent's knowledge bases were asked for.
    agent: bool,
}

fn read_search(query: &str) -> Result<SearchQuery, ApiError> {
    let mut q = SearchQuery {
        keyword: None,
        offset: 0,
        limit: 20,
        file_types: Vec::new(),
        source_types: Vec::new(),
        agent: false,
    };
    let whole = |field: &str, value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(field, &format!("`{value}` is not a whole number")))
    };
    let mut query_keyword = None;
    for (key, value) in query_pairs(query) {
        let set = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match key.as_str() {
            "keyword" => q.keyword = set.or(q.keyword),
            // What most agent integrations send, read when there is no `keyword`.
            "query" => query_keyword = set.or(query_keyword),
            "offset" if set.is_some() => q.offset = whole("offset", &value)?.max(0),
            "limit" if set.is_some() => {
                let limit = whole("limit", &value)?;
                q.limit = if limit <= 0 { 20 } else { limit.min(200) };
            }
            "file_types" => {
                for kind in value.split(',').map(|t| t.trim().trim_start_matches('.').to_ascii_lowercase()) {
                    let add = |list: &mut Vec<String>, kind: &str| {
                        if !list.iter().any(|t| t == kind) {
                            list.push(kind.to_string());
                        }
                    };
                    match kind.as_str() {
                        "" => {}
                        "url" | "manual" => add(&mut q.source_types, &kind),
                        _ => {
                            add(&mut q.file_types, &kind);
                            if let Some(same) = same_format(&kind) {
                                add(&mut q.file_types, same);
                            }
                            // Web pages are HTML: `html` also finds documents from a URL, as upstream's does.
                            if kind == "html" {
                                add(&mut q.source_types, "url");
                            }
                        }
                    }
                }
            }
            "agent_id" => q.agent |= set.is_some(),
            _ => {}
        }
    }
    q.keyword = q.keyword.or(query_keyword);
    Ok(q)
}

/// The other extension of a format that has two, as upstream counts them the same.
fn same_format(extension: &str) -> Option<&'static str> {
    match extension {
        "jpg" => Some("jpeg"),
        "jpeg" => Some("jpg"),
        "doc" => Some("docx"),
        "docx" => Some("doc"),
        "xls" => Some("xlsx"),
        "xlsx" => Some("xls"),
        _ => None,
    }
}

/// A document found, with its knowledge base's name beside upstream's fields.
#[derive(Serialize)]
struct Hit {
    #[serde(flatten)]
    doc: View,
    knowledge_base_name: String,
}

/// Beside the hits: whether there are more past this page, and how many match.
#[derive(Serialize)]
struct More {
    has_more: bool,
    total: i64,
}

/// Upstream's `GET /knowledge/search`: the caller's documents across all its knowledge
/// bases whose title or file name (or URL) has the keyword, of the file types asked,
/// newest first, `limit` (20; at most 200) from `offset`. No keyword lists them all.
/// Upstream's `agent_id` scopes the search to a shared agent's knowledge bases: agents are
/// not provided, so that is a 501.
async fn search(
    State(state): State<SharedState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Envelope<Vec<Hit>, More>, ApiError> {
    let q = read_search(query.as_deref().unwrap_or(""))?;
    if q.agent {
        return Err(ApiError::not_provided("custom agents", "/knowledge/search?agent_id="));
    }
    let filter = db::documents::Search {
        keyword: q.keyword.as_deref(),
        file_types: &q.file_types,
        source_types: &q.source_types,
    };
    let (rows, total) = db::documents::search(&state.db, caller.tenant_id, &filter, q.limit, q.offset).await?;
    let has_more = q.offset.saturating_add(rows.len() as i64) < total;
    let hits = rows.into_iter().map(|f| Hit { doc: view(f.doc), knowledge_base_name: f.knowledge_base_name }).collect();
    Ok(Envelope::with(hits, More { has_more, total }))
}

/// Upstream's batch body: the knowledge base and its documents. Upstream's
/// `process_config` (a reparse's parser settings) is ignored: the knowledge base's own
/// chunking applies, as for every parse.
#[derive(Deserialize)]
struct Batch {
    #[serde(default, deserialize_with = "blank_id")]
    kb_id: Option<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    ids: Vec<Uuid>,
}

/// The batch's knowledge base (the caller's, else 404) and its documents, each named once;
/// 400 when one does not exist or is in another knowledge base, as upstream refuses the
/// whole batch.
async fn checked(state: &AppState, caller: &Caller, body: Batch) -> Result<(Uuid, Vec<Uuid>), ApiError> {
    let kb = body.kb_id.ok_or_else(|| ApiError::bad_request("kb_id", "name the knowledge base of the documents"))?;
    let mut ids: Vec<Uuid> = Vec::with_capacity(body.ids.len());
    for id in body.ids {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request("ids", &format!("name 1 to {MAX_BATCH} documents")));
    }
    caller.own_knowledge_base(state, kb).await?;
    let docs = db::documents::get_many(&state.db, caller.tenant_id, &ids).await?;
    if let Some(missing) = ids.iter().find(|id| !docs.iter().any(|d| d.id == **id)) {
        return Err(ApiError::bad_request("ids", &format!("there is no document {missing}: nothing was done")));
    }
    if let Some(elsewhere) = docs.iter().find(|d| d.knowledge_base_id != kb) {
        let message = format!("document {} is not in knowledge base {kb}: nothing was done", elsewhere.id);
        return Err(ApiError::bad_request("ids", &message));
    }
    Ok((kb, ids))
}

#[derive(Serialize)]
struct BatchDeleted {
    task_id: &'static str,
    deleted_count: i64,
}

/// Upstream's `POST /knowledge/batch-delete`: the documents go, with their chunks, jobs
/// and files, all or none.
async fn batch_delete(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Batch>,
) -> Result<Envelope<BatchDeleted, Message>, ApiError> {
    let (kb, ids) = checked(&state, &caller, body).await?;
    let (deleted, keys) = db::documents::delete_many(&state.db, caller.tenant_id, kb, &ids).await?;
    crate::search::cache::knowledge_base_changed(&state, kb).await;
    for key in keys {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(error = %e, key, "the document is deleted but its file could not be removed");
        }
    }
    let data = BatchDeleted { task_id: "", deleted_count: deleted };
    Ok(Envelope::with(data, Message { message: "Batch delete done" }))
}

#[derive(Serialize)]
struct BatchReparsed {
    task_id: &'static str,
    /// How many parses were queued.
    reparse_count: usize,
    /// The documents left as they were: a parse (or their embedding) is queued or running.
    already_parsing: Vec<Uuid>,
}

/// Upstream's `POST /knowledge/batch-reparse`: a parse is queued for each document, as
/// `POST /knowledge/{id}/reparse` queues one, except for those whose parse or embedding is
/// already queued or running (upstream's single reparse is a 409 for those): they are
/// named in `already_parsing`.
async fn batch_reparse(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Batch>,
) -> Result<Envelope<BatchReparsed, Message>, ApiError> {
    let (kb, ids) = checked(&state, &caller, body).await?;
    let max_attempts = state.config.ingest.max_attempts;
    let (queued, busy) = db::documents::reparse_many(&state.db, caller.tenant_id, kb, &ids, max_attempts).await?;
    if !queued.is_empty() {
        state.new_job.notify_one();
    }
    let data = BatchReparsed { task_id: "", reparse_count: queued.len(), already_parsing: busy };
    Ok(Envelope::with(data, Message { message: "Batch reparse queued" }))
}

/// Upstream's `PUT /knowledge/tags` sets documents' tags (`{updates: {<document id>: <tag
/// id or null>}, kb_id}`): tags are not provided, so a request upstream would take is a 501
/// naming them, as upstream's `/tags` API answers here; one it would refuse (no
/// `updates` object, or an empty one) is a 400, as upstream's.
async fn tags(_caller: Caller, Json(body): Json<serde_json::Value>) -> ApiError {
    let updates = body.get("updates").and_then(serde_json::Value::as_object);
    if updates.is_none_or(|u| u.is_empty()) {
        return ApiError::bad_request("updates", "map document ids to tag ids (null clears one)");
    }
    ApiError::not_provided("tags", "/knowledge/tags")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_query_reads_as_upstream_sends_it() {
        let q = read_search("keyword=%E5%BD%97&offset=5&limit=500&file_types=.PDF,docx&file_types=url").unwrap();
        assert_eq!(q.keyword.as_deref(), Some("彗"));
        assert_eq!((q.offset, q.limit), (5, 200));
        assert_eq!(q.file_types, ["pdf", "docx", "doc"]);
        assert_eq!(q.source_types, ["url"]);
        assert!(!q.agent);
        let q = read_search("query=ops&limit=0&offset=-3&agent_id=&file_types=").unwrap();
        assert_eq!((q.keyword.as_deref(), q.offset, q.limit, q.agent), (Some("ops"), 0, 20, false));
        assert!(q.file_types.is_empty() && q.source_types.is_empty());
        let q = read_search("keyword=a&query=b&agent_id=7&file_types=html").unwrap();
        assert_eq!((q.keyword.as_deref(), q.agent), (Some("a"), true));
        assert_eq!(
            (q.file_types.as_slice(), q.source_types.as_slice()),
            (&["html".to_string()][..], &["url".to_string()][..])
        );
        let e = read_search("limit=ten").unwrap_err();
        assert!(e.message.contains("limit") && e.message.contains("`ten`"), "{}", e.message);
    }
}
