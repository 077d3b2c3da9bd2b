//! TCP health checks: an endpoint that stops is taken out within interval × fall
//! and brought back within interval × rise; check state and requests in flight
//! survive a table rewrite.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::balancing::*;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{Backend, ProxyProcess, eventually, free_addr};
use std::time::{Duration, Instant};

/// `check inter 200ms rise 2 fall 2` with `retries 0`: an endpoint whose server
/// stops is taken out within interval × fall (+ timeout), after which no request
/// fails; when the server is back on its port it is used again after about
/// interval × rise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_takes_a_dead_endpoint_out_and_brings_it_back() {
    let [mut a, b] = start_backends(["a", "b"]).await;
    let a_addr = a.addr;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  hc:\n    retries: 0\n    health_check: {}\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["hc"]),
        health_check_yaml(),
        a.addr,
        b.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    assert_eq!(
        tally(&client, listen, "/hc", 10).await,
        counts(&[("a", 5), ("b", 5)])
    );

    a.stop().await;
    let down = streak(&client, listen, "/hc", &["b"], 30, &["502", "503"]).await;
    let down_bound = CHECK_INTERVAL * FALL + CHECK_TIMEOUT + SLACK;
    eprintln!(
        "a stopped: out of rotation after {:?} (bound {down_bound:?}); answers before: {:?}",
        down.after, down.before
    );
    assert!(
        down.after <= down_bound,
        "a taken out after {:?}",
        down.after
    );
    assert!(
        down.after >= CHECK_INTERVAL * (FALL - 1) - Duration::from_millis(50),
        "a taken out after {:?}, before {FALL} checks could fail",
        down.after
    );
    // With retries 0, a's failures show until the check takes it out: what hid
    // them afterwards was the check, not a retry.
    assert!(
        down.before.contains_key("502") || down.before.contains_key("503"),
        "no request failed before a was taken out, with retries 0: {:?}",
        down.before
    );

    let a_again = Backend::start_at("a", a_addr).await;
    let restarted = Instant::now();
    eventually("a to serve again", Duration::from_secs(5), || async {
        let r = fetch(&client, listen, None, "/hc").await.ok()?;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        (a_again.requests() > 0).then_some(())
    })
    .await
    .unwrap();
    let up = restarted.elapsed();
    eprintln!("a back: in rotation after {up:?}");
    assert!(
        up >= CHECK_INTERVAL * (RISE - 1) - Duration::from_millis(50),
        "a used again after {up:?}: before {RISE} checks could have passed"
    );
    assert!(
        up <= CHECK_INTERVAL * RISE + CHECK_TIMEOUT + SLACK,
        "a used again after {up:?}"
    );
    let spread = tally(&client, listen, "/hc", 20).await;
    assert!(
        spread.get("a").copied().unwrap_or(0) >= 5,
        "a back in rotation: {spread:?}"
    );
}

/// The same with weights 10:1: when the heavier endpoint is down by its check,
/// every request goes to the lighter one, none waits.
///
/// (Regression: a down or avoided heavy endpoint once blocked round-robin picks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_takes_out_a_heavier_endpoint() {
    let [mut heavy, light] = start_backends(["heavy", "light"]).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  hc:\n    retries: 0\n    health_check: {}\n    \
         endpoints: [{{address: {}, weight: 10}}, {{address: {}, weight: 1}}]\n",
        listener(listen, &["hc"]),
        health_check_yaml(),
        heavy.addr,
        light.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    assert_eq!(
        tally(&client, listen, "/hc", 22).await,
        counts(&[("heavy", 20), ("light", 2)])
    );

    heavy.stop().await;
    let down = streak(&client, listen, "/hc", &["light"], 30, &["502", "503"]).await;
    eprintln!(
        "heavy (10:1) stopped: out of rotation after {:?}; answers before: {:?}",
        down.after, down.before
    );
    assert!(
        down.after <= CHECK_INTERVAL * FALL + CHECK_TIMEOUT + SLACK,
        "heavy taken out after {:?}",
        down.after
    );
}

/// Runtime state lives beside the table: a rewrite that keeps the backends keeps
/// out an endpoint its check took out (no request fails with `retries: 0`), and
/// keeps the requests in flight counted against `max_conn` (the next request still
/// waits for the slot).
///
/// (Regression: a down or avoided heavy endpoint once blocked round-robin picks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_max_conn_state_survive_a_table_rewrite() {
    let [mut a, b, s] = start_backends(["a", "b", "s"]).await;
    let (a_addr, b_addr, s_addr) = (a.addr, b.addr, s.addr);
    let listen = free_addr().unwrap();
    let table = |routes: &[&str]| {
        format!(
            "{}backends:\n  \
             hc:\n    retries: 0\n    health_check: {}\n    \
             endpoints: [{{address: {}}}, {{address: {}}}]\n  \
             one:\n    endpoints: [{{address: {}, max_conn: 1}}]\n  \
             reloaded:\n    endpoints: [{{address: {}}}]\n",
            listener(listen, routes),
            health_check_yaml(),
            a_addr,
            b_addr,
            s_addr,
            b_addr
        )
    };
    let proxy = ProxyProcess::start(&table(&["hc", "one"])).await.unwrap();
    let client = client::client();

    a.stop().await;
    streak(&client, listen, "/hc", &["b"], 10, &["502", "503"]).await;
    const HOLD: Duration = Duration::from_millis(2000);
    let holder = spawn_get(
        &client,
        listen,
        &format!("/one?sleep_ms={}", HOLD.as_millis()),
    );
    wait_in_flight(&s, 1).await;
    let held_since = Instant::now();

    proxy.rewrite(&table(&["hc", "one", "reloaded"])).unwrap();
    wait_until_served(&client, listen, "/reloaded").await;
    assert!(
        held_since.elapsed() < HOLD / 2,
        "the reload took too long for the test to mean anything"
    );

    let (waited, reply) = spawn_get(&client, listen, "/one").await.unwrap();
    let (_, held) = holder.await.unwrap();
    eprintln!("after a rewrite: the request behind the held slot waited {waited:?}");
    assert_eq!((outcome(&held), outcome(&reply)), ("s".into(), "s".into()));
    assert_eq!(
        s.max_in_flight(),
        1,
        "a rewrite forgot the request in flight: max_conn 1 was exceeded"
    );

    let started = Instant::now();
    let got = tally(&client, listen, "/hc", 20).await;
    assert_eq!(
        got,
        counts(&[("b", 20)]),
        "after a rewrite, with `a` down by its check and retries 0, every request \
         should go to b (20 requests took {:?})",
        started.elapsed()
    );
}
