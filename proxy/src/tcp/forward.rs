//! Forwarding one client connection to an endpoint of a backend, byte for byte:
//! a balanced lease held for the connection's whole life (so `least_conn`,
//! `max_conn` and the queue count connections), a connect with retries as for
//! HTTP, then both directions copied until both ends close or nothing moves
//! for the idle timeout.

use crate::balance::{EndpointState, Lease, hash_client};
use crate::compile::{BackendIx, CompiledBackend, canonical_client};
use crate::health::{self, Outcome};
use crate::table::SourceRef;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where a connection goes.
pub struct ConnTarget {
    /// The route's name (`default` for the listener's default backend).
    pub route: Arc<str>,
    pub source: Option<SourceRef>,
    /// `None`: the backend is not defined (warned when compiled); closed.
    pub backend: Option<BackendIx>,
    /// The backend balances by client address (`source`); other hash keys
    /// exist only in HTTP requests, so those connections go round robin.
    pub hash_source: bool,
}

impl ConnTarget {
    /// The balancer's hash for a connection from `peer`.
    pub fn hash(&self, peer: SocketAddr) -> Option<u64> {
        self.hash_source
            .then(|| hash_client(canonical_client(peer.ip())))
    }
}

/// Names for log lines about one connection.
pub struct LogContext<'a> {
    pub listener: &'a str,
    pub route: &'a str,
    pub peer: SocketAddr,
}

/// A connection to an endpoint of `backend`, with the lease that holds its
/// slot. A failed connect is tried again (`retries`), on another endpoint when
/// `redispatch` allows; failures count for passive checks.
pub async fn connect(
    backend: &CompiledBackend,
    hash: Option<u64>,
    log: &LogContext<'_>,
) -> Option<(Lease, TcpStream)> {
    let mut avoid: Vec<Arc<EndpointState>> = Vec::new();
    let mut kept: Option<Lease> = None;
    let limit = backend.timeouts.connect;
    let mut attempt = 0;
    loop {
        let lease = match kept.take() {
            Some(lease) => lease,
            None => match backend.balancer.lease(hash, &avoid).await {
                Ok(lease) => lease,
                Err(reason) => {
                    warn!(listener = log.listener, route = log.route, backend = %backend.id,
                          peer = %log.peer, "{reason}; closing the connection");
                    return None;
                }
            },
        };
        let endpoint = lease.endpoint().clone();
        let failure =
            match tokio::time::timeout(limit.to_std(), connect_to(endpoint.authority.as_str()))
                .await
            {
                Ok(Ok(stream)) => {
                    if let Some(check) = &backend.passive_check {
                        health::record(&backend.balancer, check, &endpoint, Outcome::Success);
                    }
                    return Some((lease, stream));
                }
                Ok(Err(e)) => format!("cannot connect: {e}"),
                Err(_) => format!("connect timed out after {limit}"),
            };
        if let Some(check) = &backend.passive_check {
            health::record(
                &backend.balancer,
                check,
                &endpoint,
                Outcome::Failure(&failure),
            );
        }
        if attempt >= backend.retries {
            warn!(listener = log.listener, route = log.route, backend = %backend.id,
                  endpoint = %endpoint.address, peer = %log.peer, attempts = attempt + 1,
                  "{failure}; closing the connection");
            return None;
        }
        attempt += 1;
        info!(listener = log.listener, route = log.route, backend = %backend.id,
              endpoint = %endpoint.address, attempt, redispatch = backend.redispatch,
              "retrying: {failure}");
        if backend.redispatch {
            avoid.push(endpoint);
            drop(lease);
        } else {
            kept = Some(lease);
        }
    }
}

async fn connect_to(authority: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How a spliced connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed (or one failed).
    Closed,
    /// No bytes moved for the idle timeout.
    Idle,
    /// The proxy's drain deadline passed.
    Stopped,
}

/// Bytes from the client (`up`) and to it (`down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    pub up: u64,
    pub down: u64,
    pub ended: Ended,
}

/// Sends `first` (bytes already read from the client) to `upstream`, then
/// copies both ways, passing half-closes on, until both sides are done, nothing
/// moves for `idle`, or `stop`. `lease` is released when this returns.
pub async fn splice<C>(
    client: C,
    first: &[u8],
    mut upstream: TcpStream,
    lease: Lease,
    idle: Duration,
    stop: &CancellationToken,
) -> Spliced
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut client = Watched {
        inner: client,
        activity: activity.clone(),
    };
    let ended = tokio::select! {
        ended = async {
            match tokio::time::timeout(idle, upstream.write_all(first)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(endpoint = %lease.endpoint().address, "sending the first bytes failed: {e}");
                    return Ended::Closed;
                }
                Err(_) => return Ended::Idle,
            }
            activity.up.fetch_add(first.len() as u64, Ordering::Relaxed);
            activity.touch();
            let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
            tokio::pin!(copy);
            loop {
                let deadline = activity.last() + idle;
                tokio::select! {
                    result = copy.as_mut() => {
                        if let Err(e) = result {
                            debug!(endpoint = %lease.endpoint().address, "connection ended: {e}");
                        }
                        return Ended::Closed;
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        if Instant::now() >= activity.last() + idle {
                            return Ended::Idle;
                        }
                    }
                }
            }
        } => ended,
        () = stop.cancelled() => Ended::Stopped,
    };
    drop(lease);
    Spliced {
        up: activity.up.load(Ordering::Relaxed),
        down: activity.down.load(Ordering::Relaxed),
        ended,
    }
}

/// When bytes last moved, and how many, as seen on the client side (every
/// byte of the connection passes there).
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.activity.up.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.activity.down.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
