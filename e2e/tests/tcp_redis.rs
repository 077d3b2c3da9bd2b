//! `redis-benchmark`'s whole default suite through a `tcp` listener, against
//! Debian's Redis (`sluice_e2e::databases`; `.ci/run` installs redis-server and
//! redis-tools). Its own test binary: against the debug build of the proxy the
//! suite takes a minute or more, and it should not share the two cores with
//! the pgbench run of `tcp_databases.rs`. Without the programs the test is
//! skipped with a notice, except under `CI=true`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::databases::DbServer;
use sluice_e2e::tools::{require, run_bounded};
use sluice_e2e::{ProxyProcess, eventually, free_addr, health};
use std::process::Command;
use std::time::{Duration, Instant};

/// `redis-benchmark`'s whole default suite through the proxy: it exits 0,
/// reports no error, and every test reports its requests per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_through_the_proxy() {
    let Some(server) = DbServer::redis(None).await.unwrap() else {
        return;
    };
    let Some(benchmark) = require(&["redis-benchmark"], "apt-get install redis-tools").unwrap()
    else {
        return;
    };
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - tcp: {{name: cache, bind: {listen}, backend: cache}}
backends:
  cache:
    health_check: {{probe: {{redis: {{}}}}, interval: 1s}}
    endpoints: [{{address: {}}}]
",
        server.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let mut command = Command::new(&benchmark);
    command
        .args(["-q", "-n", "100000", "-h", &listen.ip().to_string()])
        .args(["-p", &listen.port().to_string()]);
    let started = Instant::now();
    let ran = run_bounded(command, Duration::from_secs(300))
        .await
        .unwrap();
    let took = started.elapsed();
    // -q rewrites a progress line with \r; the last state of each is a result.
    let lines: Vec<&str> = ran
        .stdout
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| l.contains("requests per second"))
        .collect();
    eprintln!(
        "redis-benchmark through the proxy ({took:?}):\n{}\n{}",
        lines.join("\n"),
        ran.stderr
    );
    assert!(
        ran.status.success(),
        "redis-benchmark failed ({}):\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    let all = format!("{}\n{}", ran.stdout, ran.stderr).to_lowercase();
    assert!(
        !all.contains("error") && !all.contains("reset") && !all.contains("refused"),
        "redis-benchmark reported errors:\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    for test in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "SADD",
        "HSET",
        "SPOP",
        "ZADD",
        "ZPOPMIN",
        "LPUSH (needed to benchmark LRANGE)",
        "LRANGE_100 (first 100 elements)",
        "LRANGE_300 (first 300 elements)",
        "LRANGE_500 (first 500 elements)",
        "LRANGE_600 (first 600 elements)",
        "MSET (10 keys)",
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{test}: ")))
            .unwrap_or_else(|| panic!("no result for {test}:\n{}", ran.stdout));
        let rps: f64 = line
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line:?}"));
        assert!(rps > 0.0, "{line}");
    }
    // Every connection the benchmark opened ended at the proxy too.
    let address = server.addr.to_string();
    eventually(
        "no connection in flight",
        Duration::from_secs(5),
        || async {
            let endpoint = health::endpoint(&proxy, "cache", &address).await;
            (endpoint["in_flight"] == 0).then_some(())
        },
    )
    .await
    .unwrap();
}
