//! What handlers take from a request: the caller (from `X-API-Key`), the knowledge base a
//! path names, folder paths in their stored form, and path, query, JSON and multipart body
//! extractors whose rejections answer in the JSON error shape, naming the parameter at
//! fault, instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::db;
use crate::db::sessions::Session;
use crate::state::{AppState, SharedState};

/// The header that carries each request's id (set when the client sends none).
pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// The largest JSON body a route takes (uploads have their own limit, MAX_FILE_SIZE_MB).
pub const JSON_BODY_LIMIT: usize = 2 << 20;

/// The caller, as its API key says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub admin: bool,
    /// The key is the deployment's own, ADMIN_API_KEY: the operator's, who may see and
    /// manage every tenant (upstream's cross-tenant access).
    pub deployment: bool,
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Caller, ApiError> {
        let key = parts
            .headers
            .get("x-api-key")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing X-API-Key header"))?;
        // Keys are printable ASCII: anything else is no key of ours.
        let key = key.to_str().map_err(|_| ApiError::unauthorized("invalid API key"))?;
        let (tenant_id, role) = db::tenants::authenticate(&state.db, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        let admin = role == "admin";
        let deployment = admin && is_deployment_key(key, &state.config.auth.admin_api_key.0);
        Ok(Caller { tenant_id, admin, deployment })
    }
}

/// Whether `key` is the configured ADMIN_API_KEY (never when none is configured). The
/// hashes are compared, so the comparison's time says nothing of the key.
fn is_deployment_key(key: &str, configured: &str) -> bool {
    !configured.is_empty() && crate::keys::hash(key) == crate::keys::hash(configured)
}

impl Caller {
    /// Ok when the knowledge base exists and is the caller's tenant's; another tenant's is
    /// `no such knowledge base`, as one that does not exist, so ids do not leak.
    pub async fn own_knowledge_base(&self, state: &AppState, id: Uuid) -> Result<(), ApiError> {
        if db::knowledge_bases::exists(&state.db, self.tenant_id, id).await? {
            Ok(())
        } else {
            Err(ApiError::not_found("knowledge base"))
        }
    }

    /// The session, when it is the caller's tenant's; `no such session` otherwise.
    pub async fn own_session(&self, state: &AppState, id: Uuid) -> Result<Session, ApiError> {
        db::sessions::get(&state.db, self.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("session"))
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs an admin API key"))
        }
    }

    /// For what reaches past the caller's own tenant (`what`: "listing every tenant"): only
    /// the deployment's key may.
    pub fn require_deployment(&self, what: &str) -> Result<(), ApiError> {
        if self.deployment {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{what} needs cross-tenant access: the deployment's admin key (ADMIN_API_KEY); a tenant's own \
                     keys reach their own tenant only"
                ),
            ))
        }
    }
}

/// The knowledge base a route's path names (`/knowledge-bases/{id}/...`), and the caller,
/// whose tenant's it is: the path is read after the key, and another tenant's knowledge
/// base is not found before anything else of the request is read.
pub struct OwnedKnowledgeBase {
    pub caller: Caller,
    pub id: Uuid,
}

impl FromRequestParts<SharedState> for OwnedKnowledgeBase {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<OwnedKnowledgeBase, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(id) = Path::<Uuid>::from_request_parts(parts, state).await?;
        caller.own_knowledge_base(state, id).await?;
        Ok(OwnedKnowledgeBase { caller, id })
    }
}

/// `axum::extract::Path`, rejecting with [`ApiError`].
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// `axum::extract::Query`, rejecting with [`ApiError`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// `axum::Json` as a request body, rejecting with [`ApiError`].
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Json<T>, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "request body: larger than the {} MB a JSON body may be; send less (files go to \
             POST /api/v1/knowledge-bases/{{id}}/knowledge/file)",
            JSON_BODY_LIMIT >> 20
        ),
    )
}

/// A JSON body that may be absent (none, or only white space), for routes that also take
/// their input from the query string: upstream sends some GETs with a body.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(
                    rejection.status(),
                    "invalid_argument",
                    format!("request body: {}", rejection.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|value| OptionalJson(Some(value)))
            .map_err(|e| ApiError::bad_request("request body", &e.to_string()))
    }
}

/// `axum::extract::Multipart`, rejecting with [`ApiError`].
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Multipart, ApiError> {
        Ok(Multipart(axum::extract::Multipart::from_request(request, state).await?))
    }
}

/// How deep folders go, how long one folder's name and a whole path may be (in characters).
pub const MAX_DEPTH: usize = 16;
pub const MAX_NAME: usize = 128;
pub const MAX_PATH: usize = 1024;

/// A folder path as sent, in the form it is stored in: `/` between folders (`\` is read as
/// one), none at either end, no `.` or `..` (a path cannot climb out of the root), white
/// space and trailing dots trimmed from each name (`a.` and `a` are one folder). Deeper
/// than 16 folders, names longer than 128 characters and paths longer than 1024 are cut,
/// as upstream cuts them. Control characters are refused.
pub fn normalize_folder(raw: &str) -> Result<String, ApiError> {
    if raw.chars().any(char::is_control) {
        return Err(ApiError::bad_request("folder_path", "a folder path has no control characters"));
    }
    let mut names: Vec<String> = Vec::new();
    for name in raw.split(['/', '\\']) {
        let name = name.trim().trim_end_matches(['.', ' ']).trim();
        if name.is_empty() {
            continue;
        }
        let name: String = name.chars().take(MAX_NAME).collect::<String>().trim_end().to_string();
        names.push(name);
        if names.len() == MAX_DEPTH {
            break;
        }
    }
    while names.iter().map(|n| n.chars().count() + 1).sum::<usize>() > MAX_PATH + 1 {
        names.pop();
    }
    Ok(names.join("/"))
}

/// A folder path as a listing filter: normalized, control characters and all dropped (a
/// filter that matches nothing is no error).
pub fn normalize_folder_filter(raw: &str) -> String {
    let clean: String = raw.chars().filter(|c| !c.is_control()).collect();
    normalize_folder(&clean).unwrap_or_default()
}
