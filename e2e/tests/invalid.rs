//! Invalid tables: `check` names FILE:LINE:COL and the field; a running proxy keeps
//! its last good table, logs where the new one is wrong, and takes the next good one.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::process::check;
use sluice_e2e::{Backend, Options, ProxyProcess, eventually, free_addr};
use std::net::SocketAddr;
use std::time::Duration;

/// `check` must fail with exactly one diagnostic that starts `FILE:LINE:COL: field:`.
fn assert_rejected(yaml: &str, line: u32, column: u32, field: &str, message: &str) {
    let out = check(yaml).unwrap();
    assert!(!out.success, "accepted:\n{yaml}\nstdout: {}", out.stdout);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let expected = format!("{}:{line}:{column}: {field}: ", out.path.display());
    assert!(
        out.stderr.starts_with(&expected),
        "want a diagnostic starting {expected:?}, got:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains(message), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
}

#[test]
fn check_reports_yaml_syntax_errors_with_location() {
    let yaml = "\
listeners:
  - http:
      name: web
      bind: 127.0.0.1:18080
      routes: [{name: a, action: {forward: api}
backends: {}
";
    // The `{` at line 5, column 16 is never closed.
    assert_rejected(yaml, 5, 16, "listeners[0].http.routes", "unclosed bracket");
}

#[test]
fn check_reports_unknown_fields_with_location() {
    let yaml = "\
listeners:
  - http:
      name: web
      bind: 127.0.0.1:18080
      routes:
        - name: api
          colour: blue
          action: {forward: api}
backends: {}
";
    assert_rejected(
        yaml,
        7,
        11,
        "listeners[0].http.routes[0].colour",
        "unknown field `colour`",
    );
}

#[test]
fn check_reports_bad_addresses_with_location() {
    let endpoint = "\
listeners: []
backends:
  api:
    endpoints:
      - {address: 127.0.0.1:99999}
";
    assert_rejected(
        endpoint,
        5,
        19,
        "backends.api.endpoints[0].address",
        "invalid socket address",
    );
    let bind = "\
listeners:
  - http:
      name: web
      bind: localhost:80
";
    assert_rejected(
        bind,
        4,
        13,
        "listeners[0].http.bind",
        "invalid socket address",
    );
}

#[test]
fn check_accepts_a_valid_file_and_prints_its_warnings() {
    let yaml = "\
listeners:
  - http:
      name: web
      bind: 127.0.0.1:18080
      forwarded: trust
      timeouts: {request_header: 10s, client_idle: 1m}
      routes:
        - name: api
          hosts: [api.example.com, \"*.example.com\"]
          paths: [{prefix: /api}, {exact: /health}]
          action: {forward: api}
backends:
  api:
    endpoints:
      - {address: 127.0.0.1:9001, weight: 900}
      - {address: 127.0.0.1:9002}
    timeouts: {connect: 5s, response: 60s, pool_idle: 90s}
";
    let out = check(yaml).unwrap();
    assert!(out.success, "rejected: {}", out.stderr);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout
            .contains("valid (1 listeners, 1 backends, 1 warnings)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("weight 900 is above 256"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_accepts_an_empty_file() {
    let out = check("").unwrap();
    assert!(out.success, "{}", out.stderr);
}

fn table(listen: SocketAddr, backend: &Backend, path: &str) -> String {
    format!(
        "listeners:\n  - http:\n      name: web\n      bind: {listen}\n      routes:\n        \
         - {{name: r, paths: [{{prefix: {path}}}], action: {{forward: {}}}}}\n\
         backends:\n  {}: {{endpoints: [{{address: {}}}]}}\n",
        backend.name(),
        backend.name(),
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_proxy_keeps_last_good_table_on_invalid_rewrite() {
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&table(listen, &one, "/one"))
        .await
        .unwrap();
    let client = client::client();
    let status = |path: &'static str| {
        let client = client.clone();
        async move { fetch(&client, listen, None, path).await.unwrap().status }
    };
    assert_eq!(status("/one").await, StatusCode::OK);

    // Line 5 of this file has an unknown field at column 7.
    let invalid =
        format!("listeners:\n  - http:\n      name: web\n      bind: {listen}\n      routez: []\n");
    proxy.rewrite(&invalid).unwrap();
    let config = proxy.config_path().display().to_string();
    let lines = proxy
        .wait_for_log(&format!("{config}:5:7:"), 1, Duration::from_secs(2))
        .await
        .unwrap();
    let line = &lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("listeners[0].http.routez"), "{line}");
    assert!(line.contains("keeping the last good table"), "{line}");
    // Still the last good table, on a fresh connection and on the old one.
    assert_eq!(status("/one").await, StatusCode::OK);
    let fresh = fetch(&client::client(), listen, None, "/one")
        .await
        .unwrap();
    assert_eq!(fresh.backend(), Some("one"));
    assert_eq!(proxy.admin_get("/readyz").await.unwrap().0, 200);

    // A later good file is applied.
    proxy.rewrite(&table(listen, &two, "/two")).unwrap();
    eventually(
        "the valid rewrite to be live",
        Duration::from_secs(2),
        || async { (status("/two").await == StatusCode::OK).then_some(()) },
    )
    .await
    .unwrap();
    assert_eq!(status("/one").await, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_proxy_keeps_serving_when_a_rewrite_has_a_syntax_error() {
    let one = Backend::start("one").await;
    let listen = free_addr().unwrap();
    let good = table(listen, &one, "/one");
    let proxy = ProxyProcess::start(&good).await.unwrap();
    let loaded = proxy.log_lines("table loaded").len();
    let client = client::client();

    // Truncated mid-flow-mapping, as an editor crash might leave it.
    let broken = &good[..good.find("action").unwrap()];
    proxy.rewrite(broken).unwrap();
    let config = proxy.config_path().display().to_string();
    let lines = proxy
        .wait_for_log(&format!("{config}:"), 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("ERROR")
            && l.contains("keeping the last good table")
            && has_line_and_column(l, &config)),
        "{lines:?}"
    );
    let r = fetch(&client, listen, None, "/one").await.unwrap();
    assert_eq!(r.backend(), Some("one"));

    // Back to the good file (same bytes as the one the proxy serves): applied again.
    proxy.rewrite(&good).unwrap();
    proxy
        .wait_for_log("table loaded", loaded + 1, Duration::from_secs(2))
        .await
        .unwrap();
}

/// Whether `line` contains `FILE:<digits>:<digits>:`.
fn has_line_and_column(line: &str, file: &str) -> bool {
    line.match_indices(&format!("{file}:")).any(|(at, m)| {
        let rest = &line[at + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let numeric = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        numeric(parts.next()) && numeric(parts.next())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_to_start_with_an_invalid_file() {
    // No last good table exists yet, so there is nothing to fall back to.
    let yaml = "listeners:\n  - http:\n      name: web\n      bind: 127.0.0.1:0\n      routes: 7\n";
    let mut proxy = ProxyProcess::spawn_run(yaml, Options::default()).unwrap();
    let status = proxy.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(1), "log:\n{}", proxy.logs());
    let config = proxy.config_path().display().to_string();
    let logs = proxy.logs();
    assert!(
        logs.lines().any(|l| l.contains("ERROR")
            && l.contains(&format!("{config}:5:15: listeners[0].http.routes"))),
        "{logs}"
    );
}
