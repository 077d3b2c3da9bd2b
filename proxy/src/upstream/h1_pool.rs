//! Keep-alive HTTP/1.1 connections to plain backends, pooled per endpoint.
//!
//! This does what hyper-util's legacy client did for them, minus what a proxy
//! does not use (HTTP/2, proxies, connection info in each response), at a
//! fraction of its cost per request (a SipHash of the key at checkout and at
//! return, a boxed future, a clone of the client): one lock and a cheap hash
//! each way. Like it: the most recently used idle connection first; a
//! connection found closed or idle for longer than `idle_timeout` is dropped;
//! a request that a reused connection refused before sending anything is sent
//! again on another; idle connections are closed after `idle_timeout` by a
//! reaper task; a connection goes back to the pool only once its response is
//! done; `Host` is added when the request has none.

use crate::http::body::RequestBody;
use crate::http::small_writes::SmallWrites;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;
use tracing::debug;

/// Idle connections closed less often than this are closed late, not early:
/// hyper-util's floor for its reaper too.
const MIN_REAP_INTERVAL: Duration = Duration::from_millis(90);

pub struct H1Pool {
    connector: HttpConnector,
    idle_timeout: Duration,
    idle: Mutex<HashMap<Authority, Vec<Idle>, BuildHasherDefault<Fnv>>>,
    /// A reaper task runs while some connection is idle.
    reaping: AtomicBool,
}

struct Idle {
    tx: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl H1Pool {
    pub fn new(connector: HttpConnector, idle_timeout: Duration) -> Self {
        Self {
            connector,
            idle_timeout,
            idle: Mutex::default(),
            reaping: AtomicBool::new(false),
        }
    }

    /// Sends `req` (origin-form URI) to the endpoint at `authority`.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Error> {
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, host_value(authority));
        }
        loop {
            let (mut tx, reused) = match self.checkout(authority) {
                Some(tx) => (tx, true),
                // Boxed: connecting is rare, and its future would make every
                // request's future larger.
                None => (Box::pin(self.connect(authority)).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(response) => {
                    self.give_back(authority, tx);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Closed by the backend before this request was written:
                    // nothing was sent, so another connection may take it.
                    Some(unsent) if reused => {
                        debug!(endpoint = %authority, "pooled connection closed before use ({}); trying another", e.error());
                        req = unsent;
                    }
                    _ => return Err(Error::new(Kind::SendRequest, e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that can still be used.
    fn checkout(&self, authority: &Authority) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.lock();
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if entry.tx.is_ready() && now.duration_since(entry.since) < self.idle_timeout {
                return Some(entry.tx);
            }
            // Dropping the sender lets its connection close.
        }
        None
    }

    async fn connect(
        self: &Arc<Self>,
        authority: &Authority,
    ) -> Result<http1::SendRequest<RequestBody>, Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        let uri = Uri::from_parts(parts).map_err(|e| Error::new(Kind::Connect, e))?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| Error::new(Kind::Connect, e))?;
        let io = TokioIo::new(SmallWrites(io.into_inner()));
        let (tx, conn) = http1::handshake(io)
            .await
            .map_err(|e| Error::new(Kind::Connect, e))?;
        let endpoint = authority.clone();
        tokio::spawn(async move {
            // Upgrades: a 101 hands the connection to the tunnel.
            if let Err(e) = conn.with_upgrades().await {
                debug!(%endpoint, "backend connection ended: {e}");
            }
        });
        Ok(tx)
    }

    /// Back to the pool once the connection can take the next request (after
    /// the response body, which may still be streaming).
    fn give_back(self: &Arc<Self>, authority: &Authority, mut tx: http1::SendRequest<RequestBody>) {
        if tx.is_ready() {
            self.put(authority, tx);
            return;
        }
        let pool = Arc::downgrade(self);
        let authority = authority.clone();
        tokio::spawn(async move {
            if tx.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put(&authority, tx);
            }
        });
    }

    fn put(self: &Arc<Self>, authority: &Authority, tx: http1::SendRequest<RequestBody>) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let entry = Idle {
            tx,
            since: Instant::now(),
        };
        {
            let mut idle = self.lock();
            match idle.get_mut(authority) {
                Some(list) => list.push(entry),
                None => {
                    idle.insert(authority.clone(), vec![entry]);
                }
            }
        }
        if !self.reaping.load(Ordering::Acquire) && !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Drops connections idle too long or closed; false when none is left.
    fn reap_once(&self) -> bool {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|_, list| {
            list.retain(|e| !e.tx.is_closed() && now.duration_since(e.since) < self.idle_timeout);
            !list.is_empty()
        });
        let any = !idle.is_empty();
        if !any {
            // Under the lock, so a concurrent `put` starts a new reaper.
            self.reaping.store(false, Ordering::Release);
        }
        any
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Authority, Vec<Idle>, BuildHasherDefault<Fnv>>> {
        // A poisoned lock only means a panic elsewhere; the lists stay valid.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

async fn reap(pool: Weak<H1Pool>, idle_timeout: Duration) {
    let every = idle_timeout.max(MIN_REAP_INTERVAL);
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) if pool.reap_once() => {}
            _ => return,
        }
    }
}

/// `Host` for a request that has none, as hyper-util's client made it: the
/// endpoint's host, and its port unless it is 80.
fn host_value(authority: &Authority) -> HeaderValue {
    let text = match authority.port_u16() {
        Some(80) | None => authority.host().to_owned(),
        Some(port) => format!("{}:{port}", authority.host()),
    };
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// FNV-1a: the pool's keys are a few bytes long and not chosen by clients
/// (`Authority` hashes byte by byte).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u8(*b);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
}

/// A failure of the pool, described as hyper-util's client described it, so
/// logs read the same.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    SendRequest,
}

impl Error {
    fn new(kind: Kind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// The connection could not be made: nothing reached the backend.
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client error ({:?})", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend answering every request on a connection with `200 ok`, or
    /// closing each connection after its first answer; counts connections.
    async fn backend(close_after_one: bool) -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_string();
                            seen.drain(..end + 4);
                            let host = head
                                .lines()
                                .find_map(|l| l.strip_prefix("host: "))
                                .unwrap_or("-")
                                .to_string();
                            let body = format!("{} {host}", head.lines().next().unwrap());
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            s.write_all(reply.as_bytes()).await.unwrap();
                            if close_after_one {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    fn pool(idle: Duration) -> Arc<H1Pool> {
        Arc::new(H1Pool::new(HttpConnector::new(), idle))
    }

    async fn get(pool: &Arc<H1Pool>, authority: &Authority, path: &str) -> String {
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = Uri::try_from(path).unwrap();
        let response = pool.send(authority, req).await.unwrap();
        let body: Bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn requests_reuse_one_connection_in_origin_form_with_a_host() {
        let (authority, accepted) = backend(false).await;
        let pool = pool(Duration::from_secs(90));
        for _ in 0..3 {
            let reply = get(&pool, &authority, "/a?b=c").await;
            assert_eq!(reply, format!("GET /a?b=c HTTP/1.1 {authority}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_used_again() {
        let (authority, accepted) = backend(true).await;
        let pool = pool(Duration::from_secs(90));
        for _ in 0..3 {
            assert!(get(&pool, &authority, "/").await.starts_with("GET / "));
            // Once the connection task has seen the close, the pool must not
            // hand the connection out.
            wait_until(|| pool.lock().values().flatten().all(|e| e.tx.is_closed())).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "condition not met in 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (authority, accepted) = backend(false).await;
        let idle = Duration::from_millis(300);
        let pool = pool(idle);
        get(&pool, &authority, "/").await;
        let idle_since = std::time::Instant::now();
        assert_eq!(pool.idle_count(), 1);
        wait_until(|| pool.idle_count() == 0).await;
        assert!(idle_since.elapsed() >= idle, "not before the timeout");
        get(&pool, &authority, "/").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = Uri::from_static("/");
        let err = pool(Duration::from_secs(1))
            .send(&authority, req)
            .await
            .unwrap_err();
        assert!(err.is_connect());
        assert_eq!(err.to_string(), "client error (Connect)");
    }

    #[test]
    fn host_is_the_endpoint_without_port_80() {
        let host = |a: &str| host_value(&a.parse().unwrap());
        assert_eq!(host("10.0.0.1:8080"), "10.0.0.1:8080");
        assert_eq!(host("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host("[::1]:81"), "[::1]:81");
    }
}
