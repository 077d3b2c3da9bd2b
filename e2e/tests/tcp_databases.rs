//! Real databases behind a `tcp` listener (issue 9): two PostgreSQL instances
//! balanced by connection (`least_conn`, the TCP default) carry a pgbench run
//! with no failed transaction, both serving; one stops and new connections go
//! to the other without a failure; the `mariadb` client logs in through it.
//! (`redis-benchmark` runs in `tcp_redis.rs`, a binary of its own: it takes
//! a minute or more against the debug build.)
//!
//! Servers and tools are Debian's (`sluice_e2e::databases`, `.ci/run`
//! installs them); without them a test is skipped with a notice, except under
//! `CI=true`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use sluice_e2e::databases::{DbServer, MYSQL_USER, POSTGRES_PASSWORD, postgres_client};
use sluice_e2e::process::raw_get;
use sluice_e2e::tcp::listener_stats;
use sluice_e2e::tools::{Ran, require, run_bounded};
use sluice_e2e::{ProxyProcess, free_addr, health};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(500);
const FALL: u32 = 2;
/// On top of interval × fall + timeout: the admin output is polled between
/// psql runs, and two cores are shared with the servers.
const SLACK: Duration = Duration::from_millis(500);
const PGBENCH_CLIENTS: u32 = 16;
const PGBENCH_SECONDS: u32 = 20;

/// One `tcp` listener in front of one backend `db`; `balance` absent, so the
/// TCP default (least_conn) applies.
fn db_table(listen: SocketAddr, servers: &[SocketAddr], health_check: &str) -> String {
    let endpoints: Vec<String> = servers
        .iter()
        .map(|a| format!("{{address: {a}}}"))
        .collect();
    format!(
        "listeners:
  - tcp: {{name: db, bind: {listen}, backend: db}}
backends:
  db:
    health_check: {health_check}
    endpoints: [{}]
",
        endpoints.join(", ")
    )
}

/// A PostgreSQL client program against `host:port`, as the superuser.
fn pg_command(program: &Path, addr: SocketAddr) -> Command {
    let mut command = Command::new(program);
    command
        .env("PGPASSWORD", POSTGRES_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "5")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", "postgres"]);
    command
}

/// `psql -Atc sql` on database `postgres`: its one-line answer, or what went
/// wrong.
async fn psql(program: &Path, addr: SocketAddr, sql: &str) -> Result<String, String> {
    let mut command = pg_command(program, addr);
    command.args(["-d", "postgres", "-X", "-A", "-t", "-c", sql]);
    match run_bounded(command, Duration::from_secs(10)).await {
        Ok(ran) if ran.status.success() => Ok(ran.stdout.trim().to_owned()),
        Ok(ran) => Err(format!("{}: {}", ran.status, ran.stderr.trim())),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn expect_success(what: &str, ran: &Ran) {
    assert!(
        ran.status.success(),
        "{what} failed ({}):\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
}

/// The number after `label` in pgbench's summary (`number of failed
/// transactions: 0 (0.000%)`).
fn pgbench_figure(output: &str, label: &str) -> Option<u64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Samples `in_flight` of every endpoint of backend `db` every 100 ms from a
/// task of its own until stopped; returns each sample (one value per
/// endpoint, in `addresses` order).
struct InFlightWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Vec<u64>>>,
}

impl InFlightWatch {
    fn start(admin: SocketAddr, addresses: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok((200, body)) = raw_get(admin, "/debug/backends").await
                    && let Ok(all) = serde_json::from_str::<Value>(&body)
                {
                    let endpoints = all[0]["endpoints"].as_array().cloned().unwrap_or_default();
                    let sample = addresses
                        .iter()
                        .map(|a| {
                            endpoints
                                .iter()
                                .find(|e| e["address"] == a.as_str())
                                .and_then(|e| e["in_flight"].as_u64())
                                .unwrap_or(0)
                        })
                        .collect();
                    samples.push(sample);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<Vec<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Two PostgreSQL instances behind one listener: `pgbench` through the proxy
/// ends without a failed transaction and both instances served some (each
/// keeps its own `pgbench_history`, one row per transaction); the proxy holds
/// the clients' connections split between them. Then one instance stops: it
/// is marked down within interval × fall + timeout, and every new connection
/// meanwhile and after succeeds on the other (connect retries and redispatch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_two_postgres_instances_and_failover() {
    let Some(mut a) = DbServer::postgres().await.unwrap() else {
        return;
    };
    let Some(b) = DbServer::postgres().await.unwrap() else {
        return;
    };
    let (Some(pgbench), Some(psql_bin)) = (
        postgres_client("pgbench").unwrap(),
        postgres_client("psql").unwrap(),
    ) else {
        return;
    };
    // Each instance gets the tables: a client may land on either.
    for server in [&a, &b] {
        let mut init = pg_command(&pgbench, server.addr);
        init.args(["-i", "-q", "postgres"]);
        let ran = run_bounded(init, Duration::from_secs(120)).await.unwrap();
        expect_success(&format!("pgbench -i on {}", server.addr), &ran);
    }

    let listen = free_addr().unwrap();
    let check = format!(
        "{{probe: {{postgres: {{user: postgres}}}}, interval: {}ms, rise: 2, fall: {FALL}, \
         timeout: {}ms}}",
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    );
    let proxy = ProxyProcess::start(&db_table(listen, &[a.addr, b.addr], &check))
        .await
        .unwrap();
    let addresses = [a.addr.to_string(), b.addr.to_string()];
    for address in &addresses {
        health::wait_up(&proxy, "db", address, true, Duration::from_secs(10)).await;
    }

    let watch = InFlightWatch::start(proxy.admin_addr(), addresses.to_vec());
    let mut bench = pg_command(&pgbench, listen);
    bench
        .args(["-c", &PGBENCH_CLIENTS.to_string(), "-j", "2"])
        .args(["-T", &PGBENCH_SECONDS.to_string(), "postgres"]);
    let started = Instant::now();
    let ran = run_bounded(bench, Duration::from_secs(u64::from(PGBENCH_SECONDS) + 60))
        .await
        .unwrap();
    let took = started.elapsed();
    let samples = watch.stop().await;
    expect_success("pgbench through the proxy", &ran);
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    eprintln!("pgbench through the proxy ({took:?}):\n{output}");
    assert!(
        !output.to_lowercase().contains("error"),
        "pgbench reported errors:\n{output}"
    );
    assert_eq!(
        pgbench_figure(&output, "number of failed transactions:"),
        Some(0),
        "{output}"
    );
    let processed = pgbench_figure(&output, "number of transactions actually processed:")
        .unwrap_or_else(|| panic!("no transaction count in:\n{output}"));
    assert!(processed > 0, "{output}");

    // Both instances served transactions, and together all of them.
    let mut served = Vec::new();
    for server in [&a, &b] {
        let rows = psql(
            &psql_bin,
            server.addr,
            "SELECT count(*) FROM pgbench_history",
        )
        .await
        .unwrap();
        served.push(rows.parse::<u64>().unwrap());
    }
    eprintln!("transactions per instance: {served:?} of {processed}");
    assert!(
        served.iter().all(|n| *n > 0),
        "an instance served no transaction: {served:?}"
    );
    assert_eq!(served.iter().sum::<u64>(), processed);
    // The proxy counted every client connection, on both endpoints.
    let most = samples
        .iter()
        .map(|s| s.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let split = samples
        .iter()
        .find(|s| s.iter().sum::<u64>() == most)
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "in_flight during the run: at most {most} ({split:?}), {} samples",
        samples.len()
    );
    assert_eq!(
        most,
        u64::from(PGBENCH_CLIENTS),
        "in_flight never showed every client connection"
    );
    assert!(
        split.iter().all(|n| *n > 0),
        "one endpoint held no connection: {split:?}"
    );

    // Failover: instance a stops; new connections go to b, none fails.
    let shutdown = a.stop().await.unwrap();
    let stopped = Instant::now();
    let b_port = b.addr.port().to_string();
    let mut outcomes = Vec::new();
    let mut marked_down = None;
    let mut after_down = 0;
    while after_down < 5 {
        let answer = psql(&psql_bin, listen, "SELECT inet_server_port()").await;
        outcomes.push((stopped.elapsed(), answer));
        if marked_down.is_none() {
            let endpoint = health::endpoint(&proxy, "db", &addresses[0]).await;
            if endpoint["up"] == false {
                marked_down = Some(stopped.elapsed());
            }
        } else {
            after_down += 1;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "instance a not marked down 20 s after it stopped: {outcomes:?}"
        );
    }
    let marked_down = marked_down.unwrap();
    let bound = INTERVAL * FALL + TIMEOUT + SLACK;
    eprintln!(
        "a stopped (shutdown took {shutdown:?}); marked down after {marked_down:?} \
         (bound {bound:?}); connections: {outcomes:?}"
    );
    let wrong: Vec<_> = outcomes
        .iter()
        .filter(|(_, answer)| answer.as_deref() != Ok(b_port.as_str()))
        .collect();
    assert!(
        wrong.is_empty(),
        "connections after the stop that failed or did not reach b (port {b_port}): {wrong:?}"
    );
    assert!(
        marked_down <= bound,
        "a marked down {marked_down:?} after it stopped (bound {bound:?})"
    );
    // The refused attempts on a were retried, never given up on.
    let stats = listener_stats(&proxy, "db").await.unwrap();
    eprintln!("/debug/listeners: {stats}");
    assert_eq!(stats["connect_failed"], 0, "{stats}");
    assert!(
        stats["accepted"].as_u64() >= Some(u64::from(PGBENCH_CLIENTS) + outcomes.len() as u64),
        "{stats}"
    );
}

/// The harness: pgbench initialises and runs against an instance directly, and
/// its summary says what the test reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_pgbench_runs_against_postgres_directly() {
    let Some(server) = DbServer::postgres().await.unwrap() else {
        return;
    };
    let Some(pgbench) = postgres_client("pgbench").unwrap() else {
        return;
    };
    let mut init = pg_command(&pgbench, server.addr);
    init.args(["-i", "-q", "postgres"]);
    let ran = run_bounded(init, Duration::from_secs(120)).await.unwrap();
    expect_success("pgbench -i", &ran);
    let mut bench = pg_command(&pgbench, server.addr);
    bench.args(["-c", "4", "-j", "2", "-T", "2", "postgres"]);
    let ran = run_bounded(bench, Duration::from_secs(60)).await.unwrap();
    expect_success("pgbench", &ran);
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        pgbench_figure(&output, "number of failed transactions:"),
        Some(0),
        "{output}"
    );
    assert!(
        pgbench_figure(&output, "number of transactions actually processed:")
            .is_some_and(|n| n > 0),
        "{output}"
    );
}

/// MariaDB through the proxy with the `mysql` login check: the `mariadb`
/// client logs in and its queries reach the server (which names its port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_client_through_the_proxy() {
    let Some(server) = DbServer::mariadb().await.unwrap() else {
        return;
    };
    let Some(client) = require(&["mariadb"], "apt-get install mariadb-client").unwrap() else {
        return;
    };
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&db_table(
        listen,
        &[server.addr],
        &format!("{{probe: {{mysql: {{user: {MYSQL_USER}}}}}, interval: 500ms}}"),
    ))
    .await
    .unwrap();
    health::wait_up(
        &proxy,
        "db",
        &server.addr.to_string(),
        true,
        Duration::from_secs(10),
    )
    .await;
    for _ in 0..5 {
        let mut command = Command::new(&client);
        command
            .args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1"])
            .args(["-P", &listen.port().to_string(), "-u", MYSQL_USER])
            .args(["-N", "-B", "-e", "SELECT @@port, 6 * 7"]);
        let ran = run_bounded(command, Duration::from_secs(10)).await.unwrap();
        expect_success("mariadb through the proxy", &ran);
        assert_eq!(
            ran.stdout.trim(),
            format!("{}\t42", server.addr.port()),
            "{ran:?}"
        );
    }
}
