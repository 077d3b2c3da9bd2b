//! Sticky sessions by cookie (HAProxy's `cookie SRV insert|rewrite|prefix`) against
//! the real binary: 1,000 pinned clients through a SIGKILL, cookies shared by
//! proxies with one key file (and key rotation), tampered and expired cookies, `indirect`, the cookie
//! attributes, prefix and rewrite modes, draining by weight 0, `if_unavailable:
//! fail`, and a cookie winning over the balancing algorithm.
//!
//! Routes are `/<backend id>` prefixes; every test backend answers with its name in
//! `x-backend`, and the admin's `/debug/backends` gives each endpoint's cookie id,
//! so a test knows which endpoint a cookie value names.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, StatusCode};
use sluice_e2e::balancing::{health_check_yaml, start_backends};
use sluice_e2e::client::{self, HttpClient, Reply, request, send};
use sluice_e2e::health::wait_up;
use sluice_e2e::sticky::*;
use sluice_e2e::{BackendProcess, ProxyProcess, eventually, free_addr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BACKEND_BINARY: &str = env!("CARGO_BIN_EXE_sluice-e2e-backend");

/// The two load tests take both cores, so they run alone; the others may share.
static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const SRV: &str = "sticky: {cookie: {name: SRV}}";
const KEY: &str = "sluice-e2e-shared-session-key-0123456789";

/// A one-off GET with an optional `Cookie` header; the reply must be complete.
async fn get(client: &HttpClient, proxy: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    get_with_cookie(client, proxy, path, cookie).await.unwrap()
}

/// The test backend that answered a 200; anything else fails the test.
fn served_by(reply: &Reply, what: &str) -> String {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    reply
        .backend()
        .unwrap_or_else(|| panic!("{what}: a 200 without x-backend: {reply:?}"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// 1,000 clients through a SIGKILL

const CLIENTS: usize = 1_000;
const PER_PHASE: usize = 10;
const IN_FLIGHT: usize = 100;

/// One request of a simulated client.
#[derive(Debug, Clone)]
struct Answer {
    status: Option<u16>,
    backend: Option<String>,
    /// The value of the `SRV` cookie the response set.
    set_cookie: Option<String>,
    error: Option<String>,
}

impl Answer {
    /// The backend that answered 200, if that is what happened.
    fn served_by(&self) -> Option<&str> {
        (self.status == Some(200)).then_some(())?;
        self.backend.as_deref()
    }
}

/// Every client sends `per_client` GETs of `/app` one after the other, keeping its
/// cookie as a browser does; `IN_FLIGHT` clients at a time over one shared pool.
async fn run_clients(
    client: &HttpClient,
    proxy: SocketAddr,
    jars: Vec<Jar>,
    per_client: usize,
) -> Vec<(Jar, Vec<Answer>)> {
    let total = jars.len();
    let queue: VecDeque<(usize, Jar)> = jars.into_iter().enumerate().collect();
    let queue = Arc::new(Mutex::new(queue));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (queue, client) = (queue.clone(), client.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some((i, mut jar)) = next else {
                    return done;
                };
                let mut answers = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let cookie = jar.header();
                    let answer =
                        match get_with_cookie(&client, proxy, "/app", cookie.as_deref()).await {
                            Ok(reply) => Answer {
                                status: Some(reply.status.as_u16()),
                                backend: reply.backend().map(str::to_owned),
                                set_cookie: jar.update(&reply),
                                error: None,
                            },
                            Err(e) => Answer {
                                status: None,
                                backend: None,
                                set_cookie: None,
                                error: Some(format!("{e:#}")),
                            },
                        };
                    answers.push(answer);
                }
                done.push((i, jar, answers));
            }
        });
    }
    let mut out: Vec<Option<(Jar, Vec<Answer>)>> = (0..total).map(|_| None).collect();
    while let Some(done) = workers.join_next().await {
        for (i, jar, answers) in done.unwrap() {
            out[i] = Some((jar, answers));
        }
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn failures(run: &[(Jar, Vec<Answer>)]) -> Vec<String> {
    run.iter()
        .enumerate()
        .flat_map(|(i, (_, answers))| {
            answers
                .iter()
                .enumerate()
                .filter(|(_, a)| a.served_by().is_none())
                .map(move |(k, a)| match &a.error {
                    Some(e) => format!("client {i} request {k}: {e}"),
                    None => format!("client {i} request {k}: {a:?}"),
                })
        })
        .collect()
}

fn first_lines(lines: &[String]) -> String {
    lines
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The acceptance test of issue 7. Three backend processes behind an insert
/// cookie (default retries and redispatch), a session key file. 1,000 clients,
/// each with its own cookie jar, 100 at a time: 10 requests each all land on the
/// endpoint of the client's first response. One backend is SIGKILLed; 10 more
/// requests each: none fails, the dead endpoint's clients get a new cookie naming a
/// live endpoint with their next response and stay there, no other client moves.
async fn thousand_clients_through_a_sigkill(health_check: bool) {
    let _alone = LOAD.write().await;
    let label = if health_check {
        "with health checks"
    } else {
        "retries alone"
    };
    let mut a = BackendProcess::start(BACKEND_BINARY, "a").await.unwrap();
    let b = BackendProcess::start(BACKEND_BINARY, "b").await.unwrap();
    let c = BackendProcess::start(BACKEND_BINARY, "c").await.unwrap();
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let listen = free_addr().unwrap();
    let check = format!("health_check: {}", health_check_yaml());
    let mut settings = vec![SRV];
    if health_check {
        settings.push(&check);
    }
    let yaml = table(
        listen,
        &[(
            "app",
            backend_yaml("app", &endpoints(&[a.addr, b.addr, c.addr]), &settings),
        )],
    );
    let keys = KeyFile::new(&[KEY]);
    let proxy = ProxyProcess::start_with(&yaml, keys.options())
        .await
        .unwrap();
    let ids = ids_by_name(&proxy, "app", &names).await;
    assert!(ids.values().all(|v| is_endpoint_id(v)), "{ids:?}");
    assert_eq!(
        ids.values().collect::<BTreeSet<_>>().len(),
        3,
        "endpoints share a cookie id: {ids:?}"
    );
    let client = client::client();

    // Phase 1: everything up.
    let started = Instant::now();
    let jars = (0..CLIENTS).map(|_| Jar::new("SRV")).collect();
    let phase1 = run_clients(&client, listen, jars, PER_PHASE).await;
    let phase1_took = started.elapsed();
    let failed = failures(&phase1);
    assert!(
        failed.is_empty(),
        "{label}: {} requests failed with every backend up:\n{}",
        failed.len(),
        first_lines(&failed)
    );
    let mut pinned = Vec::new();
    let mut wrong = Vec::new();
    for (i, (_, answers)) in phase1.iter().enumerate() {
        let first = answers[0].served_by().unwrap().to_owned();
        for (k, answer) in answers.iter().enumerate() {
            if answer.served_by() != Some(first.as_str())
                || answer.set_cookie.as_ref() != Some(&ids[&first])
            {
                wrong.push(format!(
                    "client {i} request {k}: {answer:?} (first answer from {first}, id {})",
                    ids[&first]
                ));
            }
        }
        pinned.push(first);
    }
    let mut clients_of: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pinned {
        *clients_of.entry(p.as_str()).or_default() += 1;
    }
    eprintln!(
        "sticky ({label}) phase 1: {} requests from {CLIENTS} clients ({IN_FLIGHT} at a time) \
         in {phase1_took:?}, {} failed, {} not on their first endpoint; clients per endpoint \
         {clients_of:?}",
        CLIENTS * PER_PHASE,
        failed.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{label}: {} requests left the endpoint of the client's first response, or were not \
         given its cookie:\n{}",
        wrong.len(),
        first_lines(&wrong)
    );
    assert!(
        names
            .iter()
            .all(|(n, _)| clients_of.get(n).copied().unwrap_or(0) >= CLIENTS / 4),
        "{label}: new clients were not balanced over the three: {clients_of:?}"
    );

    // Phase 2: `a` is SIGKILLed, then every client goes on.
    let victim = "a";
    let victims = clients_of[victim];
    a.kill().unwrap();
    let started = Instant::now();
    let jars = phase1.into_iter().map(|(jar, _)| jar).collect();
    let phase2 = run_clients(&client, listen, jars, PER_PHASE).await;
    let phase2_took = started.elapsed();
    let failed = failures(&phase2);
    let mut wrong = Vec::new();
    let mut re_pinned: BTreeMap<String, usize> = BTreeMap::new();
    for (i, ((_, answers), origin)) in phase2.iter().zip(&pinned).enumerate() {
        let stays_on = if origin == victim {
            let first = &answers[0];
            match first.served_by() {
                Some(now) if now != victim && first.set_cookie.as_ref() == Some(&ids[now]) => {
                    *re_pinned.entry(now.to_owned()).or_default() += 1;
                    now.to_owned()
                }
                _ => {
                    wrong.push(format!(
                        "client {i} (on {victim}) was not re-pinned by its first answer after \
                         the kill: {first:?}"
                    ));
                    continue;
                }
            }
        } else {
            origin.clone()
        };
        let skip = usize::from(origin == victim);
        for (k, answer) in answers.iter().enumerate().skip(skip) {
            if answer.served_by() != Some(stays_on.as_str())
                || answer.set_cookie.as_ref() != Some(&ids[&stays_on])
            {
                wrong.push(format!(
                    "client {i} request {k}: {answer:?} (pinned to {origin}, should be on \
                     {stays_on})"
                ));
            }
        }
    }
    let moved_clients: usize = re_pinned.values().sum();
    eprintln!(
        "sticky ({label}) phase 2, {victim} SIGKILLed: {} requests in {phase2_took:?}, {} failed; \
         {moved_clients} of {victims} clients of {victim} re-pinned ({re_pinned:?}), {} requests \
         off their pin",
        CLIENTS * PER_PHASE,
        failed.len(),
        wrong.len()
    );
    assert!(
        failed.is_empty(),
        "{label}: {} requests failed after the kill:\n{}",
        failed.len(),
        first_lines(&failed)
    );
    assert!(
        wrong.is_empty(),
        "{label}: {} requests went astray after the kill:\n{}",
        wrong.len(),
        first_lines(&wrong)
    );
    assert_eq!(moved_clients, victims);

    let got = counters(&proxy, "app").await;
    eprintln!("sticky ({label}) counters: {got:?}");
    let total = (2 * CLIENTS * PER_PHASE) as u64;
    assert_eq!(
        got,
        Counters {
            kept: total - CLIENTS as u64 - victims as u64,
            new: CLIENTS as u64,
            moved: victims as u64,
            rejected: 0,
        },
        "{label}: each client new once, each client of {victim} moved once, the rest kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_stay_pinned_and_a_sigkill_moves_only_its_clients() {
    thousand_clients_through_a_sigkill(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_stay_pinned_through_a_sigkill_with_health_checks() {
    thousand_clients_through_a_sigkill(true).await;
}

// ---------------------------------------------------------------------------
// Keys

/// Two proxy processes with one key file (and the first one restarted) route 100
/// cookies issued by the first to the same endpoints; a proxy with another key
/// rejects them all: normal balancing, a new cookie of its own, `rejected` grows.
/// A proxy whose key file has a new key first and the old one second (rotation)
/// keeps every old cookie and re-issues it signed with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_sharing_a_key_file_route_a_cookie_alike_and_another_key_rejects_it() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name(), b.addr)).collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let table_at = |listen| {
        table(
            listen,
            &[("app", backend_yaml("app", &endpoints(&addrs), &[SRV]))],
        )
    };
    let shared = KeyFile::new(&[KEY]);
    let other = KeyFile::new(&["sluice-e2e-another-session-key-9876543210"]);
    let (listen_a, listen_b, listen_c) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let proxy_a = ProxyProcess::start_with(&table_at(listen_a), shared.options())
        .await
        .unwrap();
    let proxy_b = ProxyProcess::start_with(&table_at(listen_b), shared.options())
        .await
        .unwrap();
    let proxy_c = ProxyProcess::start_with(&table_at(listen_c), other.options())
        .await
        .unwrap();
    let ids_a = ids_by_name(&proxy_a, "app", &names).await;
    assert_eq!(ids_by_name(&proxy_b, "app", &names).await, ids_a);
    let ids_c = ids_by_name(&proxy_c, "app", &names).await;
    for (name, id) in &ids_c {
        assert!(is_endpoint_id(id), "{ids_c:?}");
        assert_ne!(id, &ids_a[name], "another key gave {name} the same id");
    }

    // 100 cookies from proxy A.
    let client = client::client();
    let mut issued = Vec::new();
    for i in 0..100 {
        let reply = get(&client, listen_a, "/app", None).await;
        let who = served_by(&reply, &format!("new client {i} on A"));
        let value = set_value(&reply, "SRV").unwrap_or_else(|| panic!("no SRV cookie: {reply:?}"));
        assert_eq!(value, ids_a[&who], "A's cookie for {who}");
        issued.push((who, value));
    }
    let spread: BTreeSet<&str> = issued.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(spread.len(), 3, "100 new clients on {spread:?}");

    // Proxy B, same key: same endpoints, same cookie.
    for (who, value) in &issued {
        let cookie = format!("SRV={value}");
        let reply = get(&client, listen_b, "/app", Some(&cookie)).await;
        assert_eq!(served_by(&reply, "A's cookie on B"), *who, "{cookie} on B");
        assert_eq!(
            set_value(&reply, "SRV").as_ref(),
            Some(value),
            "{cookie} on B"
        );
    }
    let b_counts = counters(&proxy_b, "app").await;
    assert_eq!(
        b_counts,
        Counters {
            kept: 100,
            ..Counters::default()
        }
    );

    // Proxy A restarted (a new process, the same key file and address).
    drop(proxy_a);
    let proxy_a = ProxyProcess::start_with(&table_at(listen_a), shared.options())
        .await
        .unwrap();
    assert_eq!(ids_by_name(&proxy_a, "app", &names).await, ids_a);
    let fresh = client::client();
    for (who, value) in &issued {
        let cookie = format!("SRV={value}");
        let reply = get(&fresh, listen_a, "/app", Some(&cookie)).await;
        assert_eq!(
            served_by(&reply, "cookie on restarted A"),
            *who,
            "{cookie} on A restarted"
        );
    }
    assert_eq!(counters(&proxy_a, "app").await.kept, 100);

    // Proxy D, rotating: a new first key, the shared one second.
    let rotated = KeyFile::new(&["sluice-e2e-rotated-session-key-5555555555", KEY]);
    let listen_d = free_addr().unwrap();
    let proxy_d = ProxyProcess::start_with(&table_at(listen_d), rotated.options())
        .await
        .unwrap();
    let ids_d = ids_by_name(&proxy_d, "app", &names).await;
    for (name, id) in &ids_d {
        assert_ne!(id, &ids_a[name], "the first key of D should sign");
    }
    for (who, value) in &issued {
        let cookie = format!("SRV={value}");
        let reply = get(&client, listen_d, "/app", Some(&cookie)).await;
        assert_eq!(served_by(&reply, "old key on D"), *who, "{cookie} on D");
        assert_eq!(
            set_value(&reply, "SRV").as_ref(),
            Some(&ids_d[who]),
            "{cookie} on D: re-issued with the first key"
        );
    }
    assert_eq!(
        counters(&proxy_d, "app").await,
        Counters {
            kept: 100,
            ..Counters::default()
        }
    );

    // Proxy C, another key: every cookie rejected, balanced, re-issued.
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for (who, value) in &issued {
        let cookie = format!("SRV={value}");
        let reply = get(&client, listen_c, "/app", Some(&cookie)).await;
        let now = served_by(&reply, "A's cookie on C");
        assert_eq!(
            set_value(&reply, "SRV").as_ref(),
            Some(&ids_c[&now]),
            "{cookie} (from {who}) on C answered by {now}"
        );
        *landed.entry(now).or_default() += 1;
    }
    eprintln!("100 cookies of another key on C landed on {landed:?}");
    assert!(
        landed.len() == 3 && landed.values().all(|&n| n >= 20),
        "rejected cookies should be balanced normally: {landed:?}"
    );
    assert_eq!(
        counters(&proxy_c, "app").await,
        Counters {
            rejected: 100,
            ..Counters::default()
        }
    );
}

// ---------------------------------------------------------------------------
// Bad cookies

/// Flips the character at `at` to another URL-safe base64 character.
fn flip(value: &str, at: usize) -> String {
    value
        .char_indices()
        .map(|(i, ch)| match (i == at, ch) {
            (false, ch) => ch,
            (true, 'A') => 'B',
            (true, _) => 'A',
        })
        .collect()
}

/// No cookie is ever a proxy error: one character flipped (first, middle, last),
/// truncated, one character too many, empty, not base64, 4 KiB long, or valid but
/// for another backend of the same proxy (same endpoint addresses) all get a 200,
/// normal balancing and a fresh valid cookie, and count as `rejected`. Also the
/// admin's shape: `sticky` and `cookie_id` are null on a backend without
/// stickiness, ids are per backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_cookie_is_never_an_error_and_gets_a_fresh_one() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name(), b.addr)).collect();
    let eps = endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>());
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            ("app", backend_yaml("app", &eps, &[SRV])),
            ("other", backend_yaml("other", &eps, &[SRV])),
            ("plain", backend_yaml("plain", &eps, &[])),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();

    // Admin shape.
    let app = backend_status(&proxy, "app").await;
    assert_eq!(app["sticky"]["cookie"], "SRV", "{app}");
    assert_eq!(app["sticky"]["mode"], "insert", "{app}");
    assert_eq!(counters(&proxy, "app").await, Counters::default());
    let plain = backend_status(&proxy, "plain").await;
    assert!(plain["sticky"].is_null(), "{plain}");
    for e in plain["endpoints"].as_array().unwrap() {
        assert!(e["cookie_id"].is_null(), "{plain}");
    }
    let ids = ids_by_name(&proxy, "app", &names).await;
    let other_ids = ids_by_name(&proxy, "other", &names).await;
    for (name, id) in &ids {
        assert!(is_endpoint_id(id), "{ids:?}");
        assert!(is_endpoint_id(&other_ids[name]), "{other_ids:?}");
        assert_ne!(id, &other_ids[name], "{name}: one id for two backends");
    }

    let client = client::client();
    // The control: a valid cookie for a is kept.
    let valid = ids["a"].clone();
    for _ in 0..3 {
        let reply = get(&client, listen, "/app", Some(&format!("SRV={valid}"))).await;
        assert_eq!(served_by(&reply, "valid cookie"), "a");
    }
    assert_eq!(counters(&proxy, "app").await.kept, 3);

    let tampered = [
        ("first character flipped", flip(&valid, 0)),
        ("middle character flipped", flip(&valid, ID_LEN / 2)),
        ("last character flipped", flip(&valid, ID_LEN - 1)),
        ("truncated to 11", valid[..ID_LEN - 1].to_owned()),
        ("truncated to 6", valid[..6].to_owned()),
        ("one character more", format!("{valid}A")),
        ("empty", String::new()),
        ("not base64", "%%not*base64!!".to_owned()),
        ("4 KiB", "A".repeat(4096)),
        ("another backend's id", other_ids["a"].clone()),
    ];
    let rounds = 3;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for (what, value) in &tampered {
        for round in 0..rounds {
            let cookie = format!("SRV={value}");
            let reply = get(&client, listen, "/app", Some(&cookie)).await;
            let who = served_by(&reply, &format!("{what} (round {round})"));
            let fresh = set_value(&reply, "SRV")
                .unwrap_or_else(|| panic!("{what}: no fresh cookie: {reply:?}"));
            assert_eq!(fresh, ids[&who], "{what}: the fresh cookie names {who}");
            *landed.entry(who).or_default() += 1;
        }
    }
    let total = tampered.len() * rounds;
    eprintln!("{total} requests with tampered cookies landed on {landed:?}");
    assert!(
        landed.len() == 3 && landed.values().all(|&n| n >= total / 6),
        "tampered cookies should be balanced normally: {landed:?}"
    );
    assert_eq!(
        counters(&proxy, "app").await,
        Counters {
            kept: 3,
            rejected: total as u64,
            ..Counters::default()
        }
    );
}

// ---------------------------------------------------------------------------
// Insert mode: indirect, attributes

/// `indirect`: the backend never sees our cookie, while other cookies of the same
/// header arrive unchanged; a client whose cookie is valid for the endpoint that
/// answers gets no `Set-Cookie`, one without or with a bad cookie does; the
/// backend's own `SRV` cookie is removed, its other cookies pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indirect_cookies_never_reach_the_backend_and_are_not_set_again() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name(), b.addr)).collect();
    let eps = endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>());
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[(
            "app",
            backend_yaml(
                "app",
                &eps,
                &["sticky: {cookie: {name: SRV, indirect: true}}"],
            ),
        )],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let ids = ids_by_name(&proxy, "app", &names).await;
    let client = client::client();

    // No cookie: one is set, the backend sees no Cookie header.
    let reply = get(&client, listen, "/app?echo", None).await;
    let who = served_by(&reply, "first request");
    assert_eq!(set_value(&reply, "SRV").as_ref(), Some(&ids[&who]));
    assert_eq!(echoed_cookie_pairs(&reply), Vec::<String>::new());

    // With the cookie, wherever it sits in the header.
    let v = &ids[&who];
    let cases = [
        (format!("SRV={v}"), vec![]),
        (
            format!("other=1; SRV={v}; third=x"),
            vec!["other=1", "third=x"],
        ),
        (format!("SRV={v}; other=1"), vec!["other=1"]),
        (format!("other=1; SRV={v}"), vec!["other=1"]),
    ];
    for (cookie, expected) in &cases {
        for _ in 0..2 {
            let reply = get(&client, listen, "/app?echo", Some(cookie)).await;
            assert_eq!(served_by(&reply, cookie), who, "Cookie: {cookie}");
            assert_eq!(
                echoed_cookie_pairs(&reply),
                *expected,
                "Cookie: {cookie}: what the backend saw"
            );
            assert!(
                set_cookies(&reply, "SRV").is_empty(),
                "Cookie: {cookie}: valid, so not set again"
            );
        }
    }

    // A valid cookie for each endpoint goes there and is not set again.
    for (name, id) in &ids {
        let reply = get(&client, listen, "/app", Some(&format!("SRV={id}"))).await;
        assert_eq!(served_by(&reply, name), *name);
        assert!(set_cookies(&reply, "SRV").is_empty(), "cookie for {name}");
    }

    // A bad cookie: balanced, set, and still hidden from the backend.
    let bad = format!("other=1; SRV={}", flip(v, 3));
    let reply = get(&client, listen, "/app?echo", Some(&bad)).await;
    let now = served_by(&reply, "bad cookie");
    assert_eq!(set_value(&reply, "SRV").as_ref(), Some(&ids[&now]), "{bad}");
    assert_eq!(echoed_cookie_pairs(&reply), vec!["other=1"], "{bad}");

    // The backend's own SRV cookie is removed; its other cookies pass.
    let path = format!(
        "/app?{}&{}",
        set_cookie_param("SRV=from-backend; Path=/"),
        set_cookie_param("app=1; Path=/")
    );
    let reply = get(&client, listen, &path, Some(&format!("SRV={v}"))).await;
    assert_eq!(served_by(&reply, &path), who);
    assert!(
        set_cookies(&reply, "SRV").is_empty(),
        "valid cookie: {reply:?}"
    );
    assert_eq!(
        set_cookie(&reply, "app").map(|c| (c.value, c.attributes)),
        Some(("1".to_owned(), vec!["Path=/".to_owned()]))
    );
    let reply = get(&client, listen, &path, None).await;
    let now = served_by(&reply, &path);
    assert_eq!(
        set_value(&reply, "SRV").as_ref(),
        Some(&ids[&now]),
        "no cookie: ours, not the backend's"
    );
    assert!(set_cookie(&reply, "app").is_some(), "{reply:?}");
}

/// The inserted cookie's attributes: `Path=/; HttpOnly` by default; `Domain`,
/// `Secure`, `SameSite` and another path when configured, and `nocache` adds
/// `Cache-Control: private`; `http_only: false` drops `HttpOnly`. Without
/// `indirect` every response sets it, and a backend's own `SRV` is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserted_cookies_carry_the_configured_attributes() {
    let _shared = LOAD.read().await;
    let [a] = start_backends(["a"]).await;
    let eps = endpoints(&[a.addr]);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            ("plain", backend_yaml("plain", &eps, &[SRV])),
            (
                "attrs",
                backend_yaml(
                    "attrs",
                    &eps,
                    &["sticky: {cookie: {name: SRV, nocache: true, secure: true, \
                       same_site: lax, domain: example.com, path: /attrs}}"],
                ),
            ),
            (
                "script",
                backend_yaml(
                    "script",
                    &eps,
                    &["sticky: {cookie: {name: SRV, http_only: false, same_site: strict}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let cases = [
        ("plain", vec!["httponly", "path=/"], false),
        (
            "attrs",
            vec![
                "domain=example.com",
                "httponly",
                "path=/attrs",
                "samesite=Lax",
                "secure",
            ],
            true,
        ),
        ("script", vec!["path=/", "samesite=Strict"], false),
    ];
    for (id, attributes, private) in cases {
        let cookie_id = cookie_ids(&proxy, id).await[&a.addr.to_string()].clone();
        for cookie in [None, Some(format!("SRV={cookie_id}"))] {
            let reply = get(&client, listen, &format!("/{id}"), cookie.as_deref()).await;
            served_by(&reply, id);
            let set = set_cookie(&reply, "SRV")
                .unwrap_or_else(|| panic!("/{id} with {cookie:?}: no SRV cookie: {reply:?}"));
            assert_eq!(set.value, cookie_id, "/{id}");
            assert_eq!(set.normalized_attributes(), attributes, "/{id}: {set:?}");
            let cache = reply
                .headers
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .map(|v| v.to_str().unwrap().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(cache.contains("private"), private, "/{id}: {cache:?}");
        }
    }

    // The backend's own SRV is replaced by ours; its other cookies pass.
    let path = format!(
        "/plain?{}&{}",
        set_cookie_param("SRV=from-backend; Path=/"),
        set_cookie_param("app=1; Path=/")
    );
    let reply = get(&client, listen, &path, None).await;
    served_by(&reply, &path);
    let all = set_cookies(&reply, "SRV");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(is_endpoint_id(&all[0].value), "{all:?}");
    assert!(set_cookie(&reply, "app").is_some(), "{reply:?}");
}

// ---------------------------------------------------------------------------
// Prefix and rewrite modes

/// Prefix mode: the application's `JSESSIONID=sessN; Path=/app` reaches the client
/// as `JSESSIONID=<id>~sessN; Path=/app`; sending that back lands on the same
/// endpoint and the application sees exactly `JSESSIONID=sessN`. Rewrite mode: the
/// application's `SRV=anything; <attributes>` reaches the client as `SRV=<id>;
/// <same attributes>` and pins it. Neither mode sets a cookie the application
/// did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_rewrite_modes_keep_the_applications_cookie() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name(), b.addr)).collect();
    let eps = endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>());
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            (
                "app",
                backend_yaml(
                    "app",
                    &eps,
                    &["sticky: {cookie: {name: JSESSIONID, mode: prefix}}"],
                ),
            ),
            (
                "rw",
                backend_yaml(
                    "rw",
                    &eps,
                    &["sticky: {cookie: {name: SRV, mode: rewrite}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let app_ids = ids_by_name(&proxy, "app", &names).await;
    let rw_ids = ids_by_name(&proxy, "rw", &names).await;
    assert_eq!(
        backend_status(&proxy, "app").await["sticky"]["mode"],
        "prefix"
    );
    assert_eq!(
        backend_status(&proxy, "rw").await["sticky"]["mode"],
        "rewrite"
    );
    let client = client::client();

    // No application cookie: nothing set.
    for path in ["/app", "/rw"] {
        for _ in 0..3 {
            let reply = get(&client, listen, path, None).await;
            served_by(&reply, path);
            assert_eq!(
                reply
                    .headers
                    .get_all(http::header::SET_COOKIE)
                    .iter()
                    .count(),
                0,
                "{path}: {reply:?}"
            );
        }
    }

    const SESSIONS: usize = 6;
    let mut used = BTreeSet::new();
    for i in 0..SESSIONS {
        let session = format!("sess{i}");
        let path = format!(
            "/app?{}",
            set_cookie_param(&format!("JSESSIONID={session}; Path=/app"))
        );
        let reply = get(&client, listen, &path, None).await;
        let who = served_by(&reply, &path);
        let set = set_cookie(&reply, "JSESSIONID").unwrap_or_else(|| panic!("{reply:?}"));
        assert_eq!(set.value, format!("{}~{session}", app_ids[&who]), "{set:?}");
        assert_eq!(set.attributes, vec!["Path=/app"], "{set:?}");
        used.insert(who.clone());
        let cookie = format!("JSESSIONID={}; other=1", set.value);
        for _ in 0..4 {
            let reply = get(&client, listen, "/app?echo", Some(&cookie)).await;
            assert_eq!(served_by(&reply, &cookie), who, "Cookie: {cookie}");
            assert_eq!(
                echoed_cookie_pairs(&reply),
                vec![format!("JSESSIONID={session}"), "other=1".to_owned()],
                "Cookie: {cookie}: what the application saw"
            );
            assert!(set_cookies(&reply, "JSESSIONID").is_empty(), "{cookie}");
        }
    }
    assert!(used.len() >= 2, "{SESSIONS} sessions all on {used:?}");

    let mut used = BTreeSet::new();
    for i in 0..SESSIONS {
        let path = format!(
            "/rw?{}",
            set_cookie_param(&format!("SRV=whatever{i}; Path=/; Max-Age=3600"))
        );
        let reply = get(&client, listen, &path, None).await;
        let who = served_by(&reply, &path);
        let set = set_cookie(&reply, "SRV").unwrap_or_else(|| panic!("{reply:?}"));
        assert_eq!(set.value, rw_ids[&who], "{set:?}");
        assert_eq!(set.attributes, vec!["Path=/", "Max-Age=3600"], "{set:?}");
        used.insert(who.clone());
        let cookie = format!("SRV={}", set.value);
        for _ in 0..4 {
            let reply = get(&client, listen, "/rw", Some(&cookie)).await;
            assert_eq!(served_by(&reply, &cookie), who, "Cookie: {cookie}");
        }
    }
    assert!(used.len() >= 2, "{SESSIONS} sessions all on {used:?}");
    assert_eq!(counters(&proxy, "app").await.kept, (SESSIONS * 4) as u64);
    assert_eq!(counters(&proxy, "rw").await.kept, (SESSIONS * 4) as u64);
}

// ---------------------------------------------------------------------------
// Draining, failing, algorithms

/// Weight 0 by a hot reload drains an endpoint: clients pinned to it keep reaching
/// it, 100 new clients never do (and stay where they were put); the others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_endpoint_keeps_its_sessions_and_takes_no_new_ones() {
    let _shared = LOAD.read().await;
    let [a, b, c] = start_backends(["a", "b", "c"]).await;
    let listen = free_addr().unwrap();
    let table_with = |c_weight: u32| {
        let eps = format!(
            "[{{address: {}}}, {{address: {}}}, {{address: {}, weight: {c_weight}}}]",
            a.addr, b.addr, c.addr
        );
        table(listen, &[("app", backend_yaml("app", &eps, &[SRV]))])
    };
    let proxy = ProxyProcess::start(&table_with(1)).await.unwrap();
    let client = client::client();

    let mut pinned: Vec<(String, String)> = Vec::new();
    for i in 0..30 {
        let reply = get(&client, listen, "/app", None).await;
        let who = served_by(&reply, &format!("client {i}"));
        pinned.push((format!("SRV={}", set_value(&reply, "SRV").unwrap()), who));
    }
    let on_c = pinned.iter().filter(|(_, w)| w == "c").count();
    assert!(on_c >= 5, "only {on_c} of 30 new clients on c");

    proxy.rewrite(&table_with(0)).unwrap();
    let c_addr = c.addr.to_string();
    eventually("c drained", Duration::from_secs(5), || async {
        let app = backend_status(&proxy, "app").await;
        let drained = app["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["address"] == c_addr.as_str() && e["weight"] == 0);
        drained.then_some(())
    })
    .await
    .unwrap();

    let c_before = c.requests();
    for (cookie, who) in &pinned {
        for _ in 0..5 {
            let reply = get(&client, listen, "/app", Some(cookie)).await;
            assert_eq!(served_by(&reply, cookie), *who, "{cookie} after the drain");
        }
    }
    assert_eq!(c.requests() - c_before, on_c * 5);

    let c_before = c.requests();
    for i in 0..100 {
        let reply = get(&client, listen, "/app", None).await;
        let who = served_by(&reply, &format!("new client {i}"));
        assert_ne!(who, "c", "new client {i} sent to the drained endpoint");
        let cookie = format!("SRV={}", set_value(&reply, "SRV").unwrap());
        let again = get(&client, listen, "/app", Some(&cookie)).await;
        assert_eq!(served_by(&again, &cookie), who, "new client {i}");
    }
    assert_eq!(c.requests(), c_before, "new clients reached the drained c");
}

/// Backends `fail` (`if_unavailable: fail`) and `redisp` (the default, with
/// `indirect`) over three backend processes, optionally health-checked.
async fn pinned_to_a_dead_endpoint(
    health_check: bool,
) -> (ProxyProcess, SocketAddr, [BackendProcess; 3]) {
    let a = BackendProcess::start(BACKEND_BINARY, "a").await.unwrap();
    let b = BackendProcess::start(BACKEND_BINARY, "b").await.unwrap();
    let c = BackendProcess::start(BACKEND_BINARY, "c").await.unwrap();
    let eps = endpoints(&[a.addr, b.addr, c.addr]);
    let check = format!("health_check: {}", health_check_yaml());
    let with_check = |sticky: &'static str| {
        let mut settings = vec![sticky];
        if health_check {
            settings.push(&check);
        }
        settings
    };
    let listen = free_addr().unwrap();
    let fail = with_check("sticky: {cookie: {name: SRV, if_unavailable: fail}}");
    let redisp = with_check("sticky: {cookie: {name: SRV, indirect: true}}");
    let yaml = table(
        listen,
        &[
            ("fail", backend_yaml("fail", &eps, &fail)),
            ("redisp", backend_yaml("redisp", &eps, &redisp)),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    (proxy, listen, [a, b, c])
}

/// Endpoint `c` is dead (SIGKILLed): on `fail` its client gets 503
/// three times while the clients of `a` and `b` get 200 from them; on `redisp`
/// its client is balanced to a live endpoint and re-pinned there.
async fn dead_c_answers(
    proxy: &ProxyProcess,
    listen: SocketAddr,
    names: &[(&str, SocketAddr)],
    phase: &str,
) {
    let fail_ids = ids_by_name(proxy, "fail", names).await;
    let redisp_ids = ids_by_name(proxy, "redisp", names).await;
    let client = client::client();
    let c_cookie = format!("SRV={}", fail_ids["c"]);
    for i in 0..3 {
        let reply = get(&client, listen, "/fail", Some(&c_cookie)).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{phase}: request {i} of the client of dead c with if_unavailable: fail: {reply:?}"
        );
    }
    for name in ["a", "b"] {
        let cookie = format!("SRV={}", fail_ids[name]);
        let reply = get(&client, listen, "/fail", Some(&cookie)).await;
        assert_eq!(served_by(&reply, phase), name, "{phase}");
    }
    let cookie = format!("SRV={}", redisp_ids["c"]);
    let reply = get(&client, listen, "/redisp", Some(&cookie)).await;
    let now = served_by(&reply, phase);
    assert_ne!(now, "c");
    assert_eq!(
        set_value(&reply, "SRV").as_ref(),
        Some(&redisp_ids[&now]),
        "{phase}: the redispatched client is re-pinned"
    );
}

/// `if_unavailable: fail`, endpoint down by checks: the client of a SIGKILLed
/// endpoint gets 503 while the other clients and new ones get 200; the same
/// cookie on a redispatching `indirect` backend is re-pinned with a new
/// `Set-Cookie` and counts as `moved`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_unavailable_fail_answers_503_once_checks_take_the_pinned_endpoint_down() {
    let _shared = LOAD.read().await;
    let (proxy, listen, [a, b, mut c]) = pinned_to_a_dead_endpoint(true).await;
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let fail_ids = ids_by_name(&proxy, "fail", &names).await;
    let client = client::client();
    for (name, id) in &fail_ids {
        let reply = get(&client, listen, "/fail", Some(&format!("SRV={id}"))).await;
        assert_eq!(served_by(&reply, name), *name, "before the kill");
    }

    c.kill().unwrap();
    let c_addr = c.addr.to_string();
    wait_up(&proxy, "fail", &c_addr, false, Duration::from_secs(5)).await;
    wait_up(&proxy, "redisp", &c_addr, false, Duration::from_secs(5)).await;
    dead_c_answers(&proxy, listen, &names, "down by checks").await;
    for i in 0..6 {
        let reply = get(&client, listen, "/fail", None).await;
        assert_ne!(served_by(&reply, &format!("new client {i}")), "c");
    }
    assert_eq!(
        counters(&proxy, "redisp").await,
        Counters {
            moved: 1,
            ..Counters::default()
        }
    );
}

/// `if_unavailable: fail` without checks: the pinned endpoint only refuses
/// connections (SIGKILLed), and its client still gets 503 (retries stay on it),
/// while the others get 200; a redispatching backend re-pins the same cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_unavailable_fail_answers_503_while_the_pinned_endpoint_refuses_connections() {
    let _shared = LOAD.read().await;
    let (proxy, listen, [a, b, mut c]) = pinned_to_a_dead_endpoint(false).await;
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    c.kill().unwrap();
    dead_c_answers(&proxy, listen, &names, "refusing connections").await;
}

/// A valid cookie wins over any algorithm: header hashing sends each of 12 users
/// to the endpoint of their cookie (and without it spreads them), `first` sends
/// a client with a cookie for the third endpoint there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_wins_over_the_balancing_algorithm() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name(), b.addr)).collect();
    let eps = endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>());
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            (
                "hash",
                backend_yaml("hash", &eps, &[SRV, "balance: {header: {name: x-user}}"]),
            ),
            (
                "first",
                backend_yaml("first", &eps, &[SRV, "balance: first"]),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let hash_ids = ids_by_name(&proxy, "hash", &names).await;
    let first_ids = ids_by_name(&proxy, "first", &names).await;
    let client = client::client();
    let users: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();

    let mut by_hash = BTreeSet::new();
    for user in &users {
        let req = request(Method::GET, listen, None, "/hash", &[("x-user", user)], "");
        by_hash.insert(served_by(&send(&client, req).await.unwrap(), user));
    }
    assert!(by_hash.len() >= 2, "12 users all hashed to {by_hash:?}");
    for (name, id) in &hash_ids {
        let cookie = format!("SRV={id}");
        for user in &users {
            let headers = [("x-user", user.as_str()), ("cookie", cookie.as_str())];
            let req = request(Method::GET, listen, None, "/hash", &headers, "");
            let reply = send(&client, req).await.unwrap();
            assert_eq!(served_by(&reply, user), *name, "{user} with {cookie}");
        }
    }

    let reply = get(&client, listen, "/first", None).await;
    assert_eq!(served_by(&reply, "/first"), "a");
    for _ in 0..3 {
        let cookie = format!("SRV={}", first_ids["c"]);
        let reply = get(&client, listen, "/first", Some(&cookie)).await;
        assert_eq!(served_by(&reply, &cookie), "c");
    }
}

// ---------------------------------------------------------------------------
// max_idle, max_life

/// Timestamped cookies (36 characters; the proxy's timestamps count whole
/// seconds): with `max_idle: 1s` a cookie reused after 2.5 s is rejected and
/// re-issued; with `max_idle: 3s` a client coming back every second for 5 s stays
/// (each response refreshes the idle timestamp); with `max_life: 2s` the same
/// refreshing client is rejected once 2 s have passed since the first cookie (but
/// not within the first second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_idle_and_max_life_expire_cookies() {
    let _shared = LOAD.read().await;
    let backends = start_backends(["a", "b", "c"]).await;
    let eps = endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>());
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            (
                "idle1",
                backend_yaml(
                    "idle1",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_idle: 1s}}"],
                ),
            ),
            (
                "idle3",
                backend_yaml(
                    "idle3",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_idle: 3s}}"],
                ),
            ),
            (
                "life2",
                backend_yaml(
                    "life2",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_life: 2s}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let issue = |path: &'static str, cookie: Option<String>| {
        let client = client.clone();
        async move {
            let reply = get(&client, listen, path, cookie.as_deref()).await;
            let who = served_by(&reply, path);
            let value = set_value(&reply, "SRV")
                .unwrap_or_else(|| panic!("{path}: no SRV cookie: {reply:?}"));
            assert!(
                value.len() == TIMESTAMPED_LEN && is_url_safe_base64(&value),
                "{path}: {value:?} is not a timestamped cookie value"
            );
            (who, format!("SRV={value}"))
        }
    };

    let idle1 = async {
        let (_, cookie) = issue("/idle1", None).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let (_, again) = issue("/idle1", Some(cookie.clone())).await;
        assert_ne!(again, cookie, "an expired cookie was not re-issued");
        assert_eq!(
            counters(&proxy, "idle1").await,
            Counters {
                new: 1,
                rejected: 1,
                ..Counters::default()
            },
            "a cookie idle for 2.5 s with max_idle 1s"
        );
    };

    let idle3 = async {
        let (first, mut cookie) = issue("/idle3", None).await;
        let started = Instant::now();
        for k in 1..=5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (who, next) = issue("/idle3", Some(cookie)).await;
            assert_eq!(who, first, "request {k}, {:?} in", started.elapsed());
            cookie = next;
        }
        assert_eq!(
            counters(&proxy, "idle3").await,
            Counters {
                new: 1,
                kept: 5,
                ..Counters::default()
            },
            "a cookie used every second for {:?} with max_idle 3s",
            started.elapsed()
        );
    };

    let life2 = async {
        let sent = Instant::now();
        let (_, mut cookie) = issue("/life2", None).await;
        let received = Instant::now();
        let mut rejected_at = None;
        while received.elapsed() < Duration::from_millis(3_200) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (_, next) = issue("/life2", Some(cookie)).await;
            let answered = sent.elapsed();
            cookie = next;
            if counters(&proxy, "life2").await.rejected > 0 {
                rejected_at = Some(answered);
                break;
            }
        }
        eprintln!("max_life 2s: a refreshed cookie was rejected {rejected_at:?} after issue");
        let at = rejected_at.expect("a cookie older than max_life 2s was still kept");
        assert!(
            at >= Duration::from_secs(1),
            "rejected only {at:?} after issue"
        );
    };

    tokio::join!(idle1, idle3, life2);
}
