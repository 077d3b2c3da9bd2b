//! HTTP health checks against real backends: a 503 takes an endpoint out with
//! `L7STS 503`, a frozen (SIGSTOP) backend is caught by the check's timeout, and
//! under load a frozen backend stops getting requests within 2.5 s while almost
//! no request fails (active checks plus passive ejection).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::backend_process::BackendProcess;
use sluice_e2e::balancing::*;
use sluice_e2e::client;
use sluice_e2e::health::{RequestWatch, endpoint, wait_up};
use sluice_e2e::load::PacedLoad;
use sluice_e2e::{ProxyProcess, free_addr};
use std::time::{Duration, Instant};

const BACKEND_BINARY: &str = env!("CARGO_BIN_EXE_sluice-e2e-backend");

/// One test at a time: the load test takes both cores, which would stretch the
/// others' check timings.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn http_check(interval_ms: u64, timeout_ms: u64) -> String {
    format!(
        "{{probe: {{http: {{path: /healthz}}}}, interval: {interval_ms}ms, \
         timeout: {timeout_ms}ms, rise: {RISE}, fall: {FALL}}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_503_is_down_with_l7sts() {
    let _alone = SERIAL.lock().await;
    let [a, b] = start_backends(["a", "b"]).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  web:\n    health_check: {}\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["web"]),
        http_check(200, 200),
        a.addr,
        b.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let a_addr = a.addr.to_string();
    let limit = CHECK_INTERVAL * 3 + SLACK;
    let (entry, _) = wait_up(&proxy, "web", &a_addr, true, limit).await;
    assert_eq!(entry["check"]["probe"], "http");
    sluice_e2e::eventually("a first check", limit, || async {
        let e = endpoint(&proxy, "web", &a_addr).await;
        (e["check"]["code"] == "L7OK").then_some(())
    })
    .await
    .unwrap();

    a.set_health(503);
    let (entry, took) = wait_up(&proxy, "web", &a_addr, false, Duration::from_secs(5)).await;
    eprintln!("503: down after {took:?}: {entry}");
    assert!(
        took <= CHECK_INTERVAL * FALL + CHECK_TIMEOUT + SLACK,
        "{took:?}"
    );
    let check = &entry["check"];
    assert_eq!(check["code"], "L7STS");
    assert!(
        check["last"].as_str().unwrap().starts_with("L7STS 503"),
        "{check}"
    );
    assert_eq!(check["state"], "DOWN");
    assert_eq!(check["downs"], 1);
    assert!(check["last_down"].as_str().unwrap().contains("L7STS 503"));
    // Traffic goes to b only, and the log says why a left.
    let client = client::client();
    assert_eq!(tally(&client, listen, "/web", 6).await, counts(&[("b", 6)]));
    let logged = proxy.log_lines("endpoint is DOWN");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("L7STS 503") && l.contains(&a_addr)),
        "{logged:?}"
    );

    a.set_health(200);
    let (entry, took) = wait_up(&proxy, "web", &a_addr, true, Duration::from_secs(5)).await;
    eprintln!("200 again: up after {took:?}");
    assert!(
        took <= CHECK_INTERVAL * RISE + CHECK_TIMEOUT + SLACK,
        "{took:?}"
    );
    assert_eq!(entry["check"]["code"], "L7OK");
    let spread = tally(&client, listen, "/web", 6).await;
    assert_eq!(spread, counts(&[("a", 3), ("b", 3)]));
}

/// The kernel keeps accepting connections for a stopped process, so only a
/// check that waits for an answer notices; it fails by its timeout (`L7TOUT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backend_is_caught_by_the_check_timeout() {
    let _alone = SERIAL.lock().await;
    let frozen = BackendProcess::start(BACKEND_BINARY, "frozen")
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  web:\n    health_check: {}\n    endpoints: [{{address: {}}}]\n",
        listener(listen, &["web"]),
        http_check(200, 200),
        frozen.addr,
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let addr = frozen.addr.to_string();
    sluice_e2e::eventually("a first check", Duration::from_secs(3), || async {
        let e = endpoint(&proxy, "web", &addr).await;
        (e["check"]["code"] == "L7OK").then_some(())
    })
    .await
    .unwrap();

    frozen.signal("STOP").unwrap();
    let (entry, took) = wait_up(&proxy, "web", &addr, false, Duration::from_secs(5)).await;
    eprintln!("SIGSTOP: down after {took:?}: {}", entry["check"]);
    assert_eq!(entry["check"]["code"], "L7TOUT", "{entry}");
    assert!(
        took <= (CHECK_INTERVAL + CHECK_TIMEOUT) * FALL + SLACK,
        "{took:?}"
    );

    frozen.signal("CONT").unwrap();
    let (_, took) = wait_up(&proxy, "web", &addr, true, Duration::from_secs(5)).await;
    eprintln!("SIGCONT: up after {took:?}");
    assert!(
        took <= CHECK_INTERVAL * RISE + CHECK_TIMEOUT + SLACK,
        "{took:?}"
    );
}

/// What one frozen-backend run measured.
struct Frozen {
    requests: usize,
    failed: usize,
    /// From SIGSTOP until the frozen endpoint's request count last grew.
    last_request_after: Duration,
    slowest: Duration,
}

/// 2,000 req/s over two backend processes; one is frozen 4 s in. Checks every
/// 500 ms (fall 2, timeout 500 ms) and passive checks (5 failures in a row).
async fn frozen_under_load(retry_on_timeout: bool) -> Frozen {
    let a = BackendProcess::start(BACKEND_BINARY, "a").await.unwrap();
    let frozen = BackendProcess::start(BACKEND_BINARY, "frozen")
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  web:\n    retries: 3\n    retry_on_timeout: {retry_on_timeout}\n    \
         timeouts: {{connect: 1s, response: 1s}}\n    \
         health_check: {{probe: {{http: {{path: /healthz}}}}, interval: 500ms, fall: 2, rise: 2}}\n    \
         passive_check: {{consecutive_failures: 5, eject_for: 30s}}\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["web"]),
        a.addr,
        frozen.addr,
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let addr = frozen.addr.to_string();
    wait_up(&proxy, "web", &addr, true, Duration::from_secs(3)).await;

    let rate = 2_000;
    let load = PacedLoad {
        proxy: listen,
        path: "/web".into(),
        rate,
        total: 24_000,
        connections: 1_200,
        ramp: Duration::from_secs(3),
    }
    .start();
    let freeze_at = load.started() + Duration::from_secs(4);
    let watch = RequestWatch::start(proxy.admin_addr(), "web", &addr);
    tokio::time::sleep_until(freeze_at.into()).await;
    frozen.signal("STOP").unwrap();
    let frozen_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let last_growth = watch
        .last_growth()
        .expect("the frozen endpoint got requests");
    let report = load.finish().await;
    let entry = endpoint(&proxy, "web", &addr).await;
    frozen.signal("CONT").unwrap();
    eprintln!(
        "frozen endpoint after the run: {entry}\nsend rate {:.0}/s, wall {:?}",
        report.send_rate(),
        report.wall
    );
    let failures = report.failures();
    for f in failures.iter().take(5) {
        eprintln!("failed: {f:?}");
    }
    assert!(
        entry["up"] == false,
        "the frozen endpoint is out at the end: {entry}"
    );
    Frozen {
        requests: report.samples.len(),
        failed: failures.len(),
        last_request_after: last_growth.saturating_duration_since(frozen_at),
        slowest: report.latencies().into_iter().max().unwrap_or_default(),
    }
}

impl Frozen {
    fn print(&self, label: &str) {
        eprintln!(
            "{label}: {} of {} failed ({:.3}%), last request to the frozen endpoint {:?} \
             after SIGSTOP, slowest answer {:?}",
            self.failed,
            self.requests,
            self.failed as f64 * 100.0 / self.requests as f64,
            self.last_request_after,
            self.slowest
        );
        assert!(
            self.last_request_after <= Duration::from_millis(2_500),
            "{label}: requests reached the frozen endpoint {:?} after SIGSTOP",
            self.last_request_after
        );
    }
}

/// With `retry_on_timeout`, the requests caught on the frozen endpoint go to
/// the other one after the response timeout. Then the same without it (HAProxy's
/// default `retry-on`): the endpoint is out as fast, but the requests already
/// sent to it fail with 504; measured for the record, only the detection time
/// is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backend_under_load_is_out_within_2_5_s_with_few_failures() {
    let _alone = SERIAL.lock().await;
    let run = frozen_under_load(true).await;
    run.print("retry_on_timeout");
    assert!(
        run.failed * 1000 < run.requests * 5,
        "{} of {} requests failed",
        run.failed,
        run.requests
    );
    frozen_under_load(false).await.print("no retry_on_timeout");
}
