//! Reading endpoint health from the proxy's admin `/debug/backends`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::ProxyProcess;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `/debug/backends` entry of endpoint `address` in backend `backend`.
pub async fn endpoint(proxy: &ProxyProcess, backend: &str, address: &str) -> Value {
    let (status, body) = proxy.admin_get("/debug/backends").await.unwrap();
    assert_eq!(status, 200, "/debug/backends: {body}");
    let all: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/debug/backends is not JSON ({e}): {body}"));
    let found = all.as_array().and_then(|backends| {
        backends
            .iter()
            .filter(|b| b["id"] == backend)
            .flat_map(|b| b["endpoints"].as_array().into_iter().flatten())
            .find(|e| e["address"] == address)
    });
    found
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {address} in backend {backend}: {body}"))
}

/// Polls until endpoint `address` is up (or down); returns its entry then and
/// how long it took. Panics after `limit`.
pub async fn wait_up(
    proxy: &ProxyProcess,
    backend: &str,
    address: &str,
    up: bool,
    limit: Duration,
) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let entry = endpoint(proxy, backend, address).await;
        if entry["up"] == up {
            return (entry, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{address} still not {} after {limit:?}: {entry}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples an endpoint's `requests` count every few milliseconds from a thread
/// of its own, so a test's load cannot delay the readings.
pub struct RequestWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, u64)>>,
}

impl RequestWatch {
    pub fn start(admin: SocketAddr, backend: &str, address: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, backend, address) = (stop.clone(), backend.to_owned(), address.to_owned());
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Some(n) = requests_now(admin, &backend, &address) {
                    samples.push((Instant::now(), n));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        Self { stop, thread }
    }

    /// Stops; returns when the count last grew (`None`: never, while watched).
    pub fn last_growth(self) -> Option<Instant> {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self.thread.join().unwrap();
        samples
            .windows(2)
            .filter(|w| w[1].1 != w[0].1)
            .map(|w| w[1].0)
            .next_back()
    }
}

fn requests_now(admin: SocketAddr, backend: &str, address: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /debug/backends HTTP/1.0\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n")?.1;
    let all: Value = serde_json::from_str(body).ok()?;
    all.as_array()?
        .iter()
        .filter(|b| b["id"] == backend)
        .flat_map(|b| b["endpoints"].as_array().into_iter().flatten())
        .find(|e| e["address"] == address)?["requests"]
        .as_u64()
}
