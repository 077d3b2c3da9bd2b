//! `max_conn` per endpoint with the backend's queue (`timeouts.queue`, `max_queue`),
//! as HAProxy's `maxconn`, `maxqueue` and `timeout queue`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::balancing::*;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// max_conn and the queue

/// `maxconn 1`: the backend never sees two requests at once through the proxy;
/// requests beyond it wait for the slot (and, with two such endpoints, both serve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conn_1_serialises_requests_to_an_endpoint() {
    let [s, t1, t2] = start_backends(["s", "t1", "t2"]).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  \
         one:\n    endpoints: [{{address: {}, max_conn: 1}}]\n  \
         two:\n    endpoints: [{{address: {}, max_conn: 1}}, {{address: {}, max_conn: 1}}]\n",
        listener(listen, &["one", "two"]),
        s.addr,
        t1.addr,
        t2.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    const SLEEP: Duration = Duration::from_millis(150);
    let path = |id| format!("/{id}?sleep_ms={}", SLEEP.as_millis());

    let started = Instant::now();
    let replies = concurrently(&client, listen, &path("one"), 6).await;
    let took = started.elapsed();
    let statuses: Vec<String> = replies.iter().map(|(_, r)| outcome(r)).collect();
    eprintln!(
        "6 concurrent requests, max_conn 1: {took:?}, backend max in flight {}",
        s.max_in_flight()
    );
    assert!(statuses.iter().all(|o| o == "s"), "{statuses:?}");
    assert_eq!(s.requests(), 6);
    assert_eq!(s.max_in_flight(), 1, "max_conn 1 let requests overlap");
    assert!(
        took >= SLEEP * 6 - Duration::from_millis(20),
        "6 serialised requests took {took:?}"
    );

    let replies = concurrently(&client, listen, &path("two"), 6).await;
    let statuses: Vec<String> = replies.iter().map(|(_, r)| outcome(r)).collect();
    assert!(
        statuses.iter().all(|o| o == "t1" || o == "t2"),
        "{statuses:?}"
    );
    assert_eq!(t1.requests() + t2.requests(), 6);
    assert!(
        t1.requests() > 0 && t2.requests() > 0,
        "one endpoint idle: {statuses:?}"
    );
    assert_eq!(
        (t1.max_in_flight(), t2.max_in_flight()),
        (1, 1),
        "max_conn 1 let requests overlap"
    );
}

/// `timeout queue 300ms`: with the only slot held by a slow request, the requests
/// waiting for it get 503 after about 300 ms and never reach the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_queued_longer_than_the_queue_timeout_gets_503() {
    const QUEUE: Duration = Duration::from_millis(300);
    let s = Backend::start("s").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  q:\n    endpoints: [{{address: {}, max_conn: 1}}]\n    \
         timeouts: {{queue: {}ms}}\n",
        listener(listen, &["q"]),
        s.addr,
        QUEUE.as_millis()
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let holder = spawn_get(&client, listen, "/q?sleep_ms=1500");
    wait_in_flight(&s, 1).await;
    let waiting = concurrently(&client, listen, "/q", 2).await;
    let took: Vec<Duration> = waiting.iter().map(|(t, _)| *t).collect();
    eprintln!("queue timeout {QUEUE:?}: the waiting requests got their answers after {took:?}");
    for (took, reply) in &waiting {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert!(
            *took >= QUEUE - Duration::from_millis(50) && *took < QUEUE + SLACK,
            "503 after {took:?}, want about the queue timeout {QUEUE:?}"
        );
    }
    let (_, held) = holder.await.unwrap();
    assert_eq!(outcome(&held), "s");
    assert_eq!(
        s.requests(),
        1,
        "a request that timed out in the queue reached the backend"
    );
    // The slot is free again: the next request is served.
    assert_eq!(
        outcome(&fetch(&client, listen, None, "/q").await.unwrap()),
        "s"
    );
}

/// `maxqueue 1`: with the only slot held and one request waiting, the next one
/// gets 503 at once; the waiting one is served when the slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_max_queue_gets_503_at_once() {
    const HOLD: Duration = Duration::from_millis(1500);
    let s = Backend::start("s").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  q:\n    endpoints: [{{address: {}, max_conn: 1}}]\n    max_queue: 1\n",
        listener(listen, &["q"]),
        s.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let holder = spawn_get(
        &client,
        listen,
        &format!("/q?sleep_ms={}", HOLD.as_millis()),
    );
    wait_in_flight(&s, 1).await;
    // Two arrive together: whichever is second finds the queue full.
    let mut both = concurrently(&client, listen, "/q", 2).await;
    both.sort_by_key(|(_, r)| r.status);
    let [(served_after, served), (rejected_after, rejected)] = <[_; 2]>::try_from(both).unwrap();
    eprintln!(
        "max_queue 1: queued one served after {served_after:?}, the other 503 after {rejected_after:?}"
    );
    assert_eq!(outcome(&served), "s", "the queued request");
    assert_eq!(
        rejected.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        rejected.text()
    );
    assert!(
        rejected_after < Duration::from_millis(500),
        "the request beyond max_queue waited {rejected_after:?}"
    );
    assert!(
        served_after > rejected_after,
        "the queued request did not wait for the slot"
    );
    assert_eq!(outcome(&holder.await.unwrap().1), "s");
    assert_eq!(s.requests(), 2);
    assert_eq!(s.max_in_flight(), 1);
}
