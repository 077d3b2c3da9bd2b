//! In-process HTTP backends that say who they are and count what they see.
//!
//! Every response carries `x-backend: <name>`. Behaviour is chosen per request by
//! query parameters, so routing tests can use any path:
//! - `sleep_ms=N`: wait before answering (a slow backend; also `Backend::slow`);
//! - `echo`: JSON body with the method, URI and every request header;
//! - `hop`: add hop-by-hop response headers (`Connection: x-resp-hop`,
//!   `X-Resp-Hop`, `Keep-Alive`) that a proxy must not pass on;
//! - `download=N`: stream N pattern bytes (see `pattern`), generated chunk by chunk;
//! - `upload`: consume the body as it arrives, verify it against the pattern and
//!   answer `bytes=<count> mismatch=<offset|none>`;
//! - `status=N`: answer with status N (an error the backend, not the proxy, made);
//! - `close`: read the whole request body, then close the connection without
//!   answering (a backend that dies mid-request; the request still counts);
//! - `set_cookie=V` (repeatable): add a `Set-Cookie` response header whose whole
//!   value is `V` percent-decoded (`+` is kept as is), so a test picks the name,
//!   value and attributes: `set_cookie=JSESSIONID%3Dabc123%3B%20Path%3D%2Fapp`
//!   sends `Set-Cookie: JSESSIONID=abc123; Path=/app` (a session cookie the
//!   application sets). An undecodable or invalid value is skipped.
//!
//! Otherwise the body is the backend's name.
//!
//! [`Backend::stop`] takes a backend away (listener and every connection closed)
//! while keeping its counters; [`Backend::start_at`] brings one up on a given
//! address, e.g. the port of a stopped one.

use crate::pattern;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

struct Config {
    name: String,
    delay: Duration,
    stats: Stats,
    /// What `/healthz` answers (health-check tests flip it); 200 at first.
    health: AtomicU16,
}

pub struct Backend {
    pub addr: SocketAddr,
    config: Arc<Config>,
    accept: JoinHandle<()>,
    /// Dropping or sending stops the accept loop and closes every connection.
    stop: Option<oneshot::Sender<()>>,
}

impl Backend {
    /// A backend answering at once.
    pub async fn start(name: &str) -> Backend {
        Self::start_with_delay(name, Duration::ZERO).await
    }

    /// A backend that waits `delay` before every response head.
    pub async fn slow(name: &str, delay: Duration) -> Backend {
        Self::start_with_delay(name, delay).await
    }

    /// A backend answering at once on `addr` (e.g. the port of a stopped backend,
    /// to bring it back; tokio sets `SO_REUSEADDR`, so TIME_WAIT does not block).
    /// Retries for up to 5 s while the address is still in use.
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind backend {name} to {addr}: {e}"),
            }
        };
        Self::serve(name, listener, Duration::ZERO)
    }

    async fn start_with_delay(name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, delay)
    }

    fn serve(name: &str, listener: TcpListener, delay: Duration) -> Backend {
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(Config {
            name: name.to_owned(),
            delay,
            stats: Stats::default(),
            health: AtomicU16::new(200),
        });
        let (stop, stopped) = oneshot::channel();
        let accept = tokio::spawn(accept_loop(listener, config.clone(), stopped));
        Backend {
            addr,
            config,
            accept,
            stop: Some(stop),
        }
    }

    /// Takes the backend away as a crashed server would be: the listening socket
    /// is closed (connecting is refused) and so is every open connection, with
    /// requests in flight dropped unanswered. Returns once all are closed; the
    /// counters stay readable.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = (&mut self.accept).await;
        }
    }

    /// The status `/healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.config.health.store(status, Ordering::SeqCst);
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.config.stats.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far (counted when the head arrives).
    pub fn requests(&self) -> usize {
        self.config.stats.requests.load(Ordering::SeqCst)
    }

    /// Requests received whose response head has not been produced yet.
    pub fn in_flight(&self) -> usize {
        self.config.stats.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.config.stats.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves until `stop` fires or its sender is dropped; the connections are tasks of
/// this loop's `JoinSet`, so they end with it (also when the loop is aborted).
async fn accept_loop(listener: TcpListener, config: Arc<Config>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => break,
            },
            _ = &mut stop => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        config.stats.connections.fetch_add(1, Ordering::SeqCst);
        let config = config.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| {
                let config = config.clone();
                async move { handle(&config, req).await }
            });
            // Errors here are clients going away (or `close`); the tests observe
            // those elsewhere.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// Returned by the service for `close`: hyper then drops the connection without
/// writing a response.
#[derive(Debug)]
struct CloseWithoutAnswer;

impl std::fmt::Display for CloseWithoutAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closing without an answer, as asked")
    }
}

impl std::error::Error for CloseWithoutAnswer {}

/// Decrements the in-flight count however the handler ends (also on cancel).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    config: &Config,
    req: Request<Incoming>,
) -> Result<Response<Body>, CloseWithoutAnswer> {
    let stats = &config.stats;
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&stats.in_flight);

    let query = Query::parse(req.uri().query().unwrap_or(""));
    if query.close {
        // Read the whole body first, so the request was fully delivered.
        let _ = req.into_body().collect().await;
        return Err(CloseWithoutAnswer);
    }
    let delay = query.sleep.unwrap_or(config.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = if req.uri().path() == "/healthz" {
        let status = StatusCode::from_u16(config.health.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, full(config.name.clone()))
    } else if let Some(total) = query.download {
        (StatusCode::OK, pattern::body(total).boxed_unsync())
    } else if query.upload {
        upload(req.into_body()).await
    } else if query.echo {
        (StatusCode::OK, full(echo(&config.name, &req)))
    } else {
        (StatusCode::OK, full(config.name.clone()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = query.status.unwrap_or(status);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&config.name) {
        headers.insert("x-backend", v);
    }
    for cookie in &query.set_cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(http::header::SET_COOKIE, v);
        }
    }
    if query.hop {
        headers.insert("connection", HeaderValue::from_static("x-resp-hop"));
        headers.insert("x-resp-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    }
    Ok(response)
}

async fn upload(mut body: Incoming) -> (StatusCode, Body) {
    let mut verifier = pattern::Verifier::default();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    verifier.update(data);
                }
            }
            Err(e) => {
                let msg = format!("upload failed after {} bytes: {e}", verifier.received());
                return (StatusCode::BAD_REQUEST, full(msg));
            }
        }
    }
    let mismatch = verifier
        .first_mismatch()
        .map_or_else(|| "none".to_owned(), |at| at.to_string());
    let msg = format!("bytes={} mismatch={mismatch}", verifier.received());
    (StatusCode::OK, full(msg))
}

fn echo(name: &str, req: &Request<Incoming>) -> String {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    })
    .to_string()
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).boxed_unsync()
}

#[derive(Default)]
struct Query {
    sleep: Option<Duration>,
    download: Option<u64>,
    upload: bool,
    echo: bool,
    hop: bool,
    close: bool,
    status: Option<StatusCode>,
    set_cookies: Vec<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sleep_ms" => q.sleep = value.parse().ok().map(Duration::from_millis),
                "download" => q.download = value.parse().ok(),
                "upload" => q.upload = true,
                "echo" => q.echo = true,
                "hop" => q.hop = true,
                "close" => q.close = true,
                "set_cookie" => q.set_cookies.extend(percent_decode(value)),
                "status" => {
                    q.status = value
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                }
                _ => {}
            }
        }
        q
    }
}

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}
