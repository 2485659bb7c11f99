//! The ingest queue, both halves. [`accept`] takes a document in: the bytes are stored
//! first, then the document and its job are recorded in one transaction, and if recording
//! fails the stored object is deleted again; so a crash leaves at worst an object nothing
//! refers to, never a document whose file is missing. Then an idle worker is woken.
//!
//! The worker pool claims jobs from PostgreSQL (`FOR UPDATE SKIP LOCKED` with a
//! lease), has docreader parse the stored file, chunks the markdown, and writes chunks and
//! status in one transaction. Transient failures retry with doubling waits; permanent ones
//! end as `failed` with the reason. A crashed worker's job is taken over when its lease
//! ends; every end of a job is written only while this worker still holds the lease, so a
//! slow worker never undoes the work of the one that took over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;
use weknora_docreader_proto::ReadRequest;

use crate::chunker::{chunk, search_tokens};
use crate::clients::docreader::ReadError;
use crate::clients::embedding::EmbedError;
use crate::db::documents::{Knowledge, ManualRevision, NewDocument};
use crate::db::jobs::{self, Job, NewChunks, Source};
use crate::state::AppState;
use crate::storage::StoreError;

/// A document to take in: whose, into which knowledge base, and what it is.
pub struct Upload<'a> {
    pub tenant: Uuid,
    pub knowledge_base: Uuid,
    /// `file`, `manual` or `url`.
    pub source_type: &'a str,
    /// The name as sent (kept for display only), or the URL.
    pub file_name: &'a str,
    pub title: &'a str,
    /// The bytes; None for URL documents, which docreader fetches itself.
    pub content: Option<Vec<u8>>,
    pub folder_path: &'a str,
}

/// Why a document was not taken in.
pub enum IntakeError {
    /// The knowledge base has the same file (or URL) already: this document, refused as
    /// upstream refuses it (typed text may repeat).
    Duplicate {
        existing: Box<Knowledge>,
        url: bool,
    },
    /// The document to revise is not the tenant's, or is gone.
    NotFound,
    /// The file could not be stored; nothing was recorded.
    Store(StoreError),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for IntakeError {
    fn from(e: sqlx::Error) -> IntakeError {
        IntakeError::Database(e)
    }
}

impl From<StoreError> for IntakeError {
    fn from(e: StoreError) -> IntakeError {
        IntakeError::Store(e)
    }
}

/// Takes a document in: refuses a duplicate, stores the bytes, then records the document
/// and its job together; if recording fails the stored object is removed again. Wakes an
/// idle worker.
pub async fn accept(state: &AppState, upload: Upload<'_>) -> Result<Knowledge, IntakeError> {
    let Upload { tenant, knowledge_base: kb, source_type, file_name, title, content, folder_path } = upload;
    let id = Uuid::new_v4();
    let key = content.as_ref().map(|_| object_key(tenant, kb, id, file_name));
    let checksum: Option<String> = content.as_ref().map(|b| hex_sha256(b));
    let file_type = if source_type == "url" { String::new() } else { file_type(file_name) };
    let size = content.as_ref().map_or(0, |b| b.len() as i64);
    let url = (source_type == "url").then_some(file_name);
    let same_file = checksum.as_deref().filter(|_| source_type == "file");
    if let Some(there) = crate::db::documents::existing(&state.db, tenant, kb, same_file, url).await? {
        return Err(IntakeError::Duplicate { existing: Box::new(there), url: url.is_some() });
    }
    if let (Some(key), Some(bytes)) = (&key, content) {
        crate::storage::put(&state.storage, key, bytes).await?;
    }
    let doc = NewDocument {
        id,
        tenant,
        knowledge_base: kb,
        source_type,
        source: file_name,
        title,
        file_type: &file_type,
        object_key: key.as_deref(),
        size_bytes: size,
        checksum: checksum.as_deref(),
        folder_path,
    };
    match crate::db::documents::insert_with_job(&state.db, &doc, state.config.ingest.max_attempts).await {
        Ok(k) => {
            state.new_job.notify_one();
            Ok(k)
        }
        Err(e) => {
            if let Some(key) = &key {
                let _ = state.storage.delete(key).await;
            }
            Err(e.into())
        }
    }
}

/// A manual document's new text, by the same protocol: stored under a key no earlier
/// version has, then the revision and its job recorded together (the old text stays whole
/// until then), the new object removed if that fails, the old one once it succeeded.
pub async fn revise_manual(
    state: &AppState,
    tenant: Uuid,
    doc: &Knowledge,
    title: &str,
    content: String,
) -> Result<Knowledge, IntakeError> {
    let source = format!("{title}.md");
    let key = revision_key(tenant, doc.knowledge_base_id, doc.id, &source);
    let checksum = hex_sha256(content.as_bytes());
    let rev = ManualRevision {
        title,
        source: &source,
        file_type: &file_type(&source),
        object_key: &key,
        size_bytes: content.len() as i64,
        checksum: &checksum,
    };
    crate::storage::put(&state.storage, &key, content.into_bytes()).await?;
    let revised =
        crate::db::documents::revise_manual(&state.db, tenant, doc.id, &rev, state.config.ingest.max_attempts).await;
    let (revised, old_key) = match revised {
        Ok(Some(found)) => found,
        Ok(None) => {
            discard(state, &key).await;
            return Err(IntakeError::NotFound);
        }
        Err(e) => {
            discard(state, &key).await;
            return Err(e.into());
        }
    };
    state.new_job.notify_one();
    if let Some(old) = old_key.filter(|old| *old != key) {
        discard(state, &old).await;
    }
    Ok(revised)
}

/// Removes a stored file nothing refers to any more; a failure leaves an orphan, logged.
pub async fn discard(state: &AppState, key: &str) {
    if let Err(e) = state.storage.delete(key).await {
        tracing::warn!(error = %e, key, "a stored file nothing refers to could not be removed");
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The last component of a name as sent, whichever separator the sender's system uses.
pub fn base_name(file_name: &str) -> &str {
    file_name.rsplit(['/', '\\']).next().unwrap_or_default()
}

/// The file type is the extension of the file's own name (never of a folder in a path
/// sent with it), lower-cased; none for names like `.bashrc` or `README`.
pub fn file_type(file_name: &str) -> String {
    match base_name(file_name).rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()) => {
            ext.to_ascii_lowercase()
        }
        _ => String::new(),
    }
}

/// The longest stored name, in bytes: file systems take 255, and room is left.
const MAX_STORED_NAME: usize = 200;

/// A storage key that keeps the file's name readable but cannot escape its folder, and
/// fits a file system's limit (a long name keeps its start and its extension).
pub fn object_key(tenant: Uuid, kb: Uuid, knowledge: Uuid, file_name: &str) -> String {
    format!("{tenant}/{kb}/{knowledge}/{}", stored_name(file_name))
}

/// A new key for another version of the document's file, in a folder of its own: never
/// the key of any earlier version.
pub fn revision_key(tenant: Uuid, kb: Uuid, knowledge: Uuid, file_name: &str) -> String {
    let revision = Uuid::new_v4().simple().to_string();
    format!("{tenant}/{kb}/{knowledge}/{}/{}", &revision[..12], stored_name(file_name))
}

/// The file's own name, made safe to store.
fn stored_name(file_name: &str) -> String {
    let safe: String = base_name(file_name)
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let safe = if safe.trim_matches('.').is_empty() { "file".to_string() } else { safe };
    shortened(&safe)
}

/// `name` cut to `MAX_STORED_NAME` bytes on a character boundary, keeping its extension.
fn shortened(name: &str) -> String {
    if name.len() <= MAX_STORED_NAME {
        return name.to_string();
    }
    let extension = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => format!(".{ext}"),
        _ => String::new(),
    };
    let room = MAX_STORED_NAME - extension.len();
    let mut stem: String = String::new();
    for c in name[..name.len() - extension.len()].chars() {
        if stem.len() + c.len_utf8() > room {
            break;
        }
        stem.push(c);
    }
    stem + &extension
}

/// Starts `ingest.workers` workers; they run until the process ends.
pub fn spawn_workers(state: Arc<AppState>) {
    for n in 0..state.config.ingest.workers {
        let state = state.clone();
        let owner = format!("{}-{n}", state.instance);
        tokio::spawn(async move { worker(state, owner).await });
    }
}

async fn worker(state: Arc<AppState>, owner: String) {
    loop {
        match jobs::claim(&state.db, &owner, state.config.ingest.lease_secs).await {
            Ok(Some(job)) => {
                let span = tracing::info_span!(
                    "ingest",
                    otel.name = format!("ingest {}", job.kind),
                    otel.kind = "consumer",
                    job = job.id,
                    knowledge = %job.knowledge_id,
                    attempt = job.attempts
                );
                weknora_telemetry::adopt(&span, job.traceparent.as_deref());
                process(&state, &owner, job).instrument(span).await;
            }
            Ok(None) => {
                // Nothing due: wait for a new job, or poll (retries come due over time).
                let _ = tokio::time::timeout(Duration::from_secs(1), state.new_job.notified()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingest: cannot claim jobs (database down?)");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Why a job did not finish: worth another try, or not.
enum Failure {
    Transient(String),
    Permanent(String),
}

impl From<EmbedError> for Failure {
    fn from(e: EmbedError) -> Failure {
        match e {
            EmbedError::Transient(reason) => Failure::Transient(reason),
            EmbedError::Permanent(reason) => Failure::Permanent(reason),
        }
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Failure {
        match e {
            ReadError::Transient(reason) => Failure::Transient(reason),
            ReadError::Permanent(reason) => Failure::Permanent(reason),
        }
    }
}

fn database(e: sqlx::Error) -> Failure {
    Failure::Transient(format!("database: {e}"))
}

async fn process(state: &AppState, owner: &str, job: Job) {
    let started = Instant::now();
    let done = match job.kind.as_str() {
        "embed" => embed(state, owner, &job).await,
        _ => parse_and_store(state, owner, &job).await,
    };
    let (outcome, recorded) = match done {
        Ok(Some((kb, chunks))) => {
            tracing::info!(chunks, kind = job.kind, "ingest: completed");
            crate::search::cache::knowledge_base_changed(state, kb).await;
            ("completed", Ok(true))
        }
        Ok(None) => ("lease_lost", Ok(false)),
        Err(Failure::Transient(reason)) if job.attempts < job.max_attempts => {
            let wait_ms =
                state.config.ingest.retry_base_ms.saturating_mul(1 << (job.attempts - 1).clamp(0, 16)).min(300_000);
            tracing::warn!(%reason, wait_ms, "ingest: will retry");
            ("retried", jobs::requeue(&state.db, &job, owner, &reason, wait_ms as f64 / 1000.0).await)
        }
        Err(Failure::Transient(reason) | Failure::Permanent(reason)) => {
            let reason = if job.attempts >= job.max_attempts && job.max_attempts > 1 {
                format!("{reason} (gave up after {} attempts)", job.attempts)
            } else {
                reason
            };
            tracing::warn!(%reason, "ingest: failed");
            ("failed", jobs::fail(&state.db, &job, owner, &reason).await)
        }
    };
    match recorded {
        Ok(true) => crate::metrics::ingest_finished(outcome, started),
        Ok(false) => {
            tracing::warn!(
                "ingest: the job is no longer this worker's (its lease was taken over, or the document deleted); its outcome is dropped"
            );
            crate::metrics::ingest_finished("lease_lost", started);
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest: could not record the outcome; the lease will expire and the job run again")
        }
    }
}

/// Parses and stores the document: the knowledge base and chunk count, or None when the
/// lease was lost before the chunks could be written.
async fn parse_and_store(state: &AppState, owner: &str, job: &Job) -> Result<Option<(uuid::Uuid, usize)>, Failure> {
    let src = jobs::source(&state.db, job.knowledge_id)
        .await
        .map_err(database)?
        .ok_or_else(|| Failure::Permanent("the document was deleted".into()))?;
    let markdown = state.docreader.read(read_request(state, job, &src).await?).await?;
    let pieces = chunk(&markdown, src.chunk_size as usize, src.chunk_overlap as usize, &src.split_markers);
    let chunks = NewChunks {
        search_texts: pieces.iter().map(|c| search_tokens(&state.jieba, &c.content).join(" ")).collect(),
        starts: pieces.iter().map(|c| c.start as i32).collect(),
        ends: pieces.iter().map(|c| c.end as i32).collect(),
        contents: pieces.into_iter().map(|c| c.content).collect(),
    };
    let embed = state.vectors.is_some() && (state.embedder.is_some() || src.embedding_model_id.is_some());
    let held = jobs::complete_parse(&state.db, job, owner, &src, &chunks, embed).await.map_err(database)?;
    if held && embed {
        state.new_job.notify_one();
    }
    Ok(held.then_some((src.knowledge_base_id, chunks.contents.len())))
}

/// Gives the document's chunks vectors, a batch at a time (each batch stored as it comes,
/// so a retry carries on where the last try stopped): the knowledge base and the number
/// of chunks embedded, or None when the lease was lost.
async fn embed(state: &AppState, owner: &str, job: &Job) -> Result<Option<(uuid::Uuid, usize)>, Failure> {
    if state.vectors.is_none() {
        return Err(Failure::Permanent("the database has no pgvector: vectors cannot be stored".into()));
    }
    let src = jobs::source(&state.db, job.knowledge_id)
        .await
        .map_err(database)?
        .ok_or_else(|| Failure::Permanent("the document was deleted".into()))?;
    let embedder = match crate::models::embedder(state, src.tenant_id, src.embedding_model_id).await {
        Ok(Some(embedder)) => embedder,
        Ok(None) => {
            return Err(Failure::Permanent("no embedding model is configured (EMBEDDING_BASE_URL)".into()));
        }
        Err(crate::models::ModelError::Database(e)) => return Err(database(e)),
        Err(e) => return Err(Failure::Permanent(format!("the knowledge base's embedding model: {e}"))),
    };
    let mut embedded = 0;
    loop {
        let batch = jobs::chunks_without_vectors(&state.db, job.knowledge_id, embedder.batch_size() as i64)
            .await
            .map_err(database)?;
        if batch.is_empty() {
            break;
        }
        let (ids, texts): (Vec<uuid::Uuid>, Vec<String>) = batch.into_iter().unzip();
        let vectors = embedder.embed_passages(&texts).await?;
        let dimensions = vectors.first().map_or(0, Vec::len);
        let recorded = crate::db::knowledge_bases::record_embedding_model(
            &state.db,
            src.knowledge_base_id,
            embedder.model(),
            dimensions as i32,
        )
        .await
        .map_err(database)?;
        if let Some((model, size)) = recorded
            && (model != embedder.model() || size as usize != dimensions)
        {
            return Err(Failure::Permanent(format!(
                "the knowledge base was indexed with the embedding model `{model}` ({size} dimensions), not `{}` \
                 ({dimensions}): reindex the knowledge base to use the new model",
                embedder.model()
            )));
        }
        if let Err(e) = crate::db::system::ensure_vector_index(&state.db, dimensions).await {
            // Another worker may be creating it; without it searches are exact, only slower.
            tracing::warn!(error = %e, dimensions, "ingest: could not create the vector index");
        }
        let lease = state.config.ingest.lease_secs;
        if !jobs::store_vectors(&state.db, job, owner, lease, embedder.model(), &ids, &vectors)
            .await
            .map_err(database)?
        {
            return Ok(None);
        }
        embedded += ids.len();
    }
    let held = jobs::complete_embed(&state.db, job, owner).await.map_err(database)?;
    Ok(held.then_some((src.knowledge_base_id, embedded)))
}

/// What docreader is asked: the stored bytes, or the URL for it to fetch.
async fn read_request(state: &AppState, job: &Job, src: &Source) -> Result<ReadRequest, Failure> {
    let mut request = ReadRequest {
        file_name: src.source.clone(),
        file_type: src.file_type.clone(),
        request_id: format!("ingest-{}-{}", job.id, job.attempts),
        ..Default::default()
    };
    match (&src.source_type[..], &src.object_key) {
        ("url", _) => request.url = src.source.clone(),
        (_, Some(key)) => {
            let bytes = state
                .storage
                .read(key)
                .await
                .map_err(|e| Failure::Transient(format!("reading {key} from storage: {e}")))?;
            request.file_content = bytes.to_vec();
        }
        _ => return Err(Failure::Permanent("the document has no stored content".into())),
    }
    Ok(request)
}

/// Jobs a previous run of this instance left running are queued again at once (see
/// `jobs::release_own`); other unfinished jobs are picked up by the claim query once their
/// lease has expired. Reports how many there are at start.
pub async fn report_unfinished(state: &AppState) {
    match jobs::release_own(&state.db, &state.instance).await {
        Ok(n) if n > 0 => {
            tracing::warn!(jobs = n, "ingest: jobs this app was running when it stopped are queued again")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "ingest: could not queue again the jobs of this app's previous run"),
    }
    if let Ok(n) = jobs::unfinished(&state.db).await
        && n > 0
    {
        tracing::info!(jobs = n, "ingest: resuming unfinished jobs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_type_is_the_extension_of_the_name_alone() {
        assert_eq!(file_type("report.PDF"), "pdf");
        assert_eq!(file_type("../../../etc/passwd"), "");
        assert_eq!(file_type("..\\..\\notes.v2.docx"), "docx");
        assert_eq!(file_type("dir.d/README"), "");
        assert_eq!(file_type(".bashrc"), "");
        assert_eq!(file_type("weird.t/x"), "");
        assert_eq!(file_type("a.tar.gz"), "gz");
    }

    #[test]
    fn each_revision_of_a_file_has_a_key_of_its_own() {
        let id = Uuid::nil();
        let first = object_key(id, id, id, "notes/plan.md");
        let (a, b) = (revision_key(id, id, id, "notes/plan.md"), revision_key(id, id, id, "notes/plan.md"));
        assert!(a != b && a != first && a.ends_with("/plan.md") && a.starts_with(first.trim_end_matches("plan.md")));
    }

    #[test]
    fn object_keys_cannot_escape_their_folder() {
        let id = Uuid::nil();
        assert_eq!(object_key(id, id, id, "../../../etc/passwd").rsplit('/').next(), Some("passwd"));
        assert!(object_key(id, id, id, "..").ends_with("/file"));
        assert!(object_key(id, id, id, "a b?.txt").ends_with("/a_b_.txt"));
        let long = object_key(id, id, id, &format!("{}.txt", "é".repeat(1000)));
        let name = long.rsplit('/').next().unwrap();
        assert!(name.len() <= MAX_STORED_NAME && name.starts_with('é') && name.ends_with(".txt"), "{name}");
    }
}
