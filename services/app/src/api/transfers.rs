//! Upstream's moves and copies between a tenant's knowledge bases: moving documents to
//! another knowledge base (`POST /knowledge/move`), copying a knowledge base with its
//! documents (`POST /knowledge-bases/copy`), both as tasks whose progress is polled by id,
//! and the knowledge bases a move may go to (`move-targets`). What can be checked is checked
//! here, before a task exists; the transfer worker (`crate::transfers`) does the work.
//! Another tenant's knowledge bases, documents and tasks are 404s, as ids of nothing are.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Envelope, blank_id, id_list, null_as_default};
use super::error::ApiError;
use super::extract::{Caller, Json, Path};
use super::views::{KnowledgeBaseView as View, knowledge_base_view as view};
use crate::db;
use crate::db::knowledge_bases::KnowledgeBase;
use crate::db::transfers::{NewTask, Progress};
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-bases/{id}/move-targets", get(move_targets))
        .route("/api/v1/knowledge/move", post(start_move))
        .route("/api/v1/knowledge/move/progress/{task_id}", get(move_progress))
        .route("/api/v1/knowledge-bases/copy", post(start_copy))
        .route("/api/v1/knowledge-bases/copy/progress/{task_id}", get(copy_progress))
}

/// The most documents one move takes.
const MAX_MOVED: usize = 1000;

/// What upstream answers when the embedding models differ (moves and copies alike).
const OTHER_MODEL: &str = "source and target knowledge bases use different embedding models; clone into a target with the same embedding model";

async fn knowledge_base(state: &AppState, caller: &Caller, id: Uuid, what: &str) -> Result<KnowledgeBase, ApiError> {
    db::knowledge_bases::get(&state.db, caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found(what))
}

/// A task id of ours: upstream's form, `<kind>_<unix ms>_<8 hex>_<knowledge base>`.
fn task_id(kind: &str, kb: Uuid) -> String {
    let millis = chrono::Utc::now().timestamp_millis();
    let random = Uuid::new_v4().simple().to_string();
    format!("{kind}_{millis}_{}_{kb}", &random[..8])
}

/// What a task id may be (what `transfer_tasks` takes).
fn valid_task_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// Upstream's move targets: the tenant's other knowledge bases with the same embedding
/// model as this one (ours are all of upstream's type `document`, none temporary).
async fn move_targets(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Vec<View>>, ApiError> {
    let source = knowledge_base(&state, &caller, id, "knowledge base").await?;
    let all = db::knowledge_bases::list(&state.db, caller.tenant_id).await?;
    let targets =
        all.into_iter().filter(|kb| kb.id != id && kb.embedding_model_id == source.embedding_model_id).map(view);
    Ok(Envelope::new(targets.collect()))
}

#[derive(Deserialize)]
struct MoveRequest {
    #[serde(default, deserialize_with = "id_list")]
    knowledge_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "blank_id")]
    source_kb_id: Option<Uuid>,
    #[serde(default, deserialize_with = "blank_id")]
    target_kb_id: Option<Uuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    mode: String,
}

#[derive(Serialize)]
struct MoveStarted {
    task_id: String,
    source_kb_id: Uuid,
    target_kb_id: Uuid,
    knowledge_count: usize,
    message: &'static str,
}

/// Upstream's move: parsed documents of one knowledge base to another of the tenant's with
/// the same embedding model. `reuse_vectors` keeps their chunks and vectors; `reparse`
/// parses them again with the target's chunking. Refused as a whole when any document
/// cannot go (400 naming it), as upstream refuses it.
async fn start_move(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<MoveRequest>,
) -> Result<Envelope<MoveStarted>, ApiError> {
    if !matches!(body.mode.as_str(), "reuse_vectors" | "reparse") {
        return Err(ApiError::bad_request("mode", "the mode is `reuse_vectors` or `reparse`"));
    }
    let source = body.source_kb_id.ok_or_else(|| ApiError::bad_request("source_kb_id", "name the source"))?;
    let target = body.target_kb_id.ok_or_else(|| ApiError::bad_request("target_kb_id", "name the target"))?;
    let mut ids = body.knowledge_ids;
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    if ids.is_empty() || ids.len() > MAX_MOVED {
        return Err(ApiError::bad_request("knowledge_ids", &format!("name 1 to {MAX_MOVED} documents")));
    }
    if source == target {
        return Err(ApiError::bad_request("target_kb_id", "the source and the target are the same knowledge base"));
    }
    let from = knowledge_base(&state, &caller, source, "source knowledge base").await?;
    let to = knowledge_base(&state, &caller, target, "target knowledge base").await?;
    if from.embedding_model_id != to.embedding_model_id {
        return Err(ApiError::bad_request("target_kb_id", "Source and target must use the same embedding model"));
    }
    let docs = db::documents::get_many(&state.db, caller.tenant_id, &ids).await?;
    if let Some(missing) = ids.iter().find(|id| !docs.iter().any(|d| d.id == **id)) {
        return Err(ApiError::not_found(&format!("document {missing}")));
    }
    for doc in &docs {
        if doc.knowledge_base_id != source {
            let message = format!("document {} is not in the source knowledge base", doc.id);
            return Err(ApiError::bad_request("knowledge_ids", &message));
        }
        if doc.parse_status != "completed" {
            let message = format!(
                "document {} is not in completed status (current: {}): only parsed documents move",
                doc.id, doc.parse_status
            );
            return Err(ApiError::bad_request("knowledge_ids", &message));
        }
    }
    if let Some(busy) = db::transfers::busy(&state.db, caller.tenant_id, &ids).await?.first() {
        return Err(ApiError::conflict(&format!(
            "document {busy} is being parsed or embedded: move it when that is done (its vector_status says)"
        )));
    }
    let task_id = task_id("kg_move", source);
    let task = NewTask {
        tenant: caller.tenant_id,
        id: &task_id,
        kind: "move",
        source,
        target: Some(target),
        knowledge_ids: Some(&ids),
        mode: &body.mode,
        copy_suffix: "",
    };
    if !db::transfers::create(&state.db, &task).await? {
        return Err(ApiError::conflict("a task with this id exists: try again"));
    }
    let message = "Knowledge move task started";
    let started =
        MoveStarted { task_id, source_kb_id: source, target_kb_id: target, knowledge_count: ids.len(), message };
    Ok(Envelope::new(started))
}

#[derive(Deserialize)]
struct CopyRequest {
    #[serde(default, deserialize_with = "blank_id")]
    source_id: Option<Uuid>,
    /// None (or `""`): into a new knowledge base with the source's settings.
    #[serde(default, deserialize_with = "blank_id")]
    target_id: Option<Uuid>,
    /// The client's own task id; none: one is made.
    #[serde(default, deserialize_with = "null_as_default")]
    task_id: String,
}

#[derive(Serialize)]
struct CopyStarted {
    task_id: String,
    source_id: Uuid,
    /// `""` for a new knowledge base: its id is in the progress once the copy starts.
    target_id: String,
    message: &'static str,
}

/// Upstream's copy: a knowledge base with its documents, into a new knowledge base with its
/// settings (named `<name> Copy`, or `<name> 副本` for a Chinese `Accept-Language`,
/// numbered when taken) or into an existing one with the same embedding model, where the
/// documents it has already (the same file, or URL) are not copied again; none of its own
/// are removed. Copies are whole: files, chunks and vectors are the copy's own.
async fn start_copy(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<CopyRequest>,
) -> Result<Envelope<CopyStarted>, ApiError> {
    let source = body.source_id.ok_or_else(|| ApiError::bad_request("source_id", "name the knowledge base to copy"))?;
    let custom = body.task_id.trim();
    if !custom.is_empty() && !valid_task_id(custom) {
        return Err(ApiError::bad_request("task_id", "a task id has 1 to 128 letters, digits, `_`, `.`, `:` or `-`"));
    }
    let from = knowledge_base(&state, &caller, source, "source knowledge base").await?;
    if let Some(target) = body.target_id {
        if target == source {
            return Err(ApiError::bad_request("target_id", "the source and the target are the same knowledge base"));
        }
        let to = knowledge_base(&state, &caller, target, "target knowledge base").await?;
        if from.embedding_model_id != to.embedding_model_id {
            return Err(ApiError::bad_request("target_id", OTHER_MODEL));
        }
    }
    let chinese = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.trim_start().starts_with("zh"));
    let task_id = if custom.is_empty() { task_id("kb_clone", source) } else { custom.to_string() };
    let task = NewTask {
        tenant: caller.tenant_id,
        id: &task_id,
        kind: "copy",
        source,
        target: body.target_id,
        knowledge_ids: None,
        mode: "",
        copy_suffix: if chinese { "副本" } else { "Copy" },
    };
    if !db::transfers::create(&state.db, &task).await? {
        return Err(ApiError::conflict("a task with this task_id exists: choose another (or send none)"));
    }
    let target_id = body.target_id.map(|t| t.to_string()).unwrap_or_default();
    let message = "Knowledge base copy task started";
    Ok(Envelope::new(CopyStarted { task_id, source_id: source, target_id, message }))
}

/// A task's progress as both upstream's progress objects have it (the move's names its
/// knowledge bases `source_kb_id`/`target_kb_id`, the copy's `source_id`/`target_id`).
#[derive(Serialize)]
struct Polled {
    task_id: String,
    #[serde(flatten)]
    bases: Bases,
    /// pending, processing, completed or failed.
    status: String,
    /// 0 to 100.
    progress: i64,
    total: i64,
    processed: i64,
    failed: i64,
    message: String,
    error: String,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Bases {
    Move { source_kb_id: Uuid, target_kb_id: String },
    Copy { source_id: Uuid, target_id: String },
}

fn polled(p: Progress, kind: &str) -> Polled {
    let target = p.target_kb_id.map(|t| t.to_string()).unwrap_or_default();
    let bases = match kind {
        "move" => Bases::Move { source_kb_id: p.source_kb_id, target_kb_id: target },
        _ => Bases::Copy { source_id: p.source_kb_id, target_id: target },
    };
    let progress = match p.status.as_str() {
        "completed" => 100,
        _ if p.total > 0 => (p.processed * 100 / p.total).min(100),
        _ => 0,
    };
    let message = if p.status == "processing" && p.message.is_empty() {
        let doing = if kind == "move" { "Moving" } else { "Copying" };
        match p.total {
            0 if kind == "copy" => "Copying the knowledge base's settings".to_string(),
            total => format!("{doing}: {} of {total} documents done", p.processed),
        }
    } else {
        p.message
    };
    Polled {
        task_id: p.id,
        bases,
        status: p.status,
        progress,
        total: p.total,
        processed: p.processed,
        failed: p.failed,
        message,
        error: p.error,
        created_at: p.created_at.timestamp(),
        updated_at: p.updated_at.timestamp(),
    }
}

async fn poll(state: &AppState, caller: &Caller, kind: &str, id: &str) -> Result<Envelope<Polled>, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {kind} task"));
    if !valid_task_id(id) {
        return Err(missing());
    }
    let found = db::transfers::progress(&state.db, caller.tenant_id, kind, id).await?.ok_or_else(missing)?;
    Ok(Envelope::new(polled(found, kind)))
}

async fn move_progress(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Envelope<Polled>, ApiError> {
    poll(&state, &caller, "move", &id).await
}

async fn copy_progress(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Envelope<Polled>, ApiError> {
    poll(&state, &caller, "copy", &id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(status: &str, total: i64, processed: i64) -> Progress {
        Progress {
            id: "t".into(),
            source_kb_id: Uuid::nil(),
            target_kb_id: None,
            status: status.into(),
            message: String::new(),
            error: String::new(),
            attempts: 1,
            total,
            processed,
            failed: 0,
            created_at: chrono::DateTime::from_timestamp(1_736_582_400, 0).unwrap(),
            updated_at: chrono::DateTime::from_timestamp(1_736_582_460, 0).unwrap(),
        }
    }

    #[test]
    fn progress_reads_as_upstreams_for_each_kind() {
        let copy = serde_json::to_value(polled(progress("processing", 4, 1), "copy")).unwrap();
        assert_eq!((copy["progress"].as_i64(), copy["target_id"].as_str()), (Some(25), Some("")), "{copy}");
        assert_eq!(
            (copy["created_at"].as_i64(), copy["message"].as_str()),
            (Some(1_736_582_400), Some("Copying: 1 of 4 documents done"))
        );
        assert!(copy.get("source_kb_id").is_none() && copy["source_id"].is_string(), "{copy}");
        let moved = serde_json::to_value(polled(progress("completed", 0, 0), "move")).unwrap();
        assert_eq!((moved["progress"].as_i64(), moved["failed"].as_i64()), (Some(100), Some(0)), "{moved}");
        assert!(moved["source_kb_id"].is_string() && moved.get("source_id").is_none(), "{moved}");
        let pending = polled(progress("pending", 0, 0), "copy");
        assert_eq!(pending.progress, 0);
    }

    #[test]
    fn task_ids_are_what_the_table_takes() {
        let id = task_id("kb_clone", Uuid::nil());
        assert!(id.starts_with("kb_clone_") && id.ends_with(&Uuid::nil().to_string()), "{id}");
        assert!(valid_task_id(&id), "{id}");
        assert!(!valid_task_id("") && !valid_task_id("a/b") && !valid_task_id(&"a".repeat(129)));
    }
}
