//! HTTP actions as HAProxy tutorials configure them, written as our table:
//! `redirect scheme https`, `http-request return` (a maintenance page),
//! `http-request deny`, `errorfile`, header rewrites in both directions and
//! `replace-path`. Each test runs the real binary against in-process backends.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, StatusCode};
use sluice_e2e::client::{self, Reply, assert_outcomes, fetch, get, request, send};
use sluice_e2e::config_file::backends_yaml;
use sluice_e2e::{Backend, ProxyProcess, free_addr, raw};

/// A YAML double-quoted scalar holding exactly `text` (JSON strings are YAML).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn all(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

const MAINTENANCE: &str = "<!DOCTYPE html>\n<html><body><h1>Down for maintenance</h1>\n\
    <p>We are back at 14:00 \"UTC\" &amp; sorry.</p></body></html>\n";

/// `http-request redirect scheme https if { hdr(host) -i shop.test.com }` (302, and
/// `code 301` for another host) and `http-request return status 503
/// content-type text/html` for a host under maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirects_and_a_maintenance_page() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: shop, hosts: [shop.test.com], action: {{redirect: {{scheme: https}}}}}}
        - {{name: bank, hosts: [bank.test.com], action: {{redirect: {{scheme: https, code: 301}}}}}}
        - name: maintenance
          hosts: [down.test.com]
          action: {{respond: {{status: 503, content_type: text/html, body: {body}}}}}
        - {{name: app, action: {{forward: app}}}}
{backends}"#,
        body = quoted(MAINTENANCE),
        backends = backends_yaml(&[&app]),
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    assert_outcomes(
        &client,
        vec![
            (
                get(listen, Some("shop.test.com"), "/cart?id=1&x=y"),
                "302 https://shop.test.com/cart?id=1&x=y",
            ),
            // The request's port belonged to plain HTTP; it is not carried over.
            (
                get(listen, Some("shop.test.com:8080"), "/"),
                "302 https://shop.test.com/",
            ),
            (
                get(listen, Some("bank.test.com"), "/login?next=%2Fhome"),
                "301 https://bank.test.com/login?next=%2Fhome",
            ),
            (get(listen, Some("www.test.com"), "/cart"), "app"),
        ],
    )
    .await;

    let before = app.requests();
    for method in [Method::GET, Method::POST] {
        let req = request(
            method.clone(),
            listen,
            Some("down.test.com"),
            "/any/page",
            &[],
            "",
        );
        let reply = send(&client, req).await.unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{method}");
        assert_eq!(header(&reply, "content-type"), Some("text/html"));
        assert_eq!(reply.text(), MAINTENANCE);
    }
    assert_eq!(
        app.requests(),
        before,
        "the maintenance page is the proxy's"
    );
}

/// `http-request set-header/add-header/del-header` and the `http-response` ones:
/// the backend's `?echo` shows what it received, the client what it got; the
/// response edits also apply to the route's own redirects, fixed responses and
/// refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rewrites_reach_the_backend_and_the_client() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - name: edited
          paths: [{{prefix: /edited}}]
          request_headers:
            remove: [X-Debug, Cookie, X-Replace]
            set: {{Host: internal.svc.local, X-Env: prod, X-Forwarded-Proto: https}}
            add: {{X-Tag: proxy, X-Replace: mine}}
          response_headers:
            remove: [X-Backend]
            set: {{X-Frame-Options: DENY}}
            add: {{Via: 1.1 sluice}}
          action: {{forward: app}}
        - name: moved
          paths: [{{prefix: /old}}]
          response_headers: {{set: {{X-Frame-Options: DENY, Cache-Control: "max-age=3600"}}}}
          action: {{redirect: {{replace_prefix: /new, code: 301}}}}
        - name: closed
          paths: [{{prefix: /closed}}]
          response_headers: {{set: {{Retry-After: "120"}}, remove: [Cache-Control]}}
          action: {{respond: {{status: 503, body: "closed\n"}}}}
        - name: refused
          paths: [{{prefix: /refused}}]
          allow_sources: [10.0.0.0/8]
          response_headers: {{set: {{X-Frame-Options: DENY}}}}
          action: {{forward: app}}
        - {{name: plain, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let sent = [
        ("x-debug", "1"),
        ("cookie", "session=secret"),
        ("x-env", "dev"),
        ("x-tag", "client"),
        ("x-replace", "theirs"),
        ("x-keep", "yes"),
    ];

    let req = request(
        Method::GET,
        listen,
        Some("www.test.com"),
        "/edited?echo=1",
        &sent,
        "",
    );
    let reply = send(&client, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = |name| reply.echoed(name);
    assert_eq!(seen("host"), ["internal.svc.local"]);
    assert!(seen("x-debug").is_empty() && seen("cookie").is_empty());
    assert_eq!(seen("x-env"), ["prod"], "set replaces the client's value");
    assert_eq!(seen("x-tag"), ["client", "proxy"], "add appends");
    assert_eq!(seen("x-replace"), ["mine"], "remove runs before add");
    assert_eq!(seen("x-keep"), ["yes"]);
    // The route's edits come after the proxy's own forwarded headers…
    assert_eq!(seen("x-forwarded-proto"), ["https"]);
    // …which were computed from what the client sent.
    assert_eq!(seen("x-forwarded-host"), ["www.test.com"]);
    // The client side: the backend's header gone, ours there.
    assert_eq!(reply.backend(), None, "x-backend removed");
    assert!(
        reply.text().contains(r#""backend":"app""#),
        "{}",
        reply.text()
    );
    assert_eq!(header(&reply, "x-frame-options"), Some("DENY"));
    assert_eq!(all(&reply, "via"), ["1.1 sluice"]);

    // Another route of the same table edits nothing.
    let req = request(
        Method::GET,
        listen,
        Some("www.test.com"),
        "/plain?echo=1",
        &sent,
        "",
    );
    let reply = send(&client, req).await.unwrap();
    assert_eq!(reply.echoed("x-debug"), ["1"]);
    assert_eq!(reply.echoed("host"), ["www.test.com"]);
    assert_eq!(reply.backend(), Some("app"));
    assert_eq!(header(&reply, "x-frame-options"), None);

    let reply = fetch(&client, listen, Some("www.test.com"), "/old/page?x=1")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&reply, "location"), Some("/new/page?x=1"));
    assert_eq!(header(&reply, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&reply, "cache-control"), Some("max-age=3600"));

    let reply = fetch(&client, listen, Some("www.test.com"), "/closed")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.text(), "closed\n");
    assert_eq!(header(&reply, "retry-after"), Some("120"));
    assert_eq!(header(&reply, "cache-control"), None);

    let reply = fetch(&client, listen, Some("www.test.com"), "/refused")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(header(&reply, "x-frame-options"), Some("DENY"));
}

/// `http-request deny deny_status 429` with its own body, and `errorfile`: the
/// listener's pages replace the proxy's own text for the errors it generates (no
/// route, no endpoint, refused connection, refused client, `deny` without a body)
/// but never a backend's own error response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_bodies_and_error_pages() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    // Nothing listens here once the probe socket is closed.
    let closed = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      error_pages:
        404: {{body: "<h1>Nothing here</h1>\n"}}
        503: {{content_type: "text/plain; charset=utf-8", body: "Back soon.\n"}}
        502: {{body: "<h1>Bad gateway</h1>"}}
        403: {{body: "<h1>Forbidden</h1>"}}
      routes:
        - name: throttled
          paths: [{{prefix: /api}}]
          action: {{deny: {{status: 429, content_type: application/json, body: '{{"error":"slow down"}}'}}}}
        - {{name: secret, paths: [{{prefix: /secret}}], action: {{deny: {{}}}}}}
        - {{name: internal, paths: [{{prefix: /internal}}], allow_sources: [10.0.0.0/8], action: {{forward: app}}}}
        - {{name: empty, paths: [{{prefix: /empty}}], action: {{forward: empty}}}}
        - {{name: closed, paths: [{{prefix: /closed}}], action: {{forward: closed}}}}
        - {{name: app, paths: [{{prefix: /app}}], action: {{forward: app}}}}
{}  empty: {{endpoints: []}}
  closed: {{endpoints: [{{address: {closed}}}]}}
"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let html = "text/html; charset=utf-8";
    let text = "text/plain; charset=utf-8";
    for (path, status, content_type, body) in [
        (
            "/api/v1/items",
            429,
            "application/json",
            r#"{"error":"slow down"}"#,
        ),
        ("/secret", 403, html, "<h1>Forbidden</h1>"),
        ("/internal", 403, html, "<h1>Forbidden</h1>"),
        ("/nowhere", 404, html, "<h1>Nothing here</h1>\n"),
        ("/empty", 503, text, "Back soon.\n"),
        ("/closed", 502, html, "<h1>Bad gateway</h1>"),
    ] {
        let reply = fetch(&client, listen, Some("www.test.com"), path)
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), status, "{path}: {}", reply.text());
        assert_eq!(header(&reply, "content-type"), Some(content_type), "{path}");
        assert_eq!(reply.text(), body, "{path}");
        assert_eq!(reply.backend(), None, "{path}");
    }
    // A backend's own 503 and 404 pass through untouched.
    for status in [503, 404] {
        let reply = fetch(
            &client,
            listen,
            Some("www.test.com"),
            &format!("/app?status={status}"),
        )
        .await
        .unwrap();
        assert_eq!(reply.status.as_u16(), status);
        assert_eq!(reply.backend(), Some("app"));
        assert_eq!(reply.text(), "app");
    }
}

/// `http-request replace-path ^/user/([0-9]+)$ /users?id=\1`: the backend sees the
/// rewritten path, the capture, and the client's query after it; paths the
/// pattern does not match are forwarded unchanged; rewriting runs on the
/// normalised path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_path_rewrite_is_seen_by_the_backend() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - name: users
          paths: [{{prefix: /user}}]
          rewrite: {{regex: {{pattern: '^/user/([0-9]+)$', replace: '/users?id=$1'}}}}
          action: {{forward: app}}
        - name: blog
          paths: [{{regex: '/blog/[0-9]{{4}}/[a-z-]+'}}]
          rewrite: {{regex: {{pattern: '^/blog/(?P<year>[0-9]{{4}})/(?P<slug>[a-z-]+)$', replace: '/posts/${{slug}}?year=${{year}}'}}}}
          action: {{forward: app}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    for (path, upstream) in [
        ("/user/42?echo=1", "/users?id=42&echo=1"),
        ("/user/abc?echo=1", "/user/abc?echo=1"),
        ("/user/42/photos?echo=1", "/user/42/photos?echo=1"),
        (
            "/blog/2024/hello-world?echo=1",
            "/posts/hello-world?year=2024&echo=1",
        ),
        ("/blog/24/hello?echo=1", "/blog/24/hello?echo=1"),
    ] {
        let reply = fetch(&client, listen, Some("www.test.com"), path)
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(seen["uri"], upstream, "{path}");
    }
    // Sent byte for byte: `/user/./42` is `/user/42` by the time the pattern runs.
    let reply = raw::get(listen, "www.test.com", "/user/./%34%32?echo=1")
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(seen["uri"], "/users?id=42&echo=1");
}

/// A redirect built from the request path must not become protocol-relative
/// (`//evil.example`, or `/\evil.example`, which browsers read the same way): the
/// path is normalised and a backslash is sent encoded. Sent byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_from_request_paths_stay_on_this_site() {
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: old, paths: [{{prefix: /old}}], action: {{redirect: {{replace_prefix: /}}}}}}
"#
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    for (target, location) in [
        ("/old/page?x=1", "/page?x=1"),
        ("/old//evil.example/x", "/evil.example/x"),
        ("/old/.//evil.example", "/evil.example"),
        ("/old/\\evil.example/x", "/%5Cevil.example/x"),
        ("/old/%5Cevil.example", "/%5Cevil.example"),
        ("/old/%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ] {
        let reply = raw::get(listen, "www.test.com", target).await.unwrap();
        assert_eq!(reply.status, 302, "{target}: {}", reply.text());
        assert_eq!(reply.header("location"), Some(location), "{target}");
    }
}
