//! The models a tenant adds (chat or embedding), scoped to the tenant. The API key is kept
//! only as the ciphertext the caller made (the crypt module); nothing here sees it in clear.

use uuid::Uuid;

use sqlx::PgPool as Db;

#[derive(Clone, sqlx::FromRow)]
pub struct Model {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// chat or embedding.
    #[sqlx(rename = "type")]
    pub kind: String,
    pub source: String,
    pub description: String,
    pub provider: String,
    pub base_url: String,
    pub api_key_encrypted: Option<Vec<u8>>,
    pub dimensions: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, tenant_id, name, type, source, description, provider, base_url, api_key_encrypted, \
                       dimensions, created_at, updated_at";

pub async fn list(db: &Db, tenant: Uuid) -> Result<Vec<Model>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE tenant_id = $1 ORDER BY created_at");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_all(db).await
}

pub async fn get(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Model>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

/// Inserts `m` as it is (its id chosen by the caller, who sealed the key to it), or writes
/// it over the row with its id; None when that row is gone.
pub async fn save(db: &Db, m: &Model, new: bool) -> Result<Option<Model>, sqlx::Error> {
    let sql = if new {
        format!(
            "INSERT INTO models (id, tenant_id, name, type, source, description, provider, base_url, \
             api_key_encrypted, dimensions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        )
    } else {
        format!(
            "UPDATE models SET name = $3, type = $4, source = $5, description = $6, provider = $7, base_url = $8, \
             api_key_encrypted = $9, dimensions = $10 WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
        )
    };
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(m.id)
        .bind(m.tenant_id)
        .bind(&m.name)
        .bind(&m.kind)
        .bind(&m.source)
        .bind(&m.description)
        .bind(&m.provider)
        .bind(&m.base_url)
        .bind(&m.api_key_encrypted)
        .bind(m.dimensions)
        .fetch_optional(db)
        .await
}

pub async fn delete(db: &Db, tenant: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM models WHERE id = $1 AND tenant_id = $2").bind(id).bind(tenant).execute(db).await?;
    Ok(done.rows_affected() > 0)
}
