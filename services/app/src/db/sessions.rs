//! Chat sessions and their messages, always scoped to a tenant: another tenant's session
//! finds nothing. An answer keeps the passages it was given (`sources`), how it ended and
//! what made it.

use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::chunks::Hit;
use sqlx::PgPool as Db;

/// A session in upstream's shape (plus the knowledge base ours may keep).
#[derive(Serialize, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    /// The tenant's integer id, as upstream's clients decode it.
    pub tenant_id: i64,
    pub title: String,
    pub description: String,
    pub knowledge_base_id: Option<Uuid>,
    pub is_pinned: bool,
    pub pinned_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const SESSION: &str = "id, (SELECT number FROM tenants t WHERE t.id = chat_sessions.tenant_id) AS tenant_id, title, \
                       description, knowledge_base_id, is_pinned, pinned_at, created_at, updated_at";

/// What a create or update sets.
pub struct Fields<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub knowledge_base: Option<Uuid>,
}

pub async fn create(db: &Db, tenant: Uuid, f: &Fields<'_>) -> Result<Session, sqlx::Error> {
    let sql = format!(
        "INSERT INTO chat_sessions (tenant_id, title, description, knowledge_base_id) VALUES ($1, $2, $3, $4) \
         RETURNING {SESSION}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(f.title)
        .bind(f.description)
        .bind(f.knowledge_base)
        .fetch_one(db)
        .await
}

pub async fn get(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Session>, sqlx::Error> {
    let sql = format!("SELECT {SESSION} FROM chat_sessions WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

/// A page of the tenant's sessions (those whose title or description contains `keyword`,
/// when given), pinned ones first (the last pinned first), then the most recently active,
/// and how many there are.
pub async fn list(
    db: &Db,
    tenant: Uuid,
    keyword: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Session>, i64), sqlx::Error> {
    let like = keyword.map(super::like::containing);
    const MATCHING: &str = "tenant_id = $1 AND ($2::text IS NULL OR title ILIKE $2 OR description ILIKE $2)";
    let sql = format!(
        "SELECT {SESSION} FROM chat_sessions WHERE {MATCHING} \
         ORDER BY is_pinned DESC, pinned_at DESC NULLS LAST, updated_at DESC, id LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(&like)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM chat_sessions WHERE {MATCHING}");
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(count)).bind(tenant).bind(&like).fetch_one(db).await?;
    Ok((rows, total))
}

pub async fn update(db: &Db, tenant: Uuid, id: Uuid, f: &Fields<'_>) -> Result<Option<Session>, sqlx::Error> {
    let sql = format!(
        "UPDATE chat_sessions SET title = $3, description = $4, knowledge_base_id = $5 \
         WHERE id = $1 AND tenant_id = $2 RETURNING {SESSION}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .bind(f.title)
        .bind(f.description)
        .bind(f.knowledge_base)
        .fetch_optional(db)
        .await
}

/// A question and its answer that matched a search of the chat history.
#[derive(Serialize, sqlx::FromRow)]
pub struct Found {
    pub request_id: String,
    pub session_id: Uuid,
    pub session_title: String,
    pub query_content: String,
    pub answer_content: String,
    /// The share of the searched terms the pair holds (0 to 1).
    pub score: f64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The tenant's question-and-answer pairs holding any of `terms` (any case), in `sessions`
/// when some are named: the most terms first, then the newest; and how many matched.
pub async fn search(
    db: &Db,
    tenant: Uuid,
    terms: &[String],
    sessions: &[Uuid],
    limit: i64,
) -> Result<(Vec<Found>, i64), sqlx::Error> {
    // `%` and `_` in a term match themselves.
    let patterns: Vec<String> = terms.iter().map(|t| super::like::containing(t)).collect();
    let scored = "SELECT * FROM (SELECT q.request_id, q.session_id, s.title AS session_title, \
                  q.content AS query_content, coalesce(a.content, '') AS answer_content, q.created_at, \
                  (SELECT count(*) FROM unnest($2::text[]) p \
                    WHERE q.content ILIKE p OR coalesce(a.content, '') ILIKE p)::float8 \
                    / greatest(cardinality($2), 1) AS score \
                  FROM chat_messages q JOIN chat_sessions s ON s.id = q.session_id \
                  LEFT JOIN chat_messages a ON a.session_id = q.session_id AND a.request_id = q.request_id \
                    AND a.role = 'assistant' \
                  WHERE q.tenant_id = $1 AND q.role = 'user' AND q.request_id IS NOT NULL \
                    AND (cardinality($3::uuid[]) = 0 OR q.session_id = ANY($3))) pairs WHERE score > 0";
    let sql = format!("{scored} ORDER BY score DESC, created_at DESC LIMIT $4");
    let found = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(&patterns)
        .bind(sessions)
        .bind(limit)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM ({scored}) matched")))
        .bind(tenant)
        .bind(&patterns)
        .bind(sessions)
        .fetch_one(db)
        .await?;
    Ok((found, total))
}

/// The title a question gives its session: the question itself, cut to 60 characters.
pub fn title_of(question: &str) -> String {
    question.trim().chars().take(60).collect::<String>().trim().to_string()
}

/// Sets the session's title.
pub async fn retitle(db: &Db, tenant: Uuid, id: Uuid, title: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE chat_sessions SET title = $3 WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .bind(title)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The session's first question, if it has one.
pub async fn first_question(db: &Db, tenant: Uuid, session: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT content FROM chat_messages WHERE session_id = $1 AND tenant_id = $2 AND role = 'user' \
         ORDER BY created_at LIMIT 1",
    )
    .bind(session)
    .bind(tenant)
    .fetch_optional(db)
    .await
}

/// The session's answer streaming now, if any.
pub async fn streaming_answer(db: &Db, tenant: Uuid, session: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM chat_messages WHERE session_id = $1 AND tenant_id = $2 AND role = 'assistant' \
         AND status = 'streaming' ORDER BY created_at DESC LIMIT 1",
    )
    .bind(session)
    .bind(tenant)
    .fetch_optional(db)
    .await
}

/// How the session's answer `message` stands (`streaming`, `completed`, `stopped`,
/// `failed`); None when the session has no such answer.
pub async fn answer_status(db: &Db, tenant: Uuid, session: Uuid, message: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT status FROM chat_messages WHERE id = $1 AND session_id = $2 AND tenant_id = $3 AND role = 'assistant'",
    )
    .bind(message)
    .bind(session)
    .bind(tenant)
    .fetch_optional(db)
    .await
}

/// Pins the session (now) or unpins it; None when there is no such session.
pub async fn pin(db: &Db, tenant: Uuid, id: Uuid, pinned: bool) -> Result<Option<Session>, sqlx::Error> {
    let sql = format!(
        "UPDATE chat_sessions SET is_pinned = $3, pinned_at = CASE WHEN $3 THEN now() END \
         WHERE id = $1 AND tenant_id = $2 RETURNING {SESSION}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).bind(pinned).fetch_optional(db).await
}

/// Deletes those of the sessions that are the tenant's, with their messages; how many.
pub async fn delete_many(db: &Db, tenant: Uuid, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_sessions WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes the session's messages (the session stays, its title too); how many.
pub async fn clear(db: &Db, tenant: Uuid, session: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_messages WHERE session_id = $1 AND tenant_id = $2")
        .bind(session)
        .bind(tenant)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes one message of the session; false when there was none.
pub async fn delete_message(db: &Db, tenant: Uuid, session: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_messages WHERE id = $1 AND session_id = $2 AND tenant_id = $3")
        .bind(id)
        .bind(session)
        .bind(tenant)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes the session with its messages; false when there was none.
pub async fn delete(db: &Db, tenant: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_sessions WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Serialize, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub session_id: Uuid,
    /// `""` for messages that had none.
    pub request_id: String,
    pub role: String,
    pub content: String,
    #[sqlx(rename = "sources")]
    pub knowledge_references: Json<Vec<Hit>>,
    /// streaming, completed, stopped or failed.
    pub status: String,
    pub is_completed: bool,
    pub answer_kind: Option<String>,
    pub model: Option<String>,
    pub error: Option<String>,
    pub first_token_ms: Option<i32>,
    pub duration_ms: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was last written: an answer when it ended.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const MESSAGE: &str = "id, session_id, coalesce(request_id, '') AS request_id, role, content, sources, status, \
                       status = 'completed' AS is_completed, answer_kind, model, error, first_token_ms, duration_ms, \
                       created_at, created_at + make_interval(secs => coalesce(duration_ms, 0) / 1000.0) AS updated_at";

/// Up to `limit` messages before `before` (all when None), oldest first.
pub async fn messages(
    db: &Db,
    tenant: Uuid,
    session: Uuid,
    before: Option<chrono::DateTime<chrono::Utc>>,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM (SELECT {MESSAGE} FROM chat_messages WHERE session_id = $1 AND tenant_id = $2 \
         AND ($3::timestamptz IS NULL OR created_at < $3) ORDER BY created_at DESC, role DESC LIMIT $4) recent \
         ORDER BY created_at, role DESC"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(session).bind(tenant).bind(before).bind(limit).fetch_all(db).await
}

/// The session's answer `message` with the question it answers: (status, question, answer).
pub async fn exchange(
    db: &Db,
    tenant: Uuid,
    session: Uuid,
    message: Uuid,
) -> Result<Option<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.status, coalesce(q.content, ''), a.content FROM chat_messages a \
         LEFT JOIN LATERAL (SELECT content FROM chat_messages q WHERE q.session_id = a.session_id \
                            AND q.role = 'user' AND q.request_id = a.request_id LIMIT 1) q ON true \
         WHERE a.id = $1 AND a.session_id = $2 AND a.tenant_id = $3 AND a.role = 'assistant'",
    )
    .bind(message)
    .bind(session)
    .bind(tenant)
    .fetch_optional(db)
    .await
}

/// The session's last `turns` answered questions, oldest first: (question, answer).
pub async fn history(db: &Db, session: Uuid, turns: i64) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT q.content, a.content FROM chat_messages a \
         JOIN LATERAL (SELECT content FROM chat_messages q WHERE q.session_id = a.session_id AND q.role = 'user' \
                       AND q.request_id = a.request_id LIMIT 1) q ON true \
         WHERE a.session_id = $1 AND a.role = 'assistant' AND a.status IN ('completed', 'stopped') AND a.content <> '' \
         ORDER BY a.created_at DESC LIMIT $2",
    )
    .bind(session)
    .bind(turns)
    .fetch_all(db)
    .await
    .map(|mut rows: Vec<(String, String)>| {
        rows.reverse();
        rows
    })
}

/// A question and the answer about to stream.
pub struct Begun<'a> {
    pub tenant: Uuid,
    pub session: Uuid,
    pub request_id: &'a str,
    pub question: &'a str,
    /// The passages the answer is given, in citation order.
    pub references: &'a [Hit],
    pub model: &'a str,
    /// model or extractive.
    pub kind: &'a str,
}

/// Records a question and the answer about to stream (status `streaming`, with the
/// passages it was given); names the session after its first question. Answers the
/// answer's id, and the session's title when this question gave it one.
pub async fn begin_answer(db: &Db, b: &Begun<'_>) -> Result<(Uuid, Option<String>), sqlx::Error> {
    let Begun { tenant, session, request_id, question, references, model, kind } = *b;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO chat_messages (session_id, tenant_id, role, content, request_id) VALUES ($1, $2, 'user', $3, $4)",
    )
    .bind(session)
    .bind(tenant)
    .bind(question)
    .bind(request_id)
    .execute(&mut *tx)
    .await?;
    // The answer sorts after its question even within the same microsecond.
    let id = sqlx::query_scalar(
        "INSERT INTO chat_messages (session_id, tenant_id, role, content, request_id, sources, status, model, \
         answer_kind, created_at) VALUES ($1, $2, 'assistant', '', $3, $4, 'streaming', $5, $6, \
         clock_timestamp() + interval '1 microsecond') RETURNING id",
    )
    .bind(session)
    .bind(tenant)
    .bind(request_id)
    .bind(Json(references))
    .bind(model)
    .bind(kind)
    .fetch_one(&mut *tx)
    .await?;
    let titled = sqlx::query_scalar("UPDATE chat_sessions SET title = $2 WHERE id = $1 AND title = '' RETURNING title")
        .bind(session)
        .bind(title_of(question))
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((id, titled))
}

/// How an answer ended.
pub struct Ended<'a> {
    pub content: &'a str,
    /// completed, stopped or failed.
    pub status: &'static str,
    pub error: Option<&'a str>,
    pub first_token_ms: Option<i32>,
    pub duration_ms: i32,
}

pub async fn end_answer(db: &Db, id: Uuid, ended: &Ended<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chat_messages SET content = $2, status = $3, error = $4, first_token_ms = $5, duration_ms = $6 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(ended.content)
    .bind(ended.status)
    .bind(ended.error)
    .bind(ended.first_token_ms)
    .bind(ended.duration_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// Answers still `streaming` after `secs` cannot be running any more (every answer ends
/// within chat.total_timeout_secs): their app stopped while answering. Marks them failed.
pub async fn abandon_stale(db: &Db, secs: u64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE chat_messages SET status = 'failed', error = 'the app stopped while answering' \
         WHERE status = 'streaming' AND created_at < now() - make_interval(secs => $1)",
    )
    .bind(secs as f64)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
