//! The ingest worker pool: claims jobs from PostgreSQL (`FOR UPDATE SKIP LOCKED` with a
//! lease), has docreader parse the stored file, chunks the markdown, and writes chunks and
//! status in one transaction. Transient failures retry with doubling waits; permanent ones
//! end as `failed` with the reason. A crashed worker's job is taken over when its lease
//! ends; every end of a job is written only while this worker still holds the lease, so a
//! slow worker never undoes the work of the one that took over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use weknora_docreader_proto::ReadRequest;

use crate::chunker::{chunk, search_tokens};
use crate::db::jobs::{self, Job, NewChunks, Source};
use crate::docreader::ReadError;
use crate::embedding::EmbedError;
use crate::state::AppState;

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
            crate::cache::knowledge_base_changed(state, kb).await;
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
