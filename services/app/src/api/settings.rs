//! A tenant's settings under upstream's `/tenants/kv/{key}`, the tenant being the key's.
//! What weknora keeps per tenant is stored (`retrieval-config`, `conversation-config`);
//! what it decides per deployment is shown as it is (`parser-engine-config`,
//! `storage-engine-config`, `chat-history-config`, `prompt-templates`) and cannot be changed
//! here; the settings of features it does not have (`agent-config`, `web-search-config`)
//! answer 501, as those features' routes do.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::body::{Envelope, Message};
use super::error::ApiError;
use super::extract::{Caller, Json, Path};
use crate::db;
use crate::state::{AppState, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new().route("/api/v1/tenants/kv/{key}", get(read).put(write))
}

/// Upstream's keys, in its documentation's order.
const KEYS: [&str; 8] = [
    "agent-config",
    "web-search-config",
    "conversation-config",
    "prompt-templates",
    "parser-engine-config",
    "storage-engine-config",
    "chat-history-config",
    "retrieval-config",
];

/// What a stored setting's field holds (and its range).
enum Kind {
    Int(i64, i64),
    Number(f64, f64),
    Bool,
    Text,
    Object(&'static [Field]),
}

struct Field(&'static str, Kind);

/// The longest text a setting's field takes, in characters.
const MAX_TEXT: usize = 20_000;

/// Upstream's retrieval settings and their ranges.
const RETRIEVAL: &[Field] = &[
    Field("embedding_top_k", Kind::Int(0, 200)),
    Field("vector_threshold", Kind::Number(0.0, 1.0)),
    Field("keyword_threshold", Kind::Number(0.0, 1.0)),
    Field("rerank_top_k", Kind::Int(0, 200)),
    Field("rerank_threshold", Kind::Number(-10.0, 10.0)),
    Field("rerank_model_id", Kind::Text),
    Field("rrf_k", Kind::Int(0, 10_000)),
    Field("rrf_vector_weight", Kind::Number(0.0, 100.0)),
    Field("rrf_keyword_weight", Kind::Number(0.0, 100.0)),
];

/// Upstream's answer settings (`summary`), within its conversation settings.
const SUMMARY: &[Field] = &[
    Field("max_input_chars", Kind::Int(0, 10_000_000)),
    Field("max_tokens", Kind::Int(0, 100_000)),
    Field("repeat_penalty", Kind::Number(-2.0, 2.0)),
    Field("top_k", Kind::Int(0, 1000)),
    Field("top_p", Kind::Number(0.0, 1.0)),
    Field("frequency_penalty", Kind::Number(-2.0, 2.0)),
    Field("presence_penalty", Kind::Number(-2.0, 2.0)),
    Field("temperature", Kind::Number(0.0, 2.0)),
    Field("seed", Kind::Int(i64::MIN, i64::MAX)),
    Field("max_completion_tokens", Kind::Int(1, 100_000)),
    Field("no_match_prefix", Kind::Text),
    Field("thinking", Kind::Bool),
    Field("prompt_id", Kind::Text),
    Field("context_template_id", Kind::Text),
    Field("prompt", Kind::Text),
    Field("context_template", Kind::Text),
];

/// Upstream's conversation settings and their ranges.
const CONVERSATION: &[Field] = &[
    Field("max_rounds", Kind::Int(0, 1000)),
    Field("keyword_threshold", Kind::Number(0.0, 1.0)),
    Field("embedding_top_k", Kind::Int(0, 200)),
    Field("vector_threshold", Kind::Number(0.0, 1.0)),
    Field("rerank_top_k", Kind::Int(0, 200)),
    Field("rerank_threshold", Kind::Number(-10.0, 10.0)),
    Field("fallback_strategy", Kind::Text),
    Field("fallback_response", Kind::Text),
    Field("enable_rewrite", Kind::Bool),
    Field("enable_query_expansion", Kind::Bool),
    Field("enable_rerank", Kind::Bool),
    Field("summary", Kind::Object(SUMMARY)),
    Field("fallback_prompt_id", Kind::Text),
    Field("rewrite_prompt_id", Kind::Text),
    Field("generate_session_title_prompt_id", Kind::Text),
    Field("generate_summary_prompt_id", Kind::Text),
    Field("extract_entities_prompt_id", Kind::Text),
    Field("extract_relationships_prompt_id", Kind::Text),
    Field("generate_questions_prompt_id", Kind::Text),
    Field("fallback_prompt", Kind::Text),
    Field("rewrite_prompt_system", Kind::Text),
    Field("rewrite_prompt_user", Kind::Text),
    Field("generate_session_title_prompt", Kind::Text),
    Field("generate_summary_prompt", Kind::Text),
    Field("extract_entities_prompt", Kind::Text),
    Field("extract_relationships_prompt", Kind::Text),
    Field("generate_questions_prompt", Kind::Text),
];

/// A setting weknora stores: its fields, and what the answer to a change says of it.
struct Stored {
    fields: &'static [Field],
    message: &'static str,
}

fn stored(key: &str) -> Option<Stored> {
    match key {
        "retrieval-config" => Some(Stored {
            fields: RETRIEVAL,
            message: "Retrieval configuration updated successfully. weknora keeps it for the clients that read it; \
                      its searches use each knowledge base's own retrieval settings",
        }),
        "conversation-config" => Some(Stored {
            fields: CONVERSATION,
            message: "Conversation configuration updated successfully. weknora keeps it for the clients that read it; \
                      its answers use the deployment's chat settings and each knowledge base's retrieval settings",
        }),
        _ => None,
    }
}

/// A setting of a feature weknora does not have: 501 naming it, as its routes answer.
fn not_provided(key: &str) -> Option<ApiError> {
    let what = match key {
        "agent-config" => "custom agents",
        "web-search-config" => "web search",
        _ => return None,
    };
    Some(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_provided",
        format!("weknora does not provide {what}: upstream's `{key}` setting"),
    ))
}

fn unknown(key: &str) -> ApiError {
    ApiError::bad_request("key", &format!("`{key}` is no setting: one of {}", KEYS.join(", ")))
}

/// Every field at its zero (upstream's unset values): what a setting is before it is set.
fn zero(fields: &[Field]) -> Map<String, Value> {
    fields
        .iter()
        .map(|Field(name, kind)| {
            let value = match kind {
                Kind::Int(..) => json!(0),
                Kind::Number(..) => json!(0.0),
                Kind::Bool => json!(false),
                Kind::Text => json!(""),
                Kind::Object(inner) => Value::Object(zero(inner)),
            };
            (name.to_string(), value)
        })
        .collect()
}

/// The setting as `body` gives it: its fields checked and over their zeros (a field not
/// sent, `null`, or a number at 0 is unset, as upstream reads them), fields it does not have
/// left out. `at` names where in the body (`summary.`).
fn clean(body: &Map<String, Value>, fields: &[Field], at: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = zero(fields);
    for Field(name, kind) in fields {
        let Some(value) = body.get(*name).filter(|v| !v.is_null()) else { continue };
        let field = format!("{at}{name}");
        let checked = match kind {
            Kind::Int(min, max) => match value.as_i64() {
                Some(n) if n == 0 || (*min..=*max).contains(&n) => json!(n),
                _ => return Err(ApiError::bad_request(&field, &range("a whole number", *min, *max))),
            },
            Kind::Number(min, max) => match value.as_f64() {
                Some(n) if n == 0.0 || (*min..=*max).contains(&n) => json!(n),
                _ => return Err(ApiError::bad_request(&field, &range("a number", *min, *max))),
            },
            Kind::Bool => match value {
                Value::Bool(_) => value.clone(),
                _ => return Err(ApiError::bad_request(&field, "true or false")),
            },
            Kind::Text => match value.as_str() {
                Some(text) if text.contains('\0') => {
                    return Err(ApiError::bad_request(&field, "text with a NUL character (\\u0000) cannot be stored"));
                }
                Some(text) if text.chars().count() > MAX_TEXT => {
                    return Err(ApiError::bad_request(&field, &format!("at most {MAX_TEXT} characters")));
                }
                Some(_) => value.clone(),
                None => return Err(ApiError::bad_request(&field, "text (a JSON string)")),
            },
            Kind::Object(inner) => match value {
                Value::Object(map) => Value::Object(clean(map, inner, &format!("{field}."))?),
                _ => return Err(ApiError::bad_request(&field, "an object")),
            },
        };
        out.insert(name.to_string(), checked);
    }
    Ok(out)
}

fn range(what: &str, min: impl std::fmt::Display, max: impl std::fmt::Display) -> String {
    format!("{what} from {min} to {max}")
}

/// A template as upstream lists them.
#[derive(Serialize)]
struct Template {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    content: &'static str,
    has_knowledge_base: bool,
    default: bool,
}

/// The prompts weknora answers with (read only: they are the build's).
fn prompt_templates() -> Value {
    let system = [
        Template {
            id: "weknora-en",
            name: "Cited answers (English)",
            description: "answers from the numbered passages only, citing them; used for questions not in Chinese",
            content: crate::answer::prompt::SYSTEM_EN,
            has_knowledge_base: true,
            default: true,
        },
        Template {
            id: "weknora-zh",
            name: "Cited answers (中文)",
            description: "answers from the numbered passages only, citing them; used for questions in Chinese",
            content: crate::answer::prompt::SYSTEM_ZH,
            has_knowledge_base: true,
            default: false,
        },
    ];
    json!({"system_prompt": system, "context_template": [], "rewrite": [], "fallback": []})
}

/// What the deployment decides, as a setting: none of it is the tenant's to change.
fn deployment_setting(state: &AppState, key: &str) -> Option<Value> {
    match key {
        // No parser engine of upstream's (MinerU and others): no overrides.
        "parser-engine-config" => Some(json!({"mineru_endpoint": "", "mineru_api_key": ""})),
        "storage-engine-config" => Some(json!({"default_provider": state.config.storage.kind})),
        "chat-history-config" => Some(json!({"enabled": false, "embedding_model_id": "", "knowledge_base_id": ""})),
        "prompt-templates" => Some(prompt_templates()),
        _ => None,
    }
}

/// Settings that name the deployment's services: admin keys only, as upstream.
fn admin_only(key: &str) -> bool {
    matches!(key, "parser-engine-config" | "storage-engine-config")
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Envelope<Value>, ApiError> {
    if let Some(e) = not_provided(&key) {
        return Err(e);
    }
    if admin_only(&key) {
        caller.require_admin()?;
    }
    if let Some(value) = deployment_setting(&state, &key) {
        return Ok(Envelope::new(value));
    }
    let Some(setting) = stored(&key) else { return Err(unknown(&key)) };
    let value = db::tenants::setting(&state.db, caller.tenant_id, &key).await?;
    // Fields this build added since it was stored read as unset.
    let value = match value {
        Some(Value::Object(map)) => clean(&map, setting.fields, "").unwrap_or_else(|_| zero(setting.fields)),
        _ => zero(setting.fields),
    };
    Ok(Envelope::new(Value::Object(value)))
}

/// Replaces a stored setting (upstream's PUT sends the whole of it): admin keys only.
async fn write(
    State(state): State<SharedState>,
    caller: Caller,
    Path(key): Path<String>,
    Json(body): Json<Value>,
) -> Result<Envelope<Value, Message>, ApiError> {
    if let Some(e) = not_provided(&key) {
        return Err(e);
    }
    if !KEYS.contains(&key.as_str()) {
        return Err(unknown(&key));
    }
    caller.require_admin()?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("request body", "a JSON object with the setting's fields"));
    };
    let Some(setting) = stored(&key) else { return deployment_only(&state, &key, &body) };
    let value = Value::Object(clean(&body, setting.fields, "")?);
    let saved = db::tenants::set_setting(&state.db, caller.tenant_id, &key, &value).await?;
    Ok(Envelope::with(saved, Message { message: setting.message }))
}

/// Why a setting the deployment decides is not changed here; turning chat history's
/// indexing off is what it is, and answers the setting unchanged.
fn deployment_only(
    state: &AppState,
    key: &str,
    body: &Map<String, Value>,
) -> Result<Envelope<Value, Message>, ApiError> {
    let not_provided = |what: String| ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_provided", what);
    Err(match key {
        "prompt-templates" => {
            ApiError::bad_request("key", "prompt-templates is read only: the prompts are the build's (GET shows them)")
        }
        "parser-engine-config" => not_provided(format!(
            "weknora does not provide parser engines per tenant: documents are read by the deployment's docreader \
             ({}, DOCREADER_ADDR)",
            state.config.docreader.addr
        )),
        "storage-engine-config" => not_provided(format!(
            "weknora does not provide storage engines per tenant: files are stored where the deployment says \
             (STORAGE_TYPE={})",
            state.config.storage.kind
        )),
        _ if body.get("enabled").is_none_or(|v| v == &Value::Bool(false)) => {
            let unchanged = deployment_setting(state, key).unwrap_or_default();
            let message = "Chat history is not indexed into a knowledge base: nothing changed";
            return Ok(Envelope::with(unchanged, Message { message }));
        }
        _ => not_provided(
            "weknora does not provide indexing chat history into a knowledge base: messages are searched by their \
             words (POST /api/v1/messages/search)"
                .into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_its_fields_checked_over_their_zeros() {
        let body = json!({"embedding_top_k": 30, "vector_threshold": 0.4, "stray": "dropped", "rerank_model_id": null});
        let cleaned = clean(body.as_object().unwrap(), RETRIEVAL, "").unwrap();
        assert_eq!(cleaned["embedding_top_k"], 30);
        assert_eq!(cleaned["vector_threshold"], 0.4);
        assert_eq!(cleaned["rerank_model_id"], "");
        assert_eq!(cleaned["keyword_threshold"], 0.0);
        assert!(!cleaned.contains_key("stray"));
        assert_eq!(cleaned.len(), RETRIEVAL.len());

        let refused = |body: Value, fields| clean(body.as_object().unwrap(), fields, "").unwrap_err().message;
        assert_eq!(
            refused(json!({"embedding_top_k": 201}), RETRIEVAL),
            "embedding_top_k: a whole number from 0 to 200"
        );
        assert_eq!(
            refused(json!({"embedding_top_k": 2.5}), RETRIEVAL),
            "embedding_top_k: a whole number from 0 to 200"
        );
        assert_eq!(
            refused(json!({"rerank_threshold": "high"}), RETRIEVAL),
            "rerank_threshold: a number from -10 to 10"
        );
        let nested = refused(json!({"summary": {"temperature": 3}}), CONVERSATION);
        assert_eq!(nested, "summary.temperature: a number from 0 to 2");
        assert!(refused(json!({"fallback_response": "a\u{0}b"}), CONVERSATION).starts_with("fallback_response: "));
        assert_eq!(refused(json!({"enable_rerank": 1}), CONVERSATION), "enable_rerank: true or false");
        let summary = clean(&Map::new(), CONVERSATION, "").unwrap();
        assert_eq!(summary["summary"]["max_completion_tokens"], 0, "unset reads as upstream's zero");
    }

    #[test]
    fn every_key_is_answered_one_way() {
        for key in KEYS {
            let ways = [stored(key).is_some(), not_provided(key).is_some(), deployment_key(key)];
            assert_eq!(ways.iter().filter(|w| **w).count(), 1, "{key}");
        }
        assert!(unknown("memory-config").message.contains("retrieval-config"));
    }

    fn deployment_key(key: &str) -> bool {
        matches!(key, "parser-engine-config" | "storage-engine-config" | "chat-history-config" | "prompt-templates")
    }
}
