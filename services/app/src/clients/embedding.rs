//! The embedding model's client, for the two protocols users have: OpenAI-compatible
//! `POST {base}/v1/embeddings` (OpenAI, vLLM, TEI, SiliconFlow, DashScope, the bundled
//! embedder) and Ollama's `POST {base}/api/embed`. Requests are batched, time out, and are
//! retried with doubling waits when the failure is worth another try. The API key is sent
//! as a bearer token and never appears in a message.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::clients::remote::{Protocol, excerpt, without_url};
use crate::config::Config;

#[derive(Debug, Clone, PartialEq)]
pub enum EmbedError {
    /// Worth another try: the model is down, overloaded or slow.
    Transient(String),
    /// Another try would fail the same way: a wrong model name, key or dimension.
    Permanent(String),
}

impl std::fmt::Display for EmbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmbedError::Transient(m) | EmbedError::Permanent(m) => f.write_str(m),
        }
    }
}

/// Where and how to reach one embedding model.
pub struct Spec<'a> {
    pub provider: &'a str,
    pub base_url: &'a str,
    pub model: &'a str,
    pub api_key: &'a str,
    /// Expected vector size; 0: whatever the model answers.
    pub dimensions: usize,
}

#[derive(Clone)]
pub struct Embedder {
    http: reqwest::Client,
    protocol: Protocol,
    /// The endpoint embeddings are posted to.
    url: String,
    /// What messages say the model is served at (no path, no credentials).
    base: String,
    model: String,
    api_key: String,
    /// Expected vector size; 0 until known.
    dimensions: usize,
    batch_size: usize,
    query_prefix: String,
    passage_prefix: String,
    /// Say `input_type: query|passage` in each request (servers that prefix themselves).
    input_type: bool,
    max_retries: u32,
    /// The last readiness check and when it was made: `/ready` may be polled every few
    /// seconds, and each check is an embedding (which a paid API bills).
    last_check: std::sync::Arc<std::sync::Mutex<Option<Checked>>>,
}

/// A readiness check's answer and when it was had.
type Checked = (std::time::Instant, Result<(), String>);

/// How long a readiness check's answer is reused.
const CHECK_REUSE: Duration = Duration::from_secs(15);

/// What a text is to the model: e5-like models embed questions and passages differently.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Query,
    Passage,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiVector>,
}

#[derive(Deserialize)]
struct OpenAiVector {
    embedding: Vec<f32>,
    #[serde(default)]
    index: usize,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

impl Embedder {
    /// The configured model, or None when no embedding model is configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Embedder>> {
        let base = config.embedding_base_url();
        if base.is_empty() {
            return Ok(None);
        }
        let e = &config.embedding;
        let spec = Spec {
            provider: &e.provider,
            base_url: base,
            model: &e.model,
            api_key: &e.api_key.0,
            dimensions: e.dimensions as usize,
        };
        let mut embedder =
            Embedder::new(config, &spec).map_err(|err| anyhow::anyhow!("the embedding client: {err}"))?;
        embedder.query_prefix = e.query_prefix.clone();
        embedder.passage_prefix = e.passage_prefix.clone();
        // OpenAI's own API refuses fields it does not know.
        embedder.input_type = e.input_type && e.provider == "generic";
        Ok(Some(embedder))
    }

    /// A client of the model `spec` names (a tenant's own model: no prefixes, no
    /// `input_type`), batched, timed out and retried as configured.
    pub fn new(config: &Config, spec: &Spec<'_>) -> Result<Embedder, String> {
        let e = &config.embedding;
        let base = spec.base_url.trim_end_matches('/').to_string();
        let protocol = Protocol::of(spec.provider);
        Ok(Embedder {
            http: crate::clients::remote::client(Duration::from_secs(5), Some(Duration::from_secs(e.timeout_secs)))?,
            protocol,
            url: protocol.endpoint(&base, "embeddings", "api/embed"),
            base,
            model: spec.model.to_string(),
            api_key: spec.api_key.to_string(),
            dimensions: spec.dimensions,
            batch_size: e.batch_size as usize,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            input_type: false,
            max_retries: e.max_retries.max(1),
            last_check: Default::default(),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The configured vector size (0: not configured, taken from the first answer).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Where the model is served, for messages.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The vector of a question.
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.call(vec![format!("{}{query}", self.query_prefix)], Role::Query).await?;
        vectors.pop().ok_or_else(|| EmbedError::Permanent(format!("{} answered no vector", self.base)))
    }

    /// The vectors of passages, in order, one request per `batch_size` texts.
    pub async fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let inputs = batch.iter().map(|t| format!("{}{t}", self.passage_prefix)).collect();
            out.extend(self.call(inputs, Role::Passage).await?);
        }
        Ok(out)
    }

    /// One request, tried up to `max_retries` times while it fails transiently.
    async fn call(&self, inputs: Vec<String>, role: Role) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut wait = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.call_once(&inputs, role).await {
                Err(EmbedError::Transient(reason)) if attempt < self.max_retries => {
                    tracing::debug!(%reason, attempt, "embedding: retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    #[tracing::instrument(name = "embeddings", skip_all, fields(otel.kind = "client", inputs = inputs.len(), role = ?role))]
    async fn call_once(&self, inputs: &[String], role: Role) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut body = match self.protocol {
            Protocol::OpenAi => json!({ "model": self.model, "input": inputs, "encoding_format": "float" }),
            Protocol::Ollama => json!({ "model": self.model, "input": inputs }),
        };
        if self.input_type {
            body["input_type"] = json!(if role == Role::Query { "query" } else { "passage" });
        }
        // reqwest's errors name the URL, which holds no credentials here.
        let response =
            crate::clients::remote::post(&self.http, &self.url, &self.api_key, &body).send().await.map_err(|e| {
                EmbedError::Transient(format!(
                    "the embedding model at {} does not answer: {}",
                    self.base,
                    without_url(&e)
                ))
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            EmbedError::Transient(format!(
                "the embedding model at {} broke off its answer: {}",
                self.base,
                without_url(&e)
            ))
        })?;
        if !status.is_success() {
            let reason = format!("the embedding model at {} answered HTTP {status}: {}", self.base, excerpt(&text));
            return Err(if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                EmbedError::Transient(reason)
            } else {
                EmbedError::Permanent(format!(
                    "{reason} (check EMBEDDING_MODEL_NAME `{}`, EMBEDDING_API_KEY and EMBEDDING_PROVIDER)",
                    self.model
                ))
            });
        }
        let vectors = self.decode(&text).map_err(|e| {
            EmbedError::Permanent(format!(
                "the embedding model at {} answered something other than embeddings ({e}); is EMBEDDING_PROVIDER right?",
                self.base
            ))
        })?;
        if vectors.len() != inputs.len() {
            return Err(EmbedError::Permanent(format!(
                "the embedding model at {} answered {} vectors for {} texts",
                self.base,
                vectors.len(),
                inputs.len()
            )));
        }
        if let Some(v) = vectors.iter().find(|v| v.is_empty() || (self.dimensions > 0 && v.len() != self.dimensions)) {
            return Err(EmbedError::Permanent(format!(
                "the embedding model `{}` answered vectors of {} dimensions, but EMBEDDING_DIMENSION is {}: set it to the model's size",
                self.model,
                v.len(),
                self.dimensions
            )));
        }
        Ok(vectors)
    }

    fn decode(&self, text: &str) -> Result<Vec<Vec<f32>>, serde_json::Error> {
        match self.protocol {
            Protocol::OpenAi => {
                let mut answer: OpenAiAnswer = serde_json::from_str(text)?;
                answer.data.sort_by_key(|v| v.index);
                Ok(answer.data.into_iter().map(|v| v.embedding).collect())
            }
            Protocol::Ollama => Ok(serde_json::from_str::<OllamaAnswer>(text)?.embeddings),
        }
    }

    /// Whether the model answers: one short text embedded within `timeout` (an answer
    /// younger than `CHECK_REUSE` is reused).
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let reuse = |guard: &Option<Checked>| {
            guard.as_ref().filter(|(at, _)| at.elapsed() < CHECK_REUSE).map(|(_, r)| r.clone())
        };
        if let Some(result) = reuse(&self.last_check.lock().unwrap_or_else(|e| e.into_inner())) {
            return result;
        }
        let result = match tokio::time::timeout(timeout, self.call_once(&["ping".to_string()], Role::Query)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        };
        *self.last_check.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), result.clone()));
        result
    }
}
