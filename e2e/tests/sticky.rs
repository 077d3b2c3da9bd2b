//! Sticky sessions by cookie (HAProxy's `cookie SRV insert|rewrite|prefix`) against
//! the real binary, where clients are pinned: 1,000 pinned clients through a
//! SIGKILL, cookies shared by proxies with one key file (and key rotation),
//! draining by weight 0, `if_unavailable: fail`, and a cookie winning over the
//! balancing algorithm. The cookie itself (bad values, modes, attributes,
//! expiry) is tested in `sticky_cookies.rs`.
//!
//! Routes are `/<backend id>` prefixes; every test backend answers with its name in
//! `x-backend`, and the admin's `/debug/backends` gives each endpoint's cookie id,
//! so a test knows which endpoint a cookie value names.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, StatusCode};
use sluice_e2e::balancing::{health_check_yaml, start_backends};
use sluice_e2e::client::{self, HttpClient, request, send};
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

// ---------------------------------------------------------------------------
// 1,000 clients through a SIGKILL

const CLIENTS: usize = 1_000;
const PER_PHASE: usize = 10;
const IN_FLIGHT: usize = 100;
/// Into phase 2 (which takes 1.5 s here), so requests are in flight to the victim.
const KILL_AFTER: Duration = Duration::from_millis(300);

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
/// endpoint of the client's first response. 10 more requests each, and 300 ms in
/// one backend is SIGKILLed with requests in flight to it: none fails, the dead
/// endpoint's clients get a new cookie naming a live endpoint with their first
/// response from another endpoint and stay there, no other client moves.
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

    // Phase 2: every client goes on, and `a` is SIGKILLed while they do (with
    // requests in flight to it).
    let victim = "a";
    let victims = clients_of[victim];
    let started = Instant::now();
    let jars = phase1.into_iter().map(|(jar, _)| jar).collect();
    let phase2 = {
        let client = client.clone();
        tokio::spawn(async move { run_clients(&client, listen, jars, PER_PHASE).await })
    };
    tokio::time::sleep(KILL_AFTER).await;
    a.kill().unwrap();
    let phase2 = phase2.await.unwrap();
    let phase2_took = started.elapsed();
    let failed = failures(&phase2);
    let mut wrong = Vec::new();
    let mut re_pinned: BTreeMap<String, usize> = BTreeMap::new();
    // Answers from the victim before it died; the re-pin follows them.
    let mut before_kill = 0;
    let mut finished_before_kill = 0;
    for (i, ((_, answers), origin)) in phase2.iter().zip(&pinned).enumerate() {
        let mut skip = 0;
        let stays_on = if origin == victim {
            while answers.get(skip).is_some_and(|a| {
                a.served_by() == Some(victim) && a.set_cookie.as_ref() == Some(&ids[victim])
            }) {
                skip += 1;
            }
            before_kill += skip;
            let Some(first) = answers.get(skip) else {
                // Every request of this client was done before the kill.
                finished_before_kill += 1;
                continue;
            };
            skip += 1;
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
        "sticky ({label}) phase 2, {victim} SIGKILLed after {KILL_AFTER:?}: {} requests in \
         {phase2_took:?}, {} failed; {before_kill} answered by {victim} before it died, \
         {moved_clients} of {victims} clients of {victim} re-pinned ({re_pinned:?}) and \
         {finished_before_kill} done before the kill, {} requests off their pin",
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
    assert_eq!(moved_clients + finished_before_kill, victims);
    let moved = moved_clients as u64;
    assert!(
        before_kill > 0,
        "{label}: the kill came after every request to {victim}; it should hit mid-phase"
    );

    let got = counters(&proxy, "app").await;
    eprintln!("sticky ({label}) counters: {got:?}");
    let total = (2 * CLIENTS * PER_PHASE) as u64;
    assert_eq!(
        got,
        Counters {
            kept: total - CLIENTS as u64 - moved,
            new: CLIENTS as u64,
            moved,
            rejected: 0,
        },
        "{label}: each client new once, each client of {victim} with a request after the kill \
         moved once, the rest kept"
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
    let names = named(&backends);
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
    let names = named(&backends);
    let eps = endpoints_of(&backends);
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
