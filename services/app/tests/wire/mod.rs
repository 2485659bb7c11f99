//! The wire types of upstream WeKnora's Go SDK, mirrored field for field, to decode our
//! answers as its clients do — but strictly: a JSON type the SDK's field would not take
//! (a string where it has an integer, a float for an `int`, a negative `uint64`, a `null` or
//! an object for a `string`) fails the decoding.
//!
//! How a Go type is mirrored: `string`, `bool`, `int`/`int64` (`i64`), `uint64` (`u64`),
//! `float64` (`f64`) and `time.Time` ([`Time`]: RFC 3339) are required and may not be null;
//! pointers, slices, maps and `any` are `Option` (Go takes `null` for them). A field weknora
//! does not send is `Option` with `#[serde(default)]` and says so (`// not sent`): a Go client
//! reads its zero value. Fields we add beside upstream's are ignored, as Go ignores them.
#![allow(dead_code)] // each test file decodes its own share

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes `value` as `T`, or fails the test naming the type, the error and the JSON.
#[track_caller]
pub fn decode<T: DeserializeOwned>(value: &Value) -> T {
    match serde_path_to_error::deserialize(value.clone()) {
        Ok(v) => v,
        Err(e) => panic!(
            "does not decode as upstream's {}: `{}`: {}\n{value:#}",
            std::any::type_name::<T>(),
            e.path(),
            e.inner()
        ),
    }
}

/// Go's `time.Time`: an RFC 3339 string.
#[derive(Debug, Clone)]
pub struct Time(pub chrono::DateTime<chrono::FixedOffset>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s).map(Time).map_err(serde::de::Error::custom)
    }
}

/// Upstream's error body with its integer `code` (at the top level, which the SDK's
/// `APIError.Code` reads, and under `error`), the message at both places, and our word for
/// what went wrong as `details.reason`.
#[track_caller]
pub fn upstream_error(body: &Value, code: i64, reason: &str) {
    let e: ErrorBody = decode(body);
    assert!(!e.success, "{body}");
    assert_eq!((e.code, e.error.code), (code, code), "{body}");
    assert_eq!(e.message, e.error.message, "{body}");
    assert!(!e.error.message.is_empty(), "{body}");
    assert_eq!(e.error.details.unwrap_or_default().get("reason"), Some(&Value::from(reason)), "{body}");
}

/// `{success, data}`: the envelope of every answer.
#[derive(Deserialize, Debug)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
}

/// `{success, data, total, page, page_size}`: a page of a list.
#[derive(Deserialize, Debug)]
pub struct Paged<T> {
    pub success: bool,
    pub data: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

/// An error body: what `APIError` reads (`code` at the top level) and what upstream's
/// server nests under `error`.
#[derive(Deserialize, Debug)]
pub struct ErrorBody {
    pub success: bool,
    pub code: i64,
    pub message: String,
    pub error: ErrorDetail,
}

#[derive(Deserialize, Debug)]
pub struct ErrorDetail {
    pub code: i64,
    pub message: String,
    pub details: Option<HashMap<String, Value>>,
}

// --- knowledge bases ----------------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct KnowledgeBase {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub is_temporary: bool,
    pub is_pinned: bool,
    pub description: String,
    pub tenant_id: u64,
    pub chunking_config: ChunkingConfig,
    #[serde(default)]
    pub image_processing_config: Option<Value>, // not sent: no image processing
    pub faq_config: Option<Value>,
    pub embedding_model_id: String,
    pub summary_model_id: String,
    #[serde(default)]
    pub vlm_config: Option<Value>, // not sent: no vision models
    #[serde(default)]
    pub storage_provider_config: Option<Value>, // not sent: storage is per deployment
    #[serde(default)]
    pub storage_config: Option<Value>, // not sent: storage is per deployment
    #[serde(default)]
    pub extract_config: Option<Value>, // not sent: no knowledge graph yet
    #[serde(default)]
    pub auto_tag_config: Option<Value>, // not sent: no tags
    pub created_at: Time,
    pub updated_at: Time,
    pub knowledge_count: i64,
    pub chunk_count: i64,
    pub is_processing: bool,
    pub processing_count: i64,
}

#[derive(Deserialize, Debug)]
pub struct ChunkingConfig {
    pub chunk_size: i64,
    pub chunk_overlap: i64,
    pub separators: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
pub struct SearchResult {
    pub id: String,
    pub content: String,
    pub knowledge_id: String,
    pub chunk_index: i64,
    pub knowledge_title: String,
    pub start_at: i64,
    pub end_at: i64,
    pub seq: i64,
    pub score: f64,
    pub match_type: i64,
    pub chunk_type: String,
    pub image_info: String,
    pub metadata: Option<HashMap<String, String>>,
    pub knowledge_filename: String,
    pub knowledge_source: String,
    #[serde(default)]
    pub knowledge_channel: Option<String>, // not sent: no channels
    #[serde(default)]
    pub matched_content: Option<String>,
    #[serde(default)]
    pub knowledge_base_id: Option<String>,
    #[serde(default)]
    pub parent_chunk_id: Option<String>,
    #[serde(default)]
    pub sub_chunk_id: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
pub struct DuplicateKnowledgeBaseResponse {
    pub source_id: String,
    pub target_id: String,
    pub message: String,
    pub knowledge_base: KnowledgeBase,
}

#[derive(Deserialize, Debug)]
pub struct ClearContents {
    pub deleted_count: i64,
}

// --- knowledge ----------------------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct Knowledge {
    pub id: String,
    pub tenant_id: u64,
    pub knowledge_base_id: String,
    #[serde(default)]
    pub tag_id: Option<String>, // not sent: no tags
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub description: String,
    pub source: String,
    #[serde(default)]
    pub channel: Option<String>, // not sent: no channels
    pub parse_status: String,
    pub summary_status: String,
    pub enable_status: String,
    #[serde(default)]
    pub embedding_model_id: Option<String>, // not sent: the knowledge base's model makes its vectors
    pub file_name: String,
    pub folder_path: String,
    pub file_type: String,
    pub file_size: i64,
    pub file_hash: String,
    #[serde(default)]
    pub file_path: Option<String>, // not sent: where an original is stored stays inside
    pub storage_size: i64,
    #[serde(default)]
    pub metadata: Option<Value>, // not sent: no metadata
    pub created_at: Time,
    pub updated_at: Time,
    pub processed_at: Option<Time>,
    pub error_message: String,
}

/// What the SDK's `FilterKnowledge` (`GET /knowledge/search`) decodes.
#[derive(Deserialize, Debug)]
pub struct FilterKnowledgeResponse {
    pub success: bool,
    pub data: Option<Vec<Knowledge>>,
    pub has_more: bool,
}

#[derive(Deserialize, Debug)]
pub struct KnowledgeFolderTree {
    pub root_document_count: i64,
    pub total_document_count: i64,
    pub folders: Option<Vec<KnowledgeFolderNode>>,
}

#[derive(Deserialize, Debug)]
pub struct KnowledgeFolderNode {
    pub path: String,
    pub name: String,
    pub document_count: i64,
    pub total_count: i64,
    #[serde(default)]
    pub children: Option<Vec<KnowledgeFolderNode>>,
}

/// `MoveKnowledgeToFolderResponse` and `RenameKnowledgeFolderResponse`, which are alike.
#[derive(Deserialize, Debug)]
pub struct FolderMoved {
    pub moved_count: i64,
    pub folder_path: String,
}

#[derive(Deserialize, Debug)]
pub struct MoveTarget {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
}

#[derive(Deserialize, Debug)]
pub struct MoveKnowledgeResponse {
    pub task_id: String,
    pub source_kb_id: String,
    pub target_kb_id: String,
    pub knowledge_count: i64,
    pub message: String,
}

#[derive(Deserialize, Debug)]
pub struct KnowledgeMoveProgress {
    pub task_id: String,
    pub status: String,
    pub progress: i64,
    pub total: i64,
    pub processed: i64,
    pub message: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct CopyKnowledgeBaseResponse {
    pub task_id: String,
    pub source_id: String,
    pub target_id: String,
    pub message: String,
}

#[derive(Deserialize, Debug)]
pub struct KBCloneProgress {
    pub task_id: String,
    pub source_id: String,
    pub target_id: String,
    pub status: String,
    pub progress: i64,
    pub total: i64,
    pub processed: i64,
    pub message: String,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

// --- chunks -------------------------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct Chunk {
    pub id: String,
    #[serde(default)]
    pub seq_id: Option<i64>, // not sent: chunks have no integer ids
    pub knowledge_id: String,
    pub knowledge_base_id: String,
    pub tenant_id: u64,
    #[serde(default)]
    pub tag_id: Option<String>, // not sent: no tags
    pub content: String,
    pub chunk_index: i64,
    pub is_enabled: bool,
    #[serde(default)]
    pub status: Option<i64>, // not sent: a chunk exists once stored
    pub start_at: i64,
    pub end_at: i64,
    pub pre_chunk_id: String,
    pub next_chunk_id: String,
    pub chunk_type: String,
    pub parent_chunk_id: String,
    #[serde(default)]
    pub relation_chunks: Option<Value>, // not sent: no related chunks
    #[serde(default)]
    pub indirect_relation_chunks: Option<Value>, // not sent: no related chunks
    #[serde(default)]
    pub metadata: Option<Value>, // not sent: no metadata
    pub content_hash: String,
    pub image_info: String,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>, // not sent: chunks keep no time of their last edit
}

// --- sessions, chat, messages -------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct Session {
    pub id: String,
    pub tenant_id: u64,
    pub title: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize, Debug)]
pub struct StreamResponse {
    pub id: String,
    pub response_type: String,
    pub content: String,
    pub done: bool,
    #[serde(default)]
    pub knowledge_references: Option<Vec<SearchResult>>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub assistant_message_id: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>, // not sent: no agents
    #[serde(default)]
    pub data: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, Debug)]
pub struct Message {
    pub id: String,
    pub session_id: String,
    pub request_id: String,
    pub content: String,
    pub role: String,
    pub knowledge_references: Option<Vec<SearchResult>>,
    #[serde(default)]
    pub agent_steps: Option<Vec<Value>>, // not sent: no agents
    pub is_completed: bool,
    #[serde(default)]
    pub channel: Option<String>, // not sent: no channels
    pub created_at: Time,
    pub updated_at: Time,
}

#[derive(Deserialize, Debug)]
pub struct MessageSearchResult {
    pub items: Option<Vec<MessageSearchGroupItem>>,
    pub total: i64,
}

#[derive(Deserialize, Debug)]
pub struct MessageSearchGroupItem {
    pub request_id: String,
    pub session_id: String,
    pub session_title: String,
    pub query_content: String,
    pub answer_content: String,
    pub score: f64,
    pub match_type: String,
    pub created_at: Time,
}

#[derive(Deserialize, Debug)]
pub struct ChatHistoryKBStats {
    pub enabled: bool,
    #[serde(default)]
    pub embedding_model_id: Option<String>,
    #[serde(default)]
    pub knowledge_base_id: Option<String>,
    #[serde(default)]
    pub knowledge_base_name: Option<String>,
    pub indexed_message_count: i64,
    pub has_indexed_messages: bool,
}

#[derive(Deserialize, Debug)]
pub struct MessageSuggestionSet {
    pub id: String,
    pub session_id: String,
    pub assistant_message_id: String,
    pub status: String,
    pub allow_regenerate: bool,
    #[serde(default)]
    pub suppression_reason: Option<String>,
    pub questions: Option<Vec<MessageSuggestionItem>>,
}

#[derive(Deserialize, Debug)]
pub struct MessageSuggestionItem {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub category: Option<String>,
    pub source: String,
    #[serde(default)]
    pub knowledge_base_ids: Option<Vec<String>>,
}

// --- tenants and keys ---------------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct Tenant {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub status: String,
    #[serde(default)]
    pub retriever_engines: Option<RetrieverEngines>, // not sent: retrieval is set per deployment
    #[serde(default)]
    pub business: Option<String>, // not sent: no business field
    #[serde(default)]
    pub storage_quota: Option<i64>, // not sent: no quotas
    pub storage_used: i64,
    #[serde(default)]
    pub api_key: Option<String>,
    pub created_at: Time,
    pub updated_at: Time,
}

#[derive(Deserialize, Debug)]
pub struct RetrieverEngines {
    pub engines: Option<Vec<RetrieverEngineParams>>,
}

#[derive(Deserialize, Debug)]
pub struct RetrieverEngineParams {
    pub retriever_type: String,
    pub retriever_engine_type: String,
}

#[derive(Deserialize, Debug)]
pub struct TenantList {
    pub items: Option<Vec<Tenant>>,
}

/// `TenantSearchResponse`'s data.
#[derive(Deserialize, Debug)]
pub struct TenantSearch {
    pub items: Option<Vec<Tenant>>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

#[derive(Deserialize, Debug)]
pub struct APIPrincipalConfig {
    pub mode: String,
    pub direct_header_name: String,
    pub signed_token_header_name: String,
    pub require_direct_header: bool,
    pub has_hmac_secret: bool,
    #[serde(default)]
    pub hmac_secret: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct TenantAPIKey {
    pub id: u64,
    pub tenant_id: u64,
    pub scope_type: String,
    pub name: String,
    pub api_key: String,
    pub role: String,
    pub full_access: bool,
    pub knowledge_base_ids: Option<Vec<String>>,
    pub capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub last_used_at: Option<Time>,
    #[serde(default)]
    pub expires_at: Option<Time>,
    pub created_at: Time,
    #[serde(default)]
    pub updated_at: Option<Time>, // PENDING
    /// Only on the answer to a create (`CreatedTenantAPIKey`).
    #[serde(default)]
    pub token: Option<String>,
}

// --- models and system --------------------------------------------------------------------

#[derive(Deserialize, Debug)]
pub struct Model {
    pub id: String,
    /// Go's `uint`.
    #[serde(default)]
    pub tenant_id: Option<u64>, // not sent: models are the key's tenant's
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub description: String,
    pub parameters: Option<serde_json::Map<String, Value>>,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize, Debug)]
pub struct ModelProvider {
    pub value: String,
    pub label: String,
    pub description: String,
    #[serde(rename = "defaultUrls")]
    pub default_urls: Option<HashMap<String, String>>,
    #[serde(rename = "modelTypes")]
    pub model_types: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
pub struct SystemInfo {
    pub version: String,
    pub edition: String,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub build_time: Option<String>,
    #[serde(default)]
    pub go_version: Option<String>,
    #[serde(default)]
    pub keyword_index_engine: Option<String>,
    #[serde(default)]
    pub vector_store_engine: Option<String>,
    #[serde(default)]
    pub graph_database_engine: Option<String>,
    #[serde(default)]
    pub minio_enabled: Option<bool>,
    #[serde(default)]
    pub db_version: Option<String>,
    #[serde(default)]
    pub db_migration_error: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub uptime_seconds: Option<i64>,
}

#[derive(Deserialize, Debug)]
pub struct ParserEngine {
    pub name: String,
    pub label: String,
    pub description: String,
    pub available: bool,
}

#[derive(Deserialize, Debug)]
pub struct StorageEngineStatusResponse {
    pub engines: Option<Vec<StorageEngineStatusItem>>,
    pub allowed_providers: Option<Vec<String>>,
    pub minio_env_available: bool,
}

#[derive(Deserialize, Debug)]
pub struct StorageEngineStatusItem {
    pub name: String,
    pub allowed: bool,
    pub available: bool,
    pub description: String,
}

#[derive(Deserialize, Debug)]
pub struct StorageCheckResponse {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub bucket_created: Option<bool>,
}

#[derive(Deserialize, Debug)]
pub struct DeploymentCapabilitiesData {
    pub edition: String,
    pub capabilities: Option<HashMap<String, DeploymentCapability>>,
}

#[derive(Deserialize, Debug)]
pub struct DeploymentCapability {
    pub supported: bool,
    #[serde(default)]
    pub reason: Option<String>,
}
