//! How every weknora service logs: to stdout, filtered by LOG_LEVEL (an `EnvFilter`
//! directive; `info` when it does not parse), as text or, with LOG_FORMAT=json, one JSON
//! object per line.

pub fn init_logging(level: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
