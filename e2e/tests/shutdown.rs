//! SIGTERM: the listening socket closes at once, in-flight requests finish, exit 0.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{Backend, Options, ProxyProcess, eventually, forward_all, free_addr};
use std::time::{Duration, Instant};

const IN_FLIGHT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let backend = Backend::slow("slow", Duration::from_secs(2)).await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "slow", backend.addr);
    let mut proxy = ProxyProcess::start(&yaml).await.unwrap();

    // 50 concurrent HTTP/1.1 requests: one client connection each.
    let client = client::client();
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { fetch(&client, listen, None, &format!("/req/{i}")).await })
        })
        .collect();
    eventually(
        "all requests to reach the backend",
        Duration::from_secs(10),
        || async { (backend.in_flight() == IN_FLIGHT).then_some(()) },
    )
    .await
    .unwrap();

    proxy.signal("TERM").unwrap();
    let signalled = Instant::now();
    proxy
        .wait_for_log("stopped accepting", 1, Duration::from_secs(2))
        .await
        .unwrap();
    let refused = tokio::net::TcpStream::connect(listen).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection after SIGTERM was not refused: {refused:?}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "the listener closed only after {:?}",
        signalled.elapsed()
    );
    // Still draining: the slow responses are not due yet.
    assert_eq!(backend.in_flight(), IN_FLIGHT);

    for (i, request) in requests.into_iter().enumerate() {
        let reply = request
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {i}: {}",
            reply.text()
        );
        assert_eq!(reply.backend(), Some("slow"));
    }
    let status = proxy.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.logs()
    );
    assert_eq!(backend.requests(), IN_FLIGHT);
    proxy
        .wait_for_log("drained; exiting", 1, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_promptly_with_status_0() {
    let backend = Backend::start("b").await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "b", backend.addr);
    let mut proxy = ProxyProcess::start(&yaml).await.unwrap();
    // An idle keep-alive client connection must not hold up the exit.
    let client = client::client();
    let reply = fetch(&client, listen, None, "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    proxy.signal("TERM").unwrap();
    let started = Instant::now();
    let status = proxy.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "idle proxy took {:?} to exit",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_how_long_sigterm_waits() {
    let backend = Backend::slow("stuck", Duration::from_secs(20)).await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "stuck", backend.addr);
    let options = Options {
        extra_args: vec!["--drain-timeout".into(), "1s".into()],
        ..Options::default()
    };
    let mut proxy = ProxyProcess::start_with(&yaml, options).await.unwrap();
    let client = client::client();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { fetch(&client, listen, None, "/").await })
        })
        .collect();
    eventually(
        "requests to reach the backend",
        Duration::from_secs(5),
        || async { (backend.in_flight() == 3).then_some(()) },
    )
    .await
    .unwrap();

    proxy.signal("TERM").unwrap();
    let signalled = Instant::now();
    proxy.wait_exit(Duration::from_secs(5)).await.unwrap();
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM with --drain-timeout 1s"
    );
    assert_eq!(
        proxy.log_lines("drain deadline reached").len(),
        1,
        "{}",
        proxy.logs()
    );
    // The cut requests fail promptly instead of hanging until the backend answers.
    for request in requests {
        let result = tokio::time::timeout(Duration::from_secs(2), request)
            .await
            .expect("a request outlived the proxy by 2s")
            .unwrap();
        assert!(
            result.is_err(),
            "a stuck request got a response: {result:?}"
        );
    }
}
