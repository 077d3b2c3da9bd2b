//! Database health checks against real servers (PostgreSQL, MariaDB, Redis, as
//! Debian packages them; see `sluice_e2e::databases`): a server that answers its
//! protocol is up with `L7OK`; stopped, it is taken out within interval × fall +
//! timeout; started again on its port, it is back within interval × rise. Wrong
//! credentials keep an endpoint out with `L7RSP`.
//!
//! Each test runs its own server and proxy on their own ports and directories.
//! Without a server installed the test is skipped with a notice, except under
//! `CI=true` (`.ci/run` installs them).

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use sluice_e2e::balancing::listener;
use sluice_e2e::databases::{DbServer, MYSQL_USER};
use sluice_e2e::{ProxyProcess, free_addr};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(500);
const RISE: u32 = 2;
const FALL: u32 = 2;
/// On top of the bounds: the admin output is polled every 10 ms over a fresh
/// connection, and two cores are shared with the servers and other tests.
const SLACK: Duration = Duration::from_millis(300);
/// How long any one state change may take before the test gives up waiting.
const PATIENCE: Duration = Duration::from_secs(20);

fn health_check(probe: &str) -> String {
    format!(
        "{{probe: {probe}, interval: {}ms, rise: {RISE}, fall: {FALL}, timeout: {}ms}}",
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    )
}

/// One backend per `(id, probe)`, each with the server as its only endpoint, all
/// routed (`/<id>`) from one HTTP listener.
fn table(listen: SocketAddr, server: SocketAddr, probes: &[(&str, &str)]) -> String {
    let ids: Vec<&str> = probes.iter().map(|(id, _)| *id).collect();
    let mut yaml = listener(listen, &ids);
    yaml.push_str("backends:\n");
    for (id, probe) in probes {
        yaml.push_str(&format!(
            "  {id}:\n    health_check: {}\n    endpoints: [{{address: {server}}}]\n",
            health_check(probe)
        ));
    }
    yaml
}

/// The endpoint `address` of each backend, from `/debug/backends`.
async fn endpoints(proxy: &ProxyProcess, address: SocketAddr) -> BTreeMap<String, Value> {
    let (status, body) = proxy.admin_get("/debug/backends").await.unwrap();
    assert_eq!(status, 200, "/debug/backends: {body}");
    let backends: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/debug/backends is not JSON ({e}): {body}"));
    let mut out = BTreeMap::new();
    for backend in backends.as_array().expect("an array of backends") {
        let id = backend["id"].as_str().expect("a backend id").to_owned();
        let endpoint = backend["endpoints"]
            .as_array()
            .expect("an array of endpoints")
            .iter()
            .find(|e| e["address"] == address.to_string())
            .unwrap_or_else(|| panic!("backend {id} has no endpoint {address}: {body}"));
        out.insert(id, endpoint.clone());
    }
    out
}

fn is_up(endpoint: &Value) -> bool {
    endpoint["up"]
        .as_bool()
        .unwrap_or_else(|| panic!("no `up` in {endpoint}"))
}

fn code(endpoint: &Value) -> &str {
    endpoint["check"]["code"].as_str().unwrap_or("(none)")
}

/// Polls until every backend of `ids` satisfies `want`; returns, per backend, how
/// long after `since` it first did, and its endpoint at that moment.
async fn wait_each(
    proxy: &ProxyProcess,
    address: SocketAddr,
    ids: &[&str],
    what: &str,
    since: Instant,
    want: impl Fn(&Value) -> bool,
) -> BTreeMap<String, (Duration, Value)> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = BTreeMap::new();
    loop {
        let now = endpoints(proxy, address).await;
        let elapsed = since.elapsed();
        for id in ids {
            let endpoint = now
                .get(*id)
                .unwrap_or_else(|| panic!("no backend {id} in {now:?}"));
            if !seen.contains_key(*id) && want(endpoint) {
                seen.insert((*id).to_owned(), (elapsed, endpoint.clone()));
            }
        }
        if seen.len() == ids.len() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "after {PATIENCE:?}, not every one of {ids:?} is {what}; seen {seen:?}; now {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn up_and_passing(endpoint: &Value) -> bool {
    is_up(endpoint) && code(endpoint) == "L7OK"
}

/// The whole story for backends whose check should pass against `server`
/// (`passing`) and those whose check should fail against it (`failing`, with the
/// code it should fail with): up with L7OK / down; the server stops: all down
/// within interval × fall + timeout; it starts again: the passing ones up within
/// interval × rise, the failing ones still down, never up in between. Returns
/// the proxy, still running.
async fn check_story(
    label: &str,
    server: &mut DbServer,
    probe_name: &str,
    passing: &[(&str, &str)],
    failing: &[(&str, &str, &str)],
) -> ProxyProcess {
    let listen = free_addr().unwrap();
    let mut probes: Vec<(&str, &str)> = passing.to_vec();
    probes.extend(failing.iter().map(|(id, probe, _)| (*id, *probe)));
    let yaml = table(listen, server.addr, &probes);
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let addr = server.addr;
    let pass_ids: Vec<&str> = passing.iter().map(|(id, _)| *id).collect();
    let fail_ids: Vec<&str> = failing.iter().map(|(id, _, _)| *id).collect();

    // (a) Up, by a check that passed at the application layer.
    let started = Instant::now();
    let up = wait_each(&proxy, addr, &pass_ids, "up with L7OK", started, |e| {
        up_and_passing(e) && e["check"]["checks"].as_u64() >= Some(u64::from(RISE))
    })
    .await;
    for (id, (_, endpoint)) in &up {
        let check = &endpoint["check"];
        eprintln!("{label}: {id} up: {check}");
        assert_eq!(check["probe"], probe_name, "{id}: {check}");
        assert!(
            check["last"]
                .as_str()
                .is_some_and(|l| l.starts_with("L7OK")),
            "{id}: {check}"
        );
        assert_eq!(check["failures"], 0, "{id} failed a check: {check}");
    }
    // Wrong credentials: the endpoint starts up (the default initial state) and
    // is taken out by `fall` failed checks.
    let refused = wait_each(&proxy, addr, &fail_ids, "down", started, |e| !is_up(e)).await;
    for (id, _, expected) in failing {
        let (after, endpoint) = &refused[*id];
        let check = &endpoint["check"];
        eprintln!("{label}: {id} down after {after:?}: {check}");
        assert_eq!(code(endpoint), *expected, "{id}: {check}");
        assert!(
            check["last"]
                .as_str()
                .is_some_and(|l| l.starts_with(expected)),
            "{id}: {check}"
        );
    }
    // The passing ones are still up: they did not flap meanwhile.
    let now = endpoints(&proxy, addr).await;
    for id in &pass_ids {
        assert!(up_and_passing(&now[*id]), "{id}: {}", now[*id]);
        assert_eq!(now[*id]["check"]["downs"], 0, "{id}: {}", now[*id]);
    }

    // (b) The server stops: out within interval × fall + timeout.
    let shutdown = server.stop().await.unwrap();
    let stopped = Instant::now();
    let down = wait_each(&proxy, addr, &pass_ids, "down", stopped, |e| !is_up(e)).await;
    let down_bound = INTERVAL * FALL + TIMEOUT + SLACK;
    for (id, (after, endpoint)) in &down {
        eprintln!(
            "{label}: {id} down {after:?} after the server exited (shutdown took \
             {shutdown:?}; bound {down_bound:?}): {}",
            endpoint["check"]
        );
        assert_ne!(code(endpoint), "L7OK", "{id} down: {}", endpoint["check"]);
        assert!(
            *after <= down_bound,
            "{label}: {id} taken out {after:?} after the server exited (bound {down_bound:?})"
        );
    }

    // (c) Back on the same port: in again within interval × rise.
    server.start().await.unwrap();
    let serving = Instant::now();
    let back = wait_each(
        &proxy,
        addr,
        &pass_ids,
        "up with L7OK",
        serving,
        up_and_passing,
    )
    .await;
    let up_bound = INTERVAL * RISE + SLACK;
    for (id, (after, endpoint)) in &back {
        eprintln!(
            "{label}: {id} up {after:?} after the server accepted connections again \
             (bound {up_bound:?}): {}",
            endpoint["check"]
        );
        assert!(
            *after <= up_bound,
            "{label}: {id} back {after:?} after the server served again (bound {up_bound:?})"
        );
        // `rise` passes are needed, `interval` apart: the first one may come at
        // once, the second not before an interval later.
        assert!(
            *after + Duration::from_millis(100) >= INTERVAL * (RISE - 1),
            "{label}: {id} back after {after:?}, before {RISE} checks could pass"
        );
    }

    // The failing ones fail again against the restarted server, having never
    // been up since they were first taken out (one down, no second).
    let again = wait_each(&proxy, addr, &fail_ids, "failing again", serving, |e| {
        e["check"]["last"]
            .as_str()
            .is_some_and(|l| !l.starts_with("L4"))
    })
    .await;
    for (id, _, expected) in failing {
        let endpoint = &again[*id].1;
        assert!(!is_up(endpoint), "{id}: {endpoint}");
        assert_eq!(code(endpoint), *expected, "{id}: {}", endpoint["check"]);
        assert_eq!(endpoint["check"]["downs"], 1, "{id}: {}", endpoint["check"]);
    }
    let now = endpoints(&proxy, addr).await;
    for id in &pass_ids {
        assert_eq!(now[*id]["check"]["downs"], 1, "{id}: {}", now[*id]["check"]);
    }
    proxy
}

/// `pgsql-check`: a startup message answered by an authentication request
/// (the server asks for a SCRAM password, method 10) proves PostgreSQL serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_check_follows_a_real_server() {
    let Some(mut server) = DbServer::postgres().await.unwrap() else {
        return;
    };
    let _proxy = check_story(
        "postgres",
        &mut server,
        "postgres",
        &[("pg", "{postgres: {}}")],
        &[],
    )
    .await;
}

/// `mysql-check`: the greeting alone, and a real login as a user that exists
/// (no password). A login as a user that does not exist is refused (`L7RSP`):
/// the login check does log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_checks_follow_a_real_mariadb() {
    let Some(mut server) = DbServer::mariadb().await.unwrap() else {
        return;
    };
    let login = format!("{{mysql: {{user: {MYSQL_USER}}}}}");
    let _proxy = check_story(
        "mariadb",
        &mut server,
        "mysql",
        &[("greeting", "{mysql: {}}"), ("login", &login)],
        &[("nobody", "{mysql: {user: nobody}}", "L7RSP")],
    )
    .await;
}

/// `redis-check`: `PING` answered by `+PONG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_check_follows_a_real_server() {
    let Some(mut server) = DbServer::redis(None).await.unwrap() else {
        return;
    };
    let _proxy = check_story(
        "redis",
        &mut server,
        "redis",
        &[("cache", "{redis: {}}")],
        &[],
    )
    .await;
}

/// With `requirepass`: `AUTH` with the right password, then `PING`, passes; a
/// wrong password, or none, is refused (`L7RSP`). The password never shows in
/// the admin output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_check_authenticates() {
    const PASSWORD: &str = "e2e-redis-secret";
    let Some(mut server) = DbServer::redis(Some(PASSWORD)).await.unwrap() else {
        return;
    };
    let right = format!("{{redis: {{password: {PASSWORD}}}}}");
    let proxy = check_story(
        "redis+auth",
        &mut server,
        "redis",
        &[("right", &right)],
        &[
            ("wrong", "{redis: {password: not-the-password}}", "L7RSP"),
            ("none", "{redis: {}}", "L7RSP"),
        ],
    )
    .await;
    for path in ["/debug/backends", "/debug/table"] {
        let (status, body) = proxy.admin_get(path).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            body.contains("right") && !body.contains(PASSWORD),
            "{path} shows the password: {body}"
        );
    }
    let logs = proxy.logs();
    assert!(
        !logs.contains(PASSWORD),
        "the log shows the password:\n{logs}"
    );
}

/// The harness itself: each server stops (its port then refuses connections)
/// and starts again on the same port, where it serves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_servers_stop_and_restart_on_their_port() {
    let mut servers = Vec::new();
    servers.extend(DbServer::postgres().await.unwrap());
    servers.extend(DbServer::mariadb().await.unwrap());
    servers.extend(DbServer::redis(Some("x")).await.unwrap());
    for server in &mut servers {
        let name = server.kind().name();
        let took = server.stop().await.unwrap();
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
        let started = Instant::now();
        server.start().await.unwrap();
        eprintln!(
            "{name} on {}: stopped in {took:?}, serving again after {:?}",
            server.addr,
            started.elapsed()
        );
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_ok());
    }
}
