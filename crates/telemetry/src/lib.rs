//! How every weknora service logs: to stdout, filtered by LOG_LEVEL (an `EnvFilter`
//! directive; `info` when it does not parse), as text or, with LOG_FORMAT=json, one JSON
//! object per line. Colours only on a terminal: container logs stay plain text.

pub fn init_logging(level: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
