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
//! - `status=N`: answer with status N (an error the backend, not the proxy, made).
//!
//! Otherwise the body is the backend's name.

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
}

struct Config {
    name: String,
    delay: Duration,
    stats: Stats,
}

pub struct Backend {
    pub addr: SocketAddr,
    config: Arc<Config>,
    accept: JoinHandle<()>,
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

    async fn start_with_delay(name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(Config {
            name: name.to_owned(),
            delay,
            stats: Stats::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, config.clone()));
        Backend {
            addr,
            config,
            accept,
        }
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
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<Config>) {
    while let Ok((stream, _)) = listener.accept().await {
        config.stats.connections.fetch_add(1, Ordering::SeqCst);
        let config = config.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let config = config.clone();
                async move { Ok::<_, Infallible>(handle(&config, req).await) }
            });
            // Errors here are clients going away; the tests observe those elsewhere.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Decrements the in-flight count however the handler ends (also on cancel).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(config: &Config, req: Request<Incoming>) -> Response<Body> {
    let stats = &config.stats;
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(&stats.in_flight);

    let query = Query::parse(req.uri().query().unwrap_or(""));
    let delay = query.sleep.unwrap_or(config.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = if let Some(total) = query.download {
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
    if query.hop {
        headers.insert("connection", HeaderValue::from_static("x-resp-hop"));
        headers.insert("x-resp-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    }
    response
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
    status: Option<StatusCode>,
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
