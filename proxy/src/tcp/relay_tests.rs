//! `relay` over real loopback sockets: order, counts, half-close, reset,
//! silence and stop.

use super::relay::{Ended, Idle, Meter, relay};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Totals {
    up: AtomicU64,
    down: AtomicU64,
}

impl Meter for Totals {
    fn client_to_server(&self, bytes: u64) {
        self.up.fetch_add(bytes, Ordering::Relaxed);
    }
    fn server_to_client(&self, bytes: u64) {
        self.down.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Two connected sockets: (the far end, the proxy's end).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (near, _) = listener.accept().await.unwrap();
    (far, near)
}

const LONG: Idle = Idle::Either(Duration::from_secs(30));

#[tokio::test]
async fn bytes_flow_both_ways_the_first_bytes_first_and_half_closes_pass_on() {
    let (mut user, client) = pair().await;
    let (server, mut backend) = pair().await;
    let totals = Totals::default();
    let stop = CancellationToken::new();
    let relaying = relay(&client, &server, b"HEADER early ", 7, LONG, &totals, &stop);
    let talking = async {
        user.write_all(b"question").await.unwrap();
        // The client is done sending; it still waits for the answer.
        user.shutdown().await.unwrap();
        let mut asked = Vec::new();
        backend.read_to_end(&mut asked).await.unwrap();
        assert_eq!(
            asked, b"HEADER early question",
            "the backend saw the client's EOF"
        );
        let big = vec![7u8; 300_000];
        backend.write_all(&big).await.unwrap();
        backend.shutdown().await.unwrap();
        let mut answer = Vec::new();
        user.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, big);
    };
    let (relayed, ()) = tokio::join!(relaying, talking);
    assert_eq!(relayed.ended, Ended::Closed);
    // The proxy's own preamble is not the client's.
    assert_eq!((relayed.up, relayed.down), (14, 300_000));
    assert_eq!(totals.up.load(Ordering::Relaxed), 14);
    assert_eq!(totals.down.load(Ordering::Relaxed), 300_000);
}

#[tokio::test]
async fn a_reset_from_the_server_reaches_the_client_as_a_reset() {
    let (mut user, client) = pair().await;
    let (server, backend) = pair().await;
    let stop = CancellationToken::new();
    let relaying = async {
        let relayed = relay(&client, &server, b"", 0, LONG, &Totals::default(), &stop).await;
        // The relay's sockets close when the connection's task ends.
        drop((client, server));
        relayed
    };
    let resetting = async {
        socket2::SockRef::from(&backend)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(backend);
    };
    let (relayed, ()) = tokio::join!(relaying, resetting);
    assert_eq!(relayed.ended, Ended::Reset);
    let mut buf = [0u8; 16];
    let err = user
        .read(&mut buf)
        .await
        .expect_err("a reset, not a clean end");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn silence_ends_the_connection_and_traffic_either_way_keeps_a_tunnel_open() {
    let (_user, client) = pair().await;
    let (server, _backend) = pair().await;
    let stop = CancellationToken::new();
    let idle = Idle::PerSide {
        client: Duration::from_millis(150),
        server: Duration::from_secs(30),
    };
    let started = tokio::time::Instant::now();
    let relayed = relay(&client, &server, b"", 0, idle, &Totals::default(), &stop).await;
    assert_eq!(relayed.ended, Ended::Idle, "a silent client is cut");
    assert!(started.elapsed() >= Duration::from_millis(150));

    // With a tunnel timeout, a server that keeps talking keeps it open even
    // though the client says nothing.
    let (mut user, client) = pair().await;
    let (server, mut backend) = pair().await;
    let tunnel = Idle::Either(Duration::from_millis(200));
    let totals = Totals::default();
    let relaying = relay(&client, &server, b"", 0, tunnel, &totals, &stop);
    let talking = async {
        let mut got = [0u8; 1];
        for _ in 0..8 {
            backend.write_all(b"x").await.unwrap();
            user.read_exact(&mut got).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    };
    let relayed = tokio::select! {
        r = relaying => r,
        () = talking => {
            // 8 × 60 ms > 200 ms: it outlived the timeout while traffic moved.
            return;
        }
    };
    panic!("the tunnel ended while the server was sending: {relayed:?}");
}

#[tokio::test]
async fn stop_ends_a_connection() {
    let (_user, client) = pair().await;
    let (server, _backend) = pair().await;
    let stop = CancellationToken::new();
    stop.cancel();
    let relayed = relay(&client, &server, b"", 0, LONG, &Totals::default(), &stop).await;
    assert_eq!(relayed.ended, Ended::Stopped);
}
