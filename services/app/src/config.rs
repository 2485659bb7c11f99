//! Configuration: config/config.yaml, then the environment over it. The original
//! WeKnora's variable names work where they exist; `WEKNORA__SECTION__KEY` works for every
//! key. A bad value stops the app with a message naming the variable (or key) and the fix.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// A value that must never be printed: Debug shows `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub max_file_size_mb: u64,
    pub auto_migrate: bool,
    #[serde(default)]
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Auth {
    pub admin_api_key: Secret,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Redis {
    pub addr: String,
    pub password: Secret,
    pub db: i64,
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Docreader {
    pub addr: String,
    pub auth_token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Minio {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub bucket_name: String,
    pub use_ssl: bool,
    /// The bucket's region (AWS S3); MinIO accepts the default, us-east-1.
    #[serde(default)]
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Storage {
    #[serde(rename = "type")]
    pub kind: String,
    pub local_path: String,
    pub minio: Minio,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KnowledgeBase {
    pub chunk_size: u32,
    pub chunk_overlap: u32,
    pub split_markers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ingest {
    pub workers: u32,
    pub max_attempts: i32,
    pub retry_base_ms: u64,
    pub lease_secs: u64,
    pub docreader_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Retrieval {
    pub top_k: u32,
    pub keyword_threshold: f64,
    pub vector_threshold: f64,
    /// Reciprocal rank fusion's k: a result's share is 1 / (k + rank) in each list.
    pub rrf_k: u32,
}

/// The embedding model that makes the vectors of semantic retrieval.
#[derive(Debug, Clone, Deserialize)]
pub struct Embedding {
    /// openai | generic (any OpenAI-compatible server) | ollama
    pub provider: String,
    /// Empty: no embedding model, keyword retrieval only (Ollama's: OLLAMA_BASE_URL).
    pub base_url: String,
    pub model: String,
    pub api_key: Secret,
    /// The model's vector size; 0: whatever the model answers.
    pub dimensions: u32,
    /// Texts per request (BATCH_EMBED_SIZE).
    pub batch_size: u32,
    /// Put before each question and each passage (e5 models need `query: ` and `passage: `).
    pub query_prefix: String,
    pub passage_prefix: String,
    /// Send `input_type: query|passage` instead (servers that add the prefixes themselves).
    pub input_type: bool,
    pub timeout_secs: u64,
    /// Tries of one request before a transient failure is handed to the job's retries.
    pub max_retries: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Models {
    pub ollama_base_url: String,
    /// Encrypts the API keys tenants store for their models (MODELS_ENCRYPTION_KEY).
    pub encryption_key: Secret,
}

/// The built-in chat model and how answers are made.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// openai | generic (any OpenAI-compatible server) | ollama
    pub provider: String,
    /// Empty: no built-in chat model; answers are extractive unless a tenant adds a model
    /// (Ollama's: OLLAMA_BASE_URL).
    pub base_url: String,
    pub model: String,
    pub api_key: Secret,
    pub connect_timeout_secs: u64,
    /// Longest wait for the model's first piece of the answer.
    pub first_token_timeout_secs: u64,
    /// Longest answer, from the question to the last piece.
    pub total_timeout_secs: u64,
    /// Answers a tenant may have streaming at once.
    pub max_concurrent_per_tenant: u32,
    /// Earlier questions and answers of the session put into the prompt.
    pub history_turns: u32,
    /// Passages and history given to the model, in (estimated) tokens.
    pub context_tokens: u32,
    /// Longest answer asked of the model, in tokens.
    pub max_answer_tokens: u32,
    pub temperature: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Graph {
    pub enabled: bool,
    pub uri: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub level: String,
    pub format: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub server: Server,
    pub auth: Auth,
    pub database: Database,
    pub redis: Redis,
    pub docreader: Docreader,
    pub storage: Storage,
    pub knowledge_base: KnowledgeBase,
    pub ingest: Ingest,
    pub retrieval: Retrieval,
    pub embedding: Embedding,
    pub models: Models,
    pub chat: Chat,
    pub graph: Graph,
    pub log: Log,
}

/// The original WeKnora's environment variables and the keys they set (and the tracing
/// ones, which set none), declared with the rest of the stack in weknora-stack-spec.
pub const ENV_NAMES: &[weknora_stack_spec::EnvVar] = weknora_stack_spec::APP_ENV;

/// The generic spelling of a key: `knowledge_base.chunk_size` -> `WEKNORA__KNOWLEDGE_BASE__CHUNK_SIZE`.
pub fn generic_name(key: &str) -> String {
    format!("WEKNORA__{}", key.replace('.', "__").to_ascii_uppercase())
}

fn lookup<'v>(root: &'v mut Value, key: &str) -> Option<&'v mut Value> {
    key.split('.').try_fold(root, |v, part| v.as_mapping_mut()?.get_mut(part))
}

/// Sets `key` from an environment value, typed like the value it replaces.
/// `VAR`, or the content of the file `VAR_FILE` names (how Docker and Kubernetes hand over
/// secrets), without its final newline. Both set is refused: which one is meant is unclear.
fn from_env_or_file(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<String>, String> {
    let file_var = format!("{var}_FILE");
    match (env(var), env(&file_var)) {
        (Some(_), Some(_)) => Err(format!("both {var} and {file_var} are set: keep one")),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some(text.strip_suffix('\n').unwrap_or(&text).to_string()))
            .map_err(|e| format!("{file_var}={path}: cannot read it: {e}")),
        (None, None) => Ok(None),
    }
}

fn set(root: &mut Value, key: &str, var: &str, raw: &str) -> Result<(), String> {
    let Some(slot) = lookup(root, key) else { return Err(format!("{var}: no such configuration key `{key}`")) };
    *slot = match slot {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" | "" => Value::Bool(false),
            _ => return Err(format!("{var}=`{raw}` is not a boolean ({key}): use true or false")),
        },
        Value::Number(n) if n.is_f64() => {
            raw.trim().parse::<f64>().map(Value::from).map_err(|_| format!("{var}=`{raw}` is not a number ({key})"))?
        }
        Value::Number(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{var}=`{raw}` is not a whole number ({key})"))?,
        Value::Sequence(_) => Value::Sequence(raw.split(',').map(|s| Value::String(s.to_string())).collect()),
        _ => Value::String(raw.to_string()),
    };
    Ok(())
}

fn keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = value.as_mapping() {
        for (k, v) in map {
            let k = k.as_str().unwrap_or_default();
            let key = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            if v.is_mapping() {
                keys(v, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

impl Config {
    /// Where the embedding model is served: EMBEDDING_BASE_URL, or OLLAMA_BASE_URL for the
    /// ollama provider; empty when there is none.
    pub fn embedding_base_url(&self) -> &str {
        match (&self.embedding.base_url[..], &self.embedding.provider[..]) {
            ("", "ollama") => &self.models.ollama_base_url,
            (url, _) => url,
        }
    }

    /// Where the built-in chat model is served: LLM_BASE_URL, or OLLAMA_BASE_URL for the
    /// ollama provider; empty when there is none.
    pub fn chat_base_url(&self) -> &str {
        match (&self.chat.base_url[..], &self.chat.provider[..]) {
            ("", "ollama") => &self.models.ollama_base_url,
            (url, _) => url,
        }
    }

    /// Reads `path`, applies the environment given by `env`, checks the result.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("cannot read the configuration file {}: {e} (set WEKNORA_CONFIG to its path)", path.display())
        })?;
        Config::from_yaml(&text, env).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_yaml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut root: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        if !root.is_mapping() {
            root = Value::Mapping(Mapping::new());
        }
        for (var, key) in ENV_NAMES.iter().filter_map(|v| Some((v.name, v.config_key?))) {
            if let Some(raw) = from_env_or_file(&env, var)? {
                set(&mut root, key, var, &raw)?;
            }
        }
        let mut all = Vec::new();
        keys(&root, "", &mut all);
        for key in all {
            let var = generic_name(&key);
            if let Some(raw) = env(&var) {
                set(&mut root, &key, &var, &raw)?;
            }
        }
        let config: Config =
            serde_yaml_ng::from_value(root).map_err(|e| format!("{e} (compare with config/config.yaml)"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let kb = &self.knowledge_base;
        if kb.chunk_size < 16 {
            return Err(format!("knowledge_base.chunk_size is {}: use at least 16", kb.chunk_size));
        }
        if kb.chunk_overlap >= kb.chunk_size {
            return Err(format!(
                "knowledge_base.chunk_overlap ({}) must be smaller than knowledge_base.chunk_size ({})",
                kb.chunk_overlap, kb.chunk_size
            ));
        }
        match self.storage.kind.as_str() {
            "local" if self.storage.local_path.is_empty() => return Err("storage.local_path is empty".into()),
            "local" => {}
            "minio" | "s3" => {
                let m = &self.storage.minio;
                for (var, value) in [
                    ("MINIO_ENDPOINT", &m.endpoint),
                    ("MINIO_ACCESS_KEY_ID", &m.access_key_id),
                    ("MINIO_SECRET_ACCESS_KEY", &m.secret_access_key.0),
                    ("MINIO_BUCKET_NAME", &m.bucket_name),
                ] {
                    if value.is_empty() {
                        return Err(format!("STORAGE_TYPE={} needs {var}", self.storage.kind));
                    }
                }
            }
            other => return Err(format!("STORAGE_TYPE=`{other}` is not one of local, minio, s3")),
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(format!("LOG_FORMAT=`{}` is not text or json", self.log.format));
        }
        if self.ingest.workers == 0 || self.ingest.max_attempts < 1 || self.ingest.lease_secs == 0 {
            return Err("ingest.workers, ingest.max_attempts and ingest.lease_secs must be at least 1".into());
        }
        if self.server.max_file_size_mb == 0 {
            return Err("MAX_FILE_SIZE_MB must be at least 1".into());
        }
        let admin = &self.auth.admin_api_key.0;
        if !admin.is_empty() && admin.len() < 16 {
            return Err(
                "ADMIN_API_KEY is shorter than 16 characters: use a long random key (`openssl rand -hex 32`)".into()
            );
        }
        let e = &self.embedding;
        if !matches!(e.provider.as_str(), "openai" | "generic" | "ollama") {
            return Err(format!("EMBEDDING_PROVIDER=`{}` is not one of openai, generic, ollama", e.provider));
        }
        if !self.embedding_base_url().is_empty() && e.model.is_empty() {
            return Err("EMBEDDING_BASE_URL is set but EMBEDDING_MODEL_NAME is not: name the embedding model".into());
        }
        if e.batch_size == 0 || e.batch_size > 2048 {
            return Err(format!("BATCH_EMBED_SIZE={} is not between 1 and 2048", e.batch_size));
        }
        if e.dimensions > 16000 {
            return Err(format!("EMBEDDING_DIMENSION={} is larger than pgvector's 16000", e.dimensions));
        }
        let c = &self.chat;
        if !matches!(c.provider.as_str(), "openai" | "generic" | "ollama") {
            return Err(format!("LLM_PROVIDER=`{}` is not one of openai, generic, ollama", c.provider));
        }
        if !self.chat_base_url().is_empty() && c.model.is_empty() {
            return Err("LLM_BASE_URL is set but LLM_MODEL_NAME is not: name the chat model".into());
        }
        if c.first_token_timeout_secs == 0 || c.total_timeout_secs == 0 || c.connect_timeout_secs == 0 {
            return Err("chat.connect_timeout_secs, chat.first_token_timeout_secs and chat.total_timeout_secs must be at least 1".into());
        }
        if c.max_concurrent_per_tenant == 0 || c.context_tokens < 256 || c.max_answer_tokens == 0 {
            return Err("chat.max_concurrent_per_tenant and chat.max_answer_tokens must be at least 1, chat.context_tokens at least 256".into());
        }
        if self.database.user.is_empty() || self.database.name.is_empty() {
            return Err("DB_USER and DB_NAME must be set".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = include_str!("../../../config/config.yaml");

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_yaml(YAML, move |k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_secret_can_come_from_a_file_named_by_var_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db_password");
        std::fs::write(&file, "from-a-secret\n").unwrap();
        let path = file.display().to_string();
        let c = load(&[("DB_PASSWORD_FILE", &path)]).unwrap();
        assert_eq!(c.database.password.0, "from-a-secret", "the final newline is not part of it");

        let both = load(&[("DB_PASSWORD_FILE", &path), ("DB_PASSWORD", "x")]).unwrap_err();
        assert!(both.contains("both DB_PASSWORD and DB_PASSWORD_FILE are set"), "{both}");
        let missing = load(&[("REDIS_PASSWORD_FILE", "/nonexistent/redis_password")]).unwrap_err();
        assert!(missing.contains("REDIS_PASSWORD_FILE=/nonexistent/redis_password: cannot read it"), "{missing}");
    }

    #[test]
    fn the_shipped_file_loads_with_its_defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.knowledge_base.chunk_size, 512);
        assert_eq!(c.knowledge_base.chunk_overlap, 50);
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.storage.kind, "local");
    }

    #[test]
    fn original_names_and_generic_names_override() {
        let c = load(&[
            ("DB_HOST", "postgres"),
            ("DB_PORT", "6543"),
            ("DB_PASSWORD", "p@ss: w0rd #1"),
            ("AUTO_MIGRATE", "true"),
            ("WEKNORA__KNOWLEDGE_BASE__CHUNK_SIZE", "800"),
            ("WEKNORA__RETRIEVAL__VECTOR_THRESHOLD", "0.7"),
            ("WEKNORA__KNOWLEDGE_BASE__SPLIT_MARKERS", "。,."),
        ])
        .unwrap();
        assert_eq!(c.database.host, "postgres");
        assert_eq!(c.database.port, 6543);
        assert_eq!(c.database.password.0, "p@ss: w0rd #1", "strings stay strings");
        assert!(c.server.auto_migrate);
        assert_eq!(c.knowledge_base.chunk_size, 800);
        assert_eq!(c.retrieval.vector_threshold, 0.7);
        assert_eq!(c.knowledge_base.split_markers, ["。", "."]);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert!(load(&[("DB_PORT", "abc")]).unwrap_err().contains("DB_PORT=`abc`"));
        assert!(load(&[("AUTO_MIGRATE", "maybe")]).unwrap_err().contains("AUTO_MIGRATE"));
        assert!(load(&[("STORAGE_TYPE", "ftp")]).unwrap_err().contains("STORAGE_TYPE=`ftp`"));
        assert!(load(&[("STORAGE_TYPE", "minio")]).unwrap_err().contains("MINIO_ENDPOINT"));
        assert!(load(&[("WEKNORA__KNOWLEDGE_BASE__CHUNK_OVERLAP", "600")]).unwrap_err().contains("chunk_overlap"));
        assert!(load(&[("DB_PORT", "70000")]).is_err(), "ports are 16-bit");
    }

    #[test]
    fn the_embedding_model_is_checked_and_ollama_falls_back_to_its_base_url() {
        let c = load(&[
            ("EMBEDDING_PROVIDER", "ollama"),
            ("OLLAMA_BASE_URL", "http://ollama:11434"),
            ("EMBEDDING_MODEL_NAME", "bge-m3"),
        ])
        .unwrap();
        assert_eq!(c.embedding_base_url(), "http://ollama:11434");
        assert_eq!(load(&[]).unwrap().embedding_base_url(), "", "no embedding model by default");
        assert!(load(&[("EMBEDDING_PROVIDER", "cohere")]).unwrap_err().contains("EMBEDDING_PROVIDER=`cohere`"));
        assert!(load(&[("EMBEDDING_BASE_URL", "http://e:8000")]).unwrap_err().contains("EMBEDDING_MODEL_NAME"));
        assert!(load(&[("BATCH_EMBED_SIZE", "0")]).unwrap_err().contains("BATCH_EMBED_SIZE"));
        let c = load(&[("LLM_PROVIDER", "ollama"), ("OLLAMA_BASE_URL", "http://o:11434"), ("LLM_MODEL_NAME", "qwen")])
            .unwrap();
        assert_eq!(c.chat_base_url(), "http://o:11434");
        assert_eq!(load(&[]).unwrap().chat_base_url(), "", "no chat model by default");
        assert!(load(&[("LLM_BASE_URL", "http://llm:8000")]).unwrap_err().contains("LLM_MODEL_NAME"));
        assert!(load(&[("LLM_PROVIDER", "claude")]).unwrap_err().contains("LLM_PROVIDER=`claude`"));
        let c = load(&[("EMBEDDING_QUERY_PREFIX", "query: ")]).unwrap();
        assert_eq!(c.embedding.query_prefix, "query: ", "the trailing space is kept");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = load(&[
            ("DB_PASSWORD", "hunter2"),
            ("GRPC_AUTH_TOKEN", "tok3n"),
            ("EMBEDDING_API_KEY", "sk-live-1"),
            ("LLM_API_KEY", "sk-chat-2"),
            ("MODELS_ENCRYPTION_KEY", "enc-key-3"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["hunter2", "tok3n", "sk-live", "sk-chat", "enc-key"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
