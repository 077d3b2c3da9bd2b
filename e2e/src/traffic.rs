//! What a client sees through a proxy, and how long a change takes to show there.

use crate::client::{HttpClient, fetch};
use anyhow::{Result, bail};
use http::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Pause between two probes of [`time_until`]: fine enough to measure tens of ms.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// Who answered a GET for `host`: the backend's name on a 200 from a test backend,
/// else the status code ("404", "503"), or "error: ..." when no response came.
pub async fn answer(client: &HttpClient, addr: SocketAddr, host: &str) -> String {
    match fetch(client, addr, Some(host), "/").await {
        Ok(reply) => match reply.backend() {
            Some(backend) if reply.status == StatusCode::OK => backend.to_owned(),
            _ => reply.status.as_u16().to_string(),
        },
        Err(e) => format!("error: {e:#}"),
    }
}

/// What [`time_until`] waits for.
pub struct Until<'a> {
    /// The answer that shows the change.
    pub target: &'a str,
    /// How many answers in a row must be `target` (more than one proves that the
    /// old answer is gone when several endpoints are balanced).
    pub streak: usize,
    /// Answers tolerated before the change shows; anything else fails at once.
    pub allowed: &'a [&'a str],
    pub timeout: Duration,
}

/// Probes `host` until `until.streak` answers in a row are `until.target`; returns
/// the time from `since` (when the API call returned) to the first of them.
pub async fn time_until(
    client: &HttpClient,
    addr: SocketAddr,
    host: &str,
    since: Instant,
    until: Until<'_>,
) -> Result<Duration> {
    let mut streak_start: Option<Duration> = None;
    let mut in_a_row = 0;
    let mut seen = Vec::new();
    loop {
        let got = answer(client, addr, host).await;
        let at = since.elapsed();
        if got == until.target {
            in_a_row += 1;
            let first = *streak_start.get_or_insert(at);
            if in_a_row >= until.streak {
                return Ok(first);
            }
        } else if until.allowed.contains(&got.as_str()) {
            in_a_row = 0;
            streak_start = None;
        } else {
            bail!(
                "{host}: unexpected answer {got:?} {at:?} after the change while waiting for \
                 {:?} (allowed before: {:?})",
                until.target,
                until.allowed
            );
        }
        if seen.last() != Some(&got) {
            seen.push(got);
        }
        if at > until.timeout {
            bail!(
                "{host}: not {} x {:?} in a row within {:?}; answers seen: {seen:?}",
                until.streak,
                until.target,
                until.timeout
            );
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
