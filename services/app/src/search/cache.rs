//! The Redis search cache. Entries are keyed by a knowledge base's generation, which every
//! change to the knowledge base bumps, so a change invalidates all its cached searches at
//! once. Redis being down only means no caching: every call here is best effort.

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::state::AppState;

const TIMEOUT: Duration = Duration::from_secs(1);
const TTL_SECS: u64 = 600;

/// Runs `cmd` on the shared connection, best effort: None when Redis does not answer
/// within a second.
pub(crate) async fn run<T: redis::FromRedisValue>(state: &AppState, cmd: redis::Cmd) -> Option<T> {
    let call = async {
        // No connection retries: with Redis down a search must not wait, only go uncached.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let conn = state
            .redis_conn
            .get_or_try_init(|| redis::aio::ConnectionManager::new_with_config(state.redis.clone(), config))
            .await?;
        cmd.query_async::<T>(&mut conn.clone()).await
    };
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "redis: cache unavailable");
            None
        }
        Err(_) => None,
    }
}

/// Whether Redis answers a PING now, on a connection of its own (not the cache's shared
/// one): what `/ready` reports.
pub async fn ping(client: &redis::Client) -> Result<(), redis::RedisError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
}

fn generation_key(state: &AppState, kb: Uuid) -> String {
    format!("{}kbgen:{kb}", state.config.redis.prefix)
}

/// The cache key for a search of `knowledge_bases` (sorted) for `question` (everything
/// else that shapes the answer), or None when Redis does not answer.
pub async fn search_key(state: &AppState, tenant: Uuid, knowledge_bases: &[Uuid], question: &str) -> Option<String> {
    let keys: Vec<String> = knowledge_bases.iter().map(|kb| generation_key(state, *kb)).collect();
    let generations: Vec<Option<i64>> = run(state, redis::cmd("MGET").arg(&keys).clone()).await?;
    let stamp: Vec<String> = knowledge_bases
        .iter()
        .zip(generations)
        .map(|(kb, generation)| format!("{kb}@{}", generation.unwrap_or(0)))
        .collect();
    let prefix = &state.config.redis.prefix;
    // Hashed: a question of any length makes a key of one length.
    let question: String = Sha256::digest(question.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{prefix}search:{tenant}:{}:{question}", stamp.join(",")))
}

pub async fn get(state: &AppState, key: &str) -> Option<String> {
    run::<Option<String>>(state, redis::Cmd::get(key)).await.flatten()
}

pub async fn put(state: &AppState, key: &str, value: &str) {
    let _: Option<()> = run(state, redis::Cmd::set_ex(key, value, TTL_SECS)).await;
}

/// Invalidates every cached search of the knowledge base.
pub async fn knowledge_base_changed(state: &AppState, kb: Uuid) {
    let _: Option<i64> = run(state, redis::Cmd::incr(generation_key(state, kb), 1)).await;
}
