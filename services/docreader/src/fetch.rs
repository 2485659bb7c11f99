//! URL reads: fetched with a timeout and a size cap, and never to private, loopback or
//! link-local addresses unless the host is allow-listed (DOCREADER_URL_ALLOWLIST). The
//! check runs on the addresses a name resolves to and on every redirect, so neither DNS
//! tricks nor redirects reach the inside of the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Failed(String),
}

/// Addresses a URL read may reach without being allow-listed.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 198 && (18..20).contains(&b))) // benchmarking
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link local
        }
    }
}

#[derive(Clone)]
struct Guard {
    allow: Arc<Vec<String>>,
}

impl Guard {
    fn host_allowed(&self, host: &str) -> bool {
        self.allow.iter().any(|a| a.eq_ignore_ascii_case(host.trim_matches(['[', ']'])))
    }

    fn refusal(host: &str) -> String {
        format!(
            "`{host}` is a private, loopback or link-local address: URL reads may not reach it (allow it with DOCREADER_URL_ALLOWLIST)"
        )
    }

    /// For hosts written as IP literals, which bypass name resolution.
    fn check_literal(&self, host: &str) -> Result<(), String> {
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) if !is_public(ip) && !self.host_allowed(host) => Err(Guard::refusal(host)),
            _ => Ok(()),
        }
    }
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = guard.host_allowed(&host);
            let usable: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allowed || guard.host_allowed(&a.ip().to_string()) || is_public(a.ip()))
                .collect();
            if usable.is_empty() {
                return Err(Guard::refusal(&host).into());
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

pub struct Fetched {
    pub bytes: Vec<u8>,
    pub file_name: String,
    /// From the response's Content-Type, e.g. `pdf` or `html`; empty when unknown.
    pub file_type: String,
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Guard,
    max_bytes: usize,
}

impl Fetcher {
    pub fn new(allow: Vec<String>, timeout: Duration, max_bytes: usize) -> Fetcher {
        let guard = Guard { allow: Arc::new(allow) };
        let redirect_guard = guard.clone();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .dns_resolver(Arc::new(guard.clone()))
            .redirect(Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("more than 5 redirects");
                }
                match attempt.url().host_str().map(|h| redirect_guard.check_literal(h)) {
                    Some(Err(why)) => attempt.error(why),
                    _ => attempt.follow(),
                }
            }))
            .user_agent(concat!("weknora-docreader/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .expect("the HTTP client's fixed configuration is valid");
        Fetcher { client, guard, max_bytes }
    }

    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| FetchError::Failed(format!("`{url}` is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!("`{}` URLs are not read: only http and https", parsed.scheme())));
        }
        let host = parsed.host_str().unwrap_or_default().to_string();
        self.guard.check_literal(&host).map_err(FetchError::Refused)?;
        let mut response = self.client.get(parsed.clone()).send().await.map_err(|e| describe(url, &e))?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!("GET {url} answered HTTP {}", response.status())));
        }
        let too_large = || FetchError::TooLarge(format!("{url} is larger than the {} MB limit", self.max_bytes >> 20));
        if response.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(url, &e))? {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let file_name = parsed
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|s| !s.is_empty())
            .unwrap_or(&host)
            .to_string();
        let file_type = match content_type.as_str() {
            "text/html" | "application/xhtml+xml" => "html",
            "text/plain" => "txt",
            "text/markdown" => "md",
            "text/csv" => "csv",
            "" | "application/octet-stream" => "",
            other => other,
        };
        // An HTML page without an extension ("/docs/intro") is HTML; a typed file keeps its type.
        let file_type =
            if file_type.is_empty() && !file_name.contains('.') { "html".to_string() } else { file_type.to_string() };
        Ok(Fetched { bytes, file_name, file_type })
    }
}

fn describe(url: &str, e: &reqwest::Error) -> FetchError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    if reason.contains("private, loopback or link-local") {
        return FetchError::Refused(reason);
    }
    if e.is_timeout() {
        return FetchError::Failed(format!("GET {url} timed out (DOCREADER_URL_TIMEOUT_SECS)"));
    }
    FetchError::Failed(format!("GET {url} failed: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.215.14", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_can_be_allowed() {
        let guard = Guard { allow: Arc::new(vec!["10.0.0.5".into()]) };
        assert!(guard.check_literal("127.0.0.1").is_err());
        assert!(guard.check_literal("[::1]").is_err());
        assert!(guard.check_literal("10.0.0.5").is_ok());
        assert!(guard.check_literal("example.org").is_ok(), "names are checked when resolved");
    }
}
