//! TLS passthrough against the real binary: connections routed by the SNI of
//! their ClientHello to TLS backends that hold their own certificates (the
//! client sees the backend's certificate, not the proxy's), the default
//! backend, connections closed without reaching a backend (no route, not TLS,
//! silent), ClientHellos split across writes and records, a large transfer
//! both ways, an `https` listener passing some names through and terminating
//! the rest, and `max_conn` queueing connections.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sluice_e2e::passthrough::{
    Dribble, TlsEcho, certificates_yaml, connector, greeting, handshake, leaf, noise, test_cert,
};
use sluice_e2e::{Backend, ProxyProcess, eventually, free_addr, health};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `tls_passthrough` listener: `routes` are `(name, hosts, backend)`, every
/// backend `(id, endpoints)` balanced round robin.
fn passthrough_table(
    listen: SocketAddr,
    routes: &[(&str, &str, &str)],
    default: Option<&str>,
    timeouts: &str,
    backends: &[(&str, &str)],
) -> String {
    let mut yaml = format!(
        "listeners:
  - tls_passthrough:
      name: pass
      bind: {listen}
      timeouts: {timeouts}
"
    );
    if let Some(d) = default {
        yaml.push_str(&format!("      default_backend: {d}\n"));
    }
    yaml.push_str("      routes:\n");
    for (name, hosts, backend) in routes {
        yaml.push_str(&format!(
            "        - {{name: {name}, hosts: {hosts}, backend: {backend}}}\n"
        ));
    }
    yaml.push_str("backends:\n");
    for (id, body) in backends {
        yaml.push_str(&format!("  {id}: {body}\n"));
    }
    yaml
}

fn endpoints(backend: &TlsEcho) -> String {
    format!("{{endpoints: [{{address: {}}}]}}", backend.addr)
}

/// Connects with `sni` and returns the backend's certificate and greeting.
async fn reach(listen: SocketAddr, sni: &str) -> anyhow::Result<(Vec<u8>, String)> {
    let tcp = TcpStream::connect(listen).await?;
    let mut tls = handshake(&connector(&[], None), tcp, sni).await?;
    let name = greeting(&mut tls).await?;
    Ok((leaf(&tls).unwrap_or_default(), name))
}

/// Reads until the proxy closes the connection (EOF or reset), within `limit`;
/// returns what arrived before.
async fn closed_within(mut tcp: TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, tcp.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {limit:?}"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_backend_which_terminates_tls_itself() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let b = TlsEcho::start("B", &["b.example.com"]).await;
    let d = TlsEcho::start("D", &["default.example.com"]).await;
    let listen = free_addr().unwrap();
    let yaml = passthrough_table(
        listen,
        &[
            ("a", "[a.example.com]", "a"),
            ("b", "[b.example.com, '*.wild.example.com']", "b"),
        ],
        Some("d"),
        "{}",
        &[
            ("a", &endpoints(&a)),
            ("b", &endpoints(&b)),
            ("d", &endpoints(&d)),
        ],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    for (sni, want, der) in [
        ("a.example.com", "A", &a.der),
        ("A.Example.COM", "A", &a.der),
        ("b.example.com", "B", &b.der),
        ("x.wild.example.com", "B", &b.der),
        // A wildcard covers one label.
        ("x.y.wild.example.com", "D", &d.der),
        ("unknown.example.com", "D", &d.der),
        // An IP address sends no SNI.
        ("127.0.0.1", "D", &d.der),
    ] {
        let (cert, name) = reach(listen, sni).await.unwrap();
        assert_eq!(name, want, "SNI {sni}");
        assert_eq!(&cert, der, "SNI {sni}: the backend's own certificate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_route_or_tls_or_a_hello_are_closed_before_any_backend() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let listen = free_addr().unwrap();
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{client_hello: 500ms}",
        &[("a", &endpoints(&a))],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    assert_eq!(reach(listen, "a.example.com").await.unwrap().1, "A");
    assert_eq!(a.accepted(), 1);

    // No default backend: an unknown name and no name are closed.
    for sni in ["other.example.com", "127.0.0.1"] {
        assert!(reach(listen, sni).await.is_err(), "SNI {sni} was served");
    }
    // Plain HTTP is not a ClientHello: closed at once, nothing answered.
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(tcp, Duration::from_secs(2)).await.is_empty());
    // A client that says nothing is closed after `client_hello`.
    let tcp = TcpStream::connect(listen).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(tcp, Duration::from_secs(5)).await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}, before the 500ms client_hello timeout"
    );
    assert_eq!(a.accepted(), 1, "no backend saw those connections");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_split_across_writes_and_records_still_routes() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let listen = free_addr().unwrap();
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{}",
        &[("a", &endpoints(&a))],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    for (max_fragment, chunk) in [(None, 7), (Some(64), 1000), (Some(64), 5)] {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let dribble = Dribble::new(tcp, chunk, 4096, Duration::from_millis(3));
        let written = dribble.written.clone();
        let mut tls = handshake(&connector(&["h2"], max_fragment), dribble, "a.example.com")
            .await
            .unwrap();
        assert_eq!(greeting(&mut tls).await.unwrap(), "A");
        assert_eq!(leaf(&tls).unwrap(), a.der);
        if max_fragment.is_some() {
            // The hello really spans records: the first is short and a
            // second handshake record follows it.
            let bytes = written.lock().unwrap().clone();
            let first = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
            assert!(first <= 64, "first record of {first} bytes");
            assert_eq!(bytes[5 + first], 22, "a second handshake record");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transfer_arrives_intact_both_ways() {
    const SIZE: usize = 8 << 20;
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let listen = free_addr().unwrap();
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{}",
        &[("a", &endpoints(&a))],
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let tcp = TcpStream::connect(listen).await.unwrap();
    let mut tls = handshake(&connector(&[], None), tcp, "a.example.com")
        .await
        .unwrap();
    assert_eq!(greeting(&mut tls).await.unwrap(), "A");
    let sent = noise(SIZE, 42);
    let (mut r, mut w) = tokio::io::split(tls);
    let to_send = sent.clone();
    // Writing and reading at once: the echo cannot get ahead of either.
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        // Half-close: the backend sees the end, finishes echoing, closes.
        w.shutdown().await.unwrap();
    });
    let mut echoed = Vec::with_capacity(SIZE);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut echoed))
        .await
        .expect("the echo did not end within 60 s")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), SIZE);
    assert!(echoed == sent, "the echoed bytes differ from those sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_passes_matching_names_through_and_terminates_the_rest() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let app = Backend::start("app").await;
    let web = test_cert(&["web.example.com"]);
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - https:
      name: websecure
      bind: {listen}
      tls:
        passthrough: [{{name: a, hosts: [a.example.com], backend: a}}]
      routes:
        - {{name: all, action: {{forward: app}}}}
backends:
  a: {}
  app: {{endpoints: [{{address: {}}}]}}
{}",
        endpoints(&a),
        app.addr,
        certificates_yaml(&[("web", &web)])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let (cert, name) = reach(listen, "a.example.com").await.unwrap();
    assert_eq!((cert, name.as_str()), (a.der.clone(), "A"));

    // Other names are terminated by the proxy, also when the hello dribbles
    // in over several records (the bytes read for the peek are replayed).
    for max_fragment in [None, Some(64)] {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let dribble = Dribble::new(tcp, 9, 4096, Duration::from_millis(2));
        let tls = handshake(
            &connector(&["http/1.1"], max_fragment),
            dribble,
            "web.example.com",
        )
        .await
        .unwrap();
        assert_eq!(leaf(&tls).unwrap(), web.der, "the proxy's certificate");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "web.example.com")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-backend"], "app");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"app");
    }
    assert_eq!(a.accepted(), 1, "only the passthrough name reached A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conn_queues_connections_and_the_admin_counts_them() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let listen = free_addr().unwrap();
    let body = format!(
        "{{endpoints: [{{address: {}, max_conn: 1}}], timeouts: {{queue: 20s}}}}",
        a.addr
    );
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{}",
        &[("a", &body)],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let address = a.addr.to_string();

    let tcp = TcpStream::connect(listen).await.unwrap();
    let mut first = handshake(&connector(&[], None), tcp, "a.example.com")
        .await
        .unwrap();
    assert_eq!(greeting(&mut first).await.unwrap(), "A");
    let in_flight = health::endpoint(&proxy, "a", &address).await["in_flight"].clone();
    assert_eq!(
        in_flight, 1,
        "the open connection holds the endpoint's slot"
    );

    let second = tokio::spawn(async move {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let mut tls = handshake(&connector(&[], None), tcp, "a.example.com")
            .await
            .unwrap();
        greeting(&mut tls).await.unwrap()
    });
    eventually(
        "the second connection queued",
        Duration::from_secs(5),
        || async {
            let (_, body) = proxy.admin_get("/debug/backends").await.ok()?;
            let all: serde_json::Value = serde_json::from_str(&body).ok()?;
            (all[0]["queued"] == 1).then_some(())
        },
    )
    .await
    .unwrap();
    assert!(!second.is_finished());
    assert_eq!(a.accepted(), 1, "the backend saw only the first connection");

    drop(first);
    let name = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the queued connection was not served after the first closed")
        .unwrap();
    assert_eq!(name, "A");
    assert_eq!(a.accepted(), 2);
    eventually(
        "no connection in flight",
        Duration::from_secs(5),
        || async {
            let e = health::endpoint(&proxy, "a", &address).await;
            (e["in_flight"] == 0 && e["requests"] == 2).then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_is_retried_on_another_and_idle_connections_close() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let dead = free_addr().unwrap();
    let listen = free_addr().unwrap();
    let body = format!(
        "{{endpoints: [{{address: {dead}}}, {{address: {}}}]}}",
        a.addr
    );
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{idle: 500ms}",
        &[("a", &body)],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    // Round robin sends every other connection to the dead endpoint first.
    for _ in 0..4 {
        assert_eq!(reach(listen, "a.example.com").await.unwrap().1, "A");
    }
    assert!(
        !proxy.log_lines("retrying").is_empty(),
        "no retry logged:\n{}",
        proxy.logs()
    );

    // Nothing moving for `idle` closes the connection.
    let tcp = TcpStream::connect(listen).await.unwrap();
    let mut tls = handshake(&connector(&[], None), tcp, "a.example.com")
        .await
        .unwrap();
    assert_eq!(greeting(&mut tls).await.unwrap(), "A");
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after 5 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}, before the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_open_passthrough_connections_keep_working_until_the_drain_deadline() {
    let a = TlsEcho::start("A", &["a.example.com"]).await;
    let listen = free_addr().unwrap();
    let yaml = passthrough_table(
        listen,
        &[("a", "[a.example.com]", "a")],
        None,
        "{}",
        &[("a", &endpoints(&a))],
    );
    let options = sluice_e2e::Options {
        extra_args: vec!["--drain-timeout".into(), "2s".into()],
        ..Default::default()
    };
    let mut proxy = ProxyProcess::start_with(&yaml, options).await.unwrap();
    let tcp = TcpStream::connect(listen).await.unwrap();
    let mut tls = handshake(&connector(&[], None), tcp, "a.example.com")
        .await
        .unwrap();
    assert_eq!(greeting(&mut tls).await.unwrap(), "A");

    proxy.signal("TERM").unwrap();
    let signalled = Instant::now();
    proxy
        .wait_for_log("stopped accepting", 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(TcpStream::connect(listen).await.is_err(), "still accepting");
    // Draining: the open connection still carries bytes both ways.
    tls.write_all(b"ping").await.unwrap();
    let mut pong = [0; 4];
    tokio::time::timeout(Duration::from_secs(2), tls.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"ping");
    // Then the deadline ends it and the proxy exits.
    proxy.wait_exit(Duration::from_secs(10)).await.unwrap();
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "exited {waited:?} after SIGTERM, before the 2 s drain deadline"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection outlived the proxy");
}
