//! Ingest jobs: queued with their document, claimed with `FOR UPDATE SKIP LOCKED` and a
//! lease, and ended (completed, requeued, failed) only by the worker that holds the lease,
//! checked in the statement that ends it: a worker whose lease ran out and was taken over
//! changes nothing.

use uuid::Uuid;

use sqlx::PgPool as Db;

/// A claimed job.
#[derive(Debug, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub knowledge_id: Uuid,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// What a worker needs to parse the job's document.
#[derive(sqlx::FromRow)]
pub struct Source {
    pub tenant_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub source_type: String,
    pub source: String,
    pub file_type: String,
    pub object_key: Option<String>,
    pub chunk_size: i32,
    pub chunk_overlap: i32,
    pub split_markers: Vec<String>,
}

/// A parsed document's chunks, in order, as columns.
#[derive(Default)]
pub struct NewChunks {
    pub contents: Vec<String>,
    /// The segmented words the full-text index is built from.
    pub search_texts: Vec<String>,
    pub starts: Vec<i32>,
    pub ends: Vec<i32>,
}

pub async fn queue(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    knowledge: Uuid,
    max_attempts: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(knowledge)
        .bind(max_attempts)
        .execute(tx)
        .await?;
    Ok(())
}

/// Takes the next due job (or one whose lease ran out) for `owner` for `lease_secs`, and
/// marks its document as processing.
pub async fn claim(db: &Db, owner: &str, lease_secs: u64) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "WITH claimed AS ( \
             UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
                    lease_expires_at = now() + make_interval(secs => $2) \
             WHERE id = (SELECT id FROM ingest_jobs \
                         WHERE (state = 'queued' AND next_attempt_at <= now()) \
                            OR (state = 'running' AND lease_expires_at < now()) \
                         ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT 1) \
             RETURNING id, knowledge_id, attempts, max_attempts), \
         processing AS (UPDATE knowledge SET parse_status = 'processing' \
                        WHERE id IN (SELECT knowledge_id FROM claimed)) \
         SELECT * FROM claimed",
    )
    .bind(owner)
    .bind(lease_secs as f64)
    .fetch_optional(db)
    .await
}

/// The job's document and its knowledge base's chunking; None once the document is deleted.
pub async fn source(db: &Db, knowledge: Uuid) -> Result<Option<Source>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.tenant_id, k.knowledge_base_id, k.source_type, k.source, k.file_type, k.object_key, \
         b.chunk_size, b.chunk_overlap, b.split_markers \
         FROM knowledge k JOIN knowledge_bases b ON b.id = k.knowledge_base_id WHERE k.id = $1",
    )
    .bind(knowledge)
    .fetch_optional(db)
    .await
}

/// Ends the job as succeeded and replaces the document's chunks, in one transaction, if
/// `owner` still holds the lease; false (and nothing written) when it does not.
pub async fn complete(db: &Db, job: &Job, owner: &str, src: &Source, chunks: &NewChunks) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    // First, so that the row lock is taken and the lease checked before anything is written.
    let held = sqlx::query(
        "UPDATE ingest_jobs SET state = 'succeeded', finished_at = now(), last_error = NULL, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !held {
        return Ok(false);
    }
    // Rewriting all the chunks in one transaction means a retry never duplicates them.
    sqlx::query("DELETE FROM chunks WHERE knowledge_id = $1").bind(job.knowledge_id).execute(&mut *tx).await?;
    let positions: Vec<i32> = (0..chunks.contents.len() as i32).collect();
    sqlx::query(
        "INSERT INTO chunks (tenant_id, knowledge_base_id, knowledge_id, position, content, search_text, start_offset, end_offset) \
         SELECT $1, $2, $3, * FROM UNNEST($4::int[], $5::text[], $6::text[], $7::int[], $8::int[])",
    )
    .bind(src.tenant_id)
    .bind(src.knowledge_base_id)
    .bind(job.knowledge_id)
    .bind(&positions)
    .bind(&chunks.contents)
    .bind(&chunks.search_texts)
    .bind(&chunks.starts)
    .bind(&chunks.ends)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE knowledge SET parse_status = 'completed', error = NULL, chunk_count = $2, processed_at = now() WHERE id = $1",
    )
    .bind(job.knowledge_id)
    .bind(positions.len() as i32)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Queues the job again after `wait_secs`, if `owner` still holds the lease.
pub async fn requeue(db: &Db, job: &Job, owner: &str, reason: &str, wait_secs: f64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE ingest_jobs SET state = 'queued', next_attempt_at = now() + make_interval(secs => $3), \
         last_error = $2, lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND lease_owner = $4 AND state = 'running'",
    )
    .bind(job.id)
    .bind(reason)
    .bind(wait_secs)
    .bind(owner)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends the job and its document as failed with `reason`, if `owner` still holds the lease.
pub async fn fail(db: &Db, job: &Job, owner: &str, reason: &str) -> Result<bool, sqlx::Error> {
    let failed: Option<Uuid> = sqlx::query_scalar(
        "WITH failed AS ( \
             UPDATE ingest_jobs SET state = 'failed', last_error = $2, finished_at = now(), lease_owner = NULL, \
                    lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $3 AND state = 'running' RETURNING knowledge_id) \
         UPDATE knowledge SET parse_status = 'failed', error = $2 \
         WHERE id = (SELECT knowledge_id FROM failed) RETURNING id",
    )
    .bind(job.id)
    .bind(reason)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    Ok(failed.is_some())
}

/// Jobs queued or running (a previous run's included).
pub async fn unfinished(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state IN ('queued', 'running')").fetch_one(db).await
}

/// How many jobs are queued and running, both always present.
pub async fn queue_depth(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.state, count(j.id) FROM unnest(ARRAY['queued', 'running']) AS s(state) \
         LEFT JOIN ingest_jobs j ON j.state = s.state GROUP BY s.state",
    )
    .fetch_all(db)
    .await
}
