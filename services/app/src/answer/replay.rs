//! An answer's frames, kept in Redis while it streams and for a while after (a Redis
//! stream, `{prefix}answer:{message_id}`), so that a client that lost its connection can
//! replay what was said and follow the rest, on any replica (upstream's continue-stream);
//! and stop requests for answers running on another replica (`{prefix}stop:{message_id}`).
//!
//! Writing is best effort and never slows an answer: frames go to a task of their own,
//! and Redis being down costs the replay, not the answer.

use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::state::AppState;

/// How long a finished answer's frames stay to be replayed.
pub const KEPT_AFTER_SECS: u64 = 600;
/// How long a follower waits for a frame before it checks the answer still runs.
const BLOCK: Duration = Duration::from_secs(2);

fn key(state: &AppState, message: Uuid) -> String {
    format!("{}answer:{message}", state.config.redis.prefix)
}

fn stop_key(state: &AppState, message: Uuid) -> String {
    format!("{}stop:{message}", state.config.redis.prefix)
}

/// Asks whichever replica runs the answer `message` to stop it; false when Redis does not
/// answer.
pub async fn ask_stop(state: &AppState, message: Uuid) -> bool {
    let ttl = state.config.chat.total_timeout_secs;
    crate::search::cache::run::<()>(state, redis::Cmd::set_ex(stop_key(state, message), 1, ttl)).await.is_some()
}

/// Whether a stop was asked for the answer `message` (by `ask_stop`, on any replica).
pub async fn stop_asked(state: &AppState, message: Uuid) -> bool {
    crate::search::cache::run::<bool>(state, redis::Cmd::exists(stop_key(state, message))).await.unwrap_or(false)
}

/// Whether a frame (as JSON) is an answer's last: `complete`, or `error` for one that failed.
pub fn is_last(frame: &str) -> bool {
    let kind = serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|f| f["response_type"].as_str().map(str::to_owned));
    matches!(kind.as_deref(), Some("complete" | "error"))
}

/// Where an answer's frames are written, in order, for replay.
pub struct Log(mpsc::UnboundedSender<String>);

impl Log {
    /// A log for the answer `message`; its frames are kept `KEPT_AFTER_SECS` past the last
    /// one written, and for no longer than the answer may run (`chat.total_timeout_secs`) plus that.
    pub fn open(state: &std::sync::Arc<AppState>, message: Uuid) -> Log {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let state = state.clone();
        let key = key(&state, message);
        let ttl = state.config.chat.total_timeout_secs + KEPT_AFTER_SECS;
        tokio::spawn(async move {
            let mut expiring = false;
            while let Some(frame) = rx.recv().await {
                let last = is_last(&frame);
                let mut add = redis::cmd("XADD");
                add.arg(&key).arg("*").arg("f").arg(frame);
                let kept = crate::search::cache::run::<String>(&state, add).await.is_some();
                if kept && (!expiring || last) {
                    expiring = true;
                    let mut expire = redis::cmd("EXPIRE");
                    expire.arg(&key).arg(if last { KEPT_AFTER_SECS } else { ttl });
                    let _: Option<i64> = crate::search::cache::run(&state, expire).await;
                }
                if !kept {
                    tracing::debug!("replay: a frame could not be kept; this answer cannot be continued");
                }
            }
        });
        Log(tx)
    }

    pub fn write(&self, frame: &str) {
        let _ = self.0.send(frame.to_owned());
    }
}

#[derive(Debug)]
pub enum FollowError {
    /// Nothing is kept for the answer (it ended long ago, or Redis lost it).
    NoFrames,
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for FollowError {
    fn from(e: redis::RedisError) -> Self {
        FollowError::Redis(e)
    }
}

/// The answer's frames from its first, as they were sent, and then as they come, until
/// its last; ends early (after a last frame saying so) when the answer stopped without
/// one (the replica answering it went down): `still_running` is asked whenever no frame
/// came for a while.
pub async fn follow<F, R>(
    state: &AppState,
    message: Uuid,
    still_running: F,
) -> Result<mpsc::Receiver<String>, FollowError>
where
    F: Fn() -> R + Send + 'static,
    R: std::future::Future<Output = bool> + Send,
{
    // A connection of its own: a blocking read would hold up the shared one.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    let mut conn = state.redis.get_multiplexed_async_connection_with_config(&config).await?;
    let key = key(state, message);
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await?;
    if !exists {
        return Err(FollowError::NoFrames);
    }
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut last_id = "0-0".to_string();
        let options = StreamReadOptions::default().block(BLOCK.as_millis() as usize).count(256);
        loop {
            let read: Result<Option<StreamReadReply>, _> =
                redis::cmd("XREAD").arg(&options).arg("STREAMS").arg(&key).arg(&last_id).query_async(&mut conn).await;
            let entries = match read {
                Ok(reply) => reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(error = %e, "replay: Redis stopped answering while an answer was followed");
                    let _ = tx.send(lost("Redis stopped answering while the answer was replayed")).await;
                    return;
                }
            };
            if entries.is_empty() {
                if !still_running().await {
                    let _ = tx
                        .send(lost("the answer ended without its last frames (the replica answering it stopped)"))
                        .await;
                    return;
                }
                continue;
            }
            for entry in entries {
                last_id = entry.id.clone();
                let Some(frame) = entry.get::<String>("f") else { continue };
                let last = is_last(&frame);
                if tx.send(frame).await.is_err() || last {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// The last frame of an answer whose end cannot be replayed.
fn lost(why: &str) -> String {
    serde_json::json!({
        "id": "", "response_type": "error", "content": why, "done": true, "knowledge_references": null,
        "data": { "code": "answer_lost" },
    })
    .to_string()
}
