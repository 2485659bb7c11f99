//! Moves of documents between a tenant's knowledge bases, and copies of knowledge bases with
//! their documents (upstream's `knowledge/move` and `knowledge-bases/copy`): tasks in
//! `transfer_tasks`, claimed by a worker of any replica under a lease as ingest jobs are,
//! and done one document at a time. Each document's work is written in one transaction with
//! its item in `transfer_task_items` and only while the worker still holds the lease, so a
//! retried or taken-over task never moves or copies a document twice.
//!
//! Vectors stay consistent with the knowledge base they end up in: they travel with their
//! chunks when they were made with the model the target's vectors are made with (or the
//! target has none yet); otherwise they are dropped and an embed job makes them again.

use uuid::Uuid;

use sqlx::PgPool as Db;
use sqlx::{PgConnection, Postgres, Transaction};

use super::jobs::Kind;

/// A task to record.
pub struct NewTask<'a> {
    pub tenant: Uuid,
    pub id: &'a str,
    /// `move` or `copy`.
    pub kind: &'a str,
    pub source: Uuid,
    pub target: Option<Uuid>,
    /// A move's documents.
    pub knowledge_ids: Option<&'a [Uuid]>,
    pub mode: &'a str,
    pub copy_suffix: &'a str,
}

/// Records the task, pending; false when the tenant has a task of this id already.
pub async fn create(db: &Db, t: &NewTask<'_>) -> Result<bool, sqlx::Error> {
    let created = sqlx::query(
        "INSERT INTO transfer_tasks (tenant_id, id, kind, source_kb_id, target_kb_id, knowledge_ids, mode, copy_suffix, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Task queued, waiting to start') ON CONFLICT DO NOTHING",
    )
    .bind(t.tenant)
    .bind(t.id)
    .bind(t.kind)
    .bind(t.source)
    .bind(t.target)
    .bind(t.knowledge_ids)
    .bind(t.mode)
    .bind(t.copy_suffix)
    .execute(db)
    .await?;
    Ok(created.rows_affected() == 1)
}

/// Where a task stands.
#[derive(sqlx::FromRow)]
pub struct Progress {
    pub id: String,
    pub source_kb_id: Uuid,
    pub target_kb_id: Option<Uuid>,
    pub status: String,
    pub message: String,
    pub error: String,
    pub attempts: i32,
    /// Documents to move or copy (a copy's are known once it starts).
    pub total: i64,
    /// Documents done, failed ones included.
    pub processed: i64,
    pub failed: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The tenant's task of this kind and id (another tenant's is none).
pub async fn progress(db: &Db, tenant: Uuid, kind: &str, id: &str) -> Result<Option<Progress>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.source_kb_id, t.target_kb_id, t.status, t.message, t.error, t.attempts, \
         coalesce(cardinality(t.knowledge_ids), 0)::int8 AS total, \
         (SELECT count(*) FROM transfer_task_items i WHERE i.tenant_id = t.tenant_id AND i.task_id = t.id) AS processed, \
         (SELECT count(*) FROM transfer_task_items i WHERE i.tenant_id = t.tenant_id AND i.task_id = t.id AND i.failed) \
           AS failed, \
         t.created_at, t.updated_at \
         FROM transfer_tasks t WHERE t.tenant_id = $1 AND t.kind = $2 AND t.id = $3",
    )
    .bind(tenant)
    .bind(kind)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Those of the tenant's documents `ids` whose parse or embedding is queued or running.
pub async fn busy(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT knowledge_id FROM ingest_jobs WHERE tenant_id = $1 AND knowledge_id = ANY($2) \
         AND state IN ('queued', 'running')",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(db)
    .await
}

/// A claimed task.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Task {
    pub tenant_id: Uuid,
    pub id: String,
    pub kind: String,
    pub source_kb_id: Uuid,
    pub target_kb_id: Option<Uuid>,
    pub knowledge_ids: Option<Vec<Uuid>>,
    pub mode: String,
    pub copy_suffix: String,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// Takes the next due task (or one whose lease ran out) for `owner` for `lease_secs`.
pub async fn claim(db: &Db, owner: &str, lease_secs: u64) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE transfer_tasks SET status = 'processing', attempts = attempts + 1, message = '', lease_owner = $1, \
                lease_expires_at = now() + make_interval(secs => $2) \
         WHERE (tenant_id, id) = (SELECT tenant_id, id FROM transfer_tasks \
                                  WHERE status IN ('pending', 'processing') AND next_attempt_at <= now() \
                                    AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                                  ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING tenant_id, id, kind, source_kb_id, target_kb_id, knowledge_ids, mode, copy_suffix, attempts, \
                   max_attempts",
    )
    .bind(owner)
    .bind(lease_secs as f64)
    .fetch_optional(db)
    .await
}

/// Makes the tasks `owner` (this process, restarted) left running due again at once.
pub async fn release_own(db: &Db, owner: &str) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE transfer_tasks SET next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'processing' AND lease_owner = $1",
    )
    .bind(owner)
    .execute(db)
    .await?;
    Ok(released.rows_affected())
}

/// Ends the task (`completed` or `failed`) if `owner` still holds it.
pub async fn finish(
    db: &Db,
    task: &Task,
    owner: &str,
    status: &str,
    message: &str,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE transfer_tasks SET status = $4, message = $5, error = $6, lease_owner = NULL, lease_expires_at = NULL \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'processing'",
    )
    .bind(task.tenant_id)
    .bind(&task.id)
    .bind(owner)
    .bind(status)
    .bind(message)
    .bind(error)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lets the task be claimed again after `wait_secs`, saying why, if `owner` still holds it.
pub async fn retry(db: &Db, task: &Task, owner: &str, reason: &str, wait_secs: f64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE transfer_tasks SET message = $4, next_attempt_at = now() + make_interval(secs => $5), \
                lease_owner = NULL, lease_expires_at = NULL \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'processing'",
    )
    .bind(task.tenant_id)
    .bind(&task.id)
    .bind(owner)
    .bind(format!("retrying after a failure: {reason}"))
    .bind(wait_secs)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets tasks that ended more than `days` days ago; how many.
pub async fn prune(db: &Db, days: i32) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query(
        "DELETE FROM transfer_tasks WHERE status IN ('completed', 'failed') \
         AND updated_at < now() - make_interval(days => $1)",
    )
    .bind(days)
    .execute(db)
    .await?;
    Ok(gone.rows_affected())
}

/// The documents the task has done (or failed), which a retry skips.
pub async fn done(db: &Db, task: &Task) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT knowledge_id FROM transfer_task_items WHERE tenant_id = $1 AND task_id = $2")
        .bind(task.tenant_id)
        .bind(&task.id)
        .fetch_all(db)
        .await
}

/// The first failure of the task's documents, if one failed.
pub async fn first_failure(db: &Db, task: &Task) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT note FROM transfer_task_items WHERE tenant_id = $1 AND task_id = $2 AND failed \
         ORDER BY knowledge_id LIMIT 1",
    )
    .bind(task.tenant_id)
    .bind(&task.id)
    .fetch_optional(db)
    .await
}

/// Begins a transaction in which `owner` holds the task, its lease renewed for
/// `lease_secs`; None (and nothing begun) when the lease is lost.
async fn hold<'a>(
    db: &'a Db,
    task: &Task,
    owner: &str,
    lease_secs: u64,
) -> Result<Option<Transaction<'a, Postgres>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let held = sqlx::query(
        "UPDATE transfer_tasks SET lease_expires_at = now() + make_interval(secs => $4) \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'processing'",
    )
    .bind(task.tenant_id)
    .bind(&task.id)
    .bind(owner)
    .bind(lease_secs as f64)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    Ok(held.then_some(tx))
}

/// Records what became of one of the task's documents.
async fn item(
    tx: &mut PgConnection,
    task: &Task,
    knowledge: Uuid,
    copy: Option<Uuid>,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let (failed, note) = match outcome {
        Outcome::Done(note) => (false, note.as_str()),
        Outcome::Failed(reason) => (true, reason.as_str()),
    };
    sqlx::query(
        "INSERT INTO transfer_task_items (tenant_id, task_id, knowledge_id, copy_id, failed, note) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(task.tenant_id)
    .bind(&task.id)
    .bind(knowledge)
    .bind(copy)
    .bind(failed)
    .bind(note)
    .execute(tx)
    .await?;
    Ok(())
}

/// What became of one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Moved or copied; the note says what else happened (vectors made again), if anything.
    Done(String),
    /// Not moved or copied, and why.
    Failed(String),
}

/// A document's work, when the lease was held: its outcome, and whether ingest jobs were
/// queued (the ingest workers are to be woken).
pub struct Worked {
    pub outcome: Outcome,
    pub queued: bool,
}

/// The embedding model and vector size of a knowledge base's vectors (None before any).
#[derive(sqlx::FromRow)]
struct Indexed {
    embedding_model_id: Option<Uuid>,
    embedding_model: Option<String>,
    embedding_dimensions: Option<i32>,
}

/// The knowledge base, locked against deletion until the transaction ends.
async fn lock_kb(tx: &mut PgConnection, tenant: Uuid, kb: Uuid) -> Result<Option<Indexed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT embedding_model_id, embedding_model, embedding_dimensions FROM knowledge_bases \
         WHERE id = $1 AND tenant_id = $2 FOR SHARE",
    )
    .bind(kb)
    .bind(tenant)
    .fetch_optional(tx)
    .await
}

async fn has_vectors(tx: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass('chunk_embeddings') IS NOT NULL").fetch_one(tx).await
}

/// Records the model of the knowledge base's vectors unless it has one.
async fn record_model(tx: &mut PgConnection, kb: Uuid, model: &str, dimensions: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE knowledge_bases SET embedding_model = COALESCE(embedding_model, $2), \
         embedding_dimensions = COALESCE(embedding_dimensions, $3) WHERE id = $1",
    )
    .bind(kb)
    .bind(model)
    .bind(dimensions)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether vectors of `model` and `dimensions` belong in a knowledge base indexed as `kb` is.
fn fits(kb: &Indexed, model: &str, dimensions: i32) -> bool {
    match (&kb.embedding_model, kb.embedding_dimensions) {
        (Some(m), Some(d)) => m == model && d == dimensions,
        (Some(m), None) => m == model,
        _ => true,
    }
}

/// What a task fails on as a whole.
#[derive(Debug)]
pub enum Stop {
    Database(sqlx::Error),
    /// A knowledge base of the task is gone (deleted), or changed so that it cannot go on.
    Gone(String),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Stop {
        Stop::Database(e)
    }
}

/// Moves one document of the task to its target, chunks and vectors with it (`reparse`:
/// and queues its parse there); None when the lease is lost.
pub async fn move_one(
    db: &Db,
    task: &Task,
    owner: &str,
    lease_secs: u64,
    id: Uuid,
    max_attempts: i32,
) -> Result<Option<Worked>, Stop> {
    let Some(target) = task.target_kb_id else { return Err(Stop::Gone("the move has no target".into())) };
    let tenant = task.tenant_id;
    let Some(mut tx) = hold(db, task, owner, lease_secs).await? else { return Ok(None) };
    // Its jobs, then the document, as an ingest worker locks them (see documents::delete).
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM ingest_jobs WHERE knowledge_id = $1 FOR UPDATE")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let doc: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT knowledge_base_id, parse_status FROM knowledge WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(target_kb) = lock_kb(&mut tx, tenant, target).await? else {
        return Err(Stop::Gone("the target knowledge base was deleted".into()));
    };
    let source_model: Option<Option<Uuid>> =
        sqlx::query_scalar("SELECT embedding_model_id FROM knowledge_bases WHERE id = $1 AND tenant_id = $2")
            .bind(task.source_kb_id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    let refusal = match &doc {
        None => Some("the document was deleted before it was moved".to_string()),
        Some((kb, _)) if *kb != task.source_kb_id => {
            Some("the document was no longer in the source knowledge base (moved or copied away)".to_string())
        }
        Some((_, status)) if status != "completed" => {
            Some(format!("the document is not parsed (its parse_status is {status}): only completed documents move"))
        }
        Some(_) if states.iter().any(|s| s == "queued" || s == "running") => {
            Some("the document is being parsed or embedded: move it when that is done".to_string())
        }
        Some(_) if source_model != Some(target_kb.embedding_model_id) => {
            Some("the source and target knowledge bases no longer use the same embedding model".to_string())
        }
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        let outcome = Outcome::Failed(reason);
        item(&mut tx, task, id, None, &outcome).await?;
        tx.commit().await?;
        return Ok(Some(Worked { outcome, queued: false }));
    }
    let reparse = task.mode == "reparse";
    sqlx::query(
        "UPDATE knowledge SET knowledge_base_id = $2, \
         parse_status = CASE WHEN $3 THEN 'pending' ELSE parse_status END, \
         error = CASE WHEN $3 THEN NULL ELSE error END WHERE id = $1",
    )
    .bind(id)
    .bind(target)
    .bind(reparse)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE chunks SET knowledge_base_id = $2 WHERE knowledge_id = $1")
        .bind(id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    let mut note = String::new();
    let mut embed = false;
    if has_vectors(&mut tx).await? {
        let kinds: Vec<(String, i32)> = sqlx::query_as(
            "SELECT DISTINCT e.model, e.dimensions FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id \
             WHERE c.knowledge_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let keep = kinds.len() <= 1 && kinds.iter().all(|(m, d)| fits(&target_kb, m, *d));
        let moved = if keep {
            sqlx::query(
                "UPDATE chunk_embeddings SET knowledge_base_id = $2 \
                 WHERE chunk_id IN (SELECT id FROM chunks WHERE knowledge_id = $1)",
            )
            .bind(id)
            .bind(target)
        } else {
            sqlx::query(
                "DELETE FROM chunk_embeddings WHERE chunk_id IN (SELECT id FROM chunks WHERE knowledge_id = $1)",
            )
            .bind(id)
        };
        moved.execute(&mut *tx).await?;
        match (keep, kinds.first()) {
            (true, Some((model, dimensions))) => record_model(&mut tx, target, model, *dimensions).await?,
            (true, None) => {}
            (false, _) => {
                sqlx::query("UPDATE knowledge SET vector_status = 'pending', vector_error = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                note = "its vectors were made with another embedding model than the target's: they are made again"
                    .to_string();
                embed = !reparse;
            }
        }
    }
    if reparse {
        super::jobs::queue(&mut tx, Kind::Parse, tenant, id, max_attempts).await?;
    } else if embed {
        super::jobs::queue(&mut tx, Kind::Embed, tenant, id, max_attempts).await?;
    }
    let outcome = Outcome::Done(note);
    item(&mut tx, task, id, None, &outcome).await?;
    tx.commit().await?;
    Ok(Some(Worked { outcome, queued: reparse || embed }))
}

/// Creates the new knowledge base a copy goes into, with the source's settings and a name
/// of its own (`<name> Copy`, numbered when taken), and records it as the task's target;
/// None when the lease is lost.
pub async fn create_target(db: &Db, task: &Task, owner: &str, lease_secs: u64) -> Result<Option<Uuid>, Stop> {
    let Some(mut tx) = hold(db, task, owner, lease_secs).await? else { return Ok(None) };
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM knowledge_bases WHERE id = $1 AND tenant_id = $2 FOR SHARE")
            .bind(task.source_kb_id)
            .bind(task.tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(name) = name else { return Err(Stop::Gone("the source knowledge base was deleted".into())) };
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM knowledge_bases WHERE tenant_id = $1 AND starts_with(name, $2 || ' ' || $3)",
    )
    .bind(task.tenant_id)
    .bind(&name)
    .bind(&task.copy_suffix)
    .fetch_all(&mut *tx)
    .await?;
    let free =
        (1..)
            .map(|n| {
                if n == 1 { format!("{name} {}", task.copy_suffix) } else { format!("{name} {} {n}", task.copy_suffix) }
            })
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or_default();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO knowledge_bases (id, tenant_id, name, description, chunk_size, chunk_overlap, split_markers, \
         retrieval_top_k, keyword_threshold, vector_threshold, summary_model_id, embedding_model_id) \
         SELECT $1, tenant_id, $3, description, chunk_size, chunk_overlap, split_markers, retrieval_top_k, \
         keyword_threshold, vector_threshold, summary_model_id, embedding_model_id FROM knowledge_bases WHERE id = $2",
    )
    .bind(id)
    .bind(task.source_kb_id)
    .bind(&free)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE transfer_tasks SET target_kb_id = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(task.tenant_id)
        .bind(&task.id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Fixes the documents a copy copies: the source's, oldest first, but those whose file
/// (same content) or URL the target has already; None when the lease is lost.
pub async fn plan_copy(
    db: &Db,
    task: &Task,
    owner: &str,
    lease_secs: u64,
    target: Uuid,
) -> Result<Option<Vec<Uuid>>, Stop> {
    let Some(mut tx) = hold(db, task, owner, lease_secs).await? else { return Ok(None) };
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT s.id FROM knowledge s WHERE s.knowledge_base_id = $1 AND s.tenant_id = $3 AND NOT EXISTS ( \
             SELECT 1 FROM knowledge t WHERE t.knowledge_base_id = $2 AND t.tenant_id = $3 \
             AND ((s.checksum IS NOT NULL AND t.checksum = s.checksum) \
                  OR (s.source_type = 'url' AND t.source_type = 'url' AND t.source = s.source))) \
         ORDER BY s.created_at, s.id",
    )
    .bind(task.source_kb_id)
    .bind(target)
    .bind(task.tenant_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("UPDATE transfer_tasks SET knowledge_ids = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(task.tenant_id)
        .bind(&task.id)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(ids))
}

/// Records that one of the task's documents failed, and why; None when the lease is lost.
pub async fn fail_one(
    db: &Db,
    task: &Task,
    owner: &str,
    lease_secs: u64,
    id: Uuid,
    reason: &str,
) -> Result<Option<Worked>, sqlx::Error> {
    let Some(mut tx) = hold(db, task, owner, lease_secs).await? else { return Ok(None) };
    let outcome = Outcome::Failed(reason.to_string());
    item(&mut tx, task, id, None, &outcome).await?;
    tx.commit().await?;
    Ok(Some(Worked { outcome, queued: false }))
}

/// Where a document's stored file is, when it is still in the knowledge base `kb`: the
/// outer None when it is not.
pub async fn stored_file(db: &Db, tenant: Uuid, kb: Uuid, id: Uuid) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar("SELECT object_key FROM knowledge WHERE id = $1 AND tenant_id = $2 AND knowledge_base_id = $3")
        .bind(id)
        .bind(tenant)
        .bind(kb)
        .fetch_optional(db)
        .await
}

/// The copy of a document.
pub struct Copy<'a> {
    pub source: Uuid,
    pub id: Uuid,
    /// Where the copy of its file is stored (already written).
    pub object_key: Option<&'a str>,
}

/// Copies one document of the source into the target: its row (the copy's file stored at
/// `copy.object_key`), its chunks and the vectors that fit the target. A document still
/// being parsed is copied unparsed and its copy parsed; vectors still being made (or that
/// do not fit) are made again. None when the lease is lost.
pub async fn copy_one(
    db: &Db,
    task: &Task,
    owner: &str,
    lease_secs: u64,
    copy: &Copy<'_>,
    max_attempts: i32,
) -> Result<Option<Worked>, Stop> {
    let Some(target) = task.target_kb_id else { return Err(Stop::Gone("the copy has no target".into())) };
    let tenant = task.tenant_id;
    let Some(mut tx) = hold(db, task, owner, lease_secs).await? else { return Ok(None) };
    // Locked against a parse's end (which replaces the chunks) so that the row and its chunks agree.
    let doc: Option<(String, String)> = sqlx::query_as(
        "SELECT parse_status, vector_status FROM knowledge \
         WHERE id = $1 AND tenant_id = $2 AND knowledge_base_id = $3 FOR SHARE",
    )
    .bind(copy.source)
    .bind(tenant)
    .bind(task.source_kb_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(target_kb) = lock_kb(&mut tx, tenant, target).await? else {
        return Err(Stop::Gone("the target knowledge base was deleted".into()));
    };
    let Some((parse_status, vector_status)) = doc else {
        let outcome = Outcome::Failed("the document was deleted (or moved away) before it was copied".into());
        item(&mut tx, task, copy.source, None, &outcome).await?;
        tx.commit().await?;
        return Ok(Some(Worked { outcome, queued: false }));
    };
    let unparsed = matches!(parse_status.as_str(), "pending" | "processing");
    sqlx::query(
        "INSERT INTO knowledge (id, tenant_id, knowledge_base_id, source_type, source, title, file_type, object_key, \
         size_bytes, checksum, parse_status, error, chunk_count, metadata, processed_at, vector_status, vector_error, \
         folder_path) \
         SELECT $2, tenant_id, $3, source_type, source, title, file_type, $4, size_bytes, checksum, \
         CASE WHEN $5 THEN 'pending' ELSE parse_status END, CASE WHEN $5 THEN NULL ELSE error END, \
         CASE WHEN $5 THEN 0 ELSE chunk_count END, metadata, CASE WHEN $5 THEN NULL ELSE processed_at END, \
         CASE WHEN $5 THEN 'none' ELSE vector_status END, CASE WHEN $5 THEN NULL ELSE vector_error END, folder_path \
         FROM knowledge WHERE id = $1",
    )
    .bind(copy.source)
    .bind(copy.id)
    .bind(target)
    .bind(copy.object_key)
    .bind(unparsed)
    .execute(&mut *tx)
    .await?;
    let mut note = String::new();
    let mut job = None;
    if unparsed {
        job = Some(Kind::Parse);
    } else {
        let vectors = has_vectors(&mut tx).await?;
        let (copied, made, model, dimensions) = copy_chunks(&mut tx, copy, target, &target_kb, vectors).await?;
        if let (Some(model), Some(dimensions)) = (&model, dimensions) {
            record_model(&mut tx, target, model, dimensions).await?;
        }
        let embedding = matches!(vector_status.as_str(), "pending" | "processing");
        if embedding || (copied < made && vector_status != "none") {
            sqlx::query("UPDATE knowledge SET vector_status = 'pending', vector_error = NULL WHERE id = $1")
                .bind(copy.id)
                .execute(&mut *tx)
                .await?;
            if copied < made && !embedding {
                note = "its vectors were made with another embedding model than the target's: they are made again"
                    .to_string();
            }
            job = Some(Kind::Embed);
        }
    }
    if let Some(kind) = job {
        super::jobs::queue(&mut tx, kind, tenant, copy.id, max_attempts).await?;
    }
    let outcome = Outcome::Done(note);
    item(&mut tx, task, copy.source, Some(copy.id), &outcome).await?;
    tx.commit().await?;
    Ok(Some(Worked { outcome, queued: job.is_some() }))
}

/// Copies the source document's chunks to the copy (new ids, the same parents) and, with
/// `vectors`, those of their vectors that fit the target: how many vectors were copied and
/// how many the source has, and the model and size of the copied ones.
async fn copy_chunks(
    tx: &mut PgConnection,
    copy: &Copy<'_>,
    target: Uuid,
    target_kb: &Indexed,
    vectors: bool,
) -> Result<(i64, i64, Option<String>, Option<i32>), sqlx::Error> {
    // One statement: the new ids are drawn once (a CTE with a volatile function is
    // materialized), for the chunks and for their vectors alike.
    let chunks = "WITH src AS MATERIALIZED (SELECT id, parent_id, gen_random_uuid() AS new_id FROM chunks \
                                            WHERE knowledge_id = $1), \
                  chunks_in AS (INSERT INTO chunks (id, tenant_id, knowledge_base_id, knowledge_id, parent_id, position, \
                                content, search_text, start_offset, end_offset, metadata) \
                                SELECT s.new_id, c.tenant_id, $2, $3, p.new_id, c.position, c.content, c.search_text, \
                                c.start_offset, c.end_offset, c.metadata \
                                FROM src s JOIN chunks c ON c.id = s.id LEFT JOIN src p ON p.id = s.parent_id \
                                RETURNING id)";
    if !vectors {
        let sql =
            format!("{chunks} SELECT 0::int8, 0::int8, NULL::text, NULL::int4 FROM (SELECT count(*) FROM chunks_in) n");
        return sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(copy.source)
            .bind(target)
            .bind(copy.id)
            .fetch_one(tx)
            .await;
    }
    let sql = format!(
        "{chunks}, \
         vectors_in AS (INSERT INTO chunk_embeddings (chunk_id, knowledge_base_id, model, dimensions, embedding) \
                        SELECT s.new_id, $2, e.model, e.dimensions, e.embedding \
                        FROM src s JOIN chunk_embeddings e ON e.chunk_id = s.id \
                        WHERE $4::text IS NULL OR (e.model = $4 AND ($5::int4 IS NULL OR e.dimensions = $5)) \
                        RETURNING model, dimensions) \
         SELECT (SELECT count(*) FROM vectors_in), \
                (SELECT count(*) FROM src s JOIN chunk_embeddings e ON e.chunk_id = s.id), \
                (SELECT model FROM vectors_in LIMIT 1), (SELECT dimensions FROM vectors_in LIMIT 1) \
         FROM (SELECT count(*) FROM chunks_in) n"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(copy.source)
        .bind(target)
        .bind(copy.id)
        .bind(&target_kb.embedding_model)
        .bind(target_kb.embedding_dimensions)
        .fetch_one(tx)
        .await
}
