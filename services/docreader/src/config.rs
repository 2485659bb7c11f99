//! Configuration from the environment, with the original DocReader's variable names.
//! A bad value stops the server with a message naming the variable.

use std::time::Duration;

use crate::parse::Limits;

#[derive(Debug, Clone)]
pub struct Config {
    /// DOCREADER_GRPC_PORT (50051).
    pub port: u16,
    /// DOCREADER_GRPC_MAX_FILE_SIZE_MB (50): the gRPC message limit and the content limit.
    pub max_file_size_mb: usize,
    /// DOCREADER_GRPC_MAX_WORKERS: documents parsed at once (default: 2 per core).
    pub max_workers: usize,
    /// DOCREADER_REQUEST_TIMEOUT_SECS (120): longest a request may take, queueing included.
    pub request_timeout: Duration,
    /// GRPC_AUTH_TOKEN: when set, calls need `authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// DOCREADER_URL_ALLOWLIST: hosts or IPs that URL reads may reach even though they are
    /// private or loopback (comma-separated).
    pub url_allowlist: Vec<String>,
    /// DOCREADER_URL_TIMEOUT_SECS (30).
    pub url_timeout: Duration,
    /// DOCREADER_METRICS_PORT (9464): Prometheus metrics over HTTP; 0 serves none.
    pub metrics_port: u16,
    /// LOG_FORMAT: `json` or `text` (default).
    pub log_json: bool,
    /// LOG_LEVEL (info).
    pub log_level: String,
}

fn number<T>(get: &impl Fn(&str) -> Option<String>, key: &str, default: T, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match get(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if v >= min => Ok(v),
            _ => Err(format!(
                "{key}=`{raw}` is not a valid value: expected a whole number of at least {min} (default {default})"
            )),
        },
    }
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let log_format = get("LOG_FORMAT").unwrap_or_default().to_ascii_lowercase();
        if !matches!(log_format.as_str(), "" | "json" | "text") {
            return Err(format!("LOG_FORMAT=`{log_format}` is not valid: use `json` or `text`"));
        }
        Ok(Config {
            port: number(&get, "DOCREADER_GRPC_PORT", 50051u16, 1)?,
            max_file_size_mb: number(&get, "DOCREADER_GRPC_MAX_FILE_SIZE_MB", 50usize, 1)?,
            max_workers: number(&get, "DOCREADER_GRPC_MAX_WORKERS", cores * 2, 1)?,
            request_timeout: Duration::from_secs(number(&get, "DOCREADER_REQUEST_TIMEOUT_SECS", 120u64, 1)?),
            auth_token: token(&get)?.filter(|t| !t.is_empty()),
            url_allowlist: get("DOCREADER_URL_ALLOWLIST")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            url_timeout: Duration::from_secs(number(&get, "DOCREADER_URL_TIMEOUT_SECS", 30u64, 1)?),
            metrics_port: number(&get, "DOCREADER_METRICS_PORT", 9464u16, 0)?,
            log_json: log_format == "json",
            log_level: get("LOG_LEVEL").filter(|l| !l.is_empty()).unwrap_or_else(|| "info".into()),
        })
    }

    pub fn max_bytes(&self) -> usize {
        self.max_file_size_mb << 20
    }

    pub fn limits(&self) -> Limits {
        Limits::with_max_bytes(self.max_bytes())
    }
}

/// GRPC_AUTH_TOKEN, or the content of the file GRPC_AUTH_TOKEN_FILE names (a Docker or
/// Kubernetes secret) without its final newline.
fn token(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    match (get("GRPC_AUTH_TOKEN"), get("GRPC_AUTH_TOKEN_FILE")) {
        (Some(_), Some(_)) => Err("both GRPC_AUTH_TOKEN and GRPC_AUTH_TOKEN_FILE are set: keep one".into()),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some(text.strip_suffix('\n').unwrap_or(&text).to_string()))
            .map_err(|e| format!("GRPC_AUTH_TOKEN_FILE={path}: cannot read it: {e}")),
        (token, None) => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(move |k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_match_the_original() {
        let c = with(&[]).unwrap();
        assert_eq!(c.port, 50051);
        assert_eq!(c.max_bytes(), 50 << 20);
        assert!(c.auth_token.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = with(&[("DOCREADER_GRPC_MAX_FILE_SIZE_MB", "lots")]).unwrap_err();
        assert!(err.contains("DOCREADER_GRPC_MAX_FILE_SIZE_MB=`lots`"), "{err}");
        assert!(with(&[("DOCREADER_GRPC_MAX_WORKERS", "0")]).unwrap_err().contains("at least 1"));
        assert!(with(&[("LOG_FORMAT", "xml")]).unwrap_err().contains("LOG_FORMAT"));
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("docreader-token-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let path = dir.display().to_string();
        assert_eq!(with(&[("GRPC_AUTH_TOKEN_FILE", &path)]).unwrap().auth_token.as_deref(), Some("s3cret"));
        let both = with(&[("GRPC_AUTH_TOKEN_FILE", &path), ("GRPC_AUTH_TOKEN", "x")]).unwrap_err();
        assert!(both.contains("keep one"), "{both}");
        std::fs::remove_file(&dir).unwrap();
        assert!(with(&[("GRPC_AUTH_TOKEN_FILE", &path)]).unwrap_err().contains("cannot read it"));
    }

    #[test]
    fn allowlist_is_a_trimmed_lowercase_list() {
        let c = with(&[("DOCREADER_URL_ALLOWLIST", " Intranet.Example , 10.0.0.5,")]).unwrap();
        assert_eq!(c.url_allowlist, ["intranet.example", "10.0.0.5"]);
    }
}
