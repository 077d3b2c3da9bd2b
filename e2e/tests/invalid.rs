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

/// A table whose one route is `name: r` followed by `rest` (which starts on line
/// 7, indented 10 spaces), with a backend `app`.
fn route_table(rest: &str) -> String {
    format!(
        "listeners:\n  - http:\n      name: web\n      bind: 127.0.0.1:18080\n      routes:\n        \
         - name: r\n{rest}backends:\n  app: {{}}\n"
    )
}

#[test]
fn check_locates_bad_regexes() {
    let path =
        route_table("          paths: [{regex: '/a/(['}]\n          action: {forward: app}\n");
    assert_rejected(
        &path,
        7,
        27,
        "listeners[0].http.routes[0].paths[0].regex",
        "invalid regex \"/a/([\"",
    );
    let rewrite = route_table(
        "          action: {forward: app}\n          rewrite: {regex: {pattern: '^/u/(?P<id', replace: /x}}\n",
    );
    assert_rejected(
        &rewrite,
        8,
        38,
        "listeners[0].http.routes[0].rewrite.regex.pattern",
        "invalid regex",
    );
}

#[test]
fn check_locates_bad_cidrs() {
    let allow =
        route_table("          allow_sources: [10.0.0.0/33]\n          action: {forward: app}\n");
    assert_rejected(
        &allow,
        7,
        27,
        "listeners[0].http.routes[0].allow_sources[0]",
        "invalid IP address",
    );
    let condition = route_table(
        "          match: [{not: {source: [10.0.0.0/8, 300.1.2.3/8]}}]\n          action: {deny: {}}\n",
    );
    assert_rejected(
        &condition,
        7,
        47,
        "listeners[0].http.routes[0].match[0].not.source[1]",
        "invalid IP address",
    );
}

#[test]
fn check_locates_a_bad_redirect_code() {
    let yaml = route_table("          action: {redirect: {scheme: https, code: 304}}\n");
    assert_rejected(
        &yaml,
        7,
        52,
        "listeners[0].http.routes[0].action.redirect.code",
        "redirect code 304 is not one of 301, 302, 303, 307, 308",
    );
}

#[test]
fn check_locates_bad_header_names() {
    let edit = route_table(
        "          request_headers: {set: {\"X Bad\": x}}\n          action: {forward: app}\n",
    );
    assert_rejected(
        &edit,
        7,
        35,
        "listeners[0].http.routes[0].request_headers.set.X Bad",
        "\"X Bad\" is not a valid header name",
    );
    let condition = route_table(
        "          match: [{header: {name: \"User Agent\", contains: iphone}}]\n          action: {forward: app}\n",
    );
    assert_rejected(
        &condition,
        7,
        35,
        "listeners[0].http.routes[0].match[0].header.name",
        "\"User Agent\" is not a valid header name",
    );
}

#[test]
fn check_refuses_a_lower_case_method_with_a_hint() {
    // `get` would be a valid extension method that no client ever sends.
    let yaml =
        route_table("          match: [{method: [GET, get]}]\n          action: {forward: app}\n");
    assert_rejected(
        &yaml,
        7,
        34,
        "listeners[0].http.routes[0].match[0].method[1]",
        "write \"GET\"",
    );
}

#[test]
fn check_names_the_field_of_a_rule_forwarding_to_an_unknown_backend() {
    // Well-formed YAML, inconsistent table: located by field path, not line.
    let yaml = "\
listeners:
  - http:
      name: web
      bind: 127.0.0.1:18080
      routes:
        - {name: ok, action: {forward: app}}
        - {name: dangling, paths: [{prefix: /x}], action: {forward: nope}}
backends:
  app: {endpoints: [{address: 127.0.0.1:9001}]}
";
    let out = check(yaml).unwrap();
    assert!(!out.success, "accepted; stdout: {}", out.stdout);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "{}: listeners[0].http.routes[1].action.forward: route `dangling`: backend `nope` is not defined",
            out.path.display()
        )
    );
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

/// A running proxy given a table whose rule is invalid (a bad regex, then a route
/// to an undefined backend) keeps serving the last good table and says where the
/// file is wrong; the next good table is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_proxy_keeps_last_good_table_when_a_rule_is_invalid() {
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    let listen = free_addr().unwrap();
    let good = table(listen, &one, "/one");
    let proxy = ProxyProcess::start(&good).await.unwrap();
    let config = proxy.config_path().display().to_string();
    let client = client::client();
    let still_one = || async {
        let r = fetch(&client, listen, None, "/one/x").await.unwrap();
        assert_eq!((r.status, r.backend()), (StatusCode::OK, Some("one")));
    };
    still_one().await;

    let bad_regex = good.replace("{prefix: /one}", "{regex: '/one/(['}");
    proxy.rewrite(&bad_regex).unwrap();
    // The route is the file's sixth line; the column is where the pattern starts.
    let column = bad_regex.lines().nth(5).unwrap().find("'/one/([").unwrap() + 1;
    let lines = proxy
        .wait_for_log(&format!("{config}:6:{column}:"), 1, Duration::from_secs(2))
        .await
        .unwrap();
    let line = &lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("listeners[0].http.routes[0].paths[0].regex"),
        "{line}"
    );
    assert!(line.contains("invalid regex"), "{line}");
    assert!(line.contains("keeping the last good table"), "{line}");
    still_one().await;

    let unknown_backend = good.replace("forward: one", "forward: nope");
    proxy.rewrite(&unknown_backend).unwrap();
    let lines = proxy
        .wait_for_log(
            "listeners[0].http.routes[0].action.forward",
            1,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let line = &lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("backend `nope` is not defined"), "{line}");
    assert!(line.contains("keeping the last good table"), "{line}");
    still_one().await;
    assert_eq!(proxy.admin_get("/readyz").await.unwrap().0, 200);

    proxy.rewrite(&table(listen, &two, "/two")).unwrap();
    eventually(
        "the next good table to be live",
        Duration::from_secs(2),
        || async {
            let r = fetch(&client, listen, None, "/two").await.ok()?;
            (r.backend() == Some("two")).then_some(())
        },
    )
    .await
    .unwrap();
    let r = fetch(&client, listen, None, "/one/x").await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
