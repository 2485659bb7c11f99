//! Tenants and API keys, in upstream's paths and shapes: `X-API-Key` identifies a tenant
//! (and a role) for every /api route; a tenant's `id` is its integer number; a new key is
//! shown once. A key sees its own tenant only: another's id is a 404.

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use super::body::Envelope;
use super::extract::{Caller, Json, Path};
use crate::db;
use crate::db::tenants::{Key, Tenant};
use crate::error::ApiError;
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/current", get(current_tenant))
        .route("/api/v1/tenants/{id}", get(read_tenant).put(update_tenant))
        .route("/api/v1/tenants/{id}/api-keys", get(list_keys).post(create_tenant_key))
        .route("/api/v1/tenants/{id}/api-keys/{key_id}", delete(revoke_key))
        // Ours, kept for the clients that use it: a key of the caller's tenant.
        .route("/api/v1/api-keys", post(create_key))
}

#[derive(Deserialize)]
struct NewTenant {
    name: String,
    #[serde(default)]
    description: String,
}

/// Upstream's created tenant: the tenant, with its first (admin) key inside.
#[derive(Serialize)]
struct CreatedTenant {
    #[serde(flatten)]
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
    let (api_key, _) = db::tenants::create_key(&state.db, tenant.uuid, "first admin key", "admin").await?;
    Ok(Envelope::created(CreatedTenant { tenant, api_key }))
}

async fn current_tenant(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Tenant>, ApiError> {
    Ok(Envelope::new(db::tenants::get(&state.db, caller.tenant_id).await?))
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Upstream lists the tenants the caller may see: a key sees its own.
async fn list_tenants(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Items<Tenant>>, ApiError> {
    Ok(Envelope::new(Items { items: vec![db::tenants::get(&state.db, caller.tenant_id).await?] }))
}

/// The caller's tenant when `number` is its id; otherwise no such tenant.
async fn own_tenant(state: &AppState, caller: &Caller, number: i64) -> Result<Tenant, ApiError> {
    let tenant = db::tenants::get(&state.db, caller.tenant_id).await?;
    if tenant.id == number { Ok(tenant) } else { Err(ApiError::not_found("tenant")) }
}

async fn read_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Envelope<Tenant>, ApiError> {
    Ok(Envelope::new(own_tenant(&state, &caller, id).await?))
}

#[derive(Deserialize)]
struct TenantFields {
    #[serde(default)]
    name: String,
    description: Option<String>,
}

/// Upstream's update sends its whole tenant: a blank name keeps the name.
async fn update_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<TenantFields>,
) -> Result<Envelope<Tenant>, ApiError> {
    let tenant = own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let name = Some(body.name.trim()).filter(|n| !n.is_empty()).unwrap_or(&tenant.name);
    let description = body.description.as_deref().unwrap_or(&tenant.description);
    let updated = db::tenants::update(&state.db, caller.tenant_id, name, description)
        .await
        .map_err(ApiError::unique("a tenant with this name exists"))?;
    Ok(Envelope::new(updated))
}

/// A key as upstream lists it: its role in upstream's words (our member key may upload and
/// edit: upstream's contributor).
#[derive(Serialize)]
struct KeyView {
    #[serde(flatten)]
    key: Key,
    scope_type: &'static str,
    full_access: bool,
    knowledge_base_ids: Vec<String>,
    capabilities: Vec<String>,
}

fn key_view(mut key: Key) -> KeyView {
    let admin = key.role == "admin";
    key.role = if admin { "admin" } else { "contributor" }.into();
    KeyView { key, scope_type: "tenant", full_access: admin, knowledge_base_ids: Vec::new(), capabilities: Vec::new() }
}

async fn list_keys(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Envelope<Vec<KeyView>>, ApiError> {
    own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let keys = db::tenants::keys(&state.db, caller.tenant_id).await?;
    Ok(Envelope::new(keys.into_iter().map(key_view).collect()))
}

#[derive(Deserialize)]
struct NewKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: Option<String>,
}

/// Our role for a requested one, ours (`admin`, `member`) or upstream's. A viewer key (read
/// only) cannot be made yet: refused, never widened to one that may write.
fn role_of(asked: Option<&str>) -> Result<&'static str, ApiError> {
    match asked.map(str::trim).unwrap_or("") {
        "admin" => Ok("admin"),
        "" | "member" | "contributor" => Ok("member"),
        "viewer" => Err(ApiError::bad_request(
            "role",
            "read-only (viewer) keys are not available yet: make a contributor key, or an admin key",
        )),
        other => {
            Err(ApiError::bad_request("role", &format!("`{other}` is no role: admin, contributor (or member), viewer")))
        }
    }
}

/// Upstream's created key: the key as listed, and the key itself (`token`) this once.
#[derive(Serialize)]
struct CreatedTenantKey {
    #[serde(flatten)]
    key: KeyView,
    token: String,
}

async fn create_tenant_key(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<NewKey>,
) -> Result<Envelope<CreatedTenantKey>, ApiError> {
    own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let role = role_of(body.role.as_deref())?;
    let (token, key) = db::tenants::create_key(&state.db, caller.tenant_id, &body.name, role).await?;
    Ok(Envelope::created(CreatedTenantKey { key: key_view(key), token }))
}

#[derive(Serialize)]
struct Revoked {
    id: i64,
    revoked: bool,
}

/// Revokes a key at once. The last admin key is kept: without it nobody could manage the
/// tenant's keys again.
async fn revoke_key(
    State(state): State<SharedState>,
    caller: Caller,
    Path((id, key_id)): Path<(i64, i64)>,
) -> Result<Envelope<Revoked>, ApiError> {
    own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let keys = db::tenants::keys(&state.db, caller.tenant_id).await?;
    let Some(key) = keys.iter().find(|k| k.id == key_id) else {
        return Err(ApiError::not_found("API key"));
    };
    if key.role == "admin" && keys.iter().filter(|k| k.role == "admin").count() == 1 {
        return Err(ApiError::conflict(
            "this is the tenant's last admin key: create another admin key first, then revoke this one",
        ));
    }
    if !db::tenants::revoke_key(&state.db, caller.tenant_id, key_id).await? {
        return Err(ApiError::not_found("API key"));
    }
    Ok(Envelope::new(Revoked { id: key_id, revoked: true }))
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
    let role = role_of(body.role.as_deref())?;
    let (api_key, _) = db::tenants::create_key(&state.db, caller.tenant_id, &body.name, role).await?;
    Ok(Envelope::created(CreatedKey { api_key, role: role.into() }))
}
