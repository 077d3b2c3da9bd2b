//! Backend TLS (re-encryption) against the real binary and real TLS backends:
//! verification against a CA with the right SNI, refusal of certificates that
//! do not verify (no request reaches them), `insecure_skip_verify`, HTTP/2 by
//! ALPN, a client certificate for mutual TLS, keep-alive reuse of one TLS
//! connection, the handshake bounded by the connect timeout, and unusable
//! settings answering 503 without ever speaking plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Version;
use sluice_e2e::client::{client, fetch};
use sluice_e2e::process::check;
use sluice_e2e::tls_backend::{Issued, TestCa, TlsBackend, TlsBackendOptions, indent, self_signed};
use sluice_e2e::{Backend, ProxyProcess, eventually, free_addr};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One backend of the table: its id (routed from host `<id>.test`), endpoint
/// and the lines of its `tls:` block (indented by six spaces).
struct Spec<'a> {
    id: &'a str,
    address: String,
    tls: String,
    /// Further backend fields, indented by four spaces.
    extra: &'a str,
}

fn table(listen: SocketAddr, backends: &[Spec<'_>], certificates: &[(&str, &Issued)]) -> String {
    let mut yaml =
        format!("listeners:\n  - http:\n      name: web\n      bind: {listen}\n      routes:\n");
    for b in backends {
        yaml.push_str(&format!(
            "        - {{name: {0}, hosts: [{0}.test], action: {{forward: {0}}}}}\n",
            b.id
        ));
    }
    yaml.push_str("backends:\n");
    for b in backends {
        yaml.push_str(&format!(
            "  {}:\n    endpoints: [{{address: '{}'}}]\n{}    tls:\n{}",
            b.id, b.address, b.extra, b.tls
        ));
        if b.tls.is_empty() {
            yaml.push_str("      {}\n");
        }
    }
    if !certificates.is_empty() {
        yaml.push_str("certificates:\n");
        for (id, cert) in certificates {
            yaml.push_str(&cert.table_entry(id));
        }
    }
    yaml
}

fn ca_field(ca: &TestCa) -> String {
    format!("      ca: |\n{}", indent(&ca.pem, 8))
}

fn options<'a>(certificate: &'a Issued, alpn: &'a [&'a str]) -> TlsBackendOptions<'a> {
    TlsBackendOptions {
        certificate,
        alpn,
        client_ca: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_reencrypted_with_verification_and_the_right_sni() {
    let ca = TestCa::new("backend CA");
    let named_cert = ca.server(&["api.internal"]);
    let ip_cert = ca.server(&["127.0.0.1"]);
    let dns_cert = ca.server(&["localhost"]);
    // Offers HTTP/2 too; the default ALPN asks for HTTP/1.1 only.
    let named = TlsBackend::start("named", options(&named_cert, &["h2", "http/1.1"])).await;
    let ip = TlsBackend::start("ip", options(&ip_cert, &["http/1.1"])).await;
    let dns = TlsBackend::start("dns", options(&dns_cert, &["http/1.1"])).await;
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            Spec {
                id: "named",
                address: named.addr.to_string(),
                tls: format!("      server_name: api.internal\n{}", ca_field(&ca)),
                extra: "",
            },
            Spec {
                id: "ip",
                address: ip.addr.to_string(),
                tls: ca_field(&ca),
                extra: "",
            },
            Spec {
                id: "dns",
                address: format!("localhost:{}", dns.addr.port()),
                tls: ca_field(&ca),
                extra: "",
            },
        ],
        &[],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client();
    for backend in [&named, &ip, &dns] {
        let host = format!("{}.test", backend.name());
        let reply = fetch(&http, listen, Some(&host), "/").await.unwrap();
        assert_eq!(reply.outcome(), backend.name(), "{}", proxy.logs());
        assert_eq!(backend.versions(), [Version::HTTP_11]);
        let alpn = backend.handshakes()[0].alpn.clone();
        assert_eq!(alpn.as_deref(), Some("http/1.1"), "{}", backend.name());
    }
    let sni = |b: &TlsBackend| b.handshakes()[0].sni.clone();
    assert_eq!(sni(&named).as_deref(), Some("api.internal"));
    // An IP address is never sent as SNI; the certificate carries the address.
    assert_eq!(sni(&ip), None);
    assert_eq!(sni(&dns).as_deref(), Some("localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_are_refused_before_any_request() {
    let ca = TestCa::new("backend CA");
    let other_ca = TestCa::new("someone else's CA");
    let wrong_name_cert = ca.server(&["other.internal"]);
    let wrong_ca_cert = other_ca.server(&["api.internal"]);
    let wrong_name = TlsBackend::start("wrongname", options(&wrong_name_cert, &[])).await;
    let wrong_ca = TlsBackend::start("wrongca", options(&wrong_ca_cert, &[])).await;
    let listen = free_addr().unwrap();
    let tls = format!("      server_name: api.internal\n{}", ca_field(&ca));
    fn spec<'a>(b: &'a TlsBackend, tls: &str) -> Spec<'a> {
        Spec {
            id: b.name(),
            address: b.addr.to_string(),
            tls: tls.to_owned(),
            extra: "    retries: 1\n",
        }
    }
    let yaml = table(
        listen,
        &[spec(&wrong_name, &tls), spec(&wrong_ca, &tls)],
        &[],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client();
    for (backend, why) in [
        (&wrong_name, "not valid for name"),
        (&wrong_ca, "UnknownIssuer"),
    ] {
        let host = format!("{}.test", backend.name());
        let reply = fetch(&http, listen, Some(&host), "/").await.unwrap();
        assert_eq!(reply.status, 502, "{}", backend.name());
        // A failed handshake is a connect failure: retried, then 502.
        eventually(
            "both refused handshakes",
            Duration::from_secs(5),
            || async { (backend.failed() == 2).then_some(()) },
        )
        .await
        .unwrap();
        assert_eq!(backend.requests(), 0, "{}", backend.name());
        assert!(backend.handshakes().is_empty());
        let needle = format!("backend={}", backend.name());
        let lines = proxy
            .wait_for_log(&needle, 1, Duration::from_secs(5))
            .await
            .unwrap();
        let line = lines.last().unwrap();
        assert!(
            line.contains("status=502")
                && line.contains("invalid peer certificate")
                && line.contains(why),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_reaches_a_self_signed_backend_and_warns() {
    let cert = self_signed(&["whoever.invalid"]);
    let backend = TlsBackend::start("insecure", options(&cert, &[])).await;
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[Spec {
            id: "insecure",
            address: backend.addr.to_string(),
            tls: "      insecure_skip_verify: true\n".into(),
            extra: "",
        }],
        &[],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let reply = fetch(&client(), listen, Some("insecure.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.outcome(), "insecure");
    assert_eq!(backend.handshakes().len(), 1);
    proxy
        .wait_for_log(
            "insecure_skip_verify: endpoint certificates are not verified",
            1,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_lets_the_backend_choose_http2_and_h2_alone_insists() {
    let ca = TestCa::new("backend CA");
    let cert = ca.server(&["127.0.0.1"]);
    let h2 = TlsBackend::start("h2", options(&cert, &["h2", "http/1.1"])).await;
    let h1only = TlsBackend::start("h1only", options(&cert, &["http/1.1"])).await;
    // Answers no ALPN at all (hyper's server still detects HTTP/2 by its preface).
    let silent = TlsBackend::start("noalpn", options(&cert, &[])).await;
    let listen = free_addr().unwrap();
    let tls = format!("{}      alpn: [h2, http/1.1]\n", ca_field(&ca));
    let yaml = table(
        listen,
        &[
            Spec {
                id: "h2",
                address: h2.addr.to_string(),
                tls: tls.clone(),
                extra: "",
            },
            Spec {
                id: "h1only",
                address: h1only.addr.to_string(),
                tls,
                extra: "",
            },
            // Only h2 offered: HTTP/2 even when the endpoint answers no ALPN.
            Spec {
                id: "noalpn",
                address: silent.addr.to_string(),
                tls: format!("{}      alpn: [h2]\n", ca_field(&ca)),
                extra: "",
            },
        ],
        &[],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client();
    for _ in 0..3 {
        for host in ["h2.test", "h1only.test", "noalpn.test"] {
            let reply = fetch(&http, listen, Some(host), "/").await.unwrap();
            assert_eq!(reply.status, 200, "{host}");
        }
    }
    assert_eq!(h2.versions(), [Version::HTTP_2; 3]);
    assert_eq!(h2.handshakes()[0].alpn.as_deref(), Some("h2"));
    // One HTTP/2 connection carries every request.
    assert_eq!(h2.accepted(), 1);
    // A backend that declines HTTP/2 is spoken to in HTTP/1.1.
    assert_eq!(h1only.versions(), [Version::HTTP_11; 3]);
    assert_eq!(h1only.handshakes()[0].alpn.as_deref(), Some("http/1.1"));
    assert_eq!(silent.versions(), [Version::HTTP_2; 3]);
    assert_eq!(silent.handshakes()[0].alpn, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_for_mutual_tls() {
    let ca = TestCa::new("backend CA");
    let client_ca = TestCa::new("client CA");
    let server_cert = ca.server(&["127.0.0.1"]);
    let proxy_cert = client_ca.client("sluice");
    let backend = TlsBackend::start(
        "mtls",
        TlsBackendOptions {
            certificate: &server_cert,
            alpn: &["http/1.1"],
            client_ca: Some(&client_ca),
        },
    )
    .await;
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            Spec {
                id: "mtls",
                address: backend.addr.to_string(),
                tls: format!("{}      client_certificate: proxy\n", ca_field(&ca)),
                extra: "",
            },
            // The same endpoint without a certificate to present.
            Spec {
                id: "anonymous",
                address: backend.addr.to_string(),
                tls: ca_field(&ca),
                extra: "    retries: 0\n",
            },
        ],
        &[("proxy", &proxy_cert)],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client();
    let reply = fetch(&http, listen, Some("mtls.test"), "/").await.unwrap();
    assert_eq!(reply.outcome(), "mtls", "{}", proxy.logs());
    let presented = backend.handshakes()[0].client_certificate.clone();
    assert_eq!(presented.as_deref(), Some(proxy_cert.der.as_ref()));

    let reply = fetch(&http, listen, Some("anonymous.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    eventually("the refused handshake", Duration::from_secs(5), || async {
        (backend.failed() >= 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        backend.requests(),
        1,
        "only the authenticated request arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_tls_connection() {
    let ca = TestCa::new("backend CA");
    let cert = ca.server(&["127.0.0.1"]);
    let backend = TlsBackend::start("pooled", options(&cert, &["http/1.1"])).await;
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[Spec {
            id: "pooled",
            address: backend.addr.to_string(),
            tls: ca_field(&ca),
            extra: "",
        }],
        &[],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let http = client();
    for _ in 0..5 {
        let reply = fetch(&http, listen, Some("pooled.test"), "/")
            .await
            .unwrap();
        assert_eq!(reply.outcome(), "pooled");
    }
    assert_eq!(backend.requests(), 5);
    assert_eq!(backend.accepted(), 1, "one TCP connection");
    assert_eq!(backend.handshakes().len(), 1, "one TLS handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_is_a_connect_timeout() {
    // Accepts TCP and never answers the ClientHello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[Spec {
            id: "silent",
            address: addr.to_string(),
            tls: "      insecure_skip_verify: true\n".into(),
            extra: "    retries: 0\n    timeouts: {connect: 300ms, response: 30s, pool_idle: 90s}\n",
        }],
        &[],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let started = Instant::now();
    let reply = fetch(&client(), listen, Some("silent.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_settings_answer_503_and_never_plaintext() {
    // A plain-HTTP backend: any request reaching it would be a plaintext fallback.
    let plain = Backend::start("plain").await;
    let mut mismatched = self_signed(&["client"]);
    mismatched.key_pem = self_signed(&["other"]).key_pem;
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[Spec {
            id: "broken",
            address: plain.addr.to_string(),
            tls: "      insecure_skip_verify: true\n      client_certificate: mismatched\n".into(),
            extra: "",
        }],
        &[("mismatched", &mismatched)],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let reply = fetch(&client(), listen, Some("broken.test"), "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(plain.connections(), 0);
    let lines = proxy
        .wait_for_log("the backend is unusable", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        lines[0].contains("`broken`") && lines[0].contains("client_certificate"),
        "{}",
        lines[0]
    );

    // A table file with settings that cannot work is refused, by field path.
    let h2c = yaml.replace("    tls:\n", "    protocol: h2c\n    tls:\n");
    let checked = check(&h2c).unwrap();
    assert!(!checked.success);
    assert!(
        checked.stderr.contains("backends.broken.protocol"),
        "{}",
        checked.stderr
    );
}
