//! Client-side timeouts of a listener, on raw TCP so that nothing but the proxy
//! decides when a connection closes. Per the table's contract (table/mod.rs):
//! `request_header` is the time allowed to send a complete request head (slowloris
//! guard); `client_idle` is how long a quiet keep-alive connection is kept.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST_HEADER: Duration = Duration::from_millis(300);
const CLIENT_IDLE: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

async fn start() -> (Backend, ProxyProcess, SocketAddr) {
    let b = Backend::start("b").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:\n  - http:\n      name: web\n      bind: {listen}\n      \
         timeouts: {{request_header: {}ms, client_idle: {}ms}}\n      \
         routes: [{{name: all, action: {{forward: b}}}}]\n\
         backends:\n  b: {{endpoints: [{{address: {}}}]}}\n",
        REQUEST_HEADER.as_millis(),
        CLIENT_IDLE.as_millis(),
        b.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    (b, proxy, listen)
}

/// Reads until the proxy closes the connection (or `limit` passes); returns how
/// long that took from `since`, or `None` if it stayed open.
async fn closed_within(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let deadline = since + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Sends one GET and reads one full response (`content-length` framed).
async fn round_trip(stream: &mut TcpStream) -> std::io::Result<String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no response in 5s"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes", response.len()),
            ));
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(text);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_request_head_is_cut_off_after_request_header() {
    let (_b, _proxy, listen) = start().await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: slow")
        .await
        .unwrap();
    let sent = Instant::now();
    let took = closed_within(&mut stream, sent, CLIENT_IDLE + SLACK).await;
    let took = took.expect("a connection with a half-sent head was never closed");
    assert!(
        took >= REQUEST_HEADER - Duration::from_millis(50) && took < REQUEST_HEADER + SLACK,
        "closed after {took:?}, want about {REQUEST_HEADER:?}"
    );
}

/// Proxy bug (fails until fixed): a connection that sends nothing is held for
/// `client_idle`, because hyper-util's HTTP version sniffing (auto::Builder) runs
/// before hyper's header timer starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_cut_off_after_request_header() {
    let (_b, _proxy, listen) = start().await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let connected = Instant::now();
    let took = closed_within(&mut stream, connected, CLIENT_IDLE + SLACK)
        .await
        .expect("a silent connection was never closed");
    assert!(
        took < REQUEST_HEADER + SLACK,
        "a connection that sent no request head was kept {took:?}; request_header is {REQUEST_HEADER:?}"
    );
}

/// Proxy bug (fails until fixed): hyper's header-read timer also runs while an
/// HTTP/1 keep-alive connection waits for its next request, so a quiet keep-alive
/// connection is closed after `request_header`, not `client_idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_kept_until_client_idle() {
    let (b, _proxy, listen) = start().await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let first = round_trip(&mut stream).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Quiet for longer than request_header, well within client_idle.
    let pause = REQUEST_HEADER * 3;
    tokio::time::sleep(pause).await;
    let second = round_trip(&mut stream).await.unwrap_or_else(|e| {
        panic!(
            "keep-alive connection quiet for {pause:?} (client_idle {CLIENT_IDLE:?}) was closed: {e}"
        )
    });
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(b.requests(), 2);

    // And it is closed once quiet for client_idle.
    let answered = Instant::now();
    let took = closed_within(&mut stream, answered, CLIENT_IDLE + SLACK)
        .await
        .expect("idle keep-alive connection outlived client_idle");
    assert!(
        took >= CLIENT_IDLE - Duration::from_millis(100),
        "closed after {took:?}"
    );
}
