//! Serving one client connection: the TLS handshake on `https` listeners (the
//! configuration chosen by SNI), HTTP/1.1 or h2c (prior knowledge) or HTTP/2
//! by ALPN, keep-alive, request-header and idle timeouts, graceful shutdown.
//!
//! Timeouts follow HAProxy's split rather than hyper's single header timer:
//! `request_header` runs from accept, and on HTTP/1 from the first byte of each
//! next request, until the request head is complete (a silent or slowloris client
//! is cut off); `client_idle` closes a connection with no request in flight and no
//! bytes moving (HAProxy's `timeout http-keep-alive` / `timeout client`).

use super::ProxyBody;
use super::secure::TlsSession;
use super::service::{self, ConnContext, ConnInfo};
use crate::server::Proxy;
use crate::table::ListenerTimeouts;
use crate::tls::scopes::ListenerTlsConfigs;
use bytes::Bytes;
use http::Version;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub async fn serve(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    mut info: ConnInfo,
    timeouts: ListenerTimeouts,
    tls: Option<Arc<ListenerTlsConfigs>>,
    stop: CancellationToken,
    passthrough: Option<crate::tcp::SniSplit>,
) {
    let state = Arc::new(ConnState::new(timeouts));
    let tracked = Tracked {
        inner: stream,
        state: state.clone(),
    };
    match tls {
        None => serve_http(proxy, TokioIo::new(tracked), state, info, timeouts, stop).await,
        Some(configs) => {
            // `tls.passthrough`: a ClientHello naming a passthrough host is
            // forwarded raw; any other goes on to the handshake, replayed.
            let tracked = match passthrough {
                Some(split) => match split.run(tracked, info.peer, &timeouts).await {
                    Some(rest) => rest,
                    None => return,
                },
                None => crate::tcp::Prefixed::plain(tracked),
            };
            // The handshake is part of the request head's time budget.
            let limit = timeouts.request_header.to_std();
            match tokio::time::timeout(limit, handshake(tracked, configs)).await {
                Ok(Ok((stream, session))) => {
                    info.tls_session = Some(Arc::new(session));
                    serve_http(proxy, TokioIo::new(stream), state, info, timeouts, stop).await;
                }
                Ok(Err(e)) => debug!(peer = %info.peer, "TLS handshake failed: {e}"),
                Err(_) => debug!(peer = %info.peer, "no TLS handshake within {limit:?}"),
            }
        }
    }
}

/// Reads the ClientHello, completes the handshake with the configuration of
/// the scope its SNI chooses, and judges the client's certificate.
async fn handshake<S>(
    io: S,
    configs: Arc<ListenerTlsConfigs>,
) -> io::Result<(tokio_rustls::server::TlsStream<S>, TlsSession)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = rustls::server::Acceptor::default();
    let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, io).await?;
    let scope = configs.scope_of(start.client_hello().server_name());
    let Some(config) = configs.scope(scope).config.clone() else {
        // Its client-certificate settings are unusable (warned at compile).
        return Err(io::Error::other(
            "client certificates for this name cannot be verified; connection refused",
        ));
    };
    let stream = start.into_stream(config).await?;
    let session = TlsSession::new(configs, scope, stream.get_ref().1);
    Ok((stream, session))
}

async fn serve_http<S>(
    proxy: Arc<Proxy>,
    io: TokioIo<S>,
    state: Arc<ConnState>,
    info: ConnInfo,
    timeouts: ListenerTimeouts,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer would also close idle keep-alive connections; ours
    // (ConnState) separates the two.
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());

    let peer = info.peer;
    let cx = Arc::new(ConnContext::new(info));
    let svc_state = state.clone();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let cx = cx.clone();
        let guard = svc_state.request_started(req.version());
        async move {
            let response = service::handle(&proxy, req, &cx).await;
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                guard.0.heads_done.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(response.map(|body| GuardedBody {
                inner: body,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let stop_or_expiry = async {
        tokio::select! {
            () = stop.cancelled() => None,
            expired = state.expiry() => Some(expired),
        }
    };
    tokio::pin!(stop_or_expiry);
    let mut side = Side::new();

    let mut closing = false;
    let result = std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            if closing || !side.woken(cx) {
                return Poll::Pending;
            }
            let Poll::Ready(event) = stop_or_expiry.as_mut().poll(&mut side.context()) else {
                return Poll::Pending;
            };
            match event {
                None => {}
                Some(Expired::RequestHeader) => {
                    // No request is in flight, so nothing is lost by closing now.
                    debug!(peer = %peer, "request head not received within {}; closing", timeouts.request_header);
                    return Poll::Ready(None);
                }
                Some(Expired::Idle) => debug!(peer = %peer, "closing idle client connection"),
            }
            // The connection finishes what is in flight; poll it again now.
            conn.as_mut().graceful_shutdown();
            closing = true;
        }
    })
    .await;
    if let Some(Err(e)) = result {
        debug!(peer = %peer, "client connection ended: {e}");
    }
}

/// Polls the stop signal and the timer only when they woke the connection's
/// task, not at every wake-up (several per request), which would cost a
/// `Notify` lock and a timer check each time.
struct Side {
    shared: Arc<SideWake>,
    waker: Waker,
    /// The task's waker as last given to `shared`.
    task: Option<Waker>,
}

struct SideWake {
    /// Set when the side futures woke the task; true at first, so they are
    /// polled once to arm.
    woken: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl Side {
    fn new() -> Self {
        let shared = Arc::new(SideWake {
            woken: AtomicBool::new(true),
            task: std::sync::Mutex::new(None),
        });
        Self {
            waker: Waker::from(shared.clone()),
            shared,
            task: None,
        }
    }

    /// Whether the side futures need a poll (and the flag is cleared).
    fn woken(&mut self, cx: &Context<'_>) -> bool {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            let mut task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
            *task = Some(cx.waker().clone());
            self.task = Some(cx.waker().clone());
        }
        self.shared.woken.swap(false, Ordering::SeqCst)
    }

    fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

enum Expired {
    RequestHeader,
    Idle,
}

/// Shared between the socket wrapper, the service and the timer of one connection.
/// Times are milliseconds since `epoch`; `NOT_STARTED` means no head is awaited.
///
/// The timer does not follow each request: it looks at the state when it
/// fires, at or before every deadline, and sleeps again until the next one.
/// Only a head that must be cut off before the timer's next look wakes it
/// early, so a busy keep-alive connection sets no timer and sends no wake-up
/// per request.
struct ConnState {
    epoch: Instant,
    timeouts: ListenerTimeouts,
    /// When the timer looks next (ms); `u64::MAX` until it has worked that out.
    next_look_ms: AtomicU64,
    last_activity_ms: AtomicU64,
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// No request heads follow: HTTP/2 (which multiplexes and pings) after its
    /// first request, or a connection upgraded to another protocol.
    heads_done: AtomicBool,
    head_armed: Notify,
}

const NOT_STARTED: u64 = u64::MAX;

impl ConnState {
    fn new(timeouts: ListenerTimeouts) -> Self {
        Self {
            epoch: Instant::now(),
            timeouts,
            next_look_ms: AtomicU64::new(u64::MAX),
            last_activity_ms: AtomicU64::new(0),
            // Armed at accept: a client that never sends anything is cut off too.
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            heads_done: AtomicBool::new(false),
            head_armed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NOT_STARTED - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + std::time::Duration::from_millis(ms)
    }

    fn bytes_received(&self) {
        let now = self.now_ms();
        self.last_activity_ms.store(now, Ordering::Relaxed);
        let awaiting_head = self.in_flight.load(Ordering::Relaxed) == 0
            && !self.heads_done.load(Ordering::Relaxed)
            && self.head_started_ms.load(Ordering::Relaxed) == NOT_STARTED;
        if awaiting_head {
            self.head_started_ms.store(now, Ordering::Relaxed);
            let deadline = now.saturating_add(self.timeouts.request_header.as_millis());
            if deadline < self.next_look_ms.load(Ordering::SeqCst) {
                self.head_armed.notify_one();
            }
        }
    }

    fn bytes_sent(&self) {
        self.last_activity_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        if version == Version::HTTP_2 {
            self.heads_done.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(NOT_STARTED, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Completes when a timeout applies.
    async fn expiry(&self) -> Expired {
        let timeouts = &self.timeouts;
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        loop {
            // A head starting while this works out the next look wakes it.
            self.next_look_ms.store(u64::MAX, Ordering::SeqCst);
            let armed = self.head_armed.notified();
            let idle = self.in_flight.load(Ordering::Relaxed) == 0;
            let head_started = self.head_started_ms.load(Ordering::Relaxed);
            let head_deadline = (idle && head_started != NOT_STARTED)
                .then(|| head_started.saturating_add(timeouts.request_header.as_millis()));
            let idle_deadline = idle.then(|| {
                self.last_activity_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(timeouts.client_idle.as_millis())
            });
            let now = self.now_ms();
            if head_deadline.is_some_and(|d| now >= d) {
                return Expired::RequestHeader;
            }
            if idle_deadline.is_some_and(|d| now >= d) {
                return Expired::Idle;
            }
            // With a request in flight, look again now and then: it may
            // finish. No later than a head timeout from now, so a head that
            // starts in between need not wake the timer (see `bytes_received`).
            let next = [head_deadline, idle_deadline]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| {
                    now.saturating_add(
                        timeouts
                            .client_idle
                            .as_millis()
                            .min(timeouts.request_header.as_millis()),
                    )
                });
            self.next_look_ms.store(next, Ordering::SeqCst);
            sleep.as_mut().reset(self.at(next));
            tokio::select! {
                () = sleep.as_mut() => {}
                () = armed => {}
            }
        }
    }
}

/// Counts a request as in flight until its response body is done or dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.bytes_sent();
    }
}

pub struct GuardedBody {
    inner: ProxyBody,
    _guard: InFlight,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that reports traffic to its `ConnState`.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_received();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.state.bytes_sent();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = super::small_writes::poll_write_vectored(Pin::new(&mut self.inner), cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.state.bytes_sent();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Duration;
    use std::time::Duration as StdDuration;

    fn timeouts(header_s: u64, idle_s: u64) -> ListenerTimeouts {
        ListenerTimeouts {
            request_header: Duration::from_secs(header_s),
            client_idle: Duration::from_secs(idle_s),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_hits_the_header_timeout() {
        let s = ConnState::new(timeouts(10, 60));
        let started = Instant::now();
        assert!(matches!(s.expiry().await, Expired::RequestHeader));
        assert_eq!(started.elapsed(), StdDuration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_waits_for_client_idle_then_a_new_head_gets_the_header_timeout() {
        let t = timeouts(10, 60);
        let s = Arc::new(ConnState::new(t));
        drop(s.request_started(Version::HTTP_11)); // one request served at t=0
        tokio::time::advance(StdDuration::from_secs(30)).await;
        s.bytes_received(); // first byte of the next request, at t=30
        let started = Instant::now();
        assert!(matches!(s.expiry().await, Expired::RequestHeader));
        assert_eq!(
            started.elapsed(),
            StdDuration::from_secs(10),
            "counted from the first byte"
        );

        let s = Arc::new(ConnState::new(t));
        drop(s.request_started(Version::HTTP_11));
        let started = Instant::now();
        assert!(matches!(s.expiry().await, Expired::Idle));
        assert_eq!(started.elapsed(), StdDuration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_off_both_timeouts() {
        let s = Arc::new(ConnState::new(timeouts(1, 2)));
        let guard = s.request_started(Version::HTTP_11);
        let expiry = s.expiry();
        tokio::pin!(expiry);
        assert!(
            tokio::time::timeout(StdDuration::from_secs(300), expiry.as_mut())
                .await
                .is_err()
        );
        drop(guard);
        let started = Instant::now();
        assert!(matches!(expiry.await, Expired::Idle));
        assert!(started.elapsed() <= StdDuration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_pings_after_the_first_request_are_not_heads() {
        let s = Arc::new(ConnState::new(timeouts(1, 60)));
        drop(s.request_started(Version::HTTP_2));
        s.bytes_received();
        let started = Instant::now();
        assert!(matches!(s.expiry().await, Expired::Idle));
        assert_eq!(started.elapsed(), StdDuration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_starts_while_the_timer_sleeps_is_cut_off_on_time() {
        // After a request: the timer looks again within a head timeout, so the
        // next head needs no wake-up and still gets exactly its 10 s.
        let s = Arc::new(ConnState::new(timeouts(10, 60)));
        let guard = s.request_started(Version::HTTP_11);
        let expiry = s.expiry();
        tokio::pin!(expiry);
        let secs = StdDuration::from_secs;
        assert!(
            tokio::time::timeout(secs(3), expiry.as_mut())
                .await
                .is_err()
        );
        drop(guard);
        assert!(
            tokio::time::timeout(secs(4), expiry.as_mut())
                .await
                .is_err()
        );
        s.bytes_received(); // t=7
        let started = Instant::now();
        assert!(matches!(expiry.await, Expired::RequestHeader));
        assert_eq!(started.elapsed(), StdDuration::from_secs(10));

        // Idle, the timer sleeping towards the idle timeout at 60 s: a head at
        // 30 s wakes it, as its deadline comes first.
        let s = Arc::new(ConnState::new(timeouts(10, 60)));
        drop(s.request_started(Version::HTTP_11));
        let expiry = s.expiry();
        tokio::pin!(expiry);
        assert!(
            tokio::time::timeout(StdDuration::from_secs(30), expiry.as_mut())
                .await
                .is_err()
        );
        s.bytes_received();
        let started = Instant::now();
        assert!(matches!(expiry.await, Expired::RequestHeader));
        assert_eq!(started.elapsed(), StdDuration::from_secs(10));
    }
}
