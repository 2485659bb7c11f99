//! Readiness waits: poll a check until it succeeds or a deadline passes. Never a bare sleep.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Calls `check` every `interval` until it returns `Ok(Some(value))`, and fails naming
/// `what` and the last reason once `timeout` has passed. `Ok(None)` means "not yet".
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {}s waiting for {what}: {last}", timeout.as_secs());
        }
        tokio::time::sleep(interval).await;
    }
}
