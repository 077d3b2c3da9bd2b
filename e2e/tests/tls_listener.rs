//! HTTPS listeners against the real binary: the certificate chosen by SNI
//! (exact, wildcard, default), HTTP over TLS reaching the backend with
//! `X-Forwarded-Proto: https`, and the minimum protocol version. Rotation under
//! paced handshakes, many hosts and key types are in tls_hosts.rs.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, SupportedProtocolVersion};
use sluice_e2e::passthrough::{TestCert, leaf, test_cert};
use sluice_e2e::tls_client::any_server_cert;
use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn connector(versions: &[&'static SupportedProtocolVersion]) -> TlsConnector {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(any_server_cert())
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A handshake with `sni` (an IP address sends none).
async fn handshake(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned())?;
    Ok(connector.connect(name, tcp).await?)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("        {l}\n"))
        .collect::<String>()
}

fn table(listen: SocketAddr, backend: &Backend, certs: &[(&str, &TestCert)], tls: &str) -> String {
    let mut yaml = format!(
        "listeners:
  - https:
      name: web
      bind: {listen}
      tls: {tls}
      routes:
        - {{name: all, action: {{forward: app}}}}
backends:
  app:
    endpoints: [{{address: {}}}]
certificates:
",
        backend.addr
    );
    for (id, cert) in certs {
        yaml.push_str(&format!(
            "  {id}:\n    chain_pem: |\n{}    private_key: |\n{}",
            indent(&cert.chain),
            indent(&cert.key)
        ));
    }
    yaml
}

const ALL: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_http_flows_over_tls() {
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let (a, wild, fallback) = (
        test_cert(&["a.test"]),
        test_cert(&["*.c.test"]),
        test_cert(&["fallback.test"]),
    );
    let yaml = table(
        listen,
        &backend,
        &[("a", &a), ("wild", &wild), ("fallback", &fallback)],
        "{default_certificate: fallback}",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let tls = connector(ALL);
    for (sni, want) in [
        ("a.test", &a.der),
        ("A.TEST", &a.der),
        ("x.c.test", &wild.der),
        ("x.y.c.test", &fallback.der),
        ("unknown.test", &fallback.der),
        ("127.0.0.1", &fallback.der),
    ] {
        let stream = handshake(&tls, listen, sni).await.unwrap();
        assert_eq!(leaf(&stream).as_ref(), Some(want), "SNI {sni}");
    }

    // HTTP/1.1 over TLS reaches the backend, which learns the client used TLS.
    let stream = handshake(&tls, listen, "a.test").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/?echo")
        .header("host", "a.test")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "app");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let proto: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == "x-forwarded-proto")
        .filter_map(|pair| pair[1].as_str())
        .collect();
    assert_eq!(proto, ["https"], "{echo}");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls13_minimum_refuses_tls12_clients() {
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let a = test_cert(&["a.test"]);
    let _proxy = ProxyProcess::start(&table(
        listen,
        &backend,
        &[("a", &a)],
        "{min_version: tls13}",
    ))
    .await
    .unwrap();
    let tls12 = connector(&[&rustls::version::TLS12]);
    assert!(handshake(&tls12, listen, "a.test").await.is_err());
    let tls13 = connector(&[&rustls::version::TLS13]);
    let stream = handshake(&tls13, listen, "a.test").await.unwrap();
    assert_eq!(leaf(&stream), Some(a.der.clone()));
}
