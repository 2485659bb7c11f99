//! Upstream's folders of a knowledge base: each document's `folder_path` (`""` at the root).
//! A folder exists while a document is filed in it or under it; filing changes nothing but
//! the path (no parse, no chunks, no vectors).

use uuid::Uuid;

use sqlx::PgPool as Db;

/// How many of the knowledge base's documents each folder holds directly, by folder path.
pub async fn counts(db: &Db, tenant: Uuid, kb: Uuid) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT folder_path, count(*) FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2 \
         GROUP BY folder_path ORDER BY folder_path",
    )
    .bind(kb)
    .bind(tenant)
    .fetch_all(db)
    .await
}

/// Files those of `ids` that are documents of the knowledge base under `folder`; how many.
pub async fn file_into(db: &Db, tenant: Uuid, kb: Uuid, ids: &[Uuid], folder: &str) -> Result<u64, sqlx::Error> {
    let filed = sqlx::query(
        "UPDATE knowledge SET folder_path = $4 WHERE knowledge_base_id = $1 AND tenant_id = $2 AND id = ANY($3)",
    )
    .bind(kb)
    .bind(tenant)
    .bind(ids)
    .bind(folder)
    .execute(db)
    .await?;
    Ok(filed.rows_affected())
}

/// The folder paths in use at `from` or under it.
pub async fn paths_under(db: &Db, tenant: Uuid, kb: Uuid, from: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT folder_path FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2 \
         AND (folder_path = $3 OR starts_with(folder_path, $3 || '/'))",
    )
    .bind(kb)
    .bind(tenant)
    .bind(from)
    .fetch_all(db)
    .await
}

/// Moves the folder `from` with its subfolders to `to` (merged with what is there); how
/// many documents moved.
pub async fn rename(db: &Db, tenant: Uuid, kb: Uuid, from: &str, to: &str) -> Result<u64, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE knowledge SET folder_path = $4 || substr(folder_path, length($3) + 1) \
         WHERE knowledge_base_id = $1 AND tenant_id = $2 \
         AND (folder_path = $3 OR starts_with(folder_path, $3 || '/'))",
    )
    .bind(kb)
    .bind(tenant)
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(moved.rows_affected())
}
