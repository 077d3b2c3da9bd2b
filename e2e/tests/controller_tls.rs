//! Ingress `spec.tls` against a real API server: the HTTPS listener serves the
//! Secret's certificate by SNI and forwards over TLS, plain HTTP to a TLS host
//! is redirected (308) to HTTPS, a rotated Secret is served on the next
//! handshakes, and hosts without TLS are neither redirected nor given another
//! host's certificate. Needs a cluster (see `sluice_e2e::cluster`); skipped without.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::client::{request, send};
use sluice_e2e::k8s::Namespace;
use sluice_e2e::tls_client::{
    ALL_VERSIONS, Made, RawReply, any_cert_connector, get_over, handshake, leaf, self_signed,
};
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::net::SocketAddr;
use std::time::Duration;

const GIVE_UP: Duration = Duration::from_secs(20);
const TLS_HOST: &str = "tls.example";
const PLAIN_HOST: &str = "plain.example";

/// A handshake with `sni`, the certificate it got and the answer to `GET path`.
async fn https_get(addr: SocketAddr, sni: &str, path: &str) -> anyhow::Result<(Vec<u8>, RawReply)> {
    let stream = handshake(&any_cert_connector(ALL_VERSIONS), addr, sni).await?;
    let cert = leaf(&stream).unwrap_or_default();
    let reply = get_over(stream, sni, path).await?;
    Ok((cert, reply))
}

async fn setup(ns: &Namespace, backend: &Backend, cert: &Made) {
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
    let first = self_signed(&[TLS_HOST]);
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
    assert_eq!(reply.header("x-backend"), Some("web"), "{reply:?}");

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
    let second = self_signed(&[TLS_HOST]);
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
