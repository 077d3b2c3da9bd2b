//! Load balancing as HAProxy does it, written as our table: endpoint weights and
//! drain, backup endpoints, hash-based algorithms (`header`, `uri`, `source`)
//! across a hot reload, and `least_conn`. Limits and the queue, retries, and
//! health checks have their own files.
//!
//! Routes are `/<backend id>` prefixes; every test backend answers with its name in
//! `x-backend`, so the client sees who answered.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::balancing::*;
use sluice_e2e::client::{self};
use sluice_e2e::{Backend, ProxyProcess, eventually, free_addr};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Weights and backups

/// `server a weight 3` + `server b weight 1` (+ `server c weight 0`, drained), with
/// `balance roundrobin` and `balance static-rr`: 75/25 within 5 points, and the
/// drained endpoint gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_3_to_1_share_requests_75_25() {
    let [a, b, c] = start_backends(["a", "b", "c"]).await;
    let listen = free_addr().unwrap();
    let endpoints = format!(
        "[{{address: {}, weight: 3}}, {{address: {}, weight: 1}}, {{address: {}, weight: 0}}]",
        a.addr, b.addr, c.addr
    );
    let yaml = format!(
        "{}backends:\n  rr:\n    endpoints: {endpoints}\n  \
         static:\n    balance: static_rr\n    endpoints: {endpoints}\n",
        listener(listen, &["rr", "static"])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    for path in ["/rr", "/static"] {
        let got = tally(&client, listen, path, 400).await;
        let share = |name| got.get(name).copied().unwrap_or(0) as f64 / 400.0;
        eprintln!(
            "{path}: weights 3:1:0 gave {got:?} (a {:.1}%, b {:.1}%)",
            share("a") * 100.0,
            share("b") * 100.0
        );
        assert_eq!(got.values().sum::<usize>(), 400, "{path}: {got:?}");
        assert!(
            (share("a") - 0.75).abs() <= 0.05 && (share("b") - 0.25).abs() <= 0.05,
            "{path}: shares {got:?}, want 75/25 within 5 points"
        );
        assert_eq!(
            got.get("c"),
            None,
            "{path}: the weight-0 endpoint got requests"
        );
    }
}

/// `server p check` + `server b1 backup` + `server b2 backup`: the backups see
/// nothing while `p` is up; when it is down (health check) only the first backup
/// serves, or both with `all_backups` (`option allbackups`); when `p` returns the
/// traffic goes back to it. A primary with weight 0 counts as unavailable.
/// `retries: 0`, so that it is the check, not a redispatched retry, that sends
/// requests to the backups (the requests failing meanwhile show that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_serve_only_while_every_primary_is_unavailable() {
    let [mut p, b1, b2] = start_backends(["p", "b1", "b2"]).await;
    let p_addr = p.addr;
    let listen = free_addr().unwrap();
    let endpoints = format!(
        "[{{address: {}}}, {{address: {}, backup: true}}, {{address: {}, backup: true}}]",
        p.addr, b1.addr, b2.addr
    );
    let yaml = format!(
        "{}backends:\n  \
         first:\n    retries: 0\n    endpoints: {endpoints}\n    health_check: {check}\n  \
         all:\n    retries: 0\n    all_backups: true\n    endpoints: {endpoints}\n    health_check: {check}\n  \
         drained:\n    endpoints: [{{address: {}, weight: 0}}, {{address: {}, backup: true}}]\n",
        listener(listen, &["first", "all", "drained"]),
        p.addr,
        b1.addr,
        check = health_check_yaml(),
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    // Everything up: primaries only.
    assert_eq!(
        tally(&client, listen, "/first", 20).await,
        counts(&[("p", 20)])
    );
    assert_eq!(
        tally(&client, listen, "/all", 20).await,
        counts(&[("p", 20)])
    );
    assert_eq!(
        tally(&client, listen, "/drained", 10).await,
        counts(&[("b1", 10)])
    );

    // The primary goes away: the first backup only, both with all_backups.
    p.stop().await;
    let transient = ["p", "502", "503", "504"];
    let first = streak(&client, listen, "/first", &["b1"], 10, &transient).await;
    let all = streak(&client, listen, "/all", &["b1", "b2"], 10, &transient).await;
    eprintln!(
        "primary down: /first on b1 after {:?} (before: {:?}); /all on backups after {:?}",
        first.after, first.before, all.after
    );
    assert!(
        !first.before.contains_key("b2"),
        "/first used the second backup: {:?}",
        first.before
    );
    assert!(
        first.after >= CHECK_INTERVAL * (FALL - 1) - Duration::from_millis(50),
        "/first on the backup {:?} after the primary stopped, before {FALL} checks could fail",
        first.after
    );
    assert_eq!(
        tally(&client, listen, "/first", 20).await,
        counts(&[("b1", 20)])
    );
    let spread = tally(&client, listen, "/all", 20).await;
    assert!(
        spread.len() == 2 && spread.values().all(|&n| (8..=12).contains(&n)),
        "all_backups should balance over both backups: {spread:?}"
    );

    // The primary returns on its port: traffic goes back to it.
    let _p_again = Backend::start_at("p", p_addr).await;
    let back = streak(&client, listen, "/first", &["p"], 10, &["b1"]).await;
    streak(&client, listen, "/all", &["p"], 10, &["b1", "b2"]).await;
    eprintln!("primary back: /first on p again after {:?}", back.after);
    assert_eq!(
        tally(&client, listen, "/first", 20).await,
        counts(&[("p", 20)])
    );
    assert_eq!(
        tally(&client, listen, "/drained", 10).await,
        counts(&[("b1", 10)])
    );
}

// ---------------------------------------------------------------------------
// Hashing

/// `balance hdr(x-user)` and `balance uri` (consistent): one key always lands on
/// one endpoint, keys spread over several, requests without the header go round
/// robin, and a table rewrite that keeps the endpoints keeps every mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_uri_hashing_is_sticky_and_survives_a_reload() {
    let [a, b, c] = start_backends(["a", "b", "c"]).await;
    let listen = free_addr().unwrap();
    let table = |extra_route: &str| {
        let endpoints = format!(
            "[{{address: {}}}, {{address: {}}}, {{address: {}}}]",
            a.addr, b.addr, c.addr
        );
        let mut routes = vec!["user", "uri"];
        if !extra_route.is_empty() {
            routes.push(extra_route);
        }
        format!(
            "{}backends:\n  \
             user:\n    balance: {{header: {{name: x-user}}}}\n    endpoints: {endpoints}\n  \
             uri:\n    balance: {{uri: {{hash: consistent}}}}\n    endpoints: {endpoints}\n  \
             {extra}",
            listener(listen, &routes),
            extra = if extra_route.is_empty() {
                String::new()
            } else {
                format!("{extra_route}:\n    endpoints: [{{address: {}}}]\n", a.addr)
            }
        )
    };
    let proxy = ProxyProcess::start(&table("")).await.unwrap();
    let client = client::client();

    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let paths: Vec<String> = (0..20).map(|i| format!("/uri/item-{i}")).collect();
    let by_user = sticky_map(&client, listen, "/user", &users, |u| {
        ("/user".into(), Some(u.clone()))
    })
    .await;
    let by_path = sticky_map(&client, listen, "/uri", &paths, |p| (p.clone(), None)).await;
    for (what, map) in [("x-user", &by_user), ("uri", &by_path)] {
        let used: BTreeSet<&String> = map.values().collect();
        assert!(used.len() >= 2, "20 {what} keys all on {used:?}");
    }
    // No header: round robin over the three.
    let spread = tally(&client, listen, "/user", 30).await;
    assert!(
        spread.len() == 3 && spread.values().all(|&n| (9..=11).contains(&n)),
        "requests without x-user should go round robin: {spread:?}"
    );

    // A rewrite that keeps the endpoints (adds a route) keeps every key's endpoint.
    proxy.rewrite(&table("reloaded")).unwrap();
    wait_until_served(&client, listen, "/reloaded").await;
    let again = sticky_map(&client, listen, "/user", &users, |u| {
        ("/user".into(), Some(u.clone()))
    })
    .await;
    assert_eq!(again, by_user, "x-user mapping changed with a reload");
    let again = sticky_map(&client, listen, "/uri", &paths, |p| (p.clone(), None)).await;
    assert_eq!(again, by_path, "uri mapping changed with a reload");
}

/// `balance source`: one client address always lands on one endpoint; several
/// addresses (127.0.0.2–17, all on loopback) spread over several endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_hashing_keeps_a_client_on_one_endpoint() {
    let [a, b, c] = start_backends(["a", "b", "c"]).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  src:\n    balance: {{source: {{}}}}\n    \
         endpoints: [{{address: {}}}, {{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["src"]),
        a.addr,
        b.addr,
        c.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let mut used = BTreeSet::new();
    for last in 2..=17 {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let client = client::client_from(source);
        let got = tally(&client, listen, "/src", 10).await;
        assert_eq!(got.len(), 1, "client {source} was spread: {got:?}");
        used.extend(got.into_keys());
    }
    assert!(used.len() >= 2, "16 client addresses all on {used:?}");
}

// ---------------------------------------------------------------------------
// least_conn and health checks

/// `balance leastconn`: with a slow request pinned on one endpoint, the next
/// requests go to the other; once it finishes both serve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_the_endpoint_with_a_request_in_flight() {
    let [a, b] = start_backends(["a", "b"]).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "{}backends:\n  lc:\n    balance: least_conn\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["lc"]),
        a.addr,
        b.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    // Idle: ties go round robin, so both serve.
    assert_eq!(
        tally(&client, listen, "/lc", 10).await,
        counts(&[("a", 5), ("b", 5)])
    );

    let slow = spawn_get(&client, listen, "/lc?sleep_ms=1500");
    eventually(
        "the slow request to reach a backend",
        Duration::from_secs(5),
        || async { (a.in_flight() + b.in_flight() == 1).then_some(()) },
    )
    .await
    .unwrap();
    let (pinned, other) = if a.in_flight() == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert_eq!(
        tally(&client, listen, "/lc", 10).await,
        counts(&[(other, 10)]),
        "{pinned} has a request in flight"
    );
    assert_eq!(outcome(&slow.await.unwrap().1), pinned);
    assert_eq!(
        tally(&client, listen, "/lc", 10).await,
        counts(&[("a", 5), ("b", 5)])
    );
}
