//! `tcp` listeners' own limits and lifecycle: `max_conn` closes connections
//! over the limit at once and counts them; `deny_sources` and `allow_sources`
//! close connections by source address (deny first) and count them; listeners
//! open and close as the table file changes, without disturbing connections of
//! other listeners, and a removed listener's open connections go on.
//!
//! Clients leave from 127.0.0.x addresses (all of 127/8 is loopback on Linux);
//! where binding those fails, those parts are skipped with a notice.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::tcp::{
    TcpServer, connect_from, listener_counter, listener_stats, loopback_alias_works, round_trip,
    wait_closed, wait_counter,
};
use sluice_e2e::{ProxyProcess, eventually, free_addr};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_secs(5);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A `tcp` listener entry; `extra` adds fields (`max_conn: 5, `).
fn tcp_listener(name: &str, listen: SocketAddr, backend: &str, extra: &str) -> String {
    format!("  - tcp: {{name: {name}, bind: {listen}, backend: {backend}{extra}}}\n")
}

fn echo_backend(id: &str, echo: &TcpServer) -> String {
    format!("  {id}: {{endpoints: [{{address: {}}}]}}\n", echo.addr)
}

/// Five connections are open and served; the sixth is closed at once, never
/// reaches the backend, and `over_limit` counts it; once one of the five
/// closes, a new connection is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conn_closes_connections_over_the_limit_and_counts_them() {
    let echo = TcpServer::echo().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:\n{}backends:\n{}",
        tcp_listener("capped", listen, "echo", ", max_conn: 5"),
        echo_backend("echo", &echo)
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let mut open = Vec::new();
    for i in 0..5 {
        let mut tcp = TcpStream::connect(listen).await.unwrap();
        round_trip(&mut tcp, format!("client {i}").as_bytes(), SHORT)
            .await
            .unwrap();
        open.push(tcp);
    }
    wait_counter(&proxy, "capped", "active", 5).await.unwrap();

    let mut sixth = TcpStream::connect(listen).await.unwrap();
    let started = Instant::now();
    let (closed, got) = wait_closed(&mut sixth, Duration::from_secs(1))
        .await
        .unwrap();
    eprintln!(
        "the sixth connection: {closed:?} after {:?}",
        started.elapsed()
    );
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(echo.accepted(), 5, "the sixth reached the backend");
    wait_counter(&proxy, "capped", "over_limit", 1)
        .await
        .unwrap();
    // The five are still served.
    for (i, tcp) in open.iter_mut().enumerate() {
        round_trip(tcp, format!("again {i}").as_bytes(), SHORT)
            .await
            .unwrap();
    }

    drop(open.pop());
    wait_counter(&proxy, "capped", "active", 4).await.unwrap();
    let mut again = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut again, b"room again", SHORT).await.unwrap();
    assert_eq!(echo.accepted(), 6);
    assert_eq!(
        listener_counter(&proxy, "capped", "over_limit")
            .await
            .unwrap(),
        1
    );
}

/// `allow_sources: [127.0.0.0/30]` and `deny_sources: [127.0.0.3/32]`: .1 and
/// .2 are served; .3 is closed although allowed (deny is checked first) and
/// .5 because it is not allowed; `denied` counts both and the backend never
/// sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_denied_before_they_are_allowed_and_counted() {
    if !loopback_alias_works(ip(5)) {
        return;
    }
    let echo = TcpServer::echo().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:\n{}backends:\n{}",
        tcp_listener(
            "guarded",
            listen,
            "echo",
            ", allow_sources: [127.0.0.0/30], deny_sources: [127.0.0.3/32]"
        ),
        echo_backend("echo", &echo)
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    for served in [1, 2] {
        let mut tcp = connect_from(ip(served), listen).await.unwrap();
        round_trip(&mut tcp, b"let me in", SHORT)
            .await
            .unwrap_or_else(|e| panic!("127.0.0.{served}: {e:#}"));
    }
    for (n, refused) in [3, 5].into_iter().enumerate() {
        let mut tcp = connect_from(ip(refused), listen).await.unwrap();
        // The write may fail if the close is already there: what matters is
        // that nothing comes back and the connection ends.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"let me in").await;
        let (closed, got) = wait_closed(&mut tcp, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("127.0.0.{refused}: {e:#}"));
        eprintln!("127.0.0.{refused}: {closed:?}");
        assert!(got.is_empty(), "127.0.0.{refused} got {got:?}");
        wait_counter(&proxy, "guarded", "denied", n as u64 + 1)
            .await
            .unwrap();
    }
    assert_eq!(echo.accepted(), 2, "a denied source reached the backend");
}

/// A second listener added to the table file opens while a connection on the
/// first keeps carrying bytes; removed again, its port refuses new
/// connections while its open connection goes on, and so does the first's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_the_table_file_without_disturbing_connections() {
    let echo = TcpServer::echo().await;
    let (first, second) = (free_addr().unwrap(), free_addr().unwrap());
    let backends = format!("backends:\n{}", echo_backend("echo", &echo));
    let one = format!(
        "listeners:\n{}{backends}",
        tcp_listener("first", first, "echo", "")
    );
    let two = format!(
        "listeners:\n{}{}{backends}",
        tcp_listener("first", first, "echo", ""),
        tcp_listener("second", second, "echo", "")
    );
    let proxy = ProxyProcess::start(&one).await.unwrap();
    let mut long = TcpStream::connect(first).await.unwrap();
    round_trip(&mut long, b"before", SHORT).await.unwrap();
    assert!(
        TcpStream::connect(second).await.is_err(),
        "{second} accepts before it is in the table"
    );

    proxy.rewrite(&two).unwrap();
    let mut on_second = eventually("the second listener open", SHORT, || async {
        let mut tcp = TcpStream::connect(second).await.ok()?;
        round_trip(&mut tcp, b"new listener", SHORT).await.ok()?;
        Some(tcp)
    })
    .await
    .unwrap();
    round_trip(&mut long, b"after adding", SHORT).await.unwrap();
    let stats = listener_stats(&proxy, "second").await.unwrap();
    assert_eq!(stats["kind"], "tcp", "{stats}");
    assert_eq!(stats["bind"], second.to_string(), "{stats}");

    proxy.rewrite(&one).unwrap();
    eventually("the second listener closed", SHORT, || async {
        TcpStream::connect(second).await.is_err().then_some(())
    })
    .await
    .unwrap();
    round_trip(&mut on_second, b"listener gone, connection not", SHORT)
        .await
        .unwrap();
    round_trip(&mut long, b"after removing", SHORT)
        .await
        .unwrap();
    let mut fresh = TcpStream::connect(first).await.unwrap();
    round_trip(&mut fresh, b"first still open", SHORT)
        .await
        .unwrap();
    // Each connection was accepted once, by the listener it came to.
    assert_eq!(
        listener_counter(&proxy, "first", "accepted").await.unwrap(),
        2
    );
}
