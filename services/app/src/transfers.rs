//! The transfer worker: carries out moves of documents between knowledge bases and copies of
//! knowledge bases (`db::transfers`), one task at a time per process, any replica taking any
//! task. A copy first creates its target (when it goes into a new knowledge base), then fixes
//! the documents it copies, then copies each: its stored file to a key of its own (so that
//! deleting either knowledge base leaves the other whole), its row, chunks and vectors.
//! A task that fails as a whole (the database, the storage) is tried again with doubling
//! waits, carrying on where it stopped; documents that cannot be moved or copied are counted
//! as failed, with the reason, and the task goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::db::transfers::{self, Copy, Outcome, Stop, Task, Worked};
use crate::state::AppState;

/// Tasks that ended longer ago than this are forgotten (their progress is no longer answered).
const KEEP_DAYS: i32 = 7;

/// Starts this process's transfer worker; it runs until the process ends.
pub fn spawn_worker(state: Arc<AppState>) {
    tokio::spawn(async move { worker(state).await });
}

async fn worker(state: Arc<AppState>) {
    let owner = format!("{}-transfers", state.instance);
    match transfers::release_own(&state.db, &owner).await {
        Ok(n) if n > 0 => {
            tracing::warn!(tasks = n, "transfers: tasks this app was running when it stopped are resumed")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "transfers: could not resume the tasks of this app's previous run"),
    }
    let mut pruned: Option<Instant> = None;
    loop {
        match transfers::claim(&state.db, &owner, state.config.ingest.lease_secs).await {
            Ok(Some(task)) => {
                let span = tracing::info_span!("transfer", kind = task.kind, task = task.id, attempt = task.attempts);
                tracing::Instrument::instrument(process(&state, &owner, task), span).await;
            }
            Ok(None) => {
                if pruned.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                    pruned = Some(Instant::now());
                    if let Err(e) = transfers::prune(&state.db, KEEP_DAYS).await {
                        tracing::warn!(error = %e, "transfers: could not forget old tasks");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "transfers: cannot claim tasks (database down?)");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Why a task did not finish: worth another try, or not.
enum Failure {
    Transient(String),
    Permanent(String),
}

impl From<Stop> for Failure {
    fn from(stop: Stop) -> Failure {
        match stop {
            Stop::Database(e) => Failure::Transient(format!("database: {e}")),
            Stop::Gone(reason) => Failure::Permanent(reason),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::Transient(format!("database: {e}"))
    }
}

async fn process(state: &AppState, owner: &str, task: Task) {
    let done = if task.attempts > task.max_attempts {
        Err(Failure::Permanent(format!("gave up after {} attempts", task.max_attempts)))
    } else if task.kind == "copy" {
        copy(state, owner, &task).await
    } else {
        move_documents(state, owner, &task).await
    };
    let verb = if task.kind == "copy" { "Copied" } else { "Moved" };
    let recorded = match done {
        Ok(Some(())) => finish(state, owner, &task, verb).await,
        Ok(None) => {
            tracing::warn!("transfers: the task is no longer this worker's (its lease was taken over)");
            return;
        }
        Err(Failure::Transient(reason)) if task.attempts < task.max_attempts => {
            let wait = (2u64 << task.attempts.clamp(0, 8)) as f64;
            tracing::warn!(%reason, wait, "transfers: will retry");
            transfers::retry(&state.db, &task, owner, &reason, wait).await
        }
        Err(Failure::Transient(reason) | Failure::Permanent(reason)) => {
            tracing::warn!(%reason, "transfers: failed");
            let message = format!("The {} failed: {reason}", task.kind);
            transfers::finish(&state.db, &task, owner, "failed", &message, &reason).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "transfers: could not record the outcome; the lease will expire and the task run again");
    }
}

/// Ends a task whose documents are all done: failed when every one of them failed.
async fn finish(state: &AppState, owner: &str, task: &Task, verb: &str) -> Result<bool, sqlx::Error> {
    let failure = transfers::first_failure(&state.db, task).await?;
    let progress = transfers::progress(&state.db, task.tenant_id, &task.kind, &task.id).await?;
    let (total, failed) = progress.as_ref().map_or((0, 0), |p| (p.total, p.failed));
    let mut message = format!("{verb} {} of {total} documents", total - failed);
    if let Some(reason) = &failure {
        message.push_str(&format!("; {failed} failed, the first because {reason}"));
    }
    let (status, error) = if total > 0 && failed == total {
        ("failed", failure.unwrap_or_default())
    } else {
        ("completed", String::new())
    };
    tracing::info!(total, failed, "transfers: {status}");
    transfers::finish(&state.db, task, owner, status, &message, &error).await
}

/// After a document's work: wakes the ingest workers for the jobs it queued, and has the
/// knowledge bases' cached searches forgotten.
async fn worked(state: &AppState, task: &Task, target: Uuid, worked: &Worked) {
    if worked.queued {
        state.new_job.notify_one();
    }
    if matches!(worked.outcome, Outcome::Done(_)) {
        if task.kind == "move" {
            crate::search::cache::knowledge_base_changed(state, task.source_kb_id).await;
        }
        crate::search::cache::knowledge_base_changed(state, target).await;
    }
}

/// Moves the task's documents not done yet; None when the lease is lost.
async fn move_documents(state: &AppState, owner: &str, task: &Task) -> Result<Option<()>, Failure> {
    let target = task.target_kb_id.ok_or_else(|| Failure::Permanent("the move has no target".into()))?;
    let done = transfers::done(&state.db, task).await?;
    let lease = state.config.ingest.lease_secs;
    let attempts = state.config.ingest.max_attempts;
    for id in task.knowledge_ids.iter().flatten().filter(|id| !done.contains(id)) {
        let Some(work) = transfers::move_one(&state.db, task, owner, lease, *id, attempts).await? else {
            return Ok(None);
        };
        worked(state, task, target, &work).await;
    }
    Ok(Some(()))
}

/// Copies the source's documents not copied yet, creating the target first when there is
/// none; None when the lease is lost.
async fn copy(state: &AppState, owner: &str, task: &Task) -> Result<Option<()>, Failure> {
    let lease = state.config.ingest.lease_secs;
    let target = match task.target_kb_id {
        Some(target) => target,
        None => match transfers::create_target(&state.db, task, owner, lease).await? {
            Some(target) => target,
            None => return Ok(None),
        },
    };
    let ids = match &task.knowledge_ids {
        Some(ids) => ids.clone(),
        None => match transfers::plan_copy(&state.db, task, owner, lease, target).await? {
            Some(ids) => ids,
            None => return Ok(None),
        },
    };
    let task = Task { target_kb_id: Some(target), ..task.clone() };
    let done = transfers::done(&state.db, &task).await?;
    for source in ids.into_iter().filter(|id| !done.contains(id)) {
        let Some(work) = copy_document(state, owner, &task, target, source).await? else { return Ok(None) };
        worked(state, &task, target, &work).await;
    }
    Ok(Some(()))
}

/// Copies one document: its stored file first (to a key of the copy's own), then the rest
/// in one transaction; the copied file is removed again when that does not happen.
async fn copy_document(
    state: &AppState,
    owner: &str,
    task: &Task,
    target: Uuid,
    source: Uuid,
) -> Result<Option<Worked>, Failure> {
    let id = Uuid::new_v4();
    let key = match transfers::stored_file(&state.db, task.tenant_id, task.source_kb_id, source).await? {
        Some(Some(from)) => {
            let name = from.rsplit('/').next().unwrap_or("file");
            let to = format!("{}/{target}/{id}/{name}", task.tenant_id);
            match state.storage.copy(&from, &to).await {
                Ok(_) => Some(to),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                    // Copied without a file, the document could never be parsed again nor downloaded.
                    tracing::warn!(key = from, "transfers: a document's stored file is missing; it is not copied");
                    let reason = "its stored file is missing";
                    let lease = state.config.ingest.lease_secs;
                    return Ok(transfers::fail_one(&state.db, task, owner, lease, source, reason).await?);
                }
                Err(e) => {
                    let _ = state.storage.delete(&to).await;
                    return Err(Failure::Transient(format!("copying the stored file {from}: {e}")));
                }
            }
        }
        // No file (a URL document), or gone from the source: the transaction says which.
        Some(None) | None => None,
    };
    let copy = Copy { source, id, object_key: key.as_deref() };
    let attempts = state.config.ingest.max_attempts;
    let result = transfers::copy_one(&state.db, task, owner, state.config.ingest.lease_secs, &copy, attempts).await;
    if !matches!(result, Ok(Some(_)))
        && let Some(key) = &key
        && let Err(e) = state.storage.delete(key).await
    {
        tracing::warn!(error = %e, key, "transfers: a copied file that no document uses could not be removed");
    }
    Ok(result?)
}
