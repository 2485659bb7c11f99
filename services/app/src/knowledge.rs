//! Documents in a knowledge base: upload (file or text), status, chunks, delete, and
//! keyword search. An upload is stored before anything is recorded, and recorded with its
//! ingest job in one transaction, so nothing is lost between the two.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::Caller;
use crate::chunker::{search_tokens, tsquery};
use crate::server::{ApiError, AppState, internal};

pub fn routes(max_bytes: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/knowledge-bases/{id}/knowledge/file",
            // Room for the multipart framing on top of the file itself.
            post(upload_file).layer(DefaultBodyLimit::max(max_bytes + (1 << 20))),
        )
        .route("/api/v1/knowledge-bases/{id}/knowledge", get(list))
        .route("/api/v1/knowledge-bases/{id}/knowledge/manual", post(upload_manual))
        .route("/api/v1/knowledge-bases/{id}/knowledge/url", post(upload_url))
        .route("/api/v1/knowledge/{id}/reparse", post(reparse))
        .route("/api/v1/knowledge-bases/{id}/hybrid-search", get(search))
        .route("/api/v1/knowledge/{id}", get(read).delete(remove))
        .route("/api/v1/chunks/{knowledge_id}", get(chunks))
}

#[derive(Serialize, sqlx::FromRow)]
struct Knowledge {
    id: Uuid,
    knowledge_base_id: Uuid,
    source_type: String,
    source: String,
    title: String,
    file_type: String,
    size_bytes: i64,
    checksum: Option<String>,
    parse_status: String,
    error: Option<String>,
    chunk_count: i32,
    created_at: chrono::DateTime<chrono::Utc>,
    processed_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str = "id, knowledge_base_id, source_type, source, title, file_type, size_bytes, checksum, \
                       parse_status, error, chunk_count, created_at, processed_at";

fn not_found(what: &str) -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: format!("no such {what}") }
}

fn too_large(limit_mb: u64) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "file_too_large",
        message: format!("the file is larger than the {limit_mb} MB limit (MAX_FILE_SIZE_MB)"),
    }
}

async fn own_knowledge_base(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM knowledge_bases WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(caller.tenant_id)
        .fetch_optional(&state.db)
        .await
        .map_err(internal)?;
    found.map(|_| ()).ok_or_else(|| not_found("knowledge base"))
}

/// A storage key that keeps the file's name readable but cannot escape its folder.
fn object_key(tenant: Uuid, kb: Uuid, knowledge: Uuid, file_name: &str) -> String {
    let safe: String = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("file")
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let safe = if safe.trim_matches('.').is_empty() { "file".to_string() } else { safe };
    format!("{tenant}/{kb}/{knowledge}/{safe}")
}

/// Stores the bytes, then records the document and its job together; if recording fails
/// the stored object is removed again. `content` is None for URL documents, which
/// docreader fetches itself.
async fn ingest(
    state: &AppState,
    caller: &Caller,
    kb: Uuid,
    source_type: &str,
    file_name: &str,
    title: &str,
    content: Option<Bytes>,
) -> Result<Knowledge, ApiError> {
    let id = Uuid::new_v4();
    let key = content.as_ref().map(|_| object_key(caller.tenant_id, kb, id, file_name));
    let checksum: Option<String> =
        content.as_ref().map(|b| Sha256::digest(b).iter().map(|b| format!("{b:02x}")).collect());
    let file_type = match source_type {
        "url" => String::new(),
        _ => file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default(),
    };
    let size = content.as_ref().map_or(0, |b| b.len() as i64);
    if let (Some(key), Some(bytes)) = (&key, content) {
        state.storage.write(key, bytes).await.map_err(|e| {
            tracing::error!(error = %e, key, "storage write failed");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "storage_unavailable",
                message: "the file could not be stored".into(),
            }
        })?;
    }
    let recorded = async {
        let mut tx = state.db.begin().await?;
        let sql = format!(
            "INSERT INTO knowledge (id, tenant_id, knowledge_base_id, source_type, source, title, file_type, object_key, size_bytes, checksum) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        );
        let k: Knowledge = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(caller.tenant_id)
            .bind(kb)
            .bind(source_type)
            .bind(file_name)
            .bind(title)
            .bind(&file_type)
            .bind(&key)
            .bind(size)
            .bind(&checksum)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts) VALUES ($1, $2, $3)")
            .bind(caller.tenant_id)
            .bind(id)
            .bind(state.config.ingest.max_attempts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(k)
    }
    .await;
    match recorded {
        Ok(k) => {
            state.new_job.notify_one();
            Ok(k)
        }
        Err(e) => {
            if let Some(key) = &key {
                let _ = state.storage.delete(key).await;
            }
            Err(internal(e))
        }
    }
}

async fn upload_file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    let limit_mb = state.config.server.max_file_size_mb;
    let limit = (limit_mb << 20) as usize;
    // Refuse before reading (and long before storing) when the size is declared.
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit + (1 << 20)) {
        return Err(too_large(limit_mb));
    }
    let bad = |m: &str| ApiError::bad_request("file", m);
    while let Some(mut field) = form.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE { too_large(limit_mb) } else { bad(&e.body_text()) }
    })? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_string();
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE { too_large(limit_mb) } else { bad(&e.body_text()) }
        })? {
            if data.len() + chunk.len() > limit {
                return Err(too_large(limit_mb));
            }
            data.extend_from_slice(&chunk);
        }
        if data.is_empty() {
            return Err(bad("the file is empty"));
        }
        let k = ingest(&state, &caller, kb, "file", &name, &name, Some(Bytes::from(data))).await?;
        return Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": k }))));
    }
    Err(bad("send the file as the multipart field `file`"))
}

#[derive(Deserialize)]
struct Manual {
    title: String,
    content: String,
}

async fn upload_manual(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Json(body): Json<Manual>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    if body.content.trim().is_empty() {
        return Err(ApiError::bad_request("content", "the text is empty"));
    }
    let title = if body.title.trim().is_empty() { "manual" } else { body.title.trim() };
    let k =
        ingest(&state, &caller, kb, "manual", &format!("{title}.md"), title, Some(Bytes::from(body.content))).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": k }))))
}

#[derive(Deserialize)]
struct FromUrl {
    url: String,
    #[serde(default)]
    title: String,
}

/// A web page or file by URL: docreader fetches it (with its private-address guard).
async fn upload_url(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Json(body): Json<FromUrl>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    let url = body.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::bad_request("url", "give an http:// or https:// URL"));
    }
    let title = if body.title.trim().is_empty() { url } else { body.title.trim() };
    let k = ingest(&state, &caller, kb, "url", url, title, None).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": k }))))
}

/// Parses a document again (after a failure, or with new chunk settings).
async fn reparse(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    fetch(&state, &caller, id).await?;
    let mut tx = state.db.begin().await.map_err(internal)?;
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ingest_jobs WHERE knowledge_id = $1 AND state IN ('queued', 'running') FOR UPDATE)",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(internal)?;
    if busy {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: "the document is already being parsed".into(),
        });
    }
    sqlx::query("INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts) VALUES ($1, $2, $3)")
        .bind(caller.tenant_id)
        .bind(id)
        .bind(state.config.ingest.max_attempts)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    sqlx::query("UPDATE knowledge SET parse_status = 'pending', error = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    state.new_job.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "success": true, "data": { "id": id, "parse_status": "pending" } }))))
}

async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<(Knowledge, Option<String>), ApiError> {
    let sql = format!("SELECT {COLUMNS}, object_key FROM knowledge WHERE id = $1 AND tenant_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(caller.tenant_id)
        .fetch_optional(&state.db)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found("document"))?;
    use sqlx::{FromRow, Row};
    let k = Knowledge::from_row(&row).map_err(internal)?;
    Ok((k, row.try_get("object_key").map_err(internal)?))
}

async fn read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let (k, _) = fetch(&state, &caller, id).await?;
    Ok(Json(json!({ "success": true, "data": k })))
}

/// Deletes the document, its chunks and job (cascade), then its stored file.
async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let (doc, key) = fetch(&state, &caller, id).await?;
    sqlx::query("DELETE FROM knowledge WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(caller.tenant_id)
        .execute(&state.db)
        .await
        .map_err(internal)?;
    crate::cache::knowledge_base_changed(&state, doc.knowledge_base_id).await;
    if let Some(key) = key
        && let Err(e) = state.storage.delete(&key).await
    {
        tracing::warn!(error = %e, key, "the document is deleted but its file could not be removed");
    }
    Ok(Json(json!({ "success": true, "data": { "id": id, "deleted": true } })))
}

#[derive(Deserialize)]
struct Page {
    page: Option<i64>,
    page_size: Option<i64>,
}

impl Page {
    /// (page number from 1, page size 1..=200; 20 by default).
    fn resolve(&self) -> (i64, i64) {
        (self.page.unwrap_or(1).max(1), self.page_size.unwrap_or(20).clamp(1, 200))
    }

    /// The answer of every paged listing: one page of rows and where it stands.
    fn answer(&self, rows: impl Serialize, total: i64) -> Json<Value> {
        let (number, size) = self.resolve();
        Json(json!({ "success": true, "data": rows, "page": number, "page_size": size, "total": total }))
    }
}

/// A knowledge base's documents, newest first, paged like the chunks.
async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    let (number, size) = page.resolve();
    let sql = format!(
        "SELECT {COLUMNS} FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2 \
         ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
    );
    let rows: Vec<Knowledge> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(kb)
        .bind(caller.tenant_id)
        .bind(size)
        .bind((number - 1) * size)
        .fetch_all(&state.db)
        .await
        .map_err(internal)?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2")
            .bind(kb)
            .bind(caller.tenant_id)
            .fetch_one(&state.db)
            .await
            .map_err(internal)?;
    Ok(page.answer(rows, total))
}

#[derive(Serialize, sqlx::FromRow)]
struct ChunkRow {
    id: Uuid,
    position: i32,
    content: String,
    start_offset: i32,
    end_offset: i32,
}

async fn chunks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(knowledge_id): Path<Uuid>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    fetch(&state, &caller, knowledge_id).await?;
    let (number, size) = page.resolve();
    let rows: Vec<ChunkRow> = sqlx::query_as(
        "SELECT id, position, content, start_offset, end_offset FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2 \
         ORDER BY position LIMIT $3 OFFSET $4",
    )
    .bind(knowledge_id)
    .bind(caller.tenant_id)
    .bind(size)
    .bind((number - 1) * size)
    .fetch_all(&state.db)
    .await
    .map_err(internal)?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2")
        .bind(knowledge_id)
        .bind(caller.tenant_id)
        .fetch_one(&state.db)
        .await
        .map_err(internal)?;
    Ok(page.answer(rows, total))
}

#[derive(Deserialize)]
struct SearchQuery {
    query: String,
    top_k: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct Hit {
    chunk_id: Uuid,
    knowledge_id: Uuid,
    knowledge_title: String,
    content: String,
    score: f32,
}

/// Keyword retrieval over the app-segmented full-text index (Chinese works on plain
/// PostgreSQL). `terms` are the words searched for, so a client can highlight them. Vector retrieval and fusion join here when an embedding model is configured.
async fn search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(kb): Path<Uuid>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    own_knowledge_base(&state, &caller, kb).await?;
    let tokens = search_tokens(&state.jieba, &q.query);
    let query = tsquery(&tokens);
    if query.is_empty() {
        return Err(ApiError::bad_request("query", "the query has no searchable words"));
    }
    let top_k = q.top_k.unwrap_or(state.config.retrieval.top_k as i64).clamp(1, 200);
    let cache_key = crate::cache::search_key(&state, caller.tenant_id, kb, top_k, &query).await;
    if let Some(key) = &cache_key
        && let Some(cached) = crate::cache::get(&state, key).await
        && let Ok(hits) = serde_json::from_str::<Value>(&cached)
    {
        crate::metrics::search_cache(true);
        return Ok(Json(
            json!({ "success": true, "data": hits, "terms": tokens, "retrieval": "keyword", "cached": true }),
        ));
    }
    crate::metrics::search_cache(false);
    let hits: Vec<Hit> = sqlx::query_as(
        "SELECT c.id AS chunk_id, c.knowledge_id, k.title AS knowledge_title, c.content, \
         ts_rank(c.search, q) AS score \
         FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id, to_tsquery('simple', $3) q \
         WHERE c.knowledge_base_id = $1 AND c.tenant_id = $2 AND c.search @@ q \
         ORDER BY score DESC, c.position LIMIT $4",
    )
    .bind(kb)
    .bind(caller.tenant_id)
    .bind(&query)
    .bind(top_k)
    .fetch_all(&state.db)
    .await
    .map_err(internal)?;
    let hits = serde_json::to_value(&hits).unwrap_or_default();
    if let Some(key) = &cache_key {
        crate::cache::put(&state, key, &hits.to_string()).await;
    }
    Ok(Json(json!({ "success": true, "data": hits, "terms": tokens, "retrieval": "keyword", "cached": false })))
}
