//! The admin listener: liveness, readiness and the live table, on its own address.

use crate::compile::explain::{Probe, explain};
use crate::server::Proxy;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Binds `addr` now (so errors surface at start) and serves in the background.
pub async fn start(proxy: Arc<Proxy>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(addr = %local, "admin listening");
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(route(&proxy, &req)) }
                });
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(%peer, "admin connection ended: {e}");
                }
            });
        }
    });
    Ok(local)
}

fn route(proxy: &Proxy, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if proxy.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "no table loaded yet\n"),
        "/debug/table" => {
            // The table holds no secret material yet; when certificates arrive they are
            // a redacting type, so serialising the table stays safe.
            let table = proxy.table();
            match serde_json::to_vec_pretty(&*table.source) {
                Ok(body) => json(body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render table: {e}\n"),
                ),
            }
        }
        "/debug/warnings" => {
            let table = proxy.table();
            match serde_json::to_vec_pretty(&table.warnings) {
                Ok(body) => json(body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render warnings: {e}\n"),
                ),
            }
        }
        "/debug/backends" => {
            let table = proxy.table();
            let status: Vec<_> = table.backends.iter().map(|b| b.status()).collect();
            match serde_json::to_vec_pretty(&status) {
                Ok(body) => json(body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render backends: {e}\n"),
                ),
            }
        }
        "/debug/listeners" => {
            let listeners = crate::tcp::counters::listeners_view(&proxy.table());
            match serde_json::to_vec_pretty(&listeners) {
                Ok(body) => json(body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render listeners: {e}\n"),
                ),
            }
        }
        "/debug/route" => {
            let probe = match Probe::from_query(req.uri().query().unwrap_or_default()) {
                Ok(p) => p,
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            };
            let table = proxy.table();
            match explain(&table, &probe) {
                Ok(explanation) => match serde_json::to_vec_pretty(&explanation) {
                    Ok(body) => json(body),
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot render: {e}\n"),
                    ),
                },
                Err(e) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /healthz, /readyz, /debug/table, /debug/warnings, /debug/backends, /debug/listeners, /debug/route?host=H&path=P\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
