//! Follow-up questions suggested after an answer (one set per answer, replaced when
//! regenerated) and what readers did with them, always scoped to a tenant and a session.

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use sqlx::PgPool as Db;

/// One suggested question; its id is stable until the set is regenerated.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Suggested {
    pub id: Uuid,
    pub text: String,
    /// What made it: `llm`.
    pub source: String,
}

#[derive(sqlx::FromRow)]
pub struct SuggestionSet {
    pub id: Uuid,
    pub session_id: Uuid,
    pub assistant_message_id: Uuid,
    /// `ready`, `suppressed` (nothing to suggest with) or `failed`.
    pub status: String,
    pub suppression_reason: String,
    pub questions: Json<Vec<Suggested>>,
    pub model: String,
    pub error: String,
}

const SET: &str = "id, session_id, assistant_message_id, status, suppression_reason, questions, model, error";

/// What a generation came to.
pub struct Outcome<'a> {
    pub status: &'a str,
    pub suppression_reason: &'a str,
    pub questions: &'a [Suggested],
    pub model: &'a str,
    pub error: &'a str,
}

/// The answer's suggestions, if any were made.
pub async fn get(db: &Db, tenant: Uuid, session: Uuid, message: Uuid) -> Result<Option<SuggestionSet>, sqlx::Error> {
    let sql = format!(
        "SELECT {SET} FROM message_suggestion_sets WHERE assistant_message_id = $1 AND session_id = $2 AND tenant_id = $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(message).bind(session).bind(tenant).fetch_optional(db).await
}

/// Stores the answer's suggestions, replacing those it had (the set keeps its id).
pub async fn put(
    db: &Db,
    tenant: Uuid,
    session: Uuid,
    message: Uuid,
    o: &Outcome<'_>,
) -> Result<SuggestionSet, sqlx::Error> {
    let sql = format!(
        "INSERT INTO message_suggestion_sets \
           (tenant_id, session_id, assistant_message_id, status, suppression_reason, questions, model, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (assistant_message_id) DO UPDATE SET status = excluded.status, \
           suppression_reason = excluded.suppression_reason, questions = excluded.questions, \
           model = excluded.model, error = excluded.error, updated_at = now() \
         RETURNING {SET}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(session)
        .bind(message)
        .bind(o.status)
        .bind(o.suppression_reason)
        .bind(Json(o.questions))
        .bind(o.model)
        .bind(o.error)
        .fetch_one(db)
        .await
}

/// Records what a reader did with a set of the session (and, when named, one of its
/// questions); false when the session has no such set or the set no such question.
pub async fn record_event(
    db: &Db,
    tenant: Uuid,
    session: Uuid,
    set: Uuid,
    question: Option<Uuid>,
    event: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO message_suggestion_events (tenant_id, suggestion_set_id, question_id, event_type) \
         SELECT $1, s.id, coalesce($4::uuid::text, ''), $5 FROM message_suggestion_sets s \
         WHERE s.id = $3 AND s.session_id = $2 AND s.tenant_id = $1 \
           AND ($4::uuid IS NULL OR s.questions @> jsonb_build_array(jsonb_build_object('id', $4::uuid::text)))",
    )
    .bind(tenant)
    .bind(session)
    .bind(set)
    .bind(question)
    .bind(event)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
