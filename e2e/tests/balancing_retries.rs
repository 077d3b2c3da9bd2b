//! Retries and redispatch: a backend process SIGKILLed under 2,000 req/s, which
//! requests are never replayed, and redispatch away from a refusing endpoint.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, StatusCode};
use sluice_e2e::balancing::*;
use sluice_e2e::client::{self, fetch, request, send};
use sluice_e2e::load::PacedLoad;
use sluice_e2e::traffic::percentile;
use sluice_e2e::{Backend, BackendProcess, ProxyProcess, free_addr};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Retries and redispatch

const RATE: u32 = 2_000;
const TOTAL: usize = 16_000;
const CONNECTIONS: usize = 64;
const KILL_AT: Duration = Duration::from_secs(2);

/// The acceptance test of retries + redispatch: two backend processes, ~2,000 GETs
/// a second for 8 s over 64 keep-alive connections, one backend SIGKILLed 2 s in
/// (no health check: retries alone must hide it). Refused connects and connections
/// reset before a response are retried on the survivor: 0 requests fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_two_backends_under_2000_rps_fails_no_request() {
    let binary = env!("CARGO_BIN_EXE_sluice-e2e-backend");
    let mut doomed = BackendProcess::start(binary, "doomed").await.unwrap();
    let survivor = BackendProcess::start(binary, "survivor").await.unwrap();
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  pair:\n    retries: 3\n    redispatch: true\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["pair"]),
        doomed.addr,
        survivor.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let warm_up = tally(&client::client(), listen, "/pair", 20).await;
    assert_eq!(warm_up, counts(&[("doomed", 10), ("survivor", 10)]));

    let run = PacedLoad {
        proxy: listen,
        path: "/pair".into(),
        rate: RATE,
        total: TOTAL,
        connections: CONNECTIONS,
        ramp: Duration::ZERO,
    }
    .start();
    tokio::time::sleep_until((run.started() + KILL_AT).into()).await;
    let kill_sent = run.started().elapsed();
    doomed.kill().unwrap();
    let killed = run.started().elapsed();
    let report = run.finish().await;

    let before = report.by_backend(|s| s.sent < kill_sent);
    let after = report.by_backend(|s| s.sent > killed);
    let failures = report.failures();
    let latencies = report.latencies();
    eprintln!(
        "SIGKILL of 1 of 2 backends at {kill_sent:?} (gone at {killed:?}): {} requests in {:?} \
         (sent at {:.0}/s), {} failed; before the kill {before:?}, after {after:?}; \
         latency p50 {:?} p99 {:?} max {:?}",
        report.samples.len(),
        report.wall,
        report.send_rate(),
        failures.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first ones:\n{}",
        failures.len(),
        report.samples.len(),
        describe_samples(&failures)
    );
    assert_eq!(report.samples.len(), TOTAL);
    // The load was what the criterion names (within 10%), so the test shows it.
    assert!(
        report.send_rate() >= f64::from(RATE) * 0.9,
        "only {:.0} requests/s were sent (machine too busy?)",
        report.send_rate()
    );
    let share = |map: &BTreeMap<String, usize>, name: &str| map.get(name).copied().unwrap_or(0);
    let before_total: usize = before.values().sum();
    assert!(
        share(&before, "doomed") * 3 >= before_total
            && share(&before, "survivor") * 3 >= before_total,
        "before the kill both backends should serve: {before:?}"
    );
    assert_eq!(
        share(&after, "doomed"),
        0,
        "a dead process answered: {after:?}"
    );
    assert!(share(&after, "survivor") > TOTAL / 2, "{after:?}");
}

/// A request whose body was already sent is never replayed: the backend reads a
/// POST's (or PUT's) body and closes the connection without answering; the client
/// gets 502 and exactly one attempt reached a backend, although another endpoint
/// is available and retries are on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_was_sent_is_not_replayed() {
    let [x, y] = start_backends(["x", "y"]).await;
    let listen = free_addr().unwrap();
    let _proxy = ProxyProcess::start(&pair_table(listen, &x, &y, 3))
        .await
        .unwrap();
    let client = client::client();

    for (i, method) in [Method::POST, Method::PUT].into_iter().enumerate() {
        let req = request(method.clone(), listen, None, "/pair?close", &[], "payload");
        let reply = send(&client, req).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_GATEWAY,
            "{method}: {}",
            reply.text()
        );
        let attempts = x.requests() + y.requests();
        assert_eq!(
            attempts,
            i + 1,
            "{method} with a body was sent {} times",
            attempts - i
        );
    }
}

/// The contrast: a bodyless GET whose connection closes before a response is
/// retried, redispatched to the other endpoint, `retries` times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_connection_closes_before_a_response_is_retried_elsewhere() {
    let [x, y] = start_backends(["x", "y"]).await;
    let listen = free_addr().unwrap();
    let _proxy = ProxyProcess::start(&pair_table(listen, &x, &y, 2))
        .await
        .unwrap();
    let client = client::client();

    let reply = fetch(&client, listen, None, "/pair?close").await.unwrap();
    eprintln!(
        "GET closed without an answer: x saw {}, y saw {}",
        x.requests(),
        y.requests()
    );
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(
        x.requests() + y.requests(),
        3,
        "retries: 2 means 3 attempts"
    );
    assert!(
        x.requests() > 0 && y.requests() > 0,
        "the retries were not redispatched"
    );
}

/// Redispatch with weights 10:1: the heavier endpoint refuses connections (nothing
/// listens on its port; no health check), so every request that picks it first
/// is retried on the lighter one, at once and successfully. (No `max_conn`: a
/// request must never wait in the queue here; the 1 s queue timeout only keeps a
/// failure short.)
///
/// (Regression: a down or avoided heavy endpoint once blocked round-robin picks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redispatch_from_a_refusing_heavier_endpoint_succeeds_at_once() {
    let light = Backend::start("light").await;
    let closed = free_addr().unwrap();
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  pair:\n    retries: 3\n    redispatch: true\n    \
         timeouts: {{queue: 1s}}\n    \
         endpoints: [{{address: {closed}, weight: 10}}, {{address: {}, weight: 1}}]\n",
        listener(listen, &["pair"]),
        light.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let mut slowest = Duration::ZERO;
    let mut got = BTreeMap::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = fetch(&client, listen, None, "/pair").await.unwrap();
        slowest = slowest.max(started.elapsed());
        *got.entry(outcome(&reply)).or_insert(0) += 1;
    }
    eprintln!("weights 10:1, the heavier refusing: {got:?}, slowest {slowest:?}");
    assert_eq!(got, counts(&[("light", 20)]));
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
}
