//! Documents (the `knowledge` table): recorded together with their ingest job, so nothing
//! is lost between the upload and the parse.

use serde::Serialize;
use uuid::Uuid;

use sqlx::PgPool as Db;

use super::jobs::Kind;

#[derive(Serialize, sqlx::FromRow)]
pub struct Knowledge {
    pub id: Uuid,
    pub knowledge_base_id: Uuid,
    pub source_type: String,
    pub source: String,
    pub title: String,
    pub file_type: String,
    pub size_bytes: i64,
    pub checksum: Option<String>,
    pub parse_status: String,
    pub error: Option<String>,
    pub chunk_count: i32,
    /// Where the chunks' vectors stand: none (no embedding model), pending, processing,
    /// completed or failed (with `vector_error` saying why; keyword search still works).
    pub vector_status: String,
    pub vector_error: Option<String>,
    /// Upstream's folder: `docs/spec`, or `""` at the knowledge base's root.
    pub folder_path: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The tenant's integer id, as upstream's clients decode it.
    #[serde(rename = "tenant_id")]
    pub tenant_number: i64,
    /// Where the original is stored: internal, never answered.
    #[serde(skip)]
    pub object_key: Option<String>,
}

/// (`tenant_id` in the subquery is the document's: some statements name `knowledge` otherwise.)
const COLUMNS: &str = "id, knowledge_base_id, source_type, source, title, file_type, size_bytes, checksum, \
                       parse_status, error, chunk_count, vector_status, vector_error, folder_path, created_at, \
                       updated_at, processed_at, object_key, \
                       (SELECT number FROM tenants t WHERE t.id = tenant_id) AS tenant_number";

/// A document to record.
pub struct NewDocument<'a> {
    pub id: Uuid,
    pub tenant: Uuid,
    pub knowledge_base: Uuid,
    pub source_type: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub file_type: &'a str,
    pub object_key: Option<&'a str>,
    pub size_bytes: i64,
    pub checksum: Option<&'a str>,
    /// Its folder (normalized), `""` for the root.
    pub folder_path: &'a str,
}

/// Records the document and queues its ingest job, in one transaction.
pub async fn insert_with_job(db: &Db, doc: &NewDocument<'_>, max_attempts: i32) -> Result<Knowledge, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "INSERT INTO knowledge (id, tenant_id, knowledge_base_id, source_type, source, title, file_type, object_key, size_bytes, checksum, folder_path) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    let k: Knowledge = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(doc.id)
        .bind(doc.tenant)
        .bind(doc.knowledge_base)
        .bind(doc.source_type)
        .bind(doc.source)
        .bind(doc.title)
        .bind(doc.file_type)
        .bind(doc.object_key)
        .bind(doc.size_bytes)
        .bind(doc.checksum)
        .bind(doc.folder_path)
        .fetch_one(&mut *tx)
        .await?;
    super::jobs::queue(&mut tx, Kind::Parse, doc.tenant, doc.id, max_attempts).await?;
    tx.commit().await?;
    Ok(k)
}

pub async fn get(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Knowledge>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM knowledge WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

/// One page of a knowledge base's documents, newest first, and how many there are.
/// The knowledge base's document with these bytes (`checksum`) or from this URL: what a
/// second upload of the same would duplicate.
pub async fn existing(
    db: &Db,
    tenant: Uuid,
    kb: Uuid,
    checksum: Option<&str>,
    url: Option<&str>,
) -> Result<Option<Knowledge>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2 \
         AND (checksum = $3 OR (source_type = 'url' AND source = $4)) ORDER BY created_at LIMIT 1"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(kb).bind(tenant).bind(checksum).bind(url).fetch_optional(db).await
}

/// The tenant's knowledge bases that hold these documents (ids of other tenants' or of no
/// document add none): where a question naming only documents is searched.
pub async fn knowledge_bases_of(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT DISTINCT knowledge_base_id FROM knowledge WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
        .fetch_all(db)
        .await
}

/// What a listing keeps: every filter set narrows it.
#[derive(Default)]
pub struct Filter<'a> {
    /// In the title or the source (file name or URL), any case.
    pub keyword: Option<&'a str>,
    pub file_type: Option<&'a str>,
    pub parse_status: Option<&'a str>,
    /// In this folder (`""`: the root), and with `folder_recursive` in its subfolders too.
    pub folder_path: Option<&'a str>,
    pub folder_recursive: bool,
}

/// An ILIKE pattern for text containing `keyword`: its `%` and `_` match themselves.
fn contains(keyword: &str) -> String {
    format!("%{}%", keyword.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

pub async fn list(
    db: &Db,
    tenant: Uuid,
    kb: Uuid,
    filter: &Filter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Knowledge>, i64), sqlx::Error> {
    let like = filter.keyword.map(contains);
    let matching = "knowledge_base_id = $1 AND tenant_id = $2 \
                    AND ($3::text IS NULL OR title ILIKE $3 OR source ILIKE $3) \
                    AND ($4::text IS NULL OR file_type = lower($4)) AND ($5::text IS NULL OR parse_status = $5) \
                    AND ($6::text IS NULL OR folder_path = $6 \
                         OR ($7 AND ($6 = '' OR starts_with(folder_path, $6 || '/'))))";
    let sql =
        format!("SELECT {COLUMNS} FROM knowledge WHERE {matching} ORDER BY created_at DESC, id LIMIT $8 OFFSET $9");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(kb)
        .bind(tenant)
        .bind(&like)
        .bind(filter.file_type)
        .bind(filter.parse_status)
        .bind(filter.folder_path)
        .bind(filter.folder_recursive)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM knowledge WHERE {matching}")))
        .bind(kb)
        .bind(tenant)
        .bind(&like)
        .bind(filter.file_type)
        .bind(filter.parse_status)
        .bind(filter.folder_path)
        .bind(filter.folder_recursive)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// Those of the documents that are the tenant's, in the order asked.
pub async fn get_many(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<Knowledge>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM knowledge k JOIN unnest($2::uuid[]) WITH ORDINALITY AS asked(id, n) USING (id) \
         WHERE k.tenant_id = $1 ORDER BY asked.n"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(ids).fetch_all(db).await
}

/// Renames the document; None when there is no such document.
pub async fn rename(db: &Db, tenant: Uuid, id: Uuid, title: &str) -> Result<Option<Knowledge>, sqlx::Error> {
    let sql = format!("UPDATE knowledge SET title = $3 WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).bind(title).fetch_optional(db).await
}

/// Locks the jobs of a knowledge base's documents, in the order an ingest worker locks
/// them (its job, then the document; see `delete`): deleting documents without it while
/// they are ingested can deadlock.
pub async fn lock_jobs_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: Uuid,
    kb: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT 1 FROM ingest_jobs j JOIN knowledge k ON k.id = j.knowledge_id \
         WHERE k.knowledge_base_id = $1 AND k.tenant_id = $2 FOR UPDATE OF j",
    )
    .bind(kb)
    .bind(tenant)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes every document of the knowledge base (the knowledge base stays); how many, and
/// their stored files' keys.
pub async fn clear(db: &Db, tenant: Uuid, kb: Uuid) -> Result<(i64, Vec<String>), sqlx::Error> {
    let mut tx = db.begin().await?;
    lock_jobs_of(&mut tx, tenant, kb).await?;
    let (deleted, keys): (i64, Vec<String>) = sqlx::query_as(
        "WITH gone AS (DELETE FROM knowledge WHERE knowledge_base_id = $1 AND tenant_id = $2 RETURNING object_key) \
         SELECT count(*), coalesce(array_agg(object_key) FILTER (WHERE object_key IS NOT NULL), '{}') FROM gone",
    )
    .bind(kb)
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((deleted, keys))
}

/// Deletes the document with its chunks and jobs (cascade).
pub async fn delete(db: &Db, tenant: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    // The document's jobs first, as a worker finishing one locks them (its job, then the
    // document): in the other order, a delete during an ingest deadlocks with it.
    sqlx::query("SELECT 1 FROM ingest_jobs WHERE knowledge_id = $1 AND tenant_id = $2 FOR UPDATE")
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM knowledge WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Queues a new parse of the document unless one is queued or running (then false).
pub async fn reparse(db: &Db, tenant: Uuid, id: Uuid, max_attempts: i32) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ingest_jobs WHERE knowledge_id = $1 AND state IN ('queued', 'running') FOR UPDATE)",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if busy {
        return Ok(false);
    }
    super::jobs::queue(&mut tx, Kind::Parse, tenant, id, max_attempts).await?;
    sqlx::query("UPDATE knowledge SET parse_status = 'pending', error = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Parsed documents that have chunks but no vectors and none coming (added before an
/// embedding model was configured): a reindex gives them vectors.
pub async fn without_vectors(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM knowledge WHERE parse_status = 'completed' AND chunk_count > 0 AND vector_status = 'none'",
    )
    .fetch_one(db)
    .await
}

/// What cancelling a document's parse found.
pub enum Cancel {
    /// Stopped now: the document as it is after.
    Cancelled(Knowledge),
    /// Cancelled before: nothing changed.
    Already(Knowledge),
    /// The parse has ended (completed or failed): nothing to cancel.
    Ended(Knowledge),
    NotFound,
}

/// Stops the document's parse, queued or running, in one transaction: its job ends failed
/// with `reason` (a worker running it finds its lease gone and writes nothing), and the
/// document is `cancelled` with `reason` as its error. Its chunks, if an earlier parse
/// made any, stay.
pub async fn cancel_parse(db: &Db, tenant: Uuid, id: Uuid, reason: &str) -> Result<Cancel, sqlx::Error> {
    let mut tx = db.begin().await?;
    super::jobs::lock_live(&mut tx, tenant, &[id]).await?;
    let sql = format!("SELECT {COLUMNS} FROM knowledge WHERE id = $1 AND tenant_id = $2 FOR UPDATE");
    let found: Option<Knowledge> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(&mut *tx).await?;
    let Some(doc) = found else { return Ok(Cancel::NotFound) };
    match doc.parse_status.as_str() {
        "cancelled" => return Ok(Cancel::Already(doc)),
        "completed" | "failed" => return Ok(Cancel::Ended(doc)),
        _ => {}
    }
    super::jobs::end_live(&mut tx, id, Some(Kind::Parse), reason).await?;
    let sql = format!("UPDATE knowledge SET parse_status = 'cancelled', error = $2 WHERE id = $1 RETURNING {COLUMNS}");
    let doc = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(reason).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(Cancel::Cancelled(doc))
}

/// A manual entry's new text (already stored under `object_key`) and title.
pub struct ManualRevision<'a> {
    pub title: &'a str,
    pub source: &'a str,
    pub file_type: &'a str,
    pub object_key: &'a str,
    pub size_bytes: i64,
    pub checksum: &'a str,
}

/// Points a manual entry at its new text and queues its parse, in one transaction: a parse
/// or embedding under way is ended (its outcome dropped), and until the new parse completes
/// the entry keeps the chunks it had. The document after, and the key of the text it
/// replaced; None when the tenant has no such manual entry.
pub async fn revise_manual(
    db: &Db,
    tenant: Uuid,
    id: Uuid,
    rev: &ManualRevision<'_>,
    max_attempts: i32,
) -> Result<Option<(Knowledge, Option<String>)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    super::jobs::lock_live(&mut tx, tenant, &[id]).await?;
    let old: Option<Option<String>> = sqlx::query_scalar(
        "SELECT object_key FROM knowledge WHERE id = $1 AND tenant_id = $2 AND source_type = 'manual' FOR UPDATE",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(old_key) = old else { return Ok(None) };
    super::jobs::end_live(&mut tx, id, None, "superseded: the text was edited").await?;
    // Vectors being made for the old text will not come: the new parse queues them again.
    let sql = format!(
        "UPDATE knowledge SET title = $3, source = $4, file_type = $5, object_key = $6, size_bytes = $7, \
         checksum = $8, parse_status = 'pending', error = NULL, \
         vector_error = CASE WHEN vector_status IN ('pending', 'processing') \
             THEN 'the text was edited while its vectors were made: its parse makes them again' \
             ELSE vector_error END, \
         vector_status = CASE WHEN vector_status IN ('pending', 'processing') THEN 'failed' ELSE vector_status END \
         WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    );
    let doc: Knowledge = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .bind(rev.title)
        .bind(rev.source)
        .bind(rev.file_type)
        .bind(rev.object_key)
        .bind(rev.size_bytes)
        .bind(rev.checksum)
        .fetch_one(&mut *tx)
        .await?;
    super::jobs::queue(&mut tx, Kind::Parse, tenant, id, max_attempts).await?;
    tx.commit().await?;
    Ok(Some((doc, old_key)))
}

/// A document found across knowledge bases, with its knowledge base's name.
#[derive(sqlx::FromRow)]
pub struct Found {
    #[sqlx(flatten)]
    pub doc: Knowledge,
    pub knowledge_base_name: String,
}

/// What a search across the tenant's knowledge bases keeps: every filter set narrows it.
#[derive(Default)]
pub struct Search<'a> {
    /// In the title or the source (file name or URL), any case.
    pub keyword: Option<&'a str>,
    /// File types (extensions) and source types (`url`, `manual`): a document of any of
    /// them is kept; none of either keeps every document.
    pub file_types: &'a [String],
    pub source_types: &'a [String],
}

/// One page of the tenant's documents across its knowledge bases, newest first, and how
/// many there are.
pub async fn search(
    db: &Db,
    tenant: Uuid,
    search: &Search<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Found>, i64), sqlx::Error> {
    let like = search.keyword.map(contains);
    let matching = "tenant_id = $1 AND ($2::text IS NULL OR title ILIKE $2 OR source ILIKE $2) \
                    AND ((cardinality($3::text[]) = 0 AND cardinality($4::text[]) = 0) \
                         OR file_type = ANY($3) OR source_type = ANY($4))";
    let sql = format!(
        "SELECT {COLUMNS}, (SELECT b.name FROM knowledge_bases b WHERE b.id = knowledge.knowledge_base_id) \
         AS knowledge_base_name FROM knowledge WHERE {matching} ORDER BY created_at DESC, id LIMIT $5 OFFSET $6"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(&like)
        .bind(search.file_types)
        .bind(search.source_types)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM knowledge WHERE {matching}")))
        .bind(tenant)
        .bind(&like)
        .bind(search.file_types)
        .bind(search.source_types)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// Deletes these documents of the knowledge base (with chunks and jobs), all in one
/// transaction; how many, and their stored files' keys.
pub async fn delete_many(db: &Db, tenant: Uuid, kb: Uuid, ids: &[Uuid]) -> Result<(i64, Vec<String>), sqlx::Error> {
    let mut tx = db.begin().await?;
    // Their jobs first, as `delete` does (a worker locks its job, then the document).
    sqlx::query("SELECT 1 FROM ingest_jobs WHERE knowledge_id = ANY($1) AND tenant_id = $2 ORDER BY id FOR UPDATE")
        .bind(ids)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let (deleted, keys): (i64, Vec<String>) = sqlx::query_as(
        "WITH gone AS (DELETE FROM knowledge WHERE id = ANY($1) AND tenant_id = $2 AND knowledge_base_id = $3 \
                       RETURNING object_key) \
         SELECT count(*), coalesce(array_agg(object_key) FILTER (WHERE object_key IS NOT NULL), '{}') FROM gone",
    )
    .bind(ids)
    .bind(tenant)
    .bind(kb)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((deleted, keys))
}

/// Queues a new parse of each of these documents of the knowledge base, in one
/// transaction, except those with a parse or embedding queued or running (their work is
/// under way): the ones queued, in the order asked, and the ones left as they were.
pub async fn reparse_many(
    db: &Db,
    tenant: Uuid,
    kb: Uuid,
    ids: &[Uuid],
    max_attempts: i32,
) -> Result<(Vec<Uuid>, Vec<Uuid>), sqlx::Error> {
    let mut tx = db.begin().await?;
    let busy = super::jobs::lock_live(&mut tx, tenant, ids).await?;
    let idle: Vec<Uuid> = ids.iter().filter(|id| !busy.contains(id)).copied().collect();
    let pending: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE knowledge SET parse_status = 'pending', error = NULL \
         WHERE id = ANY($1) AND tenant_id = $2 AND knowledge_base_id = $3 RETURNING id",
    )
    .bind(&idle)
    .bind(tenant)
    .bind(kb)
    .fetch_all(&mut *tx)
    .await?;
    let queued: Vec<Uuid> = idle.into_iter().filter(|id| pending.contains(id)).collect();
    for id in &queued {
        super::jobs::queue(&mut tx, Kind::Parse, tenant, *id, max_attempts).await?;
    }
    tx.commit().await?;
    let left: Vec<Uuid> = ids.iter().filter(|id| busy.contains(id)).copied().collect();
    Ok((queued, left))
}
