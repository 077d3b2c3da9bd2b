//! Redirects of plain HTTP to HTTPS (308, the configured port, ACME HTTP-01
//! challenges left alone, nothing on https listeners) and HSTS (sent over TLS
//! only, replacing the backend's), against the real binary.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::client::{self, assert_outcomes, get, request};
use sluice_e2e::tls_client::{ALL_VERSIONS, client_config, fetch_tls};
use sluice_e2e::{Backend, ProxyProcess, Reply, free_addr};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_https_except_acme_challenges() {
    let app = Backend::start("app").await;
    let (plain, plain_443, secure) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let redirecting =
        "{name: shop, hosts: [shop.test], https_redirect: true, action: {forward: app}}";
    let yaml = format!(
        "listeners:
  - http:
      name: web
      bind: {plain}
      https_redirect_port: 8443
      routes:
        - {redirecting}
        - {{name: open, hosts: [open.test], action: {{forward: app}}}}
  - http:
      name: web443
      bind: {plain_443}
      https_redirect_port: 443
      routes: [{redirecting}]
  - https:
      name: secure
      bind: {secure}
      routes: [{redirecting}]
backends:
  app:
    endpoints: [{{address: {}}}]
",
        app.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client::client();
    assert_outcomes(
        &http,
        vec![
            (
                get(plain, Some("shop.test"), "/cart?id=1&x=%2F"),
                "308 https://shop.test:8443/cart?id=1&x=%2F",
            ),
            (
                get(plain, Some("SHOP.test:8080"), "/"),
                "308 https://shop.test:8443/",
            ),
            (
                request(
                    http::Method::POST,
                    plain,
                    Some("shop.test"),
                    "/form",
                    &[],
                    "a=1",
                ),
                "308 https://shop.test:8443/form",
            ),
            // ACME HTTP-01 must be answered over plain HTTP.
            (
                get(
                    plain,
                    Some("shop.test"),
                    "/.well-known/acme-challenge/t0k3n",
                ),
                "app",
            ),
            (get(plain, Some("open.test"), "/cart"), "app"),
            // 443 is the default: no port in the location.
            (
                get(plain_443, Some("shop.test"), "/a?b"),
                "308 https://shop.test/a?b",
            ),
        ],
    )
    .await;
    // On an https listener the flag does nothing.
    let tls = client_config(None, ALL_VERSIONS);
    let reply = fetch_tls(&tls, secure, "shop.test", "shop.test", "/cart", &[])
        .await
        .unwrap();
    assert_eq!(reply.outcome(), "app");
}

/// A backend that sends its own `Strict-Transport-Security: max-age=5`.
async fn hsts_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Bodyless requests only: a blank line ends each one.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let response = "HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=5\r\n\
                                        x-backend: sts\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn sts(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .get_all("strict-transport-security")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_sent_over_tls_only_and_replaces_the_backends() {
    let backend = hsts_backend().await;
    let (plain, secure) = (free_addr().unwrap(), free_addr().unwrap());
    let routes = "
        - {name: sts, hosts: [sts.test], hsts: {include_subdomains: true}, action: {forward: sts}}
        - {name: fixed, hosts: [fixed.test], hsts: {max_age: 1h}, action: {respond: {body: hi}}}
        - {name: none, hosts: [none.test], action: {forward: sts}}";
    let yaml = format!(
        "listeners:
  - http:
      name: plain
      bind: {plain}
      routes:{routes}
  - https:
      name: secure
      bind: {secure}
      routes:{routes}
backends:
  sts:
    endpoints: [{{address: {backend}}}]
"
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let tls = client_config(None, ALL_VERSIONS);
    let over_tls = |host: &'static str| {
        let tls = tls.clone();
        async move { fetch_tls(&tls, secure, host, host, "/", &[]).await.unwrap() }
    };
    let reply = over_tls("sts.test").await;
    assert_eq!(reply.backend(), Some("sts"));
    assert_eq!(sts(&reply), ["max-age=31536000; includeSubDomains"]);
    assert_eq!(sts(&over_tls("fixed.test").await), ["max-age=3600"]);
    assert_eq!(
        sts(&over_tls("none.test").await),
        ["max-age=5"],
        "no hsts: the backend's passes"
    );

    // Plain HTTP: nothing added (RFC 6797 §7.2).
    let http = client::client();
    let reply = client::fetch(&http, plain, Some("sts.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.backend(), Some("sts"));
    assert_eq!(sts(&reply), ["max-age=5"], "the backend's own, untouched");
    let reply = client::fetch(&http, plain, Some("fixed.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.text(), "hi");
    assert!(sts(&reply).is_empty());
}
