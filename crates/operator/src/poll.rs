//! Readiness waits: poll a check until it succeeds or a deadline passes. Never a bare sleep.

use std::time::{Duration, Instant};

use anyhow::Result;

/// A wait that ran out of time (`err.is::<TimedOut>()` tells it from a check's failure).
#[derive(Debug)]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {}s waiting for {}", self.timeout.as_secs(), self.what)
    }
}

impl std::error::Error for TimedOut {}

/// Calls `check` every `interval` until it returns `Ok(Some(value))`: `Ok(None)` means "not
/// yet", an error ends the wait at once with that error, and once `timeout` has passed the
/// wait fails with [`TimedOut`] naming `what`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut { what: what.to_string(), timeout }.into());
        }
        tokio::time::sleep(interval).await;
    }
}

/// [`poll`] for code that does not run on the async runtime.
pub fn poll_blocking<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut { what: what.to_string(), timeout }.into());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_ready_failed_or_timed_out() {
        let quick = Duration::from_millis(1);
        let mut n = 0;
        assert_eq!(
            poll_blocking("three", quick * 100, quick, || Ok((n == 3).then_some(n)).inspect(|_| n += 1)).unwrap(),
            3
        );
        let failed = poll_blocking::<()>("x", quick * 100, quick, || anyhow::bail!("broken")).unwrap_err();
        assert!(!failed.is::<TimedOut>() && failed.to_string() == "broken");
        let late = poll_blocking::<()>("the moon", quick * 5, quick, || Ok(None)).unwrap_err();
        assert!(late.is::<TimedOut>() && late.to_string().contains("waiting for the moon"), "{late}");
    }
}
