//! Models as clients: the built-in chat model (LLM_*), and a tenant's own chat and
//! embedding models (`/api/v1/models`), their API keys opened only to make the client.

use uuid::Uuid;

use crate::clients::embedding::Embedder;
use crate::clients::llm::{ChatModel, Spec};
use crate::crypt::SealError;
use crate::db;
use crate::state::AppState;

#[derive(Debug)]
pub enum ModelError {
    /// No such model of the tenant.
    NoSuchModel,
    /// The model is not of the type wanted (chat, embedding).
    WrongType(&'static str),
    /// The model's API key cannot be read.
    Key(SealError),
    Build(String),
    Database(sqlx::Error),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::NoSuchModel => f.write_str("no such model of this tenant"),
            ModelError::WrongType(kind) => write!(f, "the model is not a {kind} model"),
            ModelError::Key(e) => write!(f, "{e}"),
            ModelError::Build(m) => f.write_str(m),
            ModelError::Database(e) => write!(f, "{e}"),
        }
    }
}

impl From<sqlx::Error> for ModelError {
    fn from(e: sqlx::Error) -> ModelError {
        ModelError::Database(e)
    }
}

/// The tenant's model `id` of type `kind`, with its key opened.
async fn stored(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    kind: &'static str,
) -> Result<(db::models::Model, String), ModelError> {
    let m = db::models::get(&state.db, tenant, id).await?.ok_or(ModelError::NoSuchModel)?;
    if m.kind != kind {
        return Err(ModelError::WrongType(kind));
    }
    let key = match &m.api_key_encrypted {
        Some(sealed) => state.sealer.open(m.id, sealed).map_err(ModelError::Key)?,
        None => String::new(),
    };
    Ok((m, key))
}

/// The tenant's chat model `id` as a client.
pub async fn chat(state: &AppState, tenant: Uuid, id: Uuid) -> Result<ChatModel, ModelError> {
    let (m, api_key) = stored(state, tenant, id, "chat").await?;
    let spec = Spec { provider: m.provider, base_url: m.base_url, model: m.name, api_key };
    ChatModel::configured(&state.config, &spec).map_err(ModelError::Build)
}

/// The embedding model of a knowledge base: the tenant's model `id`, or the built-in one
/// (None when there is none).
pub async fn embedder(state: &AppState, tenant: Uuid, id: Option<Uuid>) -> Result<Option<Embedder>, ModelError> {
    let Some(id) = id else { return Ok(state.embedder.clone()) };
    let (m, api_key) = stored(state, tenant, id, "embedding").await?;
    let spec = crate::clients::embedding::Spec {
        provider: &m.provider,
        base_url: &m.base_url,
        model: &m.name,
        api_key: &api_key,
        dimensions: m.dimensions.unwrap_or(0).max(0) as usize,
    };
    Embedder::new(&state.config, &spec).map(Some).map_err(ModelError::Build)
}
