//! Tenants and their API keys.

use serde::Serialize;
use uuid::Uuid;

use crate::keys;
use sqlx::PgPool as Db;

/// A tenant in upstream's shape: its integer number is the `id` clients see; `status` is
/// `active` (a deleted tenant is gone, not kept as inactive); `storage_used` is the bytes of
/// its stored files.
#[derive(Serialize, sqlx::FromRow)]
pub struct Tenant {
    #[serde(skip)]
    pub uuid: Uuid,
    #[sqlx(rename = "number")]
    pub id: i64,
    pub name: String,
    pub description: String,
    pub status: String,
    pub storage_used: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const TENANT: &str = "id AS uuid, number, name, description, 'active' AS status, \
                      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM knowledge k WHERE k.tenant_id = tenants.id) \
                      AS storage_used, created_at, updated_at";

/// An API key as listed: never the key, only its first characters.
#[derive(Serialize, sqlx::FromRow)]
pub struct Key {
    #[sqlx(rename = "number")]
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    /// `wk_3f9…`: the key's first characters.
    pub api_key: String,
    /// Ours (admin or member); the API answers upstream's word for it.
    pub role: String,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const KEY: &str = "k.number, t.number AS tenant_id, k.name, k.key_prefix || '…' AS api_key, k.role, k.last_used_at, \
                   k.expires_at, k.created_at";

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

/// A new key for `tenant`; the key itself is returned once (with its listing) and stored hashed.
pub async fn create_key(db: &Db, tenant: Uuid, name: &str, role: &str) -> Result<(String, Key), sqlx::Error> {
    let key = keys::new_key();
    let sql = format!(
        "WITH k AS (INSERT INTO api_keys (tenant_id, name, key_prefix, key_hash, role) VALUES ($1, $2, $3, $4, $5) \
         RETURNING *) SELECT {KEY} FROM k JOIN tenants t ON t.id = k.tenant_id"
    );
    let listed = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(name)
        .bind(keys::prefix(&key))
        .bind(keys::hash(&key))
        .bind(role)
        .fetch_one(db)
        .await?;
    Ok((key, listed))
}

/// The tenant's live keys (not revoked), oldest first.
pub async fn keys(db: &Db, tenant: Uuid) -> Result<Vec<Key>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
         WHERE k.tenant_id = $1 AND k.revoked_at IS NULL ORDER BY k.number"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_all(db).await
}

/// Revokes the tenant's key `number`; false when it has no such live key.
pub async fn revoke_key(db: &Db, tenant: Uuid, number: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND number = $2 AND revoked_at IS NULL",
    )
    .bind(tenant)
    .bind(number)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn create(db: &Db, name: &str, description: &str) -> Result<Tenant, sqlx::Error> {
    let sql = format!("INSERT INTO tenants (name, description) VALUES ($1, $2) RETURNING {TENANT}");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(description).fetch_one(db).await
}

pub async fn get(db: &Db, id: Uuid) -> Result<Tenant, sqlx::Error> {
    let sql = format!("SELECT {TENANT} FROM tenants WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(db).await
}

/// Renames the tenant (and sets its description).
pub async fn update(db: &Db, id: Uuid, name: &str, description: &str) -> Result<Tenant, sqlx::Error> {
    let sql = format!("UPDATE tenants SET name = $2, description = $3 WHERE id = $1 RETURNING {TENANT}");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(name).bind(description).fetch_one(db).await
}

/// The tenant whose number (upstream's id) is `number`.
pub async fn by_number(db: &Db, number: i64) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {TENANT} FROM tenants WHERE number = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(number).fetch_optional(db).await
}

/// Every tenant, oldest first.
pub async fn all(db: &Db) -> Result<Vec<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {TENANT} FROM tenants ORDER BY number");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await
}

/// One page of the tenants whose name or description has `keyword` (as typed: `%` and `_`
/// match themselves, any case) and whose number is `number`, when given; and how many
/// there are in all.
pub async fn search(
    db: &Db,
    keyword: Option<&str>,
    number: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Tenant>, i64), sqlx::Error> {
    let pattern = keyword.map(|k| format!("%{}%", k.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    const WHERE: &str =
        "($1::text IS NULL OR name ILIKE $1 OR description ILIKE $1) AND ($2::bigint IS NULL OR number = $2)";
    let sql = format!("SELECT {TENANT} FROM tenants WHERE {WHERE} ORDER BY number LIMIT $3 OFFSET $4");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&pattern)
        .bind(number)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let sql = format!("SELECT count(*) FROM tenants WHERE {WHERE}");
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&pattern).bind(number).fetch_one(db).await?;
    Ok((rows, total))
}

/// The tenant holding the live key `key` (not revoked), if any.
pub async fn holder_of(db: &Db, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(keys::hash(key))
        .fetch_optional(db)
        .await
}

/// What went with a deleted tenant: how many of each, and its stored files' keys (for the
/// caller to remove from storage).
#[derive(Serialize, sqlx::FromRow)]
pub struct Removed {
    pub knowledge_bases: i64,
    pub documents: i64,
    pub chunks: i64,
    pub sessions: i64,
    pub models: i64,
    pub api_keys: i64,
    #[serde(skip)]
    pub files: Vec<String>,
}

/// Deletes the tenant and, by ON DELETE CASCADE, everything it has: knowledge bases,
/// documents, chunks and vectors, ingest jobs, sessions and messages, models, settings and
/// API keys. None when there was no such tenant.
pub async fn delete(db: &Db, id: Uuid) -> Result<Option<Removed>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // An ingest worker locks its job, then the document: the jobs are locked first here
    // too, or deleting while documents are ingested could deadlock.
    sqlx::query("SELECT 1 FROM ingest_jobs WHERE tenant_id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await?;
    // Counted and collected in the statement that deletes (its parts share one snapshot).
    let removed: Option<Removed> = sqlx::query_as(
        "WITH gone AS (DELETE FROM tenants WHERE id = $1 RETURNING id) \
         SELECT (SELECT count(*) FROM knowledge_bases WHERE tenant_id = $1) AS knowledge_bases, \
                (SELECT count(*) FROM knowledge WHERE tenant_id = $1) AS documents, \
                (SELECT count(*) FROM chunks WHERE tenant_id = $1) AS chunks, \
                (SELECT count(*) FROM chat_sessions WHERE tenant_id = $1) AS sessions, \
                (SELECT count(*) FROM models WHERE tenant_id = $1) AS models, \
                (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL) AS api_keys, \
                ARRAY(SELECT object_key FROM knowledge WHERE tenant_id = $1 AND object_key IS NOT NULL) AS files \
         FROM gone",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(removed)
}

/// The tenant's setting `key` (a JSON object), when it was ever set.
pub async fn setting(db: &Db, tenant: Uuid, key: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM tenant_settings WHERE tenant_id = $1 AND key = $2")
        .bind(tenant)
        .bind(key)
        .fetch_optional(db)
        .await
}

/// Sets the tenant's setting `key` to `value` (a JSON object), replacing what it was.
pub async fn set_setting(
    db: &Db,
    tenant: Uuid,
    key: &str,
    value: &serde_json::Value,
) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value RETURNING value",
    )
    .bind(tenant)
    .bind(key)
    .bind(value)
    .fetch_one(db)
    .await
}
