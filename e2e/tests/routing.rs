//! Host and path routing, forwarded and hop-by-hop headers, h2c, load balancing,
//! connection reuse and the proxy's own error statuses.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Request, StatusCode, Version};
use sluice_e2e::client::{self, HttpClient, empty, fetch, send};
use sluice_e2e::{Backend, ProxyProcess, forward_all, free_addr};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One backend id per test backend, named like it.
fn backends_yaml(backends: &[&Backend]) -> String {
    let mut out = String::from("backends:\n");
    for b in backends {
        out.push_str(&format!(
            "  {}:\n    endpoints: [{{address: {}}}]\n",
            b.name(),
            b.addr
        ));
    }
    out
}

async fn start_backends(names: &[&str]) -> Vec<Backend> {
    let mut out = Vec::new();
    for n in names {
        out.push(Backend::start(n).await);
    }
    out
}

/// Which backend answered `host` + `path`, or the status when the proxy answered.
async fn who(client: &HttpClient, proxy: SocketAddr, host: &str, path: &str) -> String {
    let reply = fetch(client, proxy, Some(host), path).await.unwrap();
    match reply.backend() {
        Some(b) if reply.status == StatusCode::OK => b.to_owned(),
        _ => reply.status.as_u16().to_string(),
    }
}

async fn assert_routes(proxy: SocketAddr, cases: &[(&str, &str, &str)]) {
    let client = client::client();
    let mut wrong = Vec::new();
    for &(host, path, expected) in cases {
        let got = who(&client, proxy, host, path).await;
        if got != expected {
            wrong.push(format!("{host}{path}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "misrouted:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_precedence_follow_ingress_rules() {
    let names = [
        "exact-host",
        "wildcard",
        "any",
        "api",
        "api-v2",
        "health",
        "foo",
    ];
    let backends = start_backends(&names).await;
    let listen = free_addr().unwrap();
    // Declared in an order that differs from precedence on purpose: order only
    // breaks exact ties.
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: any, action: {{forward: any}}}}
        - {{name: foo, paths: [{{prefix: /foo}}], action: {{forward: foo}}}}
        - {{name: api, paths: [{{prefix: /api}}], action: {{forward: api}}}}
        - {{name: health, paths: [{{exact: /api/v2/health}}], action: {{forward: health}}}}
        - {{name: api-v2, paths: [{{prefix: /api/v2}}], action: {{forward: api-v2}}}}
        - name: wildcard
          hosts: ["*.example.com"]
          action: {{forward: wildcard}}
        - name: exact-host
          hosts: [foo.example.com]
          paths: [{{prefix: /a}}]
          action: {{forward: exact-host}}
{}"#,
        backends_yaml(&backends.iter().collect::<Vec<_>>())
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    assert_routes(
        listen,
        &[
            // Hosts: exact, then one-label wildcard, then host-less routes.
            ("foo.example.com", "/a", "exact-host"),
            ("foo.example.com", "/a/b", "exact-host"),
            ("FOO.Example.COM:8080", "/a", "exact-host"),
            ("foo.example.com", "/b", "wildcard"),
            ("foo.example.com", "/ab", "wildcard"),
            ("bar.example.com", "/", "wildcard"),
            ("bar.example.com", "/api/v2/health", "wildcard"),
            ("a.b.example.com", "/", "any"),
            ("example.com", "/", "any"),
            // Paths: Exact beats Prefix, longest prefix wins, element-wise.
            ("other.org", "/", "any"),
            ("other.org", "/api", "api"),
            ("other.org", "/api/", "api"),
            ("other.org", "/api/v1", "api"),
            ("other.org", "/api/v2", "api-v2"),
            ("other.org", "/api/v2/users", "api-v2"),
            ("other.org", "/api/v2/health", "health"),
            ("other.org", "/api/v2/health/", "api-v2"),
            ("other.org", "/api/v2/health?x=1", "health"),
            ("other.org", "/apiv2", "any"),
            ("other.org", "/foo", "foo"),
            ("other.org", "/foo/bar", "foo"),
            ("other.org", "/foobar", "any"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// (A route naming an undefined backend cannot come from a file any more: `check`
/// refuses it. The compiler's 503 for it is unit-tested in `compile`.)
async fn no_route_is_404_and_a_backend_without_endpoints_is_503() {
    let only = Backend::start("only").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: strict
      bind: {listen}
      routes:
        - {{name: only, hosts: [only.example.com], paths: [{{prefix: /x}}], action: {{forward: only}}}}
        - {{name: empty, hosts: [only.example.com], paths: [{{prefix: /empty}}], action: {{forward: empty}}}}
backends:
  only: {{endpoints: [{{address: {}}}]}}
  empty: {{endpoints: []}}
"#,
        only.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    assert_routes(
        listen,
        &[
            ("only.example.com", "/x", "only"),
            ("only.example.com", "/x/y", "only"),
            ("only.example.com", "/xy", "404"),
            ("only.example.com", "/", "404"),
            ("other.example.com", "/x", "404"),
            ("only.example.com", "/empty", "503"),
        ],
    )
    .await;
    let client = client::client();
    let reply = fetch(&client, listen, Some("nowhere"), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.text().contains("no route"), "{}", reply.text());
    let reply = fetch(&client, listen, Some("only.example.com"), "/empty")
        .await
        .unwrap();
    assert!(
        !reply.text().contains("empty"),
        "error bodies must not leak internals: {}",
        reply.text()
    );
    let (status, warnings) = proxy.admin_get("/debug/warnings").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        warnings.contains("backend `empty` has no endpoints"),
        "{warnings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_per_listener_mode() {
    let echo = Backend::start("echo").await;
    let (replace, trust, off) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let listener = |name: &str, bind: SocketAddr, mode: &str| {
        format!(
            "  - http: {{name: {name}, bind: {bind}, forwarded: {mode}, routes: [{{name: all, action: {{forward: echo}}}}]}}\n"
        )
    };
    let yaml = format!(
        "listeners:\n{}{}{}backends:\n  echo: {{endpoints: [{{address: {}}}]}}\n",
        listener("replace", replace, "replace"),
        listener("trust", trust, "trust"),
        listener("off", off, "off"),
        echo.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let spoofed = |proxy: SocketAddr| {
        Request::get(format!("http://{proxy}/?echo"))
            .header("host", "shop.example.com")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .body(empty())
            .unwrap()
    };

    let r = send(&client, spoofed(replace)).await.unwrap();
    assert_eq!(
        r.echoed_one("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(r.echoed_one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.echoed_one("x-forwarded-host").as_deref(),
        Some("shop.example.com")
    );

    let r = send(&client, spoofed(trust)).await.unwrap();
    assert_eq!(
        r.echoed_one("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1")
    );
    assert_eq!(r.echoed_one("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        r.echoed_one("x-forwarded-host").as_deref(),
        Some("evil.example")
    );
    // Trust with nothing incoming still adds what this proxy saw.
    let r = fetch(&client, trust, Some("shop.example.com"), "/?echo")
        .await
        .unwrap();
    assert_eq!(
        r.echoed_one("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(r.echoed_one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.echoed_one("x-forwarded-host").as_deref(),
        Some("shop.example.com")
    );

    let r = send(&client, spoofed(off)).await.unwrap();
    assert_eq!(r.echoed_one("x-forwarded-for").as_deref(), Some("6.6.6.6"));
    assert_eq!(r.echoed_one("x-forwarded-proto").as_deref(), Some("https"));
    let r = fetch(&client, off, Some("shop.example.com"), "/?echo")
        .await
        .unwrap();
    assert_eq!(r.echoed("x-forwarded-for"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_preserved_and_hop_by_hop_headers_are_dropped() {
    let echo = Backend::start("echo").await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "echo", echo.addr);
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let req = Request::get(format!("http://{listen}/path?echo&q=1"))
        .header("host", "Shop.Example.com:8443")
        .header("connection", "x-custom")
        .header("x-custom", "hop-only")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-kept", "end-to-end")
        .body(empty())
        .unwrap();
    let r = send(&client, req).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.echoed_one("host").as_deref(),
        Some("Shop.Example.com:8443")
    );
    assert_eq!(r.echoed_one("x-kept").as_deref(), Some("end-to-end"));
    for hop in ["x-custom", "keep-alive", "proxy-connection"] {
        assert_eq!(r.echoed(hop), Vec::<String>::new(), "{hop} was forwarded");
    }
    // The backend may get its own `Connection` from the proxy's client, never ours.
    assert!(
        !r.echoed("connection")
            .iter()
            .any(|v| v.contains("x-custom")),
        "{:?}",
        r.echoed("connection")
    );
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["uri"], "/path?echo&q=1", "path and query kept");

    // And on the way back: the backend's hop-by-hop response headers stay behind.
    let r = fetch(&client, listen, None, "/?hop").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), Some("echo"), "end-to-end response header kept");
    for hop in ["x-resp-hop", "keep-alive"] {
        assert!(
            r.headers.get(hop).is_none(),
            "{hop} was forwarded: {:?}",
            r.headers
        );
    }
    assert!(
        !r.headers
            .get_all("connection")
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"x-resp-hop")),
        "{:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied_to_http1_backends() {
    let echo = Backend::start("echo").await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "echo", echo.addr);
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::h2c_client();
    for _ in 0..3 {
        let r = fetch(&client, listen, None, "/h2?echo").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.version, Version::HTTP_2);
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["version"], "HTTP/1.1");
        assert_eq!(json["uri"], "/h2?echo");
        // :authority becomes the backend's Host.
        assert_eq!(r.echoed_one("host"), Some(listen.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_requests_3_to_1() {
    let (heavy, light) = (Backend::start("heavy").await, Backend::start("light").await);
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes: [{{name: all, action: {{forward: pair}}}}]
backends:
  pair:
    endpoints:
      - {{address: {}, weight: 3}}
      - {{address: {}}}
"#,
        heavy.addr, light.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    const N: u32 = 4000;
    for _ in 0..N {
        let r = fetch(&client, listen, None, "/").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        *seen.entry(r.backend().unwrap().to_owned()).or_default() += 1;
    }
    let heavy_n = seen.get("heavy").copied().unwrap_or(0);
    let light_n = seen.get("light").copied().unwrap_or(0);
    eprintln!("weights 3:1 over {N}: heavy={heavy_n} light={light_n}");
    assert_eq!(heavy_n + light_n, N, "{seen:?}");
    let within_5pct = |got: u32, want: f64| (f64::from(got) - want).abs() <= want * 0.05;
    assert!(within_5pct(heavy_n, 3000.0), "{seen:?}");
    assert!(within_5pct(light_n, 1000.0), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_drains_an_endpoint() {
    let (drained, live) = (
        Backend::start("drained").await,
        Backend::start("live").await,
    );
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: some, paths: [{{prefix: /some}}], action: {{forward: some}}}}
        - {{name: none, paths: [{{prefix: /none}}], action: {{forward: none}}}}
backends:
  some:
    endpoints: [{{address: {d}, weight: 0}}, {{address: {l}}}]
  none:
    endpoints: [{{address: {d}, weight: 0}}]
"#,
        d = drained.addr,
        l = live.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    for _ in 0..20 {
        let r = fetch(&client, listen, None, "/some").await.unwrap();
        assert_eq!(r.backend(), Some("live"));
    }
    let r = fetch(&client, listen, None, "/none").await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(drained.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_reused() {
    let b = Backend::start("b").await;
    let listen = free_addr().unwrap();
    let yaml = forward_all(listen, "b", b.addr);
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    for _ in 0..1000 {
        let r = fetch(&client, listen, None, "/").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    eprintln!(
        "1000 sequential requests: backend accepted {} connection(s)",
        b.connections()
    );
    assert_eq!(b.requests(), 1000);
    assert!(
        b.connections() <= 4,
        "backend accepted {} connections for 1000 sequential requests",
        b.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_502_and_slow_backend_is_504() {
    let closed = free_addr().unwrap();
    let slow = Backend::slow("slow", Duration::from_secs(3)).await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: closed, paths: [{{prefix: /closed}}], action: {{forward: closed}}}}
        - {{name: slow, paths: [{{prefix: /slow}}], action: {{forward: slow}}}}
backends:
  closed: {{endpoints: [{{address: {closed}}}]}}
  slow:
    endpoints: [{{address: {}}}]
    timeouts: {{response: 300ms}}
"#,
        slow.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let r = fetch(&client, listen, None, "/closed").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(!r.text().contains(&closed.to_string()), "leaks the address");

    let started = Instant::now();
    let r = fetch(&client, listen, None, "/slow").await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "504 after {took:?}, want about 300ms"
    );
    assert_eq!(slow.requests(), 1);
    proxy
        .wait_for_log("status=504", 1, Duration::from_secs(2))
        .await
        .unwrap();
}
