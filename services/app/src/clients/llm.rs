//! The chat model's client, for the two protocols users have: OpenAI-compatible
//! `POST {base}/v1/chat/completions` with `stream: true` (Server-Sent Events: `data: {json}`
//! lines, then `data: [DONE]`) and Ollama's `POST {base}/api/chat` (one JSON object per line
//! until `"done": true`). An answer is read piece by piece; dropping it closes the
//! connection, which is how a stopped answer stops the model. The API key is sent as a
//! bearer token and never appears in a message.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::clients::remote::{Protocol, excerpt, without_url};
use crate::config::Config;

/// Where and how to reach one chat model.
#[derive(Clone)]
pub struct Spec {
    pub provider: String,
    pub base_url: String,
    pub model: String,
    pub api_key: String,
}

/// What the model is told and asked: `role` is system, user or assistant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmError {
    /// No connection, or it broke before an answer began.
    Unreachable(String),
    /// The model refused or failed the request, or broke off its answer.
    Failed(String),
}

impl LlmError {
    /// The `code` of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Unreachable(_) => "model_unreachable",
            LlmError::Failed(_) => "model_error",
        }
    }
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmError::Unreachable(m) | LlmError::Failed(m) => f.write_str(m),
        }
    }
}

#[derive(Clone)]
pub struct ChatModel {
    http: reqwest::Client,
    protocol: Protocol,
    url: String,
    /// What messages say the model is served at (no path, no credentials).
    base: String,
    model: String,
    api_key: String,
    temperature: f64,
    max_tokens: u32,
}

impl ChatModel {
    /// The built-in chat model (LLM_*), if one is configured.
    pub fn built_in(config: &Config) -> anyhow::Result<Option<ChatModel>> {
        let base = config.chat_base_url();
        if base.is_empty() {
            return Ok(None);
        }
        let c = &config.chat;
        let spec = Spec {
            provider: c.provider.clone(),
            base_url: base.to_string(),
            model: c.model.clone(),
            api_key: c.api_key.0.clone(),
        };
        ChatModel::configured(config, &spec).map(Some).map_err(|e| anyhow::anyhow!("the chat model: {e}"))
    }

    /// A client for `spec` with the configured timeouts, temperature and answer length.
    pub fn configured(config: &Config, spec: &Spec) -> Result<ChatModel, String> {
        let c = &config.chat;
        ChatModel::new(spec, Duration::from_secs(c.connect_timeout_secs), c.temperature, c.max_answer_tokens)
    }

    pub fn new(spec: &Spec, connect_timeout: Duration, temperature: f64, max_tokens: u32) -> Result<ChatModel, String> {
        let protocol = Protocol::of(&spec.provider);
        let base = spec.base_url.trim_end_matches('/').to_string();
        Ok(ChatModel {
            // No timeout for the whole request: an answer streams for as long as it takes,
            // bounded by the caller's first-piece and total timeouts.
            http: crate::clients::remote::client(connect_timeout, None)?,
            protocol,
            url: protocol.endpoint(&base, "chat/completions", "api/chat"),
            base,
            model: spec.model.clone(),
            api_key: spec.api_key.clone(),
            temperature,
            max_tokens,
        })
    }

    pub fn name(&self) -> &str {
        &self.model
    }

    /// Asks for an answer to `messages`; the answer is then read with [`Answer::next`].
    #[tracing::instrument(name = "chat model", skip_all, fields(otel.kind = "client", model = %self.model))]
    pub async fn ask(&self, messages: &[Message]) -> Result<Answer, LlmError> {
        let body = match self.protocol {
            Protocol::OpenAi => json!({
                "model": self.model, "messages": messages, "stream": true,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
            }),
            Protocol::Ollama => json!({
                "model": self.model, "messages": messages, "stream": true,
                "options": { "temperature": self.temperature, "num_predict": self.max_tokens },
            }),
        };
        let response =
            crate::clients::remote::post(&self.http, &self.url, &self.api_key, &body).send().await.map_err(|e| {
                LlmError::Unreachable(format!("the chat model at {} does not answer: {}", self.base, without_url(&e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(LlmError::Failed(format!(
                "the chat model at {} answered HTTP {status}: {} (check the model's name `{}`, its API key and provider)",
                self.base,
                excerpt(&text),
                self.model
            )));
        }
        Ok(Answer { response, protocol: self.protocol, base: self.base.clone(), buffer: Vec::new(), finished: false })
    }
}

/// An answer being streamed. Dropping it closes the connection to the model.
pub struct Answer {
    response: reqwest::Response,
    protocol: Protocol,
    base: String,
    buffer: Vec<u8>,
    finished: bool,
}

/// What one line of the stream says.
#[derive(Debug, PartialEq)]
enum Line {
    Text(String),
    Done,
    Error(String),
    Nothing,
}

fn openai_line(line: &str) -> Line {
    let Some(data) = line.strip_prefix("data:") else { return Line::Nothing };
    let data = data.trim();
    if data == "[DONE]" {
        return Line::Done;
    }
    match serde_json::from_str::<Value>(data) {
        Ok(v) if v.get("error").is_some() => Line::Error(error_text(&v["error"])),
        Ok(v) => match v["choices"][0]["delta"]["content"].as_str() {
            Some(text) if !text.is_empty() => Line::Text(text.to_string()),
            _ => Line::Nothing,
        },
        Err(e) => Line::Error(format!("a piece of the answer is not JSON ({e})")),
    }
}

fn ollama_line(line: &str) -> Line {
    if line.trim().is_empty() {
        return Line::Nothing;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v.get("error").is_some() => Line::Error(error_text(&v["error"])),
        Ok(v) => {
            let text = v["message"]["content"].as_str().unwrap_or_default();
            match (text.is_empty(), v["done"].as_bool() == Some(true)) {
                (false, _) => Line::Text(text.to_string()),
                (true, true) => Line::Done,
                (true, false) => Line::Nothing,
            }
        }
        Err(e) => Line::Error(format!("a piece of the answer is not JSON ({e})")),
    }
}

fn error_text(error: &Value) -> String {
    excerpt(error.get("message").and_then(Value::as_str).or(error.as_str()).unwrap_or(&error.to_string()))
}

impl Answer {
    /// The next piece of the answer; None when it is complete.
    pub async fn next(&mut self) -> Result<Option<String>, LlmError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\r', '\n']);
                let parsed = match self.protocol {
                    Protocol::OpenAi => openai_line(line),
                    Protocol::Ollama => ollama_line(line),
                };
                match parsed {
                    Line::Text(text) => return Ok(Some(text)),
                    Line::Done => {
                        self.finished = true;
                        return Ok(None);
                    }
                    Line::Error(reason) => {
                        return Err(LlmError::Failed(format!("the chat model at {} failed: {reason}", self.base)));
                    }
                    Line::Nothing => {}
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) if self.protocol == Protocol::Ollama && !self.buffer.is_empty() => self.buffer.push(b'\n'),
                Ok(None) => {
                    return Err(LlmError::Failed(format!(
                        "the chat model at {} broke off its answer before the end",
                        self.base
                    )));
                }
                Err(e) => {
                    return Err(LlmError::Failed(format!(
                        "the chat model at {} broke off its answer: {}",
                        self.base,
                        without_url(&e)
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_are_read_per_protocol() {
        assert_eq!(openai_line(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#), Line::Text("Hi".into()));
        assert_eq!(openai_line(r#"data:{"choices":[{"delta":{"role":"assistant"}}]}"#), Line::Nothing);
        assert_eq!(openai_line("data: [DONE]"), Line::Done);
        assert_eq!(openai_line(": keep-alive"), Line::Nothing);
        assert_eq!(openai_line("event: message"), Line::Nothing);
        assert_eq!(openai_line(r#"data: {"error":{"message":"overloaded"}}"#), Line::Error("overloaded".into()));
        assert!(matches!(openai_line("data: {oops"), Line::Error(_)));
        assert_eq!(
            ollama_line(r#"{"message":{"role":"assistant","content":"你好"},"done":false}"#),
            Line::Text("你好".into())
        );
        assert_eq!(ollama_line(r#"{"message":{"role":"assistant","content":""},"done":true}"#), Line::Done);
        assert_eq!(ollama_line(r#"{"error":"model not found"}"#), Line::Error("model not found".into()));
        assert_eq!(ollama_line(""), Line::Nothing);
    }
}
