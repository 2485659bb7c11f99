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
    pub embedding_model: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, name, description, chunk_size, chunk_overlap, split_markers, retrieval_top_k, \
                       keyword_threshold, vector_threshold, embedding_model, created_at, updated_at";

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
    let sql = format!("SELECT {COLUMNS} FROM knowledge_bases WHERE tenant_id = $1 ORDER BY created_at");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_all(db).await
}

/// Inserts `kb`'s settings under a new id.
pub async fn create(db: &Db, tenant: Uuid, kb: &KnowledgeBase) -> Result<KnowledgeBase, sqlx::Error> {
    let sql = format!(
        "INSERT INTO knowledge_bases (id, tenant_id, name, description, chunk_size, chunk_overlap, split_markers, \
         retrieval_top_k, keyword_threshold, vector_threshold, embedding_model) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), Uuid::new_v4(), tenant, kb).fetch_one(db).await
}

/// Writes `kb`'s settings; None when it is gone (or another tenant's).
pub async fn update(db: &Db, tenant: Uuid, kb: &KnowledgeBase) -> Result<Option<KnowledgeBase>, sqlx::Error> {
    let sql = format!(
        "UPDATE knowledge_bases SET name = $3, description = $4, chunk_size = $5, chunk_overlap = $6, \
         split_markers = $7, retrieval_top_k = $8, keyword_threshold = $9, vector_threshold = $10, \
         embedding_model = $11 WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    );
    with_settings(sqlx::query_as(sqlx::AssertSqlSafe(sql)), kb.id, tenant, kb).fetch_optional(db).await
}

/// Deletes the knowledge base with its documents (ON DELETE CASCADE) and answers the
/// storage keys of their files, for the caller to remove; None when there was none.
pub async fn delete(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Vec<String>>, sqlx::Error> {
    // The keys are collected in the same statement as the delete (the CTEs share one snapshot).
    let (deleted, keys): (i64, Vec<String>) = sqlx::query_as(
        "WITH files AS (SELECT object_key FROM knowledge \
                        WHERE knowledge_base_id = $1 AND tenant_id = $2 AND object_key IS NOT NULL), \
              gone AS (DELETE FROM knowledge_bases WHERE id = $1 AND tenant_id = $2 RETURNING id) \
         SELECT (SELECT count(*) FROM gone), ARRAY(SELECT object_key FROM files)",
    )
    .bind(id)
    .bind(tenant)
    .fetch_one(db)
    .await?;
    Ok((deleted > 0).then_some(keys))
}
