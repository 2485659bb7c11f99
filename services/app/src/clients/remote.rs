//! What the clients of remote models (embedding, chat) share: the HTTP client they are
//! built with, and messages about failures that name the server but never a credential.

use std::time::Duration;

/// The two protocols model servers speak: OpenAI's (OpenAI, vLLM, TEI, DeepSeek, DashScope,
/// every `generic` server) and Ollama's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    OpenAi,
    Ollama,
}

impl Protocol {
    pub fn of(provider: &str) -> Protocol {
        if provider == "ollama" { Protocol::Ollama } else { Protocol::OpenAi }
    }

    /// The URL of an API: `{base}/v1/{openai}` (or `{base}/{openai}` when the base already
    /// ends in `/v1`, OpenAI's own form), or `{base}/{ollama}`.
    pub fn endpoint(self, base: &str, openai: &str, ollama: &str) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Protocol::Ollama => format!("{base}/{ollama}"),
            Protocol::OpenAi if base.ends_with("/v1") => format!("{base}/{openai}"),
            Protocol::OpenAi => format!("{base}/v1/{openai}"),
        }
    }
}

/// An HTTP client for a model server: TLS with the process's crypto provider, a connect
/// timeout, and `timeout` for a whole request when there is one (streamed answers set none).
pub fn client(connect: Duration, timeout: Option<Duration>) -> Result<reqwest::Client, String> {
    // reqwest's TLS (https endpoints) needs the process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().connect_timeout(connect);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| format!("the HTTP client cannot be built: {e}"))
}

/// A JSON POST to a model server, with the API key as a bearer token when there is one,
/// and the current span's `traceparent` (a server that traces joins the caller's trace).
pub fn post(http: &reqwest::Client, url: &str, api_key: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
    let mut request = http.post(url).json(body);
    if let Some(traceparent) = weknora_telemetry::traceparent(&tracing::Span::current()) {
        request = request.header("traceparent", traceparent);
    }
    if api_key.is_empty() { request } else { request.bearer_auth(api_key) }
}

/// A short, single-line excerpt of an error body for a message.
pub fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// reqwest's error without the URL it carries (messages name the server's base already).
pub fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut reason = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if reason.is_empty() {
        e.to_string()
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_each_protocol() {
        let openai = Protocol::of("generic");
        assert_eq!(
            openai.endpoint("http://embedder:8000", "embeddings", "api/embed"),
            "http://embedder:8000/v1/embeddings"
        );
        assert_eq!(
            openai.endpoint("https://api.openai.com/v1/", "chat/completions", "api/chat"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            Protocol::of("ollama").endpoint("http://ollama:11434", "embeddings", "api/embed"),
            "http://ollama:11434/api/embed"
        );
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt("a\n  b"), "a b");
        assert_eq!(excerpt(&"x".repeat(500)).chars().count(), 201);
    }
}
