//! Knowledge bases: a tenant's collections of documents with their chunking and retrieval
//! settings. Another tenant's id is a 404.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Deleted, Envelope, null_as_default};
use super::error::ApiError;
use super::extract::{Caller, Json, Path};
use super::views::{Chunking, KnowledgeBaseView as View, knowledge_base_view as view};
use crate::db;
use crate::db::knowledge_bases::KnowledgeBase;
use crate::db::knowledge_bases::Reindex;
use crate::state::{AppState, SharedState};

const NAME_TAKEN: &str = "a knowledge base with this name exists";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-bases", get(list).post(create))
        .route("/api/v1/knowledge-bases/{id}", get(read).put(update).delete(remove))
        .route("/api/v1/knowledge-bases/{id}/reindex", post(reindex))
        .route("/api/v1/knowledge-bases/{id}/pin", axum::routing::put(toggle_pin))
        .route("/api/v1/knowledge-bases/{id}/duplicate", post(duplicate))
}

/// Fields a create or update may set; absent fields keep their value (or the configured
/// default). Read as upstream's clients send them: the Go SDK creates with its whole
/// knowledge-base object (zeros and `""` for what is unset, chunking in `chunking_config`)
/// and updates with `{name, description, config: {chunking_config}}`; ours sends the flat
/// fields. Fields of upstream's we do not have (`type`, `vlm_config`, ...) are ignored.
#[derive(Deserialize, Default)]
struct Settings {
    name: Option<String>,
    description: Option<String>,
    chunk_size: Option<i32>,
    chunk_overlap: Option<i32>,
    split_markers: Option<Vec<String>>,
    retrieval_top_k: Option<i32>,
    keyword_threshold: Option<f32>,
    vector_threshold: Option<f32>,
    /// The tenant's chat model for this knowledge base; null: the built-in one; `""`: unchanged.
    #[serde(default, deserialize_with = "some_or_null_unless_blank")]
    summary_model_id: Option<Option<Uuid>>,
    /// The tenant's embedding model for this knowledge base; null: the built-in one; `""`: unchanged.
    #[serde(default, deserialize_with = "some_or_null_unless_blank")]
    embedding_model_id: Option<Option<Uuid>>,
    /// Upstream's create.
    #[serde(default, deserialize_with = "null_as_default")]
    chunking_config: Chunking,
    /// Upstream's update.
    #[serde(default, deserialize_with = "null_as_default")]
    config: Config,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default, deserialize_with = "null_as_default")]
    chunking_config: Chunking,
}

/// `super::body::some_or_null`, with `""` (a Go client's unset id) read as absent.
fn some_or_null_unless_blank<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Some(None)),
        Some(id) if id.trim().is_empty() => Ok(None),
        Some(id) => id
            .trim()
            .parse()
            .map(|id| Some(Some(id)))
            .map_err(|_| serde::de::Error::custom(format!("`{id}` is not a valid UUID"))),
    }
}

/// Checks the settings a row would end up with, naming the field at fault.
fn validate(kb: &KnowledgeBase) -> Result<(), ApiError> {
    if kb.name.trim().is_empty() {
        return Err(ApiError::bad_request("name", "a knowledge base needs a name"));
    }
    if !(16..=65536).contains(&kb.chunk_size) {
        return Err(ApiError::bad_request("chunk_size", "chunk_size must be between 16 and 65536"));
    }
    if kb.chunk_overlap < 0 || kb.chunk_overlap >= kb.chunk_size {
        return Err(ApiError::bad_request(
            "chunk_overlap",
            "chunk_overlap must be at least 0 and smaller than chunk_size",
        ));
    }
    if !(1..=200).contains(&kb.retrieval_top_k) {
        return Err(ApiError::bad_request("retrieval_top_k", "retrieval_top_k must be between 1 and 200"));
    }
    if !(0.0..=1.0).contains(&kb.vector_threshold) || kb.keyword_threshold < 0.0 {
        return Err(ApiError::bad_request(
            "vector_threshold",
            "vector_threshold is between 0 and 1; keyword_threshold at least 0",
        ));
    }
    Ok(())
}

fn apply(kb: &mut KnowledgeBase, s: Settings) {
    // Upstream's nested chunking first; the flat fields, when sent too, win.
    for chunking in [s.chunking_config, s.config.chunking_config] {
        if chunking.chunk_size > 0 {
            kb.chunk_size = chunking.chunk_size;
            kb.chunk_overlap = chunking.chunk_overlap;
        }
        if !chunking.separators.is_empty() {
            kb.split_markers = chunking.separators;
        }
    }
    // A blank name (what upstream's update sends when it keeps the name) changes nothing.
    if let Some(v) = s.name.filter(|v| !v.trim().is_empty()) {
        kb.name = v.trim().to_string();
    }
    if let Some(v) = s.description {
        kb.description = v;
    }
    if let Some(v) = s.chunk_size {
        kb.chunk_size = v;
    }
    if let Some(v) = s.chunk_overlap {
        kb.chunk_overlap = v;
    }
    if let Some(v) = s.split_markers {
        kb.split_markers = v;
    }
    if let Some(v) = s.retrieval_top_k {
        kb.retrieval_top_k = v;
    }
    if let Some(v) = s.keyword_threshold {
        kb.keyword_threshold = v;
    }
    if let Some(v) = s.vector_threshold {
        kb.vector_threshold = v;
    }
    if let Some(v) = s.summary_model_id {
        kb.summary_model_id = v;
    }
    if let Some(v) = s.embedding_model_id {
        kb.embedding_model_id = v;
    }
}

/// Chosen models must be the tenant's, of the right type.
async fn check_models(state: &AppState, caller: &Caller, kb: &KnowledgeBase) -> Result<(), ApiError> {
    for (field, id, kind) in
        [("summary_model_id", kb.summary_model_id, "chat"), ("embedding_model_id", kb.embedding_model_id, "embedding")]
    {
        if let Some(id) = id {
            match db::models::get(&state.db, caller.tenant_id, id).await? {
                Some(m) if m.kind == kind => {}
                Some(_) => return Err(ApiError::bad_request(field, &format!("this model is not a {kind} model"))),
                None => return Err(ApiError::bad_request(field, "no such model of this tenant")),
            }
        }
    }
    Ok(())
}

async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<KnowledgeBase, ApiError> {
    db::knowledge_bases::get(&state.db, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("knowledge base"))
}

async fn list(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Vec<View>>, ApiError> {
    let kbs = db::knowledge_bases::list(&state.db, caller.tenant_id).await?;
    Ok(Envelope::new(kbs.into_iter().map(view).collect()))
}

async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Settings>,
) -> Result<Envelope<View>, ApiError> {
    let defaults = &state.config;
    let mut kb = KnowledgeBase {
        id: Uuid::nil(),
        name: String::new(),
        description: String::new(),
        chunk_size: defaults.knowledge_base.chunk_size as i32,
        chunk_overlap: defaults.knowledge_base.chunk_overlap as i32,
        split_markers: defaults.knowledge_base.split_markers.clone(),
        retrieval_top_k: defaults.retrieval.top_k as i32,
        keyword_threshold: defaults.retrieval.keyword_threshold as f32,
        vector_threshold: defaults.retrieval.vector_threshold as f32,
        embedding_model: None,
        embedding_dimensions: None,
        summary_model_id: None,
        embedding_model_id: None,
        is_pinned: false,
        pinned_at: None,
        knowledge_count: 0,
        chunk_count: 0,
        processing_count: 0,
        tenant_number: 0,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    apply(&mut kb, body);
    validate(&kb)?;
    check_models(&state, &caller, &kb).await?;
    let created =
        db::knowledge_bases::create(&state.db, caller.tenant_id, &kb).await.map_err(ApiError::unique(NAME_TAKEN))?;
    Ok(Envelope::created(view(created)))
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View>, ApiError> {
    Ok(Envelope::new(view(fetch(&state, &caller, id).await?)))
}

async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Settings>,
) -> Result<Envelope<View>, ApiError> {
    let mut kb = fetch(&state, &caller, id).await?;
    apply(&mut kb, body);
    validate(&kb)?;
    check_models(&state, &caller, &kb).await?;
    let updated = db::knowledge_bases::update(&state.db, caller.tenant_id, &kb)
        .await
        .map_err(ApiError::unique(NAME_TAKEN))?
        .ok_or_else(|| ApiError::not_found("knowledge base"))?;
    crate::search::cache::knowledge_base_changed(&state, id).await;
    Ok(Envelope::new(view(updated)))
}

#[derive(Serialize)]
struct Duplicated {
    source_id: Uuid,
    target_id: Uuid,
    message: &'static str,
    knowledge_base: View,
}

/// Upstream's duplicate: a new knowledge base with this one's settings (chunking, models,
/// retrieval) and none of its documents, named `<name> Copy` (`<name> 副本` for a Chinese
/// `Accept-Language`), numbered when that name is taken.
async fn duplicate(
    State(state): State<SharedState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Duplicated>, ApiError> {
    let source = fetch(&state, &caller, id).await?;
    let chinese = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.trim_start().starts_with("zh"));
    let suffix = if chinese { "副本" } else { "Copy" };
    for n in 1..=100 {
        let name = if n == 1 { format!("{} {suffix}", source.name) } else { format!("{} {suffix} {n}", source.name) };
        let copy = KnowledgeBase { name, ..source.clone_settings() };
        match db::knowledge_bases::create(&state.db, caller.tenant_id, &copy).await {
            Ok(created) => {
                let target_id = created.id;
                let knowledge_base = view(created);
                let message = "Knowledge base duplicate created";
                return Ok(Envelope::created(Duplicated { source_id: id, target_id, message, knowledge_base }));
            }
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("a hundred copies of this knowledge base exist: rename some, then try again"))
}

/// Upstream's pin: a toggle.
async fn toggle_pin(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View>, ApiError> {
    let kb = db::knowledge_bases::toggle_pin(&state.db, caller.tenant_id, id).await?;
    Ok(Envelope::new(view(kb.ok_or_else(|| ApiError::not_found("knowledge base"))?)))
}

/// Deletes the knowledge base with its documents, then their stored files.
async fn remove(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Deleted>, ApiError> {
    let keys = db::knowledge_bases::delete(&state.db, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("knowledge base"))?;
    crate::search::cache::knowledge_base_changed(&state, id).await;
    for key in keys {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(error = %e, key, "the knowledge base is deleted but a file of it could not be removed");
        }
    }
    Ok(Envelope::new(Deleted { id, deleted: true }))
}

#[derive(Serialize)]
struct Reindexing {
    id: Uuid,
    /// Documents whose vectors are being made again.
    documents: i64,
    embedding_model: String,
}

/// Makes the knowledge base's vectors again with the configured embedding model (after a
/// change of model, or to recover from failed embeddings).
async fn reindex(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Reindexing>, ApiError> {
    let kb = fetch(&state, &caller, id).await?;
    let embedder = match state.vectors {
        Some(_) => crate::models::embedder(&state, caller.tenant_id, kb.embedding_model_id).await?,
        None => None,
    };
    let Some(embedder) = embedder else {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "vectors_unavailable",
            "nothing to reindex with: configure an embedding model (EMBEDDING_BASE_URL, or the knowledge base's \
             embedding_model_id) on a database with pgvector",
        ));
    };
    let documents =
        match db::knowledge_bases::reindex(&state.db, Some(caller.tenant_id), id, state.config.ingest.max_attempts)
            .await?
        {
            Reindex::Queued(n) => n,
            Reindex::Busy => {
                return Err(ApiError::conflict(
                    "documents of this knowledge base are being parsed or embedded: try again when they are done",
                ));
            }
            Reindex::NotFound => return Err(ApiError::not_found("knowledge base")),
        };
    crate::search::cache::knowledge_base_changed(&state, id).await;
    state.new_job.notify_waiters();
    Ok(Envelope::accepted(Reindexing { id, documents, embedding_model: embedder.model().to_string() }))
}
