//! The PROXY protocol on `tcp` listeners, against HAProxy from Debian as the
//! backend that reads it (`sluice_e2e::haproxy`: it answers with the source and
//! destination the header carried). A backend with `proxy_protocol: v1` or
//! `v2` learns the real client address and port, and the listener address
//! the client connected to; a listener with `accept_proxy` takes the address
//! from a trusted client's header and passes it on; malformed headers and
//! untrusted sources are closed and counted.
//!
//! Without HAProxy the tests are skipped with a notice, except under `CI=true`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::haproxy::{Haproxy, report};
use sluice_e2e::tcp::{
    PROXY_V2_SIGNATURE, TcpServer, connect_from, listener_counter, loopback_alias_works, proxy_v1,
    proxy_v2, round_trip, wait_closed, wait_counter,
};
use sluice_e2e::{ProxyProcess, free_addr};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_secs(5);

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A client address the proxy does not have itself, where the system allows.
fn client_source() -> IpAddr {
    if loopback_alias_works(loopback(2)) {
        loopback(2)
    } else {
        loopback(1)
    }
}

/// Addresses a client could claim in its own header (documentation ranges).
fn claimed() -> (SocketAddr, SocketAddr) {
    (
        "203.0.113.7:4242".parse().unwrap(),
        "198.51.100.1:5432".parse().unwrap(),
    )
}

/// The harness: HAProxy reads the headers this suite makes by hand, v1 and
/// v2, IPv4 and IPv6, and answers with their addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_haproxy_reads_hand_made_headers() {
    let Some(haproxy) = Haproxy::reporting_addresses().await.unwrap() else {
        return;
    };
    let (src, dst) = claimed();
    let want = format!("{src} {dst}");
    for header in [proxy_v1(src, dst), proxy_v2(src, dst)] {
        let tcp = TcpStream::connect(haproxy.addr).await.unwrap();
        assert_eq!(report(tcp, &header).await.unwrap(), want);
    }
    let (src6, dst6): (SocketAddr, SocketAddr) = (
        "[2001:db8::7]:4242".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let tcp = TcpStream::connect(haproxy.addr).await.unwrap();
    assert_eq!(
        report(tcp, &proxy_v2(src6, dst6)).await.unwrap(),
        "2001:db8::7:4242 2001:db8::1:443"
    );
    // Without a header HAProxy refuses the connection: it does need one.
    let tcp = TcpStream::connect(haproxy.addr).await.unwrap();
    assert!(report(tcp, b"").await.is_err());
}

/// A backend with `proxy_protocol: v2` (and one with `v1`) is told the
/// client's own address and port, and the listener address it connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_backend_sees_the_real_client() {
    let Some(haproxy) = Haproxy::reporting_addresses().await.unwrap() else {
        return;
    };
    let (listen_v1, listen_v2) = (free_addr().unwrap(), free_addr().unwrap());
    let yaml = format!(
        "listeners:
  - tcp: {{name: v1, bind: {listen_v1}, backend: v1}}
  - tcp: {{name: v2, bind: {listen_v2}, backend: v2}}
backends:
  v1: {{proxy_protocol: v1, endpoints: [{{address: {h}}}]}}
  v2: {{proxy_protocol: v2, endpoints: [{{address: {h}}}]}}
",
        h = haproxy.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let source = client_source();
    for listen in [listen_v1, listen_v2] {
        for _ in 0..3 {
            let tcp = connect_from(source, listen).await.unwrap();
            let me = tcp.local_addr().unwrap();
            let seen = report(tcp, b"")
                .await
                .unwrap_or_else(|e| panic!("through {listen}: {e:#}"));
            assert_eq!(seen, format!("{me} {listen}"), "through {listen}");
        }
    }
}

/// `accept_proxy` with 127.0.0.1 trusted: a client there sending a v2 (or v1)
/// header, even in pieces, is seen by a `proxy_protocol: v2` backend as the
/// address in its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_clients_header_is_passed_on() {
    let Some(haproxy) = Haproxy::reporting_addresses().await.unwrap() else {
        return;
    };
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - tcp:
      name: chain
      bind: {listen}
      backend: report
      accept_proxy: {{trusted: [127.0.0.1/32]}}
backends:
  report: {{proxy_protocol: v2, endpoints: [{{address: {}}}]}}
",
        haproxy.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let (src, dst) = claimed();
    let want = format!("{src} {dst}");
    for header in [proxy_v2(src, dst), proxy_v1(src, dst)] {
        let tcp = TcpStream::connect(listen).await.unwrap();
        assert_eq!(report(tcp, &header).await.unwrap(), want);
    }
    // The header in three writes, a moment apart: the proxy waits for all of it.
    let header = proxy_v2(src, dst);
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    for piece in [&header[..5], &header[5..17]] {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(report(tcp, &header[17..]).await.unwrap(), want);
    assert_eq!(
        listener_counter(&proxy, "chain", "proxy_header_rejected")
            .await
            .unwrap(),
        0
    );
}

/// With `accept_proxy`: a header the proxy cannot read, none at all, or one
/// that never arrives within `proxy_header` closes the connection and
/// `proxy_header_rejected` counts it; a valid header from a source that is
/// not trusted is closed too and counted the same way. None of them reaches
/// the backend, whose payload arrives without the header when it is valid and
/// trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_untrusted_headers_are_closed_and_counted() {
    let echo = TcpServer::echo().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - tcp:
      name: strict
      bind: {listen}
      backend: echo
      accept_proxy: {{trusted: [127.0.0.1/32]}}
      timeouts: {{proxy_header: 500ms}}
backends:
  echo: {{endpoints: [{{address: {}}}]}}
",
        echo.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let (src, dst) = claimed();

    // Valid and trusted: the backend gets the payload only.
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    tcp.write_all(&proxy_v2(src, dst)).await.unwrap();
    round_trip(&mut tcp, b"payload", SHORT).await.unwrap();
    drop(tcp);
    assert_eq!(echo.accepted(), 1);

    let mut bad_version = proxy_v2(src, dst);
    bad_version[12] = 0x31; // version 3
    let mut bad_family = proxy_v2(src, dst);
    bad_family[13] = 0x71; // no such address family
    let mut short_length = proxy_v2(src, dst);
    short_length[15] = 4; // too short for two IPv4 addresses and ports
    let malformed: [(&str, Vec<u8>); 6] = [
        (
            "a v1 header with garbage",
            b"PROXY GARBAGE here\r\n".to_vec(),
        ),
        (
            "a v1 header without CRLF",
            [b"PROXY TCP4 ".repeat(20)].concat(),
        ),
        (
            "plain bytes, no header",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a v2 header of version 3", bad_version),
        ("a v2 header of an unknown family", bad_family),
        ("a v2 header too short for its addresses", short_length),
    ];
    let mut rejected = 0;
    for (what, bytes) in malformed {
        let mut tcp = TcpStream::connect(listen).await.unwrap();
        let _ = tcp.write_all(&bytes).await;
        let _ = tcp.write_all(b"payload").await;
        let (closed, got) = wait_closed(&mut tcp, SHORT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        eprintln!("{what}: {closed:?}");
        assert!(got.is_empty(), "{what}: got {got:?}");
        rejected += 1;
        wait_counter(&proxy, "strict", "proxy_header_rejected", rejected)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    }

    // Half a header, then nothing: closed after `proxy_header`.
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    tcp.write_all(&PROXY_V2_SIGNATURE[..8]).await.unwrap();
    let started = Instant::now();
    wait_closed(&mut tcp, SHORT).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}, before the 500ms proxy_header timeout"
    );
    rejected += 1;
    wait_counter(&proxy, "strict", "proxy_header_rejected", rejected)
        .await
        .unwrap();

    // A valid header from a source that is not trusted.
    if loopback_alias_works(loopback(2)) {
        let mut tcp = connect_from(loopback(2), listen).await.unwrap();
        let _ = tcp.write_all(&proxy_v2(src, dst)).await;
        let _ = tcp.write_all(b"payload").await;
        let (closed, got) = wait_closed(&mut tcp, SHORT).await.unwrap();
        eprintln!("an untrusted source: {closed:?}");
        assert!(got.is_empty(), "{got:?}");
        rejected += 1;
        wait_counter(&proxy, "strict", "proxy_header_rejected", rejected)
            .await
            .unwrap();
    }
    assert_eq!(
        listener_counter(&proxy, "strict", "denied").await.unwrap(),
        0
    );
    assert_eq!(
        echo.accepted(),
        1,
        "a refused connection reached the backend"
    );
}

/// Behind a trusted load balancer, `deny_sources` judges the client the
/// header names, not the balancer: a denied client is closed and counted as
/// `denied`, another is served through the same balancer address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_judged_by_the_address_in_a_trusted_header() {
    let echo = TcpServer::echo().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - tcp:
      name: behind_lb
      bind: {listen}
      backend: echo
      accept_proxy: {{trusted: [127.0.0.1/32]}}
      deny_sources: [203.0.113.0/24]
backends:
  echo: {{endpoints: [{{address: {}}}]}}
",
        echo.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let (denied_client, dst) = claimed();
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    let _ = tcp.write_all(&proxy_v1(denied_client, dst)).await;
    let _ = tcp.write_all(b"payload").await;
    let (_, got) = wait_closed(&mut tcp, SHORT).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    wait_counter(&proxy, "behind_lb", "denied", 1)
        .await
        .unwrap();
    assert_eq!(echo.accepted(), 0);

    let other: SocketAddr = "192.0.2.10:5000".parse().unwrap();
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    tcp.write_all(&proxy_v2(other, dst)).await.unwrap();
    round_trip(&mut tcp, b"payload", SHORT).await.unwrap();
    assert_eq!(echo.accepted(), 1);
    assert_eq!(
        listener_counter(&proxy, "behind_lb", "proxy_header_rejected")
            .await
            .unwrap(),
        0
    );
}
