//! The ingest worker pool: claims jobs from PostgreSQL (`FOR UPDATE SKIP LOCKED` with a
//! lease), has docreader parse the stored file, chunks the markdown, and writes chunks and
//! status in one transaction. Transient failures retry with doubling waits; permanent ones
//! end as `failed` with the reason. A crashed worker's job is taken over when its lease ends,
//! and rewriting a document's chunks in one transaction means a retry never duplicates them.

use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use uuid::Uuid;
use weknora_docreader_proto::ReadRequest;
use weknora_docreader_proto::doc_reader_client::DocReaderClient;

use crate::chunker::{chunk, search_tokens};
use crate::server::AppState;

struct Job {
    id: i64,
    knowledge_id: Uuid,
    attempts: i32,
    max_attempts: i32,
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
        match claim(&state, &owner).await {
            Ok(Some(job)) => process(&state, &owner, job).await,
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

async fn claim(state: &AppState, owner: &str) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<(i64, Uuid, i32, i32)> = sqlx::query_as(
        "UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
         lease_expires_at = now() + make_interval(secs => $2) \
         WHERE id = (SELECT id FROM ingest_jobs \
                     WHERE (state = 'queued' AND next_attempt_at <= now()) \
                        OR (state = 'running' AND lease_expires_at < now()) \
                     ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING id, knowledge_id, attempts, max_attempts",
    )
    .bind(owner)
    .bind(state.config.ingest.lease_secs as f64)
    .fetch_optional(&state.db)
    .await?;
    let Some((id, knowledge_id, attempts, max_attempts)) = row else { return Ok(None) };
    sqlx::query("UPDATE knowledge SET parse_status = 'processing' WHERE id = $1")
        .bind(knowledge_id)
        .execute(&state.db)
        .await?;
    Ok(Some(Job { id, knowledge_id, attempts, max_attempts }))
}

/// Why a job did not finish: worth another try, or not.
enum Failure {
    Transient(String),
    Permanent(String),
}

async fn process(state: &AppState, owner: &str, job: Job) {
    let span = tracing::info_span!("ingest", job = job.id, knowledge = %job.knowledge_id, attempt = job.attempts);
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let outcome = parse_and_store(state, owner, &job).await;
    let result = match outcome {
        Ok((kb, chunks)) => {
            tracing::info!(chunks, "ingest: completed");
            crate::metrics::ingest_finished("completed", started);
            crate::cache::knowledge_base_changed(state, kb).await;
            Ok(())
        }
        Err(Failure::Transient(reason)) if job.attempts < job.max_attempts => {
            let wait_ms =
                state.config.ingest.retry_base_ms.saturating_mul(1 << (job.attempts - 1).clamp(0, 16)).min(300_000);
            tracing::warn!(%reason, wait_ms, "ingest: will retry");
            crate::metrics::ingest_finished("retried", started);
            sqlx::query(
                "UPDATE ingest_jobs SET state = 'queued', next_attempt_at = now() + make_interval(secs => $3), \
                 last_error = $2, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
            )
            .bind(job.id)
            .bind(&reason)
            .bind(wait_ms as f64 / 1000.0)
            .execute(&state.db)
            .await
            .map(|_| ())
        }
        Err(Failure::Transient(reason) | Failure::Permanent(reason)) => {
            let reason = if job.attempts >= job.max_attempts && job.max_attempts > 1 {
                format!("{reason} (gave up after {} attempts)", job.attempts)
            } else {
                reason
            };
            tracing::warn!(%reason, "ingest: failed");
            crate::metrics::ingest_finished("failed", started);
            fail(state, &job, &reason).await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "ingest: could not record the outcome; the lease will expire and the job run again");
    }
}

async fn fail(state: &AppState, job: &Job, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE ingest_jobs SET state = 'failed', last_error = $2, finished_at = now(), lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = $1",
    )
    .bind(job.id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE knowledge SET parse_status = 'failed', error = $2 WHERE id = $1")
        .bind(job.knowledge_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[derive(sqlx::FromRow)]
struct Source {
    tenant_id: Uuid,
    knowledge_base_id: Uuid,
    source_type: String,
    source: String,
    file_type: String,
    object_key: Option<String>,
    chunk_size: i32,
    chunk_overlap: i32,
    split_markers: Vec<String>,
}

/// Returns the knowledge base the document belongs to and its chunk count.
async fn parse_and_store(state: &AppState, owner: &str, job: &Job) -> Result<(Uuid, usize), Failure> {
    let db_error = |e: sqlx::Error| Failure::Transient(format!("database: {e}"));
    let src: Source = sqlx::query_as(
        "SELECT k.tenant_id, k.knowledge_base_id, k.source_type, k.source, k.file_type, k.object_key, \
         b.chunk_size, b.chunk_overlap, b.split_markers \
         FROM knowledge k JOIN knowledge_bases b ON b.id = k.knowledge_base_id WHERE k.id = $1",
    )
    .bind(job.knowledge_id)
    .fetch_optional(&state.db)
    .await
    .map_err(db_error)?
    .ok_or_else(|| Failure::Permanent("the document was deleted".into()))?;

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
    let markdown = read_document(state, request).await?;
    let pieces = chunk(&markdown, src.chunk_size as usize, src.chunk_overlap as usize, &src.split_markers);
    let contents: Vec<String> = pieces.iter().map(|c| c.content.clone()).collect();
    let tokens: Vec<String> = pieces.iter().map(|c| search_tokens(&state.jieba, &c.content).join(" ")).collect();
    let positions: Vec<i32> = (0..pieces.len() as i32).collect();
    let starts: Vec<i32> = pieces.iter().map(|c| c.start as i32).collect();
    let ends: Vec<i32> = pieces.iter().map(|c| c.end as i32).collect();

    let mut tx = state.db.begin().await.map_err(db_error)?;
    // Only the lease holder may finish the job: a worker that lost its lease stops here.
    let held: Option<i64> =
        sqlx::query_scalar("SELECT id FROM ingest_jobs WHERE id = $1 AND lease_owner = $2 FOR UPDATE")
            .bind(job.id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
    if held.is_none() {
        return Err(Failure::Transient("the lease was lost to another worker".into()));
    }
    sqlx::query("DELETE FROM chunks WHERE knowledge_id = $1")
        .bind(job.knowledge_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO chunks (tenant_id, knowledge_base_id, knowledge_id, position, content, search_text, start_offset, end_offset) \
         SELECT $1, $2, $3, * FROM UNNEST($4::int[], $5::text[], $6::text[], $7::int[], $8::int[])",
    )
    .bind(src.tenant_id)
    .bind(src.knowledge_base_id)
    .bind(job.knowledge_id)
    .bind(&positions)
    .bind(&contents)
    .bind(&tokens)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "UPDATE knowledge SET parse_status = 'completed', error = NULL, chunk_count = $2, processed_at = now() WHERE id = $1",
    )
    .bind(job.knowledge_id)
    .bind(pieces.len() as i32)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "UPDATE ingest_jobs SET state = 'succeeded', finished_at = now(), last_error = NULL, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = $1",
    )
    .bind(job.id)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok((src.knowledge_base_id, pieces.len()))
}

async fn read_document(state: &AppState, request: ReadRequest) -> Result<String, Failure> {
    let config = &state.config.docreader;
    let uri = if config.addr.contains("://") { config.addr.clone() } else { format!("http://{}", config.addr) };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Failure::Permanent(format!("DOCREADER_ADDR is invalid: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(state.config.ingest.docreader_timeout_secs));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Failure::Transient(format!("docreader at {} is unreachable: {e}", config.addr)))?;
    let mut client =
        DocReaderClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
    let mut call = tonic::Request::new(request);
    if !config.auth_token.0.is_empty() {
        let value = format!("Bearer {}", config.auth_token.0)
            .parse()
            .map_err(|_| Failure::Permanent("GRPC_AUTH_TOKEN has characters a header cannot carry".into()))?;
        call.metadata_mut().insert("authorization", value);
    }
    match client.read(call).await {
        Ok(response) => Ok(response.into_inner().markdown_content),
        Err(status) => {
            let reason = format!("docreader: {}", status.message());
            match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled | Code::Unknown => {
                    Err(Failure::Transient(reason))
                }
                _ => Err(Failure::Permanent(reason)),
            }
        }
    }
}

/// Jobs a previous run left unfinished are picked up by the claim query once their lease
/// has expired; this only reports how many there are at start.
pub async fn report_unfinished(state: &AppState) {
    let n: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state IN ('queued', 'running')")
        .fetch_one(&state.db)
        .await;
    if let Ok(n) = n
        && n > 0
    {
        tracing::info!(jobs = n, "ingest: resuming unfinished jobs");
    }
}
