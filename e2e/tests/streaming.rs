//! 100 MiB through the proxy each way, streamed: the body is never buffered by the
//! client, the proxy or the backend, so the proxy's memory stays flat.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sluice_e2e::client::{self, send};
use sluice_e2e::pattern::{self, Verifier};
use sluice_e2e::process::{peak_rss_kib, rss_kib};
use sluice_e2e::{Backend, ProxyProcess, forward_all, free_addr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SIZE: u64 = 100 * 1024 * 1024;
const MAX_GROWTH_KIB: u64 = 32 * 1024;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(25);

async fn start() -> (Backend, ProxyProcess, SocketAddr) {
    let backend = Backend::start("bulk").await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "bulk", backend.addr);
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    // Warm up: connection pools, buffers and worker threads exist before the baseline.
    let client = client::client();
    let r = client::fetch(&client, listen, None, "/?download=1048576")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    (backend, proxy, listen)
}

/// Samples a process's RSS every 10 ms on its own thread (so a busy test runtime
/// cannot delay it) and reports the maximum when stopped. The kernel's peak (VmHWM)
/// is checked as well, since a short spike can fall between samples.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, usize)>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut max, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    max = max.max(kib);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (max, samples)
        });
        Self { stop, thread }
    }

    /// Maximum RSS in KiB seen while running, and the number of samples.
    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// RSS and peak RSS of the proxy before a transfer.
struct Baseline {
    rss: u64,
    peak: u64,
}

impl Baseline {
    fn of(proxy: &ProxyProcess) -> Self {
        Self {
            rss: rss_kib(proxy.pid()).unwrap(),
            peak: peak_rss_kib(proxy.pid()).unwrap(),
        }
    }

    fn check(&self, what: &str, proxy: &ProxyProcess, sampled: (u64, usize), took: Duration) {
        let (max, samples) = sampled;
        let growth = max.saturating_sub(self.rss);
        let peak = peak_rss_kib(proxy.pid()).unwrap();
        let peak_growth = peak.saturating_sub(self.peak.max(self.rss));
        eprintln!(
            "{what}: {} MiB in {took:?}; proxy RSS before {} KiB, sampled max {max} KiB \
             (growth {growth} KiB, {samples} samples), peak growth {peak_growth} KiB",
            SIZE >> 20,
            self.rss
        );
        assert!(
            samples >= 3,
            "too few RSS samples ({samples}) to judge memory"
        );
        for (kind, grew) in [("sampled", growth), ("peak", peak_growth)] {
            assert!(
                grew < MAX_GROWTH_KIB,
                "{what}: proxy {kind} RSS grew by {grew} KiB (limit {MAX_GROWTH_KIB} KiB): the body is buffered"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_100_mib_streams_with_flat_memory() {
    let (backend, proxy, listen) = start().await;
    let before = Baseline::of(&proxy);
    let sampler = RssSampler::start(proxy.pid());
    let started = Instant::now();

    // The body is generated chunk by chunk as hyper polls it, never as one buffer.
    let req = Request::post(format!("http://{listen}/bulk?upload"))
        .body(pattern::body(SIZE).boxed_unsync())
        .unwrap();
    let reply = tokio::time::timeout(TRANSFER_TIMEOUT, send(&client::client(), req))
        .await
        .expect("upload did not finish in time")
        .unwrap();

    let took = started.elapsed();
    let sampled = sampler.finish();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.backend(), Some("bulk"));
    assert_eq!(reply.text(), format!("bytes={SIZE} mismatch=none"));
    assert_eq!(backend.requests(), 2, "warm-up and upload");
    before.check("upload", &proxy, sampled, took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_100_mib_streams_with_flat_memory() {
    let (_backend, proxy, listen) = start().await;
    let before = Baseline::of(&proxy);
    let sampler = RssSampler::start(proxy.pid());
    let started = Instant::now();

    let client = client::client();
    let download = async {
        let req = client::get(listen, None, &format!("/bulk?download={SIZE}"));
        let response = client.request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut verifier = Verifier::default();
        // Frame by frame: the client holds one chunk at a time, too.
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                verifier.update(data);
            }
        }
        verifier
    };
    let verifier = tokio::time::timeout(TRANSFER_TIMEOUT, download)
        .await
        .expect("download did not finish in time");

    let took = started.elapsed();
    let sampled = sampler.finish();
    assert_eq!(verifier.received(), SIZE);
    assert_eq!(verifier.first_mismatch(), None, "corrupted download");
    before.check("download", &proxy, sampled, took);
}
