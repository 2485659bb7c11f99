//! Tenants and API keys: `X-API-Key` identifies a tenant (and a role) for every /api
//! route; a new key is shown once.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::body::Envelope;
use super::extract::{Caller, Json};
use crate::db;
use crate::db::tenants::Tenant;
use crate::error::ApiError;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/tenants", post(create_tenant))
        .route("/api/v1/tenants/current", get(current_tenant))
        .route("/api/v1/api-keys", post(create_key))
}

#[derive(Deserialize)]
struct NewTenant {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Serialize)]
struct CreatedTenant {
    tenant: Tenant,
    api_key: String,
}

/// A new tenant and its first (admin) key. Admin keys only.
async fn create_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<NewTenant>,
) -> Result<Envelope<CreatedTenant>, ApiError> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name", "a tenant needs a name"));
    }
    let tenant = db::tenants::create(&state.db, name, &body.description)
        .await
        .map_err(ApiError::unique("a tenant with this name exists"))?;
    let api_key = db::tenants::create_key(&state.db, tenant.id, "first admin key", "admin").await?;
    Ok(Envelope::created(CreatedTenant { tenant, api_key }))
}

async fn current_tenant(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Tenant>, ApiError> {
    Ok(Envelope::new(db::tenants::get(&state.db, caller.tenant_id).await?))
}

#[derive(Deserialize)]
struct NewKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Serialize)]
struct CreatedKey {
    api_key: String,
    role: String,
}

/// Another key for the caller's tenant (admin keys only); `role` is member unless asked.
async fn create_key(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<NewKey>,
) -> Result<Envelope<CreatedKey>, ApiError> {
    caller.require_admin()?;
    let role = body.role.unwrap_or_else(|| "member".into());
    if !matches!(role.as_str(), "admin" | "member") {
        return Err(ApiError::bad_request("role", "role is admin or member"));
    }
    let api_key = db::tenants::create_key(&state.db, caller.tenant_id, &body.name, &role).await?;
    Ok(Envelope::created(CreatedKey { api_key, role }))
}
