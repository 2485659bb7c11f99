//! Tenants and API keys, in upstream's paths and shapes: `X-API-Key` identifies a tenant
//! (and a role) for every /api route; a tenant's `id` is its integer number; a new key is
//! shown once. A key sees its own tenant only: another's id is a 404. The deployment's key
//! (ADMIN_API_KEY) has upstream's cross-tenant access: it creates tenants, lists and
//! searches them all, and reads, updates and deletes any of them by id.

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use super::body::{Envelope, Message};
use super::error::ApiError;
use super::extract::{Caller, Json, OptionalJson, Path, Query};
use crate::db;
use crate::db::tenants::{Key, Removed, Tenant};
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/all", get(all_tenants))
        .route("/api/v1/tenants/search", get(search_tenants))
        .route("/api/v1/tenants/current", get(current_tenant))
        .route("/api/v1/tenants/{id}", get(read_tenant).put(update_tenant).delete(delete_tenant))
        .route("/api/v1/tenants/{id}/api-keys", get(list_keys).post(create_tenant_key))
        .route("/api/v1/tenants/{id}/api-keys/{key_id}", delete(revoke_key))
        .route("/api/v1/tenants/{id}/api-principal-config", get(principal_config).put(set_principal_config))
        // Ours, kept for the clients that use it: a key of the caller's tenant.
        .route("/api/v1/api-keys", post(create_key))
}

#[derive(Deserialize)]
struct NewTenant {
    name: String,
    #[serde(default)]
    description: String,
}

/// Upstream's created tenant: the tenant, with its first (admin) key inside, as upstream
/// answers with `tenant.auto_create_api_key` on (without it, nobody could use the tenant:
/// its keys are made with a key of its own).
#[derive(Serialize)]
struct CreatedTenant {
    #[serde(flatten)]
    tenant: Tenant,
    api_key: String,
}

/// A new tenant and its first (admin) key: the deployment's key only, as upstream keeps
/// this from tenants' keys. `business`, `retriever_engines` and `storage_quota` are not
/// kept: retrieval is the deployment's, and there are no quotas.
async fn create_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<NewTenant>,
) -> Result<Envelope<CreatedTenant>, ApiError> {
    caller.require_deployment("creating a tenant")?;
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

/// Upstream lists the tenants the caller may see: a key sees its own (the deployment's key
/// too, as upstream's administrators do: every tenant is `/tenants/all`).
async fn list_tenants(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Items<Tenant>>, ApiError> {
    Ok(Envelope::new(Items { items: vec![db::tenants::get(&state.db, caller.tenant_id).await?] }))
}

/// Every tenant: the deployment's key only.
async fn all_tenants(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Items<Tenant>>, ApiError> {
    caller.require_deployment("listing every tenant")?;
    Ok(Envelope::new(Items { items: db::tenants::all(&state.db).await? }))
}

/// Upstream's search: `keyword` in the name or description, `tenant_id` (an id, 0 for
/// any), `page` from 1, `page_size` 1..=200 (20 unless given).
#[derive(Deserialize)]
struct TenantSearch {
    keyword: Option<String>,
    tenant_id: Option<i64>,
    page: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Serialize)]
struct Found {
    items: Vec<Tenant>,
    total: i64,
    page: i64,
    page_size: i64,
}

async fn search_tenants(
    State(state): State<SharedState>,
    caller: Caller,
    Query(q): Query<TenantSearch>,
) -> Result<Envelope<Found>, ApiError> {
    caller.require_deployment("searching every tenant")?;
    let keyword = q.keyword.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let number = q.tenant_id.filter(|n| *n > 0);
    let page = q.page.unwrap_or(1).max(1);
    let page_size = q.page_size.unwrap_or(20).clamp(1, 200);
    let offset = (page - 1).saturating_mul(page_size);
    let (items, total) = db::tenants::search(&state.db, keyword, number, page_size, offset).await?;
    Ok(Envelope::new(Found { items, total, page, page_size }))
}

/// The caller's tenant when `number` is its id; otherwise no such tenant.
async fn own_tenant(state: &AppState, caller: &Caller, number: i64) -> Result<Tenant, ApiError> {
    let tenant = db::tenants::get(&state.db, caller.tenant_id).await?;
    if tenant.id == number { Ok(tenant) } else { Err(ApiError::not_found("tenant")) }
}

/// The tenant `number` names as the caller reaches it: its own, or any for the
/// deployment's key. Another's is no such tenant (404), as with every id of another tenant.
async fn reachable_tenant(state: &AppState, caller: &Caller, number: i64) -> Result<Tenant, ApiError> {
    if !caller.deployment {
        return own_tenant(state, caller, number).await;
    }
    db::tenants::by_number(&state.db, number).await?.ok_or_else(|| ApiError::not_found("tenant"))
}

async fn read_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Envelope<Tenant>, ApiError> {
    Ok(Envelope::new(reachable_tenant(&state, &caller, id).await?))
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
    let tenant = reachable_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let name = Some(body.name.trim()).filter(|n| !n.is_empty()).unwrap_or(&tenant.name);
    let description = body.description.as_deref().unwrap_or(&tenant.description);
    let updated = db::tenants::update(&state.db, tenant.uuid, name, description)
        .await
        .map_err(ApiError::unique("a tenant with this name exists"))?;
    Ok(Envelope::new(updated))
}

#[derive(Serialize)]
struct DeletedTenant {
    id: i64,
    deleted: bool,
    /// How many of each went with it.
    removed: Removed,
}

/// Deletes a tenant with everything it has (knowledge bases, documents, chunks, sessions,
/// models, settings, API keys) and its stored files: an admin key its own tenant (the key
/// goes with it), the deployment's key any. The tenant holding the deployment's key is
/// kept (409): without that key no tenant could be created or reached across tenants.
async fn delete_tenant(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Envelope<DeletedTenant, Message>, ApiError> {
    let tenant = reachable_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    let deployment_key = &state.config.auth.admin_api_key.0;
    if !deployment_key.is_empty() && db::tenants::holder_of(&state.db, deployment_key).await? == Some(tenant.uuid) {
        return Err(ApiError::conflict(
            "this tenant holds the deployment's admin key (ADMIN_API_KEY), without which no tenant could be \
             created or managed: it is not deleted",
        ));
    }
    let removed = db::tenants::delete(&state.db, tenant.uuid).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    for key in &removed.files {
        if let Err(e) = state.storage.delete(key).await {
            tracing::warn!(error = %e, key, "the tenant is deleted but a file of it could not be removed");
        }
    }
    // Its folder too: every stored file of a tenant is under its id (an upload racing the
    // delete has its file removed by the upload itself, whose document cannot be stored).
    let folder = format!("{}/", tenant.uuid);
    if let Err(e) = state.storage.delete_with(&folder).recursive(true).await {
        tracing::warn!(error = %e, folder, "the tenant is deleted but its storage folder could not be removed");
    }
    tracing::info!(tenant = id, "tenant deleted");
    let deleted = DeletedTenant { id, deleted: true, removed };
    Ok(Envelope::with(deleted, Message { message: "Workspace deleted successfully" }))
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

/// How upstream maps a key's requests to an end user (its principal): `tenant` is the only
/// mode weknora has. Every key acts for its tenant, and sessions are the tenant's; the
/// header names are upstream's defaults, which no request here reads.
#[derive(Serialize)]
struct PrincipalConfig {
    mode: &'static str,
    direct_header_name: &'static str,
    signed_token_header_name: &'static str,
    require_direct_header: bool,
    has_hmac_secret: bool,
}

const TENANT_PRINCIPAL: PrincipalConfig = PrincipalConfig {
    mode: "tenant",
    direct_header_name: "X-External-User-ID",
    signed_token_header_name: "X-External-User-Token",
    require_direct_header: false,
    has_hmac_secret: false,
};

async fn principal_config(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Envelope<PrincipalConfig>, ApiError> {
    own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    Ok(Envelope::new(TENANT_PRINCIPAL))
}

#[derive(Deserialize)]
struct PrincipalUpdate {
    #[serde(default)]
    mode: String,
}

/// `tenant` is taken (it is what weknora does); upstream's per-user modes are not provided.
async fn set_principal_config(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<i64>,
    OptionalJson(body): OptionalJson<PrincipalUpdate>,
) -> Result<Envelope<PrincipalConfig>, ApiError> {
    own_tenant(&state, &caller, id).await?;
    caller.require_admin()?;
    match body.as_ref().map(|b| b.mode.trim()).unwrap_or("") {
        "tenant" => Ok(Envelope::new(TENANT_PRINCIPAL)),
        "direct_header" | "signed_token" => Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "not_provided",
            "weknora does not provide end-user principals (modes `direct_header` and `signed_token`): every API key \
             acts for its tenant, and sessions are the tenant's (mode `tenant`)",
        )),
        "" => Err(ApiError::bad_request("mode", "required: tenant (direct_header and signed_token are not provided)")),
        other => Err(ApiError::bad_request(
            "mode",
            &format!("`{other}` is no mode: tenant (direct_header and signed_token are not provided)"),
        )),
    }
}
