//! Ingress `spec.tls` against a real API server: the HTTPS listener serves the
//! Secret's certificate by SNI and forwards over TLS, plain HTTP to a TLS host
//! is redirected (308) to HTTPS, a rotated Secret is served on the next
//! handshakes, and hosts without TLS are neither redirected nor given another
//! host's certificate. Needs a cluster (see `sluice_e2e::cluster`); skipped without.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::Reply;
use sluice_e2e::client::{request, send};
use sluice_e2e::k8s::Namespace;
use sluice_e2e::passthrough::{TestCert, leaf, test_cert};
use sluice_e2e::tls_client::{ALL_VERSIONS, client_config, connect, get_with, send_on};
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::net::SocketAddr;
use std::time::Duration;

const GIVE_UP: Duration = Duration::from_secs(20);
const TLS_HOST: &str = "tls.example";
const PLAIN_HOST: &str = "plain.example";

/// A handshake with `sni`, the certificate it got and the answer to `GET path`.
async fn https_get(addr: SocketAddr, sni: &str, path: &str) -> anyhow::Result<(Vec<u8>, Reply)> {
    let stream = connect(&client_config(None, ALL_VERSIONS), addr, sni).await?;
    let cert = leaf(&stream).unwrap_or_default();
    let reply = send_on(stream, get_with(sni, path, &[])).await?;
    Ok((cert, reply))
}

async fn setup(ns: &Namespace, backend: &Backend, cert: &TestCert) {
    ns.create_service("web").await.unwrap();
    ns.create_slice("web", "web", Some(backend.addr))
        .await
        .unwrap();
    ns.create_secret(
        "web-tls",
        "kubernetes.io/tls",
        &[("tls.crt", &cert.chain), ("tls.key", &cert.key)],
    )
    .await
    .unwrap();
    ns.create_ingress_from_json(serde_json::json!({
        "metadata": { "name": "secure" },
        "spec": {
            "ingressClassName": sluice_e2e::k8s::INGRESS_CLASS,
            "tls": [{ "hosts": [TLS_HOST], "secretName": "web-tls" }],
            "rules": [{
                "host": TLS_HOST,
                "http": { "paths": [{ "path": "/", "pathType": "Prefix", "backend": {
                    "service": { "name": "web", "port": { "number": sluice_e2e::k8s::SERVICE_PORT } } } }] },
            }],
        },
    }))
    .await
    .unwrap();
    ns.create_ingress("plain", PLAIN_HOST, "web").await.unwrap();
}

#[tokio::test]
async fn spec_tls_is_served_redirected_to_and_rotated() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("tls").await.unwrap();
    let backend = Backend::start("web").await;
    let first = test_cert(&[TLS_HOST]);
    setup(&ns, &backend, &first).await;
    let mut options = ControllerOptions::new(&ns, "tls");
    // The port clients use for HTTPS, as a Service in front would publish it.
    options.extra_args = vec!["--https-redirect-port".into(), "8443".into()];
    let controller = ControllerProcess::start(&cluster, options).await.unwrap();
    let https = controller.https_addr();

    // The Secret's certificate, by SNI, and HTTP over TLS to the Service.
    let (cert, reply) = eventually("the TLS host to be served", GIVE_UP, || async {
        let (cert, reply) = https_get(https, TLS_HOST, "/hello").await.ok()?;
        (reply.status == 200).then_some((cert, reply))
    })
    .await
    .unwrap();
    assert_eq!(cert, first.der, "the Secret's certificate");
    assert_eq!(reply.backend(), Some("web"), "{reply:?}");

    // Plain HTTP to the TLS host: 308 to the same URL over HTTPS, on the port
    // given by --https-redirect-port.
    let http = client::client();
    let req = request(
        http::Method::GET,
        controller.http_addr(),
        Some(TLS_HOST),
        "/a/b?c=d",
        &[],
        "",
    );
    let reply = send(&http, req).await.unwrap();
    assert_eq!(reply.status, 308, "{reply:?}");
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("https://{TLS_HOST}:8443/a/b?c=d").as_str())
    );

    // A host without spec.tls is served over plain HTTP, and over HTTPS gets
    // the default certificate, never another host's.
    let req = request(
        http::Method::GET,
        controller.http_addr(),
        Some(PLAIN_HOST),
        "/",
        &[],
        "",
    );
    let reply = send(&http, req).await.unwrap();
    assert_eq!(reply.status, 200, "not redirected: {reply:?}");
    let (cert, reply) = https_get(https, PLAIN_HOST, "/").await.unwrap();
    assert_ne!(cert, first.der, "the default certificate");
    assert_eq!(reply.status, 200, "{reply:?}");

    // Rotation: the Secret's new certificate reaches the next handshakes.
    let second = test_cert(&[TLS_HOST]);
    ns.set_secret(
        "web-tls",
        &[("tls.crt", &second.chain), ("tls.key", &second.key)],
    )
    .await
    .unwrap();
    eventually("the rotated certificate", GIVE_UP, || async {
        let (cert, reply) = https_get(https, TLS_HOST, "/").await.ok()?;
        (cert == second.der && reply.status == 200).then_some(())
    })
    .await
    .unwrap();
}

/// An Ingress with `annotations` and one rule: `host`, `/` → `service`.
async fn ingress(
    ns: &Namespace,
    name: &str,
    host: &str,
    service: &str,
    annotations: &[(&str, &str)],
) {
    ns.create_ingress_with(name, host, service, annotations)
        .await
        .unwrap();
}

#[tokio::test]
async fn annotations_pass_tls_through_and_reencrypt_with_verification() {
    use sluice_e2e::passthrough::{TlsEcho, connector, greeting, handshake as raw_handshake};
    use sluice_e2e::tls_backend::{TestCa, TlsBackend, TlsBackendOptions};

    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("tls-annotations").await.unwrap();

    // ssl-passthrough: the database-like backend terminates TLS itself.
    let db = TlsEcho::start("db", &["db.example"]).await;
    ns.create_service("db").await.unwrap();
    ns.create_slice("db", "db", Some(db.addr)).await.unwrap();
    ingress(
        &ns,
        "db",
        "db.example",
        "db",
        &[("sluice.dev/ssl-passthrough", "true")],
    )
    .await;

    // backend-protocol https, verified against a sluice.dev/ca Secret.
    let ca = TestCa::new("backend-ca");
    let cert = ca.server(&["api.internal"]);
    let api = TlsBackend::start(
        "api",
        TlsBackendOptions {
            certificate: &cert,
            alpn: &["http/1.1"],
            client_ca: None,
        },
    )
    .await;
    ns.create_service("api").await.unwrap();
    ns.create_slice("api", "api", Some(api.addr)).await.unwrap();
    ns.create_secret("api-ca", "sluice.dev/ca", &[("ca.crt", &ca.pem)])
        .await
        .unwrap();
    let verified = [
        ("sluice.dev/backend-protocol", "https"),
        ("sluice.dev/backend-tls-server-name", "api.internal"),
        ("sluice.dev/backend-tls-ca-secret", "api-ca"),
    ];
    ingress(&ns, "api", "api.example", "api", &verified).await;
    // The same backend under a name its certificate does not carry: refused.
    let wrong_name = [
        ("sluice.dev/backend-protocol", "https"),
        ("sluice.dev/backend-tls-server-name", "other.internal"),
        ("sluice.dev/backend-tls-ca-secret", "api-ca"),
    ];
    ingress(&ns, "wrong", "wrong.example", "api", &wrong_name).await;

    let controller =
        ControllerProcess::start(&cluster, ControllerOptions::new(&ns, "tls-annotations"))
            .await
            .unwrap();

    // Passthrough: the client sees the backend's own certificate and talks to it.
    let (der, name) = eventually("the passthrough host", GIVE_UP, || async {
        let tcp = tokio::net::TcpStream::connect(controller.https_addr())
            .await
            .ok()?;
        let mut tls = raw_handshake(&connector(&[], None), tcp, "db.example")
            .await
            .ok()?;
        let der = leaf(&tls)?;
        let name = greeting(&mut tls).await.ok()?;
        Some((der, name))
    })
    .await
    .unwrap();
    assert_eq!(der, db.der, "the backend's own certificate");
    assert_eq!(name, "db");

    // Re-encryption: plain HTTP in, TLS to the endpoint, verified.
    let http = client::client();
    let get = |host: &'static str| {
        let req = request(
            http::Method::GET,
            controller.http_addr(),
            Some(host),
            "/",
            &[],
            "",
        );
        send(&http, req)
    };
    eventually("the re-encrypted route", GIVE_UP, || async {
        (get("api.example").await.ok()?.status == 200).then_some(())
    })
    .await
    .unwrap();
    assert!(api.requests() >= 1, "the TLS backend answered");
    let before = api.requests();
    eventually("the unverifiable route to be refused", GIVE_UP, || async {
        (get("wrong.example").await.ok()?.status == 502).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        api.requests(),
        before,
        "no request reached a backend that does not verify"
    );
}
