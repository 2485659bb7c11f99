//! Knowledge bases: a tenant's collections of documents with their chunking and retrieval
//! settings. Every query is scoped to the caller's tenant: another tenant's id is a 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Caller;
use crate::server::{ApiError, AppState};

#[derive(Serialize, sqlx::FromRow)]
pub struct KnowledgeBase {
    id: Uuid,
    name: String,
    description: String,
    chunk_size: i32,
    chunk_overlap: i32,
    split_markers: Vec<String>,
    retrieval_top_k: i32,
    keyword_threshold: f32,
    vector_threshold: f32,
    embedding_model: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, name, description, chunk_size, chunk_overlap, split_markers, retrieval_top_k, \
                       keyword_threshold, vector_threshold, embedding_model, created_at, updated_at";

/// Fields a create or update may set; absent fields keep their value (or the configured default).
#[derive(Deserialize, Default)]
pub struct Settings {
    name: Option<String>,
    description: Option<String>,
    chunk_size: Option<i32>,
    chunk_overlap: Option<i32>,
    split_markers: Option<Vec<String>>,
    retrieval_top_k: Option<i32>,
    keyword_threshold: Option<f32>,
    vector_threshold: Option<f32>,
    embedding_model: Option<String>,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/knowledge-bases", get(list).post(create))
        .route("/api/v1/knowledge-bases/{id}", get(read).put(update).delete(remove))
}

fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such knowledge base".into() }
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
    if let Some(v) = s.name {
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
    if s.embedding_model.is_some() {
        kb.embedding_model = s.embedding_model.filter(|m| !m.is_empty());
    }
}

async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<KnowledgeBase, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM knowledge_bases WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(caller.tenant_id)
        .fetch_optional(&state.db)
        .await
        .map_err(crate::server::internal)?
        .ok_or_else(not_found)
}

type KbQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, KnowledgeBase, sqlx::postgres::PgArguments>;

/// Binds $1 id, $2 tenant, then the settings in the order both INSERT and UPDATE use.
fn with_settings<'q>(q: KbQuery<'q>, id: Uuid, tenant: Uuid, kb: &'q KnowledgeBase) -> KbQuery<'q> {
    q.bind(id)
        .bind(tenant)
        .bind(&kb.name)
        .bind(&kb.description)
        .bind(kb.chunk_size)
        .bind(kb.chunk_overlap)
        .bind(&kb.split_markers)
        .bind(kb.retrieval_top_k)
        .bind(kb.keyword_threshold)
        .bind(kb.vector_threshold)
        .bind(&kb.embedding_model)
}

async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM knowledge_bases WHERE tenant_id = $1 ORDER BY created_at");
    let rows: Vec<KnowledgeBase> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(caller.tenant_id)
        .fetch_all(&state.db)
        .await
        .map_err(crate::server::internal)?;
    Ok(Json(json!({ "success": true, "data": rows })))
}

async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<Settings>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    apply(&mut kb, body);
    validate(&kb)?;
    let sql = format!(
        "INSERT INTO knowledge_bases (id, tenant_id, name, description, chunk_size, chunk_overlap, split_markers, \
         retrieval_top_k, keyword_threshold, vector_threshold, embedding_model) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    let created: KnowledgeBase =
        with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), Uuid::new_v4(), caller.tenant_id, &kb)
            .fetch_one(&state.db)
            .await
            .map_err(|e| ApiError::from_db(e, "a knowledge base with this name exists"))?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": created }))))
}

async fn read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let kb = fetch(&state, &caller, id).await?;
    Ok(Json(json!({ "success": true, "data": kb })))
}

async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Settings>,
) -> Result<Json<Value>, ApiError> {
    let mut kb = fetch(&state, &caller, id).await?;
    apply(&mut kb, body);
    validate(&kb)?;
    let sql = format!(
        "UPDATE knowledge_bases SET name = $3, description = $4, chunk_size = $5, chunk_overlap = $6, \
         split_markers = $7, retrieval_top_k = $8, keyword_threshold = $9, vector_threshold = $10, \
         embedding_model = $11 WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    );
    let updated: KnowledgeBase = with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), id, caller.tenant_id, &kb)
        .fetch_optional(&state.db)
        .await
        .map_err(|e| ApiError::from_db(e, "a knowledge base with this name exists"))?
        .ok_or_else(not_found)?;
    crate::cache::knowledge_base_changed(&state, id).await;
    Ok(Json(json!({ "success": true, "data": updated })))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    // The documents go with the knowledge base (ON DELETE CASCADE); their stored files are
    // collected in the same statement (the CTEs share one snapshot) and removed after.
    let (deleted, keys): (i64, Vec<String>) = sqlx::query_as(
        "WITH files AS (SELECT object_key FROM knowledge \
                        WHERE knowledge_base_id = $1 AND tenant_id = $2 AND object_key IS NOT NULL), \
              gone AS (DELETE FROM knowledge_bases WHERE id = $1 AND tenant_id = $2 RETURNING id) \
         SELECT (SELECT count(*) FROM gone), ARRAY(SELECT object_key FROM files)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .fetch_one(&state.db)
    .await
    .map_err(crate::server::internal)?;
    if deleted == 0 {
        return Err(not_found());
    }
    crate::cache::knowledge_base_changed(&state, id).await;
    for key in keys {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(error = %e, key, "the knowledge base is deleted but a file of it could not be removed");
        }
    }
    Ok(Json(json!({ "success": true, "data": { "id": id, "deleted": true } })))
}
