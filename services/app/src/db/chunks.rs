//! Chunks of parsed documents: listing, and keyword retrieval over the app-segmented
//! full-text index (Chinese works on plain PostgreSQL).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sqlx::PgPool as Db;

#[derive(Serialize, sqlx::FromRow)]
pub struct Chunk {
    pub id: Uuid,
    pub position: i32,
    pub content: String,
    pub start_offset: i32,
    pub end_offset: i32,
}

/// A search result (also what the cache keeps).
#[derive(Serialize, Deserialize, sqlx::FromRow)]
pub struct Hit {
    pub chunk_id: Uuid,
    pub knowledge_id: Uuid,
    pub knowledge_title: String,
    pub content: String,
    pub score: f32,
}

/// One page of a document's chunks in order, and how many there are.
pub async fn list(
    db: &Db,
    tenant: Uuid,
    knowledge: Uuid,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Chunk>, i64), sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT id, position, content, start_offset, end_offset FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2 \
         ORDER BY position LIMIT $3 OFFSET $4",
    )
    .bind(knowledge)
    .bind(tenant)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2")
        .bind(knowledge)
        .bind(tenant)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// The best `limit` chunks of the knowledge base for a `to_tsquery('simple', ...)` query.
pub async fn keyword_search(
    db: &Db,
    tenant: Uuid,
    kb: Uuid,
    tsquery: &str,
    limit: i64,
) -> Result<Vec<Hit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id AS chunk_id, c.knowledge_id, k.title AS knowledge_title, c.content, \
         ts_rank(c.search, q) AS score \
         FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id, to_tsquery('simple', $3) q \
         WHERE c.knowledge_base_id = $1 AND c.tenant_id = $2 AND c.search @@ q \
         ORDER BY score DESC, c.position LIMIT $4",
    )
    .bind(kb)
    .bind(tenant)
    .bind(tsquery)
    .bind(limit)
    .fetch_all(db)
    .await
}
