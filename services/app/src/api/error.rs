//! The one error type every handler returns, in upstream's shape: `{"success": false,
//! "error": {"code": 1003, "message", "details": {"reason": "not_found"}}}` with an HTTP
//! status. `code` is upstream's integer for the status (the Go SDK also reads `code` and
//! `message` at the top level, where they are repeated); `details.reason` is our finer word
//! for what went wrong. `?` converts the errors handlers meet (the database, rejected paths,
//! queries and bodies, and the domain's own errors: search, models, chat, replay, storage)
//! so that no handler maps errors by hand. Every HTTP status the app answers for a failure
//! below the HTTP layer is chosen here, and nothing below `api` knows this type.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::views::document_view;
use crate::answer::chat::AskError;
use crate::answer::replay::{self, FollowError};
use crate::answers::Refused;
use crate::crypt::SealError;
use crate::ingest::IntakeError;
use crate::models::ModelError;
use crate::search::retrieval::SearchError;
use crate::storage::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What the error is about, as `data` beside it (upstream's duplicate upload answers the
    /// document that exists).
    pub data: Option<serde_json::Value>,
    /// The word upstream puts as the top-level `code` where it answers one instead of its
    /// integer (`duplicate_file`).
    pub top_code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), data: None, top_code: None }
    }

    /// With `data` beside the error, and `top_code` as the top-level code, as upstream answers
    /// a duplicate upload.
    pub fn with_data(self, data: impl Serialize, top_code: &'static str) -> ApiError {
        ApiError { data: serde_json::to_value(data).ok(), top_code: Some(top_code), ..self }
    }

    /// A request field (or parameter) at fault, named first in the message.
    pub fn bad_request(field: &str, message: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", format!("{field}: {message}"))
    }

    /// `no such <what>`: also what another tenant's id gets, so ids do not leak.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    pub fn conflict(message: &str) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 501: a feature of upstream's API that weknora does not provide, and the API of
    /// upstream's that it is (`/tags`), so a client written for upstream hears why.
    pub fn not_provided(what: &str, api: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_provided",
            format!("weknora does not provide {what}: upstream's {api} API"),
        )
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A database error where a unique violation means `conflict` (a name taken): 409.
    pub fn unique(conflict: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
        move |e| {
            if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                ApiError::conflict(conflict)
            } else {
                ApiError::from(e)
            }
        }
    }
}

/// PostgreSQL's `character_not_in_repertoire`: text it cannot hold, which from a Rust
/// string can only be a NUL character.
const NUL_IN_TEXT: &str = "22021";

/// An unexpected database failure: logged in full, answered with a short message (the
/// request id in the response headers finds the log line). Text the database cannot hold
/// is the request's fault: 400.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        if e.as_database_error().and_then(|d| d.code()).is_some_and(|code| code == NUL_IN_TEXT) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "the request has text with a NUL character (\\u0000), which cannot be stored or searched: \
                 remove it and send again",
            );
        }
        tracing::error!(error = %e, "database error");
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database does not answer; see GET /ready",
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the log has the details under this request id",
            ),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::NotFound => ApiError::not_found("knowledge base"),
            SearchError::NoWords => ApiError::bad_request("query", "the query has no searchable words"),
            SearchError::ModelMismatch(message) => {
                ApiError::new(StatusCode::CONFLICT, "embedding_model_mismatch", message)
            }
            SearchError::NoRetriever(why) => ApiError::bad_request(
                "disable_keywords_match",
                &format!("with keyword matching off nothing is left to search: {why}"),
            ),
            SearchError::Database(e) => e.into(),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> ApiError {
        match e {
            ModelError::NoSuchModel => ApiError::not_found("model"),
            ModelError::WrongType(kind) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", format!("this model is not a {kind} model"))
            }
            ModelError::Key(e) => ApiError::new(StatusCode::CONFLICT, "model_key_unreadable", e.to_string()),
            ModelError::Build(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
            ModelError::Database(e) => e.into(),
        }
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> ApiError {
        match e {
            AskError::NoSession => ApiError::not_found("session"),
            AskError::NoKnowledgeBase => ApiError::bad_request(
                "knowledge_base_ids",
                "name the knowledge bases (knowledge_base_ids) or documents (knowledge_ids) to answer from, or give \
                 the session a knowledge_base_id",
            ),
            AskError::Model(e) => e.into(),
            AskError::Refused(Refused::Running) => ApiError::new(
                StatusCode::CONFLICT,
                "answer_running",
                "this session is answering already: wait for the answer, or stop it (POST /api/v1/sessions/{id}/stop)",
            ),
            AskError::Refused(Refused::TooMany(n)) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_answers",
                format!(
                    "this tenant has {n} answers streaming, as many as it may (chat.max_concurrent_per_tenant): \
                     try again when one ends"
                ),
            ),
            AskError::Search(e) => e.into(),
            AskError::Database(e) => e.into(),
        }
    }
}

/// An answer's frames could not be replayed.
impl From<FollowError> for ApiError {
    fn from(e: FollowError) -> ApiError {
        match e {
            FollowError::NoFrames => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_stream_events",
                format!(
                    "no frames are kept for this answer: they are kept {} s after it ends; read it with \
                     GET /api/v1/messages/{{session_id}}/load",
                    replay::KEPT_AFTER_SECS
                ),
            ),
            FollowError::Redis(e) => {
                tracing::warn!(error = %e, "continue-stream: Redis does not answer");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "redis_unavailable",
                    "the answer cannot be replayed: Redis, which keeps its frames, does not answer; read it with \
                     GET /api/v1/messages/{session_id}/load",
                )
            }
        }
    }
}

/// A model's API key cannot be sealed (no encryption key is configured).
impl From<SealError> for ApiError {
    fn from(e: SealError) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "encryption_key_missing", e.to_string())
    }
}

/// What an upload is answered when its file could not be stored: 507 when the storage is
/// full (the operator must free or add space), 503 otherwise.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Full => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "the file storage is full: nothing was stored; free space on the app's data volume \
                 (or enlarge it) and upload again",
            ),
            StoreError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the file could not be stored: nothing was kept; see GET /ready and the app's log",
            ),
        }
    }
}

/// A document that was not taken in. A duplicate answers the document that holds the file
/// (upstream's clients take it from `data`), with upstream's word as the top-level code.
impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> ApiError {
        match e {
            IntakeError::Duplicate { existing, url } => {
                let what = if url { "this URL" } else { "a file with the same content" };
                let message = format!(
                    "the knowledge base has {what} already: document {} (`{}`); delete it first to upload it again",
                    existing.id, existing.title
                );
                let word = if url { "duplicate_url" } else { "duplicate_file" };
                ApiError::new(StatusCode::CONFLICT, "duplicate", message).with_data(document_view(*existing), word)
            }
            IntakeError::NotFound => ApiError::not_found("document"),
            IntakeError::Store(e) => e.into(),
            IntakeError::Database(e) => e.into(),
        }
    }
}

/// A path parameter that does not parse, named: `id: `x` is not a valid UUID`.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        use axum::extract::path::ErrorKind;
        let PathRejection::FailedToDeserializePathParams(e) = &rejection else {
            return ApiError::new(rejection.status(), "invalid_argument", rejection.body_text());
        };
        let (field, message) = match e.kind() {
            ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
                (key.clone(), format!("`{value}` is not a valid {}", type_name(expected_type)))
            }
            ErrorKind::DeserializeError { key, value, message } => {
                (key.clone(), format!("`{value}` is not valid: {message}"))
            }
            ErrorKind::InvalidUtf8InPathParam { key } => (key.clone(), "is not valid UTF-8".into()),
            _ => ("path".into(), e.body_text()),
        };
        ApiError::bad_request(&field, &message)
    }
}

/// A query parameter that does not parse: serde names the field in its message.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let message = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", format!("query string: {message}"))
    }
}

/// A JSON body that is missing, malformed or of the wrong shape.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        // A body of the wrong shape is a bad request (400) as upstream answers, not axum's 422.
        let status = match &rejection {
            JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
            other => other.status(),
        };
        ApiError::new(status, "invalid_argument", format!("request body: {}", rejection.body_text()))
    }
}

/// A body that is not multipart/form-data (or has no boundary) where a file is expected.
impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> ApiError {
        ApiError::new(
            rejection.status(),
            "invalid_argument",
            "request body: not multipart/form-data with a boundary; send the file as the multipart field `file`",
        )
    }
}

/// The short name of a Rust type for a message (`uuid::Uuid` -> `UUID`, `i64` -> `whole number`).
fn type_name(rust: &str) -> &str {
    match rust.rsplit("::").next().unwrap_or(rust) {
        "Uuid" => "UUID",
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => "whole number",
        other => other,
    }
}

/// Upstream's generic error codes, by HTTP status (its `internal/errors`): what a client
/// written for upstream branches on.
pub fn upstream_code(status: StatusCode) -> u16 {
    match status.as_u16() {
        401 => 1001,
        403 => 1002,
        404 => 1003,
        405 => 1004,
        409 => 1005,
        429 => 1006,
        // Upstream has no code for "not provided"; 1004 (its method-not-allowed) is nearest.
        501 => 1004,
        503 => 1008,
        504 => 1009,
        422 => 1010,
        s if s >= 500 => 1007,
        _ => 1000,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    /// Upstream's integer, or the word it answers in its place (`top_code`).
    code: serde_json::Value,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: u16,
    message: &'a str,
    details: Reason<'a>,
}

#[derive(Serialize)]
struct Reason<'a> {
    reason: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = upstream_code(self.status);
        let error = ErrorDetail { code, message: &self.message, details: Reason { reason: self.code } };
        let top = self.top_code.map_or_else(|| code.into(), serde_json::Value::from);
        let body = ErrorBody { success: false, code: top, message: &self.message, data: self.data.clone(), error };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_storage_is_507_and_an_unavailable_one_503() {
        let full = ApiError::from(StoreError::Full);
        assert_eq!(
            (full.status, full.code, upstream_code(full.status)),
            (StatusCode::INSUFFICIENT_STORAGE, "storage_full", 1007)
        );
        let down = ApiError::from(StoreError::Unavailable);
        assert_eq!(
            (down.status, down.code, upstream_code(down.status)),
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", 1008)
        );
    }
}
