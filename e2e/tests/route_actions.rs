//! What a route does besides choosing a backend: path rewrite, client-address
//! filters, the listener's default backend; and backends reached over h2c or by
//! DNS name (as the controller produces for Ingress annotations and ExternalName).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{Backend, ProxyProcess, free_addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_filters_and_default_backend() {
    let app = Backend::start("app").await;
    let fallback = Backend::start("fallback").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      default_backend: fallback
      routes:
        - name: rewritten
          paths: [{{prefix: /api/}}]
          rewrite: {{replace_prefix: /v2}}
          action: {{forward: app}}
        - name: internal-only
          paths: [{{prefix: /internal}}]
          allow_sources: [10.0.0.0/8, "fd00::/8"]
          action: {{forward: app}}
        - name: loopback-denied
          paths: [{{prefix: /denied}}]
          deny_sources: [127.0.0.0/8]
          action: {{forward: app}}
        - name: loopback-allowed
          paths: [{{prefix: /allowed}}]
          allow_sources: [127.0.0.1/32]
          deny_sources: [10.0.0.0/8]
          action: {{forward: app}}
backends:
  app:
    endpoints: [{{address: {app}}}]
  fallback:
    endpoints: [{{address: {fallback}}}]
"#,
        app = app.addr,
        fallback = fallback.addr,
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let reply = fetch(&client, listen, Some("a.test"), "/api/users?echo=1&x=2")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        seen["uri"], "/v2/users?echo=1&x=2",
        "prefix replaced, rest and query kept"
    );

    for (path, status) in [
        ("/internal", StatusCode::FORBIDDEN),
        ("/denied/x", StatusCode::FORBIDDEN),
        ("/allowed/x", StatusCode::OK),
    ] {
        let reply = fetch(&client, listen, Some("a.test"), path).await.unwrap();
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        if status == StatusCode::FORBIDDEN {
            assert_eq!(
                reply.backend(),
                None,
                "a refused request never reaches the backend"
            );
        }
    }

    let reply = fetch(&client, listen, Some("other.test"), "/nothing/matches")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.backend(),
        Some("fallback"),
        "unmatched requests go to the default backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backends_and_endpoints_by_name() {
    let grpcish = Backend::start("h2c").await;
    let named = Backend::start("named").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: h2c, paths: [{{prefix: /h2c}}], action: {{forward: h2c}}}}
        - {{name: named, paths: [{{prefix: /named}}], action: {{forward: named}}}}
backends:
  h2c:
    protocol: h2c
    endpoints: [{{address: {h2c}}}]
  named:
    endpoints: [{{address: "localhost:{named_port}"}}]
"#,
        h2c = grpcish.addr,
        named_port = named.addr.port(),
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();

    let reply = fetch(&client, listen, Some("a.test"), "/h2c?echo=1")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "the backend was spoken to in HTTP/2"
    );
    assert_eq!(
        reply.version,
        http::Version::HTTP_11,
        "the client keeps its own protocol"
    );

    let reply = fetch(&client, listen, Some("a.test"), "/named")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.backend(), Some("named"));
}
