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

/// A search result (also what the cache keeps), in upstream's shape.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Hit {
    pub id: Uuid,
    pub content: String,
    pub knowledge_id: Uuid,
    pub chunk_index: i32,
    pub knowledge_title: String,
    pub knowledge_filename: String,
    pub score: f64,
    /// keyword, vector or both.
    pub match_type: String,
    pub chunk_type: String,
}

/// Where a search looks: the tenant's knowledge bases, and within them only these
/// documents unless `knowledge_ids` is empty.
pub struct Scope<'a> {
    pub tenant: Uuid,
    pub knowledge_bases: &'a [Uuid],
    pub knowledge_ids: &'a [Uuid],
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

/// The best `limit` chunks for a `to_tsquery('simple', ...)` query (terms joined by OR,
/// ranked by how well they match).
pub async fn keyword_search(db: &Db, scope: &Scope<'_>, tsquery: &str, limit: i64) -> Result<Vec<Hit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.content, c.knowledge_id, c.position AS chunk_index, k.title AS knowledge_title, \
         k.source AS knowledge_filename, ts_rank(c.search, q)::float8 AS score, 'keyword' AS match_type, \
         'text' AS chunk_type \
         FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id, to_tsquery('simple', $1) q \
         WHERE c.tenant_id = $2 AND c.knowledge_base_id = ANY($3) \
           AND (cardinality($4::uuid[]) = 0 OR c.knowledge_id = ANY($4)) AND c.search @@ q \
         ORDER BY score DESC, c.position LIMIT $5",
    )
    .bind(tsquery)
    .bind(scope.tenant)
    .bind(scope.knowledge_bases)
    .bind(scope.knowledge_ids)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How the vector index is searched.
#[derive(Debug, Clone, Copy)]
pub struct VectorSearch {
    /// pgvector >= 0.8 keeps scanning the HNSW index until `limit` rows pass the filters.
    pub iterative_scan: bool,
}

/// The `limit` chunks nearest (cosine) to `query` among vectors of `model`, of at least
/// `min_similarity`. Score: the cosine similarity.
pub async fn vector_search(
    db: &Db,
    how: VectorSearch,
    scope: &Scope<'_>,
    model: &str,
    query: &[f32],
    limit: i64,
    min_similarity: f64,
) -> Result<Vec<Hit>, sqlx::Error> {
    let dimensions = query.len();
    let vector = format!("[{}]", query.iter().map(f32::to_string).collect::<Vec<_>>().join(","));
    // The size is a number the model answered, written into the SQL so that the query's
    // expression and predicate match the partial index of that size.
    let sql = format!(
        "SELECT * FROM ( \
             SELECT c.id, c.content, c.knowledge_id, c.position AS chunk_index, k.title AS knowledge_title, \
             k.source AS knowledge_filename, \
             (1 - (e.embedding::vector({dimensions}) <=> $1::vector({dimensions})))::float8 AS score, \
             'vector' AS match_type, 'text' AS chunk_type \
             FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id JOIN knowledge k ON k.id = c.knowledge_id \
             WHERE e.dimensions = {dimensions} AND e.model = $2 AND e.knowledge_base_id = ANY($3) AND c.tenant_id = $4 \
               AND (cardinality($5::uuid[]) = 0 OR c.knowledge_id = ANY($5)) \
             ORDER BY e.embedding::vector({dimensions}) <=> $1::vector({dimensions}) LIMIT $6) nearest \
         WHERE score >= $7"
    );
    // The index's settings for this search, in one statement and on the connection the search
    // then runs on: each vector search sets them, so a pooled connection's values from the
    // last one never matter, and no transaction is needed (two round trips, not five: under
    // load each one waits for the server to be scheduled).
    let mut conn = db.acquire().await?;
    let ef_search = (limit * 2).clamp(40, 1000).to_string();
    let settings = match how.iterative_scan {
        true => {
            "SELECT set_config('hnsw.ef_search', $1, false), set_config('hnsw.iterative_scan', 'relaxed_order', false)"
        }
        false => "SELECT set_config('hnsw.ef_search', $1, false)",
    };
    sqlx::query(settings).bind(&ef_search).execute(&mut *conn).await?;
    let hits = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&vector)
        .bind(model)
        .bind(scope.knowledge_bases)
        .bind(scope.tenant)
        .bind(scope.knowledge_ids)
        .bind(limit)
        .bind(min_similarity)
        .fetch_all(&mut *conn)
        .await?;
    Ok(hits)
}
