//! A tenant's own models, in upstream's shape: `{name, type, source, description,
//! parameters: {base_url, api_key, provider, embedding_parameters: {dimension}}}`. Types are
//! chat (upstream's `KnowledgeQA`) and embedding. The API key is stored encrypted and never
//! answered: `parameters.api_key` says `***` when one is stored.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Deleted, Envelope};
use super::error::ApiError;
use super::extract::{Caller, Json, Path};
use crate::db;
use crate::db::models::Model;
use crate::state::{AppState, SharedState};

/// What answers stand for a stored key.
const MASK: &str = "***";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/models", get(list).post(create))
        .route("/api/v1/models/providers", get(providers))
        .route("/api/v1/models/{id}", get(read).put(update).delete(remove))
}

#[derive(Deserialize, Default)]
struct Body {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    description: Option<String>,
    /// Upstream's clients send `null` when they set none.
    #[serde(default, deserialize_with = "super::body::null_as_default")]
    parameters: Parameters,
}

#[derive(Deserialize, Default)]
struct Parameters {
    base_url: Option<String>,
    api_key: Option<String>,
    provider: Option<String>,
    embedding_parameters: Option<EmbeddingParameters>,
}

#[derive(Deserialize, Serialize, Default)]
struct EmbeddingParameters {
    #[serde(default)]
    dimension: i32,
}

/// Upstream's Model object, without `tenant_id` (upstream's clients decode it as an
/// integer; ours is a UUID, and the caller knows its tenant).
#[derive(Serialize)]
struct View {
    id: Uuid,
    name: String,
    /// Upstream's: the name shown; ours is the name.
    display_name: String,
    is_default: bool,
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    description: String,
    parameters: ParametersView,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct ParametersView {
    base_url: String,
    provider: String,
    /// `***` when a key is stored, else empty: never the key.
    api_key: &'static str,
    embedding_parameters: EmbeddingParameters,
}

fn view(m: Model) -> View {
    View {
        id: m.id,
        display_name: m.name.clone(),
        is_default: false,
        name: m.name,
        kind: if m.kind == "chat" { "KnowledgeQA" } else { "Embedding" },
        source: m.source,
        description: m.description,
        parameters: ParametersView {
            base_url: m.base_url,
            provider: m.provider,
            api_key: if m.api_key_encrypted.is_some() { MASK } else { "" },
            embedding_parameters: EmbeddingParameters { dimension: m.dimensions.unwrap_or(0) },
        },
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// Upstream's type names and ours.
fn kind(name: &str) -> Result<&'static str, ApiError> {
    match name.to_ascii_lowercase().as_str() {
        "knowledgeqa" | "chat" => Ok("chat"),
        "embedding" => Ok("embedding"),
        _ => Err(ApiError::bad_request("type", "a model is KnowledgeQA (chat) or Embedding")),
    }
}

/// `body` applied to `m`, checked.
fn apply(state: &AppState, m: &mut Model, body: Body) -> Result<(), ApiError> {
    // Upstream's update always sends `name`: a blank one keeps the name.
    if let Some(name) = body.name.filter(|n| !n.trim().is_empty()) {
        m.name = name.trim().to_string();
    }
    if let Some(k) = body.kind {
        m.kind = kind(&k)?.to_string();
    }
    if let Some(source) = body.source {
        m.source = source;
    }
    if let Some(description) = body.description {
        m.description = description;
    }
    let p = body.parameters;
    if let Some(provider) = p.provider {
        m.provider = provider.trim().to_ascii_lowercase();
    }
    if let Some(url) = p.base_url {
        m.base_url = url.trim().trim_end_matches('/').to_string();
    }
    if m.base_url.is_empty() && (m.provider == "ollama" || m.source == "local") {
        // upstream's local models are Ollama's
        m.provider = "ollama".into();
        m.base_url = state.config.models.ollama_base_url.trim_end_matches('/').to_string();
    }
    if let Some(e) = p.embedding_parameters {
        m.dimensions = (e.dimension > 0).then_some(e.dimension);
    }
    match p.api_key.as_deref().map(str::trim) {
        None | Some(MASK) => {}
        Some("") => m.api_key_encrypted = None,
        Some(key) => m.api_key_encrypted = Some(state.sealer.seal(m.id, key)?),
    }
    if m.name.is_empty() {
        return Err(ApiError::bad_request("name", "name the model as its provider does (e.g. gpt-4o-mini)"));
    }
    if m.provider.is_empty() || !m.provider.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ApiError::bad_request(
            "parameters.provider",
            "a provider is a name such as openai, generic or ollama",
        ));
    }
    if !(m.base_url.starts_with("http://") || m.base_url.starts_with("https://")) {
        return Err(ApiError::bad_request(
            "parameters.base_url",
            "give the model server's http(s) URL (for Ollama without one, set OLLAMA_BASE_URL)",
        ));
    }
    Ok(())
}

async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<Model, ApiError> {
    db::models::get(&state.db, caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("model"))
}

async fn list(State(state): State<SharedState>, caller: Caller) -> Result<Envelope<Vec<View>>, ApiError> {
    let models = db::models::list(&state.db, caller.tenant_id).await?;
    Ok(Envelope::new(models.into_iter().map(view).collect()))
}

async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<Body>,
) -> Result<Envelope<View>, ApiError> {
    let Some(k) = body.kind.as_deref() else {
        return Err(ApiError::bad_request("type", "say the model's type: KnowledgeQA (chat) or Embedding"));
    };
    let mut m = Model {
        id: Uuid::new_v4(),
        tenant_id: caller.tenant_id,
        name: String::new(),
        kind: kind(k)?.to_string(),
        source: "remote".into(),
        description: String::new(),
        provider: "generic".into(),
        base_url: String::new(),
        api_key_encrypted: None,
        dimensions: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    apply(&state, &mut m, body)?;
    let saved = db::models::save(&state.db, &m, true).await?.ok_or_else(|| ApiError::not_found("model"))?;
    tracing::info!(model = %saved.name, id = %saved.id, "models: added");
    Ok(Envelope::created(view(saved)))
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View>, ApiError> {
    Ok(Envelope::new(view(fetch(&state, &caller, id).await?)))
}

async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Body>,
) -> Result<Envelope<View>, ApiError> {
    let mut m = fetch(&state, &caller, id).await?;
    apply(&state, &mut m, body)?;
    let saved = db::models::save(&state.db, &m, false).await?.ok_or_else(|| ApiError::not_found("model"))?;
    Ok(Envelope::new(view(saved)))
}

/// A provider the app speaks, as upstream's model set-up lists them.
#[derive(Serialize)]
struct Provider {
    value: &'static str,
    label: &'static str,
    description: &'static str,
    #[serde(rename = "defaultUrls")]
    default_urls: std::collections::BTreeMap<&'static str, String>,
    #[serde(rename = "modelTypes")]
    model_types: [&'static str; 2],
}

#[derive(Deserialize)]
struct ProvidersQuery {
    model_type: Option<String>,
}

/// The providers a model may name: OpenAI, any OpenAI-compatible server, and Ollama (its
/// default address the configured one). Each serves chat and embedding models.
async fn providers(
    State(state): State<SharedState>,
    _caller: Caller,
    super::extract::Query(q): super::extract::Query<ProvidersQuery>,
) -> Result<Envelope<Vec<Provider>>, ApiError> {
    if let Some(t) = q.model_type.as_deref().filter(|t| !t.is_empty()) {
        kind(t)?;
    }
    let urls = |url: String| [("KnowledgeQA", url.clone()), ("Embedding", url)].into_iter().collect();
    let ollama = state.config.models.ollama_base_url.trim_end_matches('/').to_string();
    Ok(Envelope::new(vec![
        Provider {
            value: "openai",
            label: "OpenAI",
            description: "OpenAI's API",
            default_urls: urls("https://api.openai.com/v1".into()),
            model_types: ["KnowledgeQA", "Embedding"],
        },
        Provider {
            value: "generic",
            label: "OpenAI-compatible",
            description: "any server speaking OpenAI's chat and embeddings API (vLLM, LocalAI, ...)",
            default_urls: urls(String::new()),
            model_types: ["KnowledgeQA", "Embedding"],
        },
        Provider {
            value: "ollama",
            label: "Ollama",
            description: "a local Ollama server",
            default_urls: urls(ollama),
            model_types: ["KnowledgeQA", "Embedding"],
        },
    ]))
}

async fn remove(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Deleted>, ApiError> {
    if !db::models::delete(&state.db, caller.tenant_id, id).await? {
        return Err(ApiError::not_found("model"));
    }
    Ok(Envelope::new(Deleted { id, deleted: true }))
}
