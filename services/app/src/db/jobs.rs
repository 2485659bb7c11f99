//! Ingest jobs: queued with their document, claimed with `FOR UPDATE SKIP LOCKED` and a
//! lease, and ended (completed, requeued, failed) only by the worker that holds the lease,
//! checked in the statement that ends it: a worker whose lease ran out and was taken over
//! changes nothing. A job of kind `parse` turns a document into chunks; one of kind
//! `embed`, queued by the parse when an embedding model is configured, gives its chunks
//! vectors. A failed embed leaves the chunks (and keyword search) in place.

use uuid::Uuid;

use sqlx::PgPool as Db;

/// A claimed job.
#[derive(Debug, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    /// `parse` or `embed`.
    pub kind: String,
    pub knowledge_id: Uuid,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The trace of whatever queued it (`weknora_telemetry::adopt`).
    pub traceparent: Option<String>,
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
    /// The knowledge base's own embedding model (None: the built-in one).
    pub embedding_model_id: Option<Uuid>,
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

/// What a job does.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Parse,
    Embed,
}

impl Kind {
    /// The job's `kind` column.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Parse => "parse",
            Kind::Embed => "embed",
        }
    }
}

/// Queues a job of `kind` for the document, in the trace of the current span (the upload's
/// request, or the parse job that queues the embedding).
pub async fn queue(
    tx: &mut sqlx::PgConnection,
    kind: Kind,
    tenant: Uuid,
    knowledge: Uuid,
    max_attempts: i32,
) -> Result<(), sqlx::Error> {
    let kind = kind.as_str();
    let traceparent = weknora_telemetry::traceparent(&tracing::Span::current());
    sqlx::query(
        "INSERT INTO ingest_jobs (tenant_id, knowledge_id, max_attempts, kind, traceparent) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant)
    .bind(knowledge)
    .bind(max_attempts)
    .bind(kind)
    .bind(traceparent)
        .execute(tx)
        .await?;
    Ok(())
}

/// Locks the live (queued or running) jobs of these documents, in the order an ingest
/// worker locks rows (its job, then the document): whoever changes a document's parse
/// takes these first, and a worker finishing one waits, or is waited for.
pub async fn lock_live(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
    knowledge: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT knowledge_id FROM ingest_jobs WHERE knowledge_id = ANY($1) AND tenant_id = $2 \
         AND state IN ('queued', 'running') ORDER BY id FOR UPDATE",
    )
    .bind(knowledge)
    .bind(tenant)
    .fetch_all(tx)
    .await
}

/// Ends the document's live jobs (of `kind`, or of any kind) as failed with `reason`, their
/// leases dropped: a worker running one finds its lease gone and writes nothing.
pub async fn end_live(
    tx: &mut sqlx::PgConnection,
    knowledge: Uuid,
    kind: Option<Kind>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let kind = kind.map(Kind::as_str);
    let ended = sqlx::query(
        "UPDATE ingest_jobs SET state = 'failed', last_error = $2, finished_at = now(), lease_owner = NULL, \
         lease_expires_at = NULL \
         WHERE knowledge_id = $1 AND state IN ('queued', 'running') AND ($3::text IS NULL OR kind = $3)",
    )
    .bind(knowledge)
    .bind(reason)
    .bind(kind)
    .execute(tx)
    .await?;
    Ok(ended.rows_affected())
}

/// Takes the next due job (or one whose lease ran out) for `owner` for `lease_secs`, and
/// marks its document's parse or vectors as processing.
pub async fn claim(db: &Db, owner: &str, lease_secs: u64) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "WITH claimed AS ( \
             UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
                    lease_expires_at = now() + make_interval(secs => $2) \
             WHERE id = (SELECT id FROM ingest_jobs \
                         WHERE (state = 'queued' AND next_attempt_at <= now()) \
                            OR (state = 'running' AND lease_expires_at < now()) \
                         ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT 1) \
             RETURNING id, kind, knowledge_id, attempts, max_attempts, traceparent), \
         processing AS (UPDATE knowledge k \
                        SET parse_status = CASE c.kind WHEN 'parse' THEN 'processing' ELSE k.parse_status END, \
                            vector_status = CASE c.kind WHEN 'embed' THEN 'processing' ELSE k.vector_status END \
                        FROM claimed c WHERE k.id = c.knowledge_id) \
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
         b.chunk_size, b.chunk_overlap, b.split_markers, b.embedding_model_id \
         FROM knowledge k JOIN knowledge_bases b ON b.id = k.knowledge_base_id WHERE k.id = $1",
    )
    .bind(knowledge)
    .fetch_optional(db)
    .await
}

/// Ends the parse as succeeded and replaces the document's chunks, in one transaction, if
/// `owner` still holds the lease; false (and nothing written) when it does not. With
/// `embed`, the chunks' vectors are queued as a job of their own in the same transaction.
pub async fn complete_parse(
    db: &Db,
    job: &Job,
    owner: &str,
    src: &Source,
    chunks: &NewChunks,
    embed: bool,
) -> Result<bool, sqlx::Error> {
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
    let embed = embed && !positions.is_empty();
    sqlx::query(
        "UPDATE knowledge SET parse_status = 'completed', error = NULL, chunk_count = $2, processed_at = now(), \
         vector_status = $3, vector_error = NULL WHERE id = $1",
    )
    .bind(job.knowledge_id)
    .bind(positions.len() as i32)
    .bind(if embed { "pending" } else { "none" })
    .execute(&mut *tx)
    .await?;
    if embed {
        queue(&mut tx, Kind::Embed, src.tenant_id, job.knowledge_id, job.max_attempts).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Up to `limit` of the document's chunks that have no vector yet, in order.
pub async fn chunks_without_vectors(db: &Db, knowledge: Uuid, limit: i64) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.content FROM chunks c LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id \
         WHERE c.knowledge_id = $1 AND e.chunk_id IS NULL ORDER BY c.position LIMIT $2",
    )
    .bind(knowledge)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The vectors of a batch of chunks, stored if `owner` still holds the job's lease, which
/// is renewed for `lease_secs` in the same statement; false when the lease is lost.
#[allow(clippy::too_many_arguments)]
pub async fn store_vectors(
    db: &Db,
    job: &Job,
    owner: &str,
    lease_secs: u64,
    model: &str,
    chunk_ids: &[Uuid],
    vectors: &[Vec<f32>],
) -> Result<bool, sqlx::Error> {
    let dimensions = vectors.first().map_or(0, Vec::len) as i32;
    // pgvector's text form, `[0.1,0.2]`: no client-side type needed.
    let texts: Vec<String> =
        vectors.iter().map(|v| format!("[{}]", v.iter().map(f32::to_string).collect::<Vec<_>>().join(","))).collect();
    let held: Option<bool> = sqlx::query_scalar(
        "WITH held AS ( \
             UPDATE ingest_jobs SET lease_expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING id), \
         stored AS ( \
             INSERT INTO chunk_embeddings (chunk_id, knowledge_base_id, model, dimensions, embedding) \
             SELECT c.id, c.knowledge_base_id, $4, $5, v.embedding::vector \
             FROM UNNEST($6::uuid[], $7::text[]) AS v(id, embedding) JOIN chunks c ON c.id = v.id \
             WHERE EXISTS (SELECT 1 FROM held) \
             ON CONFLICT (chunk_id) DO UPDATE SET model = EXCLUDED.model, dimensions = EXCLUDED.dimensions, \
                 embedding = EXCLUDED.embedding, created_at = now()) \
         SELECT true FROM held",
    )
    .bind(job.id)
    .bind(owner)
    .bind(lease_secs as f64)
    .bind(model)
    .bind(dimensions)
    .bind(chunk_ids)
    .bind(&texts)
    .fetch_optional(db)
    .await?;
    Ok(held.is_some())
}

/// Ends an embed job as succeeded and marks the document's vectors complete, if `owner`
/// still holds the lease.
pub async fn complete_embed(db: &Db, job: &Job, owner: &str) -> Result<bool, sqlx::Error> {
    let done: Option<Uuid> = sqlx::query_scalar(
        "WITH done AS ( \
             UPDATE ingest_jobs SET state = 'succeeded', finished_at = now(), last_error = NULL, lease_owner = NULL, \
                    lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING knowledge_id) \
         UPDATE knowledge SET vector_status = 'completed', vector_error = NULL \
         WHERE id = (SELECT knowledge_id FROM done) RETURNING id",
    )
    .bind(job.id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    Ok(done.is_some())
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

/// Ends the job as failed with `reason`, if `owner` still holds the lease: a failed parse
/// fails the document; a failed embed only says why the document has no vectors.
pub async fn fail(db: &Db, job: &Job, owner: &str, reason: &str) -> Result<bool, sqlx::Error> {
    let failed: Option<Uuid> = sqlx::query_scalar(
        "WITH failed AS ( \
             UPDATE ingest_jobs SET state = 'failed', last_error = $2, finished_at = now(), lease_owner = NULL, \
                    lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $3 AND state = 'running' RETURNING knowledge_id) \
         UPDATE knowledge SET \
             parse_status = CASE $4 WHEN 'parse' THEN 'failed' ELSE parse_status END, \
             error = CASE $4 WHEN 'parse' THEN $2 ELSE error END, \
             vector_status = CASE $4 WHEN 'embed' THEN 'failed' ELSE vector_status END, \
             vector_error = CASE $4 WHEN 'embed' THEN $2 ELSE vector_error END \
         WHERE id = (SELECT knowledge_id FROM failed) RETURNING id",
    )
    .bind(job.id)
    .bind(reason)
    .bind(owner)
    .bind(&job.kind)
    .fetch_optional(db)
    .await?;
    Ok(failed.is_some())
}

/// Jobs queued or running (a previous run's included).
/// Queues again, due now, the jobs a previous run of this instance left running (it was
/// killed): a restarted container keeps its name, so they need not wait for their lease to
/// end. The attempt they used counts, so a document that crashes the app ends failed.
pub async fn release_own(db: &Db, instance: &str) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE ingest_jobs SET state = 'queued', next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE state = 'running' AND starts_with(lease_owner, $1 || '-')",
    )
    .bind(instance)
    .execute(db)
    .await?;
    Ok(released.rows_affected())
}

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
