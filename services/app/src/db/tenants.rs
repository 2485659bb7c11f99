//! Tenants and their API keys.

use serde::Serialize;
use uuid::Uuid;

use crate::keys;
use sqlx::PgPool as Db;

#[derive(Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The tenant and role of a live key (not revoked, not expired), noting its use.
pub async fn authenticate(db: &Db, key: &str) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > now()) RETURNING tenant_id, role",
    )
    .bind(keys::hash(key))
    .fetch_optional(db)
    .await
}

/// On first start (no tenant yet): the first tenant, with `admin_key` as its admin key.
/// Idempotent: once a tenant exists it does nothing and answers false.
pub async fn bootstrap(db: &Db, admin_key: &str) -> Result<bool, sqlx::Error> {
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
        .bind(keys::prefix(admin_key))
        .bind(keys::hash(admin_key))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// A new key for `tenant`; the key itself is returned once and stored hashed.
pub async fn create_key(db: &Db, tenant: Uuid, name: &str, role: &str) -> Result<String, sqlx::Error> {
    let key = keys::new_key();
    sqlx::query("INSERT INTO api_keys (tenant_id, name, key_prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5)")
        .bind(tenant)
        .bind(name)
        .bind(keys::prefix(&key))
        .bind(keys::hash(&key))
        .bind(role)
        .execute(db)
        .await?;
    Ok(key)
}

pub async fn create(db: &Db, name: &str, description: &str) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO tenants (name, description) VALUES ($1, $2) RETURNING id, name, description, created_at",
    )
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await
}

pub async fn get(db: &Db, id: Uuid) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as("SELECT id, name, description, created_at FROM tenants WHERE id = $1").bind(id).fetch_one(db).await
}
