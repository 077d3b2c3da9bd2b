//! Bytes through a `tcp` listener: a gibibyte each way keeps its SHA-256 with
//! the proxy's memory flat; a half-close (FIN) is passed on in both directions
//! while the other direction keeps flowing; a reset (RST) is passed on as a
//! reset; a refused endpoint is retried on another before any byte, so no
//! client notices; the tunnel timeout closes idle connections only.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::process::peak_rss_kib;
use sluice_e2e::tcp::{
    Closed, TcpServer, TransferServer, drain, hex, listener_counter, round_trip, send_noise,
    wait_closed, wait_counter,
};
use sluice_e2e::{ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const GIB: u64 = 1 << 30;
const SHORT: Duration = Duration::from_secs(5);

/// One `tcp` listener `name` on `listen` in front of backend `name`, whose
/// settings are `backend` (YAML flow mapping).
fn one_listener(name: &str, listen: SocketAddr, backend: &str) -> String {
    format!(
        "listeners:
  - tcp: {{name: {name}, bind: {listen}, backend: {name}}}
backends:
  {name}: {backend}
"
    )
}

fn single(server: &TcpServer) -> String {
    format!("{{endpoints: [{{address: {}}}]}}", server.addr)
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// 1 GiB from the backend to the client and 1 GiB from the client to the
/// backend, each hashed on both ends while streaming: the digests agree, the
/// listener counts every byte, and the proxy's peak memory stays far below
/// the size of a transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_keeps_its_sha256() {
    let backend = TransferServer::start().await;
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&one_listener("bulk", listen, &single(&backend.server)))
        .await
        .unwrap();
    let rss_before = proxy.rss_kib().unwrap();

    // Download: the backend streams noise, the client hashes what arrives.
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    let mut command = vec![b'D'];
    command.extend(GIB.to_be_bytes());
    command.extend(7_u64.to_be_bytes());
    let started = Instant::now();
    tcp.write_all(&command).await.unwrap();
    let (got, received) = tokio::time::timeout(Duration::from_secs(60), drain(&mut tcp))
        .await
        .expect("the download did not end within 60 s")
        .unwrap();
    let took = started.elapsed();
    drop(tcp);
    eprintln!(
        "download: {got} bytes in {took:?}, {:.0} MB/s, sha256 {}",
        mb_per_s(got, took),
        hex(&received)
    );
    assert_eq!(got, GIB);
    assert_eq!(backend.sent(), vec![received], "the digests differ");

    // Upload: the client streams noise and half-closes; the backend hashes
    // what arrives and answers with its count and digest.
    let tcp = TcpStream::connect(listen).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        w.write_all(b"U").await.unwrap();
        let sha = send_noise(&mut w, GIB, 11).await.unwrap();
        w.shutdown().await.unwrap();
        sha
    });
    let mut answer = [0_u8; 40];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut answer))
        .await
        .expect("no answer to the upload within 60 s")
        .unwrap();
    let took = started.elapsed();
    let sent = sender.await.unwrap();
    let count = u64::from_be_bytes(answer[..8].try_into().unwrap());
    eprintln!(
        "upload: {count} bytes in {took:?}, {:.0} MB/s, sha256 {}",
        mb_per_s(count, took),
        hex(&sent)
    );
    assert_eq!(count, GIB);
    assert_eq!(&answer[8..], &sent, "the digests differ");
    assert_eq!(backend.uploads().len(), 1);

    // Every byte counted: the download's 17-byte command and the upload's
    // byte and gibibyte in; the download's gibibyte and the 40-byte answer out.
    wait_counter(&proxy, "bulk", "bytes_in", GIB + 17 + 1)
        .await
        .unwrap();
    wait_counter(&proxy, "bulk", "bytes_out", GIB + 40)
        .await
        .unwrap();
    wait_counter(&proxy, "bulk", "accepted", 2).await.unwrap();
    wait_counter(&proxy, "bulk", "active", 0).await.unwrap();

    let peak = peak_rss_kib(proxy.pid()).unwrap();
    eprintln!("proxy memory: {rss_before} KiB before, peak {peak} KiB");
    assert!(
        peak < rss_before + 64 * 1024,
        "the proxy's peak memory grew from {rss_before} KiB to {peak} KiB: buffering?"
    );
}

/// The client half-closes: the backend sees the end of the stream and its
/// answer still reaches the client. The backend half-closes: the client sees
/// the end and what it sends afterwards still reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_passed_on_both_ways() {
    let replier = TcpServer::reply_after_eof().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let closer = TcpServer::start(move |mut tcp| {
        let tx = tx.clone();
        async move {
            tcp.write_all(b"bye").await.unwrap();
            tcp.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let result = tcp.read_to_end(&mut rest).await.map(|_| rest);
            let _ = tx.send(result.map_err(|e| e.kind()));
        }
    })
    .await;
    let (listen_a, listen_b) = (free_addr().unwrap(), free_addr().unwrap());
    let yaml = format!(
        "listeners:
  - tcp: {{name: a, bind: {listen_a}, backend: a}}
  - tcp: {{name: b, bind: {listen_b}, backend: b}}
backends:
  a: {}
  b: {}
",
        single(&replier),
        single(&closer)
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let mut tcp = TcpStream::connect(listen_a).await.unwrap();
    tcp.write_all(b"0123456789").await.unwrap();
    tcp.shutdown().await.unwrap();
    let (closed, answer) = wait_closed(&mut tcp, SHORT).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "received 10 bytes");
    assert_eq!(closed, Closed::Eof);

    let mut tcp = TcpStream::connect(listen_b).await.unwrap();
    let mut bye = Vec::new();
    tokio::time::timeout(SHORT, tcp.read_to_end(&mut bye))
        .await
        .expect("no end of stream from the backend")
        .unwrap();
    assert_eq!(bye, b"bye");
    tcp.write_all(b"still here").await.unwrap();
    tcp.shutdown().await.unwrap();
    let seen = tokio::time::timeout(SHORT, rx.recv())
        .await
        .expect("the backend saw no end of stream")
        .unwrap();
    assert_eq!(seen, Ok(b"still here".to_vec()));
}

/// A backend that resets its connection (SO_LINGER 0, then close) makes the
/// client's read fail with a reset rather than end cleanly; a client that
/// resets makes the backend's read fail with a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_passed_on_as_a_reset() {
    let resetter = TcpServer::start(|mut tcp| async move {
        let mut first = [0_u8; 5];
        if tcp.read_exact(&mut first).await.is_ok() {
            tcp.set_zero_linger().unwrap();
            drop(tcp);
        }
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = TcpServer::start(move |mut tcp| {
        let tx = tx.clone();
        async move {
            let mut first = [0_u8; 5];
            tcp.read_exact(&mut first).await.unwrap();
            tcp.write_all(b"ready").await.unwrap();
            let mut rest = Vec::new();
            let result = tcp.read_to_end(&mut rest).await;
            let _ = tx.send(result.map_err(|e| e.kind()));
        }
    })
    .await;
    let (listen_a, listen_b) = (free_addr().unwrap(), free_addr().unwrap());
    let yaml = format!(
        "listeners:
  - tcp: {{name: a, bind: {listen_a}, backend: a}}
  - tcp: {{name: b, bind: {listen_b}, backend: b}}
backends:
  a: {}
  b: {}
",
        single(&resetter),
        single(&watcher)
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let mut tcp = TcpStream::connect(listen_a).await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let (closed, got) = wait_closed(&mut tcp, SHORT).await.unwrap();
    assert!(got.is_empty());
    assert_eq!(
        closed,
        Closed::Reset,
        "the backend's reset reached the client as a clean end of stream"
    );

    let mut tcp = TcpStream::connect(listen_b).await.unwrap();
    round_trip_ready(&mut tcp).await;
    tcp.set_zero_linger().unwrap();
    drop(tcp);
    let seen = tokio::time::timeout(SHORT, rx.recv())
        .await
        .expect("the backend's connection did not end")
        .unwrap();
    assert_eq!(
        seen,
        Err(std::io::ErrorKind::ConnectionReset),
        "the client's reset did not reach the backend as a reset"
    );
    assert_eq!(resetter.accepted() + watcher.accepted(), 2);
}

/// Sends the watcher's 5-byte opener and waits for its `ready`.
async fn round_trip_ready(tcp: &mut TcpStream) {
    tcp.write_all(b"hello").await.unwrap();
    let mut ready = [0_u8; 5];
    tokio::time::timeout(SHORT, tcp.read_exact(&mut ready))
        .await
        .expect("no `ready` from the backend")
        .unwrap();
    assert_eq!(&ready, b"ready");
}

/// The first endpoint refuses connections (nothing listens on its port), the
/// second echoes: round robin sends every other connection to the first, and
/// every one is served by the second, retried before any byte. With no live
/// endpoint at all, the client is closed and `connect_failed` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_is_retried_on_the_next_before_any_byte() {
    let echo = TcpServer::echo().await;
    let (dead, dead2) = (free_addr().unwrap(), free_addr().unwrap());
    let (listen, listen_dead) = (free_addr().unwrap(), free_addr().unwrap());
    let yaml = format!(
        "listeners:
  - tcp: {{name: svc, bind: {listen}, backend: svc}}
  - tcp: {{name: nowhere, bind: {listen_dead}, backend: nowhere}}
backends:
  svc:
    balance: round_robin
    endpoints: [{{address: {dead}}}, {{address: {}}}]
  nowhere:
    retries: 2
    timeouts: {{connect: 500ms}}
    endpoints: [{{address: {dead}}}, {{address: {dead2}}}]
",
        echo.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    for i in 0..20 {
        let mut tcp = TcpStream::connect(listen).await.unwrap();
        round_trip(&mut tcp, format!("hello {i}").as_bytes(), SHORT)
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
    }
    assert_eq!(echo.accepted(), 20);
    assert!(
        !proxy.log_lines("retrying").is_empty(),
        "no retry logged: the dead endpoint was never tried\n{}",
        proxy.logs()
    );
    assert_eq!(
        listener_counter(&proxy, "svc", "connect_failed")
            .await
            .unwrap(),
        0
    );

    let mut tcp = TcpStream::connect(listen_dead).await.unwrap();
    // Written before the proxy gave up: it must not reach anyone, nor hang.
    let _ = tcp.write_all(b"anyone?").await;
    let (closed, got) = wait_closed(&mut tcp, SHORT).await.unwrap();
    eprintln!("no endpoint reachable: the client saw {closed:?}");
    assert!(got.is_empty(), "{got:?}");
    wait_counter(&proxy, "nowhere", "connect_failed", 1)
        .await
        .unwrap();
    wait_counter(&proxy, "nowhere", "active", 0).await.unwrap();
}

/// The harness: the transfer backend's download and upload, directly, agree
/// with the client's digests, and a different seed makes different bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_transfers_agree_directly() {
    const SIZE: u64 = 64 << 20;
    let backend = TransferServer::start().await;
    let mut digests = Vec::new();
    for seed in [1_u64, 2] {
        let mut tcp = TcpStream::connect(backend.server.addr).await.unwrap();
        let mut command = vec![b'D'];
        command.extend(SIZE.to_be_bytes());
        command.extend(seed.to_be_bytes());
        tcp.write_all(&command).await.unwrap();
        let started = Instant::now();
        let (got, sha) = drain(&mut tcp).await.unwrap();
        eprintln!(
            "direct download: {:.0} MB/s",
            mb_per_s(got, started.elapsed())
        );
        assert_eq!(got, SIZE);
        digests.push(sha);
    }
    assert_eq!(backend.sent(), digests);
    assert_ne!(digests[0], digests[1]);

    let tcp = TcpStream::connect(backend.server.addr).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    w.write_all(b"U").await.unwrap();
    let sent = send_noise(&mut w, SIZE, 1).await.unwrap();
    w.shutdown().await.unwrap();
    let mut answer = [0_u8; 40];
    r.read_exact(&mut answer).await.unwrap();
    assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), SIZE);
    assert_eq!(&answer[8..], &sent);
    assert_eq!(sent, digests[0], "the same seed makes the same bytes");
}

/// `timeouts: {tunnel: 600ms}`: a connection that carries a byte every 200 ms
/// stays open well past it; one where nothing moves is closed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_timeout_closes_only_idle_connections() {
    let echo = TcpServer::echo().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:
  - tcp: {{name: t, bind: {listen}, backend: t, timeouts: {{tunnel: 600ms}}}}
backends:
  t: {}
",
        single(&echo)
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let mut busy = TcpStream::connect(listen).await.unwrap();
    let mut idle = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut idle, b"once", SHORT).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        round_trip(&mut busy, b"tick", SHORT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The idle one has been closed meanwhile, not before the timeout.
    let (closed, got) = wait_closed(&mut idle, Duration::from_millis(100))
        .await
        .unwrap();
    eprintln!("the idle connection: {closed:?}");
    assert!(got.is_empty(), "{got:?}");
    round_trip(&mut busy, b"still open", SHORT).await.unwrap();

    let mut idle = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut idle, b"once", SHORT).await.unwrap();
    let started = Instant::now();
    wait_closed(&mut idle, SHORT).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(550),
        "closed after {waited:?}, before the 600ms tunnel timeout"
    );
}
