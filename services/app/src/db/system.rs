//! What the database says about itself: that it answers, the schema version, and the
//! optional capabilities its extensions give.

use sqlx::PgPool as Db;

pub async fn ping(db: &Db) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(db).await.map(|_| ())
}

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
