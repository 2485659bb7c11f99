//! What the database says about itself: the schema version, and the
//! optional capabilities its extensions give.

use sqlx::PgPool as Db;

/// The newest applied migration; None before the first (or without the migrations table).
pub async fn schema_version(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(db).await?;
    if !migrated {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(db).await
}

/// Whether the migrations could create the vector table (pgvector) and the BM25 index (pg_search).
pub async fn capabilities(db: &Db) -> Result<(bool, bool), sqlx::Error> {
    sqlx::query_as("SELECT to_regclass('chunk_embeddings') IS NOT NULL, to_regclass('chunks_bm25_idx') IS NOT NULL")
        .fetch_one(db)
        .await
}

/// pgvector's version where the vector table exists (the migration could create it).
pub async fn pgvector(db: &Db) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT e.extversion FROM pg_extension e WHERE e.extname = 'vector' AND to_regclass('chunk_embeddings') IS NOT NULL",
    )
    .fetch_optional(db)
    .await
}

/// HNSW indexes cover at most 2000 dimensions; larger vectors are searched exactly.
pub const MAX_INDEXED_DIMENSIONS: usize = 2000;

/// The HNSW index (cosine) of vectors of `dimensions`, created when missing.
pub async fn ensure_vector_index(db: &Db, dimensions: usize) -> Result<(), sqlx::Error> {
    if dimensions == 0 || dimensions > MAX_INDEXED_DIMENSIONS {
        return Ok(());
    }
    let name = format!("chunk_embeddings_hnsw_{dimensions}");
    // Looked up first: CREATE INDEX locks the table even when the index exists.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&name).fetch_one(db).await?;
    if exists {
        return Ok(());
    }
    // A number, not a value from outside: the size is part of the index's name and expression.
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS chunk_embeddings_hnsw_{dimensions} ON chunk_embeddings \
         USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) WHERE dimensions = {dimensions}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db).await.map(|_| ())
}

/// The last backup of each kind the operator recorded, and the last verified one, as
/// (kind, Unix seconds): `archive`, `base`, `verified`. Empty before the first backup.
pub async fn last_backups(db: &Db) -> Result<Vec<(String, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, extract(epoch FROM max(finished_at))::float8 FROM backup_runs GROUP BY kind \
         UNION ALL SELECT 'verified', extract(epoch FROM max(verified_at))::float8 FROM backup_runs \
         WHERE verified_at IS NOT NULL",
    )
    .fetch_all(db)
    .await
}
