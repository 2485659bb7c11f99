//! API keys: `X-API-Key` identifies a tenant (and a role) for every /api route. Keys are
//! stored as SHA-256 hashes with a short display prefix; a new key is shown once.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Json, Router, routing::get, routing::post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::server::{ApiError, AppState, internal};

const HEADER: &str = "x-api-key";

pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key: `wk_` and 64 hex digits (two v4 UUIDs' worth of randomness).
pub fn new_key() -> String {
    format!("wk_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn prefix(key: &str) -> String {
    key.chars().take(7).collect()
}

/// The caller, as its API key says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub admin: bool,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
        let unauthorized = |message: &str| ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        };
        let key = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("missing X-API-Key header"))?;
        let row: Option<(Uuid, String)> = sqlx::query_as(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > now()) RETURNING tenant_id, role",
        )
        .bind(hash_key(key))
        .fetch_optional(&state.db)
        .await
        .map_err(internal)?;
        let (tenant_id, role) = row.ok_or_else(|| unauthorized("invalid API key"))?;
        Ok(Caller { tenant_id, admin: role == "admin" })
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: "this needs an admin API key".into(),
            })
        }
    }
}

/// On first start (no tenant yet) with ADMIN_API_KEY set: the first tenant, with that key
/// as its admin key. Idempotent: once a tenant exists it does nothing.
pub async fn bootstrap(db: &PgPool, admin_key: &str) -> Result<bool, sqlx::Error> {
    if admin_key.is_empty() {
        return Ok(false);
    }
    let mut tx = db.begin().await?;
    // Two app replicas starting together must not both create it.
    sqlx::query("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants)").fetch_one(&mut *tx).await?;
    if any {
        return Ok(false);
    }
    let tenant: Uuid = sqlx::query_scalar(
        "INSERT INTO tenants (name, description) VALUES ('default', 'created from ADMIN_API_KEY') RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO api_keys (tenant_id, name, key_prefix, key_hash, role) VALUES ($1, 'admin (ADMIN_API_KEY)', $2, $3, 'admin')")
        .bind(tenant)
        .bind(prefix(admin_key))
        .bind(hash_key(admin_key))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(Deserialize)]
struct NewTenant {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct NewKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
struct Tenant {
    id: Uuid,
    name: String,
    description: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tenants", post(create_tenant))
        .route("/api/v1/tenants/current", get(current_tenant))
        .route("/api/v1/api-keys", post(create_key))
}

async fn insert_key(db: &PgPool, tenant: Uuid, name: &str, role: &str) -> Result<String, ApiError> {
    let key = new_key();
    sqlx::query("INSERT INTO api_keys (tenant_id, name, key_prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5)")
        .bind(tenant)
        .bind(name)
        .bind(prefix(&key))
        .bind(hash_key(&key))
        .bind(role)
        .execute(db)
        .await
        .map_err(internal)?;
    Ok(key)
}

/// A new tenant and its first (admin) key. Admin keys only.
async fn create_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name", "a tenant needs a name"));
    }
    let tenant: Tenant = sqlx::query_as(
        "INSERT INTO tenants (name, description) VALUES ($1, $2) RETURNING id, name, description, created_at",
    )
    .bind(name)
    .bind(&body.description)
    .fetch_one(&state.db)
    .await
    .map_err(|e| ApiError::from_db(e, "a tenant with this name exists"))?;
    let key = insert_key(&state.db, tenant.id, "first admin key", "admin").await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": { "tenant": tenant, "api_key": key } }))))
}

async fn current_tenant(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let tenant: Tenant = sqlx::query_as("SELECT id, name, description, created_at FROM tenants WHERE id = $1")
        .bind(caller.tenant_id)
        .fetch_one(&state.db)
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "success": true, "data": tenant })))
}

/// Another key for the caller's tenant (admin keys only); `role` is member unless asked.
async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let role = body.role.as_deref().unwrap_or("member");
    if !matches!(role, "admin" | "member") {
        return Err(ApiError::bad_request("role", "role is admin or member"));
    }
    let key = insert_key(&state.db, caller.tenant_id, &body.name, role).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "data": { "api_key": key, "role": role } }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(prefix(&a), a[..7]);
    }
}
