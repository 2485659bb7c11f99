//! Knowledge bases, always scoped to a tenant: another tenant's id finds nothing.

use serde::Serialize;
use uuid::Uuid;

use sqlx::PgPool as Db;

#[derive(Serialize, sqlx::FromRow)]
pub struct KnowledgeBase {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub chunk_size: i32,
    pub chunk_overlap: i32,
    pub split_markers: Vec<String>,
    pub retrieval_top_k: i32,
    pub keyword_threshold: f32,
    pub vector_threshold: f32,
    /// The embedding model and vector size its vectors were made with (None until the first).
    pub embedding_model: Option<String>,
    pub embedding_dimensions: Option<i32>,
    /// The tenant's chat model its questions are answered with (None, `""`: the built-in one).
    #[serde(serialize_with = "id_or_blank")]
    pub summary_model_id: Option<Uuid>,
    /// The tenant's embedding model its vectors are made with (None, `""`: the built-in one).
    #[serde(serialize_with = "id_or_blank")]
    pub embedding_model_id: Option<Uuid>,
    pub is_pinned: bool,
    pub pinned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its documents, their chunks, and the documents still being parsed (upstream's counts).
    pub knowledge_count: i64,
    pub chunk_count: i64,
    pub processing_count: i64,
    /// The tenant's integer id, as upstream's clients decode it (0 before it is stored).
    #[serde(rename = "tenant_id")]
    pub tenant_number: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, name, description, chunk_size, chunk_overlap, split_markers, retrieval_top_k, \
                       keyword_threshold, vector_threshold, embedding_model, embedding_dimensions, \
                       summary_model_id, embedding_model_id, is_pinned, pinned_at, \
                       (SELECT count(*) FROM knowledge k WHERE k.knowledge_base_id = knowledge_bases.id) \
                         AS knowledge_count, \
                       (SELECT coalesce(sum(k.chunk_count), 0)::int8 FROM knowledge k \
                         WHERE k.knowledge_base_id = knowledge_bases.id) AS chunk_count, \
                       (SELECT count(*) FROM knowledge k WHERE k.knowledge_base_id = knowledge_bases.id \
                         AND k.parse_status IN ('pending', 'processing')) AS processing_count, \
                       (SELECT number FROM tenants t WHERE t.id = knowledge_bases.tenant_id) AS tenant_number, \
                       created_at, updated_at";

impl KnowledgeBase {
    /// Its settings, as a new knowledge base would take them: no vectors or documents yet.
    pub fn clone_settings(&self) -> KnowledgeBase {
        KnowledgeBase {
            id: Uuid::nil(),
            name: self.name.clone(),
            description: self.description.clone(),
            chunk_size: self.chunk_size,
            chunk_overlap: self.chunk_overlap,
            split_markers: self.split_markers.clone(),
            retrieval_top_k: self.retrieval_top_k,
            keyword_threshold: self.keyword_threshold,
            vector_threshold: self.vector_threshold,
            embedding_model: None,
            embedding_dimensions: None,
            summary_model_id: self.summary_model_id,
            embedding_model_id: self.embedding_model_id,
            is_pinned: false,
            pinned_at: None,
            knowledge_count: 0,
            chunk_count: 0,
            processing_count: 0,
            tenant_number: self.tenant_number,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
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
        .bind(kb.summary_model_id)
        .bind(kb.embedding_model_id)
}

pub async fn exists(db: &Db, tenant: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM knowledge_bases WHERE id = $1 AND tenant_id = $2)")
        .bind(id)
        .bind(tenant)
        .fetch_one(db)
        .await
}

pub async fn get(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<KnowledgeBase>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM knowledge_bases WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

pub async fn list(db: &Db, tenant: Uuid) -> Result<Vec<KnowledgeBase>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM knowledge_bases WHERE tenant_id = $1 \
         ORDER BY is_pinned DESC, pinned_at DESC NULLS LAST, created_at"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_all(db).await
}

/// Pins the knowledge base if it is not, unpins it if it is (upstream's toggle); None when
/// there is no such knowledge base.
pub async fn toggle_pin(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<KnowledgeBase>, sqlx::Error> {
    let sql = format!(
        "UPDATE knowledge_bases SET is_pinned = NOT is_pinned, pinned_at = CASE WHEN is_pinned THEN NULL ELSE now() END \
         WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

/// Inserts `kb`'s settings under a new id.
pub async fn create(db: &Db, tenant: Uuid, kb: &KnowledgeBase) -> Result<KnowledgeBase, sqlx::Error> {
    let sql = format!(
        "INSERT INTO knowledge_bases (id, tenant_id, name, description, chunk_size, chunk_overlap, split_markers, \
         retrieval_top_k, keyword_threshold, vector_threshold, summary_model_id, embedding_model_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    );
    with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), Uuid::new_v4(), tenant, kb).fetch_one(db).await
}

/// Writes `kb`'s settings; None when it is gone (or another tenant's).
pub async fn update(db: &Db, tenant: Uuid, kb: &KnowledgeBase) -> Result<Option<KnowledgeBase>, sqlx::Error> {
    let sql = format!(
        "UPDATE knowledge_bases SET name = $3, description = $4, chunk_size = $5, chunk_overlap = $6, \
         split_markers = $7, retrieval_top_k = $8, keyword_threshold = $9, vector_threshold = $10, \
         summary_model_id = $11, embedding_model_id = $12 \
         WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    );
    with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), kb.id, tenant, kb).fetch_optional(db).await
}

/// Deletes the knowledge base with its documents (ON DELETE CASCADE) and answers the
/// storage keys of their files, for the caller to remove; None when there was none.
pub async fn delete(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Vec<String>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    super::documents::lock_jobs_of(&mut tx, tenant, id).await?;
    // The keys are collected in the same statement as the delete (the CTEs share one snapshot).
    let (deleted, keys): (i64, Vec<String>) = sqlx::query_as(
        "WITH files AS (SELECT object_key FROM knowledge \
                        WHERE knowledge_base_id = $1 AND tenant_id = $2 AND object_key IS NOT NULL), \
              gone AS (DELETE FROM knowledge_bases WHERE id = $1 AND tenant_id = $2 RETURNING id) \
         SELECT (SELECT count(*) FROM gone), ARRAY(SELECT object_key FROM files)",
    )
    .bind(id)
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((deleted > 0).then_some(keys))
}

/// What retrieval needs to know of a knowledge base.
#[derive(sqlx::FromRow)]
pub struct Indexed {
    pub id: Uuid,
    pub name: String,
    pub embedding_model: Option<String>,
    pub embedding_dimensions: Option<i32>,
    /// The tenant's embedding model it uses (None: the built-in one).
    pub embedding_model_id: Option<Uuid>,
}

/// The tenant's knowledge bases among `ids`, with the model their vectors were made with.
pub async fn indexed(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<Indexed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, embedding_model, embedding_dimensions, embedding_model_id FROM knowledge_bases \
         WHERE tenant_id = $1 AND id = ANY($2)",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Records the model of the knowledge base's vectors unless it has one, and answers the
/// model and size it has now.
pub async fn record_embedding_model(
    db: &Db,
    id: Uuid,
    model: &str,
    dimensions: i32,
) -> Result<Option<(String, i32)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE knowledge_bases SET embedding_model = COALESCE(embedding_model, $2), \
         embedding_dimensions = COALESCE(embedding_dimensions, $3) WHERE id = $1 \
         RETURNING embedding_model, embedding_dimensions",
    )
    .bind(id)
    .bind(model)
    .bind(dimensions)
    .fetch_optional(db)
    .await
}

/// What a reindex did.
pub enum Reindex {
    /// Documents whose vectors are queued again.
    Queued(i64),
    /// Documents of the knowledge base are being parsed or embedded now.
    Busy,
    NotFound,
}

/// Every knowledge base of every tenant: id and name (what an operator's reindex walks).
pub async fn all(db: &Db) -> Result<Vec<(Uuid, String, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, embedding_model_id FROM knowledge_bases ORDER BY created_at").fetch_all(db).await
}

/// Forgets the knowledge base's vectors and model and queues an embed job for each parsed
/// document, in one transaction; refused while any of its documents has a job in flight.
/// `tenant`: the caller's, or None for the operator, who may reindex any.
pub async fn reindex(db: &Db, tenant: Option<Uuid>, id: Uuid, max_attempts: i32) -> Result<Reindex, sqlx::Error> {
    let mut tx = db.begin().await?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM knowledge_bases WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(Reindex::NotFound);
    }
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ingest_jobs j JOIN knowledge k ON k.id = j.knowledge_id \
         WHERE k.knowledge_base_id = $1 AND j.state IN ('queued', 'running'))",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if busy {
        return Ok(Reindex::Busy);
    }
    if sqlx::query_scalar::<_, bool>("SELECT to_regclass('chunk_embeddings') IS NOT NULL").fetch_one(&mut *tx).await? {
        sqlx::query("DELETE FROM chunk_embeddings WHERE knowledge_base_id = $1").bind(id).execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE knowledge_bases SET embedding_model = NULL, embedding_dimensions = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let queued = sqlx::query(
        "WITH docs AS (UPDATE knowledge SET vector_status = 'pending', vector_error = NULL \
                       WHERE knowledge_base_id = $1 AND parse_status = 'completed' AND chunk_count > 0 \
                       RETURNING id, tenant_id) \
         INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts, kind) \
         SELECT tenant_id, id, $2, 'embed' FROM docs",
    )
    .bind(id)
    .bind(max_attempts)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Reindex::Queued(queued as i64))
}

/// The chat model of the first of `ids` (in their order) that has one.
pub async fn chat_model(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT kb.summary_model_id FROM unnest($2::uuid[]) WITH ORDINALITY AS wanted (id, at) \
         JOIN knowledge_bases kb ON kb.id = wanted.id AND kb.tenant_id = $1 \
         WHERE kb.summary_model_id IS NOT NULL ORDER BY wanted.at LIMIT 1",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_optional(db)
    .await
}

/// An optional id as upstream's clients read it: a string, empty when unset (their `string`
/// fields take no `null`).
fn id_or_blank<S: serde::Serializer>(id: &Option<uuid::Uuid>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_str(""),
    }
}
