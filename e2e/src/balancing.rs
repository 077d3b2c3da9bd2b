//! Shared by the balancing e2e tests (`tests/balancing*.rs`, `tests/health_checks.rs`):
//! tables, tallies of who answered, concurrent requests, health-check timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::client::{HttpClient, Reply, fetch, request, send};
use crate::load::Sample;
use crate::{Backend, eventually};
use http::{Method, StatusCode};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Health checks fast enough for tests: down after 2 refused connects 200 ms
/// apart, up after 2 accepted ones.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(200);
pub const RISE: u32 = 2;
pub const FALL: u32 = 2;
/// Scheduling slack on a loaded 2-core machine.
pub const SLACK: Duration = Duration::from_millis(700);

pub async fn start_backends<const N: usize>(names: [&str; N]) -> [Backend; N] {
    let mut out = Vec::new();
    for name in names {
        out.push(Backend::start(name).await);
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}

/// A listener on `listen` with one route per backend id: prefix `/<id>`.
pub fn listener(listen: SocketAddr, ids: &[&str]) -> String {
    let mut out =
        format!("listeners:\n  - http:\n      name: web\n      bind: {listen}\n      routes:\n");
    for id in ids {
        out.push_str(&format!(
            "        - {{name: {id}, paths: [{{prefix: /{id}}}], action: {{forward: {id}}}}}\n"
        ));
    }
    out
}

pub fn health_check_yaml() -> String {
    format!(
        "{{interval: {}ms, timeout: {}ms, rise: {RISE}, fall: {FALL}}}",
        CHECK_INTERVAL.as_millis(),
        CHECK_TIMEOUT.as_millis()
    )
}

/// Backend `pair` over `x` and `y` with `retries` and redispatch.
pub fn pair_table(listen: SocketAddr, x: &Backend, y: &Backend, retries: u32) -> String {
    format!(
        "{}backends:\n  pair:\n    retries: {retries}\n    redispatch: true\n    \
         endpoints: [{{address: {}}}, {{address: {}}}]\n",
        listener(listen, &["pair"]),
        x.addr,
        y.addr
    )
}

/// The backend's name on a 200 from a test backend, else the status.
pub fn outcome(reply: &Reply) -> String {
    match reply.backend() {
        Some(b) if reply.status == StatusCode::OK => b.to_owned(),
        _ => reply.status.as_u16().to_string(),
    }
}

pub fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
}

/// `n` sequential GETs of `path`: how many each outcome got.
pub async fn tally(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let reply = fetch(client, proxy, None, path).await.unwrap();
        *out.entry(outcome(&reply)).or_default() += 1;
    }
    out
}

/// For each key, three requests (`request(key)` gives the path and the x-user
/// value); all three must land on one endpoint, which is returned per key.
pub async fn sticky_map(
    client: &HttpClient,
    proxy: SocketAddr,
    what: &str,
    keys: &[String],
    request_for: impl Fn(&String) -> (String, Option<String>),
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for key in keys {
        let (path, user) = request_for(key);
        let headers: Vec<(&str, &str)> = user.iter().map(|u| ("x-user", u.as_str())).collect();
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            let req = request(Method::GET, proxy, None, &path, &headers, "");
            seen.insert(outcome(&send(client, req).await.unwrap()));
        }
        assert_eq!(seen.len(), 1, "{what}: key {key} went to {seen:?}");
        map.insert(key.clone(), seen.pop_first().unwrap());
    }
    map
}

/// A GET in its own task: (time to the full reply, reply).
pub fn spawn_get(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
) -> tokio::task::JoinHandle<(Duration, Reply)> {
    let (client, path) = (client.clone(), path.to_owned());
    tokio::spawn(async move {
        let started = Instant::now();
        let reply = fetch(&client, proxy, None, &path).await.unwrap();
        (started.elapsed(), reply)
    })
}

/// `n` GETs of `path` at once; each with the time its reply took.
pub async fn concurrently(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    n: usize,
) -> Vec<(Duration, Reply)> {
    let tasks: Vec<_> = (0..n).map(|_| spawn_get(client, proxy, path)).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

pub async fn wait_in_flight(backend: &Backend, n: usize) {
    eventually(
        &format!("{n} request(s) in flight at {}", backend.name()),
        Duration::from_secs(5),
        || async { (backend.in_flight() == n).then_some(()) },
    )
    .await
    .unwrap();
}

/// How [`streak`] went.
pub struct Streak {
    /// From the call to the first answer of the streak.
    pub after: Duration,
    /// Answers before the streak, by outcome.
    pub before: BTreeMap<String, usize>,
}

/// GETs `path` until `len` answers in a row are in `want` (within 10 s); answers in
/// `allowed` may come before; anything else fails at once.
pub async fn streak(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    want: &[&str],
    len: usize,
    allowed: &[&str],
) -> Streak {
    let started = Instant::now();
    let mut before = BTreeMap::new();
    let mut current: Vec<(Duration, String)> = Vec::new();
    loop {
        let at = started.elapsed();
        let got = outcome(&fetch(client, proxy, None, path).await.unwrap());
        if want.contains(&got.as_str()) {
            current.push((at, got));
            if current.len() >= len {
                return Streak {
                    after: current[0].0,
                    before,
                };
            }
            continue;
        }
        assert!(
            allowed.contains(&got.as_str()),
            "{path}: {got} {at:?} in, waiting for {len} x {want:?} (allowed before: {allowed:?}; so far {before:?})"
        );
        for (_, earlier) in current.drain(..) {
            *before.entry(earlier).or_default() += 1;
        }
        *before.entry(got).or_default() += 1;
        assert!(
            at < Duration::from_secs(10),
            "{path}: no {len} x {want:?} in a row within 10 s; answers: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn describe_samples(samples: &[&Sample]) -> String {
    samples
        .iter()
        .take(10)
        .map(|s| {
            format!(
                "sent at {:?}, after {:?}: {:?}",
                s.sent, s.latency, s.outcome
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (up to 5 s) until `path` answers 200: a rewritten table that added a
/// route to it is live.
pub async fn wait_until_served(client: &HttpClient, listen: SocketAddr, path: &str) {
    eventually(
        &format!("{path} to be served"),
        Duration::from_secs(5),
        || async {
            let r = fetch(client, listen, None, path).await.ok()?;
            (r.status == StatusCode::OK).then_some(())
        },
    )
    .await
    .unwrap();
}
