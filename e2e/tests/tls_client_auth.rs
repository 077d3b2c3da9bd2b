//! Client certificates (mTLS) against the real binary: what the backend learns
//! of a verified certificate, handshakes refused without one or with one from
//! another CA, optional certificates, a status instead of an alert, settings
//! per SNI host with 421 for a `Host` of another scope, spoofed headers
//! removed, and the session-resumption switch.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustls::HandshakeKind;
use sluice_e2e::tls_client::{
    ALL_VERSIONS, TestCa, client_config, connect, fetch_tls, get_with, indented, send_on,
};
use sluice_e2e::{Backend, ProxyProcess, Reply, free_addr};
use std::fmt::Write as _;
use std::net::SocketAddr;

const VERIFY: &str = "ssl-client-verify";
const SUBJECT: &str = "ssl-client-subject-dn";
const ISSUER: &str = "ssl-client-issuer-dn";
const SERIAL: &str = "ssl-client-serial";
const FINGERPRINT: &str = "ssl-client-fingerprint";
const ALL_HEADERS: [&str; 5] = [VERIFY, SUBJECT, ISSUER, SERIAL, FINGERPRINT];

/// A `ClientAuth` in block style at `indent` spaces.
fn auth(ca: &TestCa, fields: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut yaml = format!("{pad}ca: |\n{}", indented(&ca.pem, indent + 2));
    for field in fields.split(';').filter(|f| !f.trim().is_empty()) {
        let _ = writeln!(yaml, "{pad}{}", field.trim());
    }
    yaml
}

/// An `https` listener at `bind` forwarding everything to `app`, with `tls`
/// (block lines at 8 spaces).
fn listener(name: &str, bind: SocketAddr, tls: &str) -> String {
    format!(
        "  - https:
      name: {name}
      bind: {bind}
      tls:
{tls}      routes:
        - {{name: all, action: {{forward: app}}}}
"
    )
}

fn table(listeners: &[String], backend: &Backend) -> String {
    format!(
        "listeners:\n{}backends:\n  app:\n    endpoints: [{{address: {}}}]\n",
        listeners.concat(),
        backend.addr
    )
}

fn listener_auth(ca: &TestCa, fields: &str) -> String {
    format!("        client_auth:\n{}", auth(ca, fields, 10))
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The error of an exchange the proxy must refuse at the handshake.
fn refused(result: anyhow::Result<Reply>) -> String {
    match result {
        Ok(reply) => panic!("expected a refused handshake, got {}", reply.status),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_certificate_reaches_the_backend_and_clients_cannot_spoof_it() {
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let ca = TestCa::new("Sluice Test CA");
    let proxy = ProxyProcess::start(&table(
        &[listener("web", listen, &listener_auth(&ca, ""))],
        &backend,
    ))
    .await
    .unwrap();
    let alice = ca.client("Acme, Inc.", "alice", &[0x0a, 0xbc, 0x01]);
    let tls = client_config(Some(&alice), ALL_VERSIONS);
    let spoofed = [
        (VERIFY, "SUCCESS"),
        (SUBJECT, "CN=admin"),
        (SERIAL, "01"),
        (FINGERPRINT, "00"),
    ];
    let reply = fetch_tls(&tls, listen, "a.test", "a.test", "/?echo", &spoofed)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("SUCCESS"));
    assert_eq!(
        reply.echoed_one(SUBJECT).as_deref(),
        Some(r"CN=alice,O=Acme\, Inc.")
    );
    assert_eq!(
        reply.echoed_one(ISSUER).as_deref(),
        Some("CN=Sluice Test CA")
    );
    assert_eq!(reply.echoed_one(SERIAL).as_deref(), Some("0ABC01"));
    assert_eq!(reply.echoed_one(FINGERPRINT), Some(sha256_hex(alice.der())));
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_certificate_missing_or_from_another_ca_fails_the_handshake() {
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let (ca, other) = (TestCa::new("ours"), TestCa::new("theirs"));
    let _proxy = ProxyProcess::start(&table(
        &[listener(
            "web",
            listen,
            &listener_auth(&ca, "mode: require"),
        )],
        &backend,
    ))
    .await
    .unwrap();
    for versions in [ALL_VERSIONS, &[&rustls::version::TLS12]] {
        let none = client_config(None, versions);
        let err = refused(fetch_tls(&none, listen, "a.test", "a.test", "/", &[]).await);
        assert!(err.contains("alert"), "{versions:?}: {err}");
        let stranger = other.client("Evil", "mallory", &[1]);
        let stranger = client_config(Some(&stranger), versions);
        let err = refused(fetch_tls(&stranger, listen, "a.test", "a.test", "/", &[]).await);
        assert!(err.contains("alert"), "{versions:?}: {err}");
    }
    assert_eq!(backend.requests(), 0);
    // The same listener serves a client of its own CA.
    let good = client_config(Some(&ca.client("Acme", "alice", &[2])), ALL_VERSIONS);
    let reply = fetch_tls(&good, listen, "a.test", "a.test", "/", &[])
        .await
        .unwrap();
    assert_eq!(reply.outcome(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_certificates_and_a_status_instead_of_an_alert() {
    let backend = Backend::start("app").await;
    let (optional, status) = (free_addr().unwrap(), free_addr().unwrap());
    let (ca, other) = (TestCa::new("ours"), TestCa::new("theirs"));
    let _proxy = ProxyProcess::start(&table(
        &[
            listener("optional", optional, &listener_auth(&ca, "mode: optional")),
            listener(
                "status",
                status,
                &listener_auth(&ca, "on_failure: {status: 403}"),
            ),
        ],
        &backend,
    ))
    .await
    .unwrap();
    let none = client_config(None, ALL_VERSIONS);
    let good = client_config(Some(&ca.client("Acme", "alice", &[3])), ALL_VERSIONS);
    let stranger = client_config(Some(&other.client("Evil", "mallory", &[4])), ALL_VERSIONS);

    // optional: no certificate is fine, and says so.
    let reply = fetch_tls(
        &none,
        optional,
        "a.test",
        "a.test",
        "/?echo",
        &[(VERIFY, "SUCCESS")],
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("NONE"));
    for name in [SUBJECT, ISSUER, SERIAL, FINGERPRINT] {
        assert_eq!(reply.echoed_one(name), None, "{name}");
    }
    let reply = fetch_tls(&good, optional, "a.test", "a.test", "/?echo", &[])
        .await
        .unwrap();
    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("SUCCESS"));
    // ... but a certificate it does not accept still fails the handshake.
    let err = refused(fetch_tls(&stranger, optional, "a.test", "a.test", "/", &[]).await);
    assert!(err.contains("alert"), "{err}");

    // on_failure {status: 403}: the handshake completes, every request is refused.
    let served_before = backend.requests();
    for client in [&stranger, &none] {
        let stream = connect(client, status, "a.test").await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..2 {
            let response = sender
                .send_request(get_with("a.test", "/", &[]))
                .await
                .unwrap();
            assert_eq!(response.status(), 403);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert!(
                String::from_utf8_lossy(&body).contains("client certificate"),
                "{body:?}"
            );
        }
    }
    assert_eq!(
        backend.requests(),
        served_before,
        "nothing reached the backend"
    );
    let reply = fetch_tls(&good, status, "a.test", "a.test", "/?echo", &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("SUCCESS"));
    assert_eq!(
        reply.echoed_one(SUBJECT).as_deref(),
        Some("CN=alice,O=Acme")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_settings_and_misdirected_requests() {
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let ca = TestCa::new("ours");
    let tls = format!(
        "        host_client_auth:\n          secure.test:\n{}",
        auth(&ca, "mode: require", 12)
    );
    let _proxy = ProxyProcess::start(&table(&[listener("web", listen, &tls)], &backend))
        .await
        .unwrap();
    let none = client_config(None, ALL_VERSIONS);
    let alice = client_config(Some(&ca.client("Acme", "alice", &[5])), ALL_VERSIONS);
    let spoofed: Vec<(&str, &str)> = ALL_HEADERS.iter().map(|h| (*h, "forged")).collect();

    // The public host asks for nothing, and spoofed headers do not get through.
    let reply = fetch_tls(
        &none,
        listen,
        "public.test",
        "public.test",
        "/?echo",
        &spoofed,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    for name in ALL_HEADERS {
        assert_eq!(reply.echoed_one(name), None, "{name}");
    }
    // The secure host requires a certificate, by SNI (any case).
    for sni in ["secure.test", "SECURE.test"] {
        let err = refused(fetch_tls(&none, listen, sni, "secure.test", "/", &[]).await);
        assert!(err.contains("alert"), "{err}");
    }
    let reply = fetch_tls(
        &alice,
        listen,
        "secure.test",
        "secure.test",
        "/?echo",
        &spoofed,
    )
    .await
    .unwrap();
    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("SUCCESS"));
    assert_eq!(
        reply.echoed_one(SUBJECT).as_deref(),
        Some("CN=alice,O=Acme")
    );

    // A Host under other settings than the SNI: 421, whichever way round, and
    // without SNI (which gets the listener's settings).
    for (client, sni, host) in [
        (&none, "public.test", "secure.test"),
        (&none, "public.test", "Secure.Test:443"),
        (&none, "127.0.0.1", "secure.test"),
        (&alice, "secure.test", "public.test"),
    ] {
        let reply = fetch_tls(client, listen, sni, host, "/", &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 421, "SNI {sni}, Host {host}");
    }
    // Names under the same settings share a connection.
    let reply = fetch_tls(&none, listen, "public.test", "other.test", "/", &[])
        .await
        .unwrap();
    assert_eq!(reply.outcome(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumption_is_on_by_default_and_can_be_turned_off() {
    let backend = Backend::start("app").await;
    let (on, off, plain_off) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let ca = TestCa::new("ours");
    let _proxy = ProxyProcess::start(&table(
        &[
            listener("on", on, &listener_auth(&ca, "")),
            listener(
                "off",
                off,
                &format!(
                    "        session_resumption: false\n{}",
                    listener_auth(&ca, "")
                ),
            ),
            listener(
                "plain-off",
                plain_off,
                "        session_resumption: false\n",
            ),
        ],
        &backend,
    ))
    .await
    .unwrap();
    let alice = ca.client("Acme", "alice", &[6]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for (addr, second) in [
            (on, HandshakeKind::Resumed),
            (off, HandshakeKind::Full),
            (plain_off, HandshakeKind::Full),
        ] {
            // A fresh client (session cache) per case; its clones share it.
            let tls = client_config(Some(&alice), &[version]);
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let stream = connect(&tls, addr, "a.test").await.unwrap();
                kinds.push(stream.get_ref().1.handshake_kind());
                // Reading a response also reads the TLS 1.3 tickets sent before it.
                let reply = send_on(stream, get_with("a.test", "/?echo", &[]))
                    .await
                    .unwrap();
                if addr != plain_off {
                    // A resumed session still carries the verified certificate.
                    assert_eq!(reply.echoed_one(VERIFY).as_deref(), Some("SUCCESS"));
                    assert_eq!(
                        reply.echoed_one(SUBJECT).as_deref(),
                        Some("CN=alice,O=Acme")
                    );
                }
            }
            assert_eq!(
                kinds,
                [Some(HandshakeKind::Full), Some(second)],
                "{version:?} at {addr}"
            );
        }
    }
}
