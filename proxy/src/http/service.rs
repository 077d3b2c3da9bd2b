//! One request: load the table once, route, forward to a picked endpoint.

use super::ProxyBody;
use super::errors::ProxyError;
use super::headers;
use crate::compile::HostRouter;
use crate::compile::{CompiledAction, CompiledBackend, CompiledRoute, HttpListener, ListenerKind};
use crate::server::Proxy;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tracing::{debug, info, warn};

/// Where a connection came from and which listener accepted it.
#[derive(Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub bind: SocketAddr,
}

pub async fn handle(proxy: &Proxy, req: Request<Incoming>, conn: ConnInfo) -> Response<ProxyBody> {
    // The one load of this request: it keeps this table version to the end.
    let table = proxy.table();
    let Some(listener) = table.listener(conn.bind) else {
        return ProxyError::ListenerGone.into_response();
    };
    let ListenerKind::Http(http) = &listener.kind;

    let host = request_host(&req);
    let Some(route_ix) = lookup(&http.router, host, req.uri().path()) else {
        info!(listener = %listener.name, host, path = req.uri().path(), status = 404, "no route");
        return ProxyError::NoRoute.into_response();
    };
    let route = &http.routes[route_ix];
    match &route.action {
        CompiledAction::Forward(ix) => {
            let backend = &table.backends[*ix];
            forward(http, route, backend, req, conn, &listener.name).await
        }
        CompiledAction::MissingBackend(id) => {
            let err = ProxyError::MissingBackend(id.clone());
            warn!(listener = %listener.name, route = %route.name, status = 503, "{err}");
            err.into_response()
        }
    }
}

fn lookup(router: &HostRouter, host: &str, path: &str) -> Option<usize> {
    router.lookup(&crate::compile::normalize_host(host), path)
}

/// HTTP/1 carries the host in `Host`; HTTP/2 in `:authority` (the URI).
fn request_host(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

async fn forward(
    listener: &HttpListener,
    route: &CompiledRoute,
    backend: &CompiledBackend,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    listener_name: &str,
) -> Response<ProxyBody> {
    let Some(ep_ix) = backend.balancer.pick() else {
        let err = ProxyError::NoEndpoint;
        warn!(listener = listener_name, route = %route.name, backend = %backend.id, status = 503, "{err}");
        return err.into_response();
    };
    let endpoint = &backend.endpoints[ep_ix];

    let upgrade = match req.version() {
        Version::HTTP_11 => headers::requested_upgrade(req.headers()),
        _ => None,
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    // HTTP/2 clients send :authority instead of Host; backends speak HTTP/1.1.
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        headers::restore_upgrade(&mut parts.headers, protocol);
    }
    let host = parts.headers.get(header::HOST).cloned();
    headers::set_forwarded(
        &mut parts.headers,
        listener.forwarded,
        conn.peer.ip(),
        "http",
        host.as_ref(),
    );

    let path_and_query = parts.uri.path_and_query().cloned();
    let mut uri = Uri::builder()
        .scheme("http")
        .authority(endpoint.authority.clone());
    if let Some(pq) = path_and_query {
        uri = uri.path_and_query(pq);
    } else {
        uri = uri.path_and_query("/");
    }
    parts.uri = match uri.build() {
        Ok(u) => u,
        Err(e) => {
            let err = ProxyError::Upstream(format!("cannot build request URI: {e}"));
            return err.into_response();
        }
    };
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    let timeout = backend.timeouts.response;
    let result =
        tokio::time::timeout(timeout.to_std(), backend.upstream.request(upstream_req)).await;
    let mut response = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let err = ProxyError::from_client(&e);
            warn!(listener = listener_name, route = %route.name, backend = %backend.id,
                  endpoint = %endpoint.address, status = err.status().as_u16(), "{err}");
            return err.into_response();
        }
        Err(_) => {
            let err = ProxyError::ResponseTimeout(timeout);
            warn!(listener = listener_name, route = %route.name, backend = %backend.id,
                  endpoint = %endpoint.address, status = 504, "{err}");
            return err.into_response();
        }
    };

    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upgraded_protocol = response.headers().get(header::UPGRADE).cloned();
    headers::strip_hop_by_hop(response.headers_mut());
    if switching {
        match (client_upgrade, upgraded_protocol) {
            (Some(client_side), Some(protocol)) => {
                headers::restore_upgrade(response.headers_mut(), protocol);
                let backend_side = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client_side, backend_side, endpoint.address));
            }
            _ => {
                let err = ProxyError::Upstream(
                    "101 Switching Protocols without an upgrade request".into(),
                );
                warn!(listener = listener_name, route = %route.name, backend = %backend.id,
                      endpoint = %endpoint.address, status = 502, "{err}");
                return err.into_response();
            }
        }
    }
    response.map(Either::Left)
}

/// Copies both ways between an upgraded client connection and its backend.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    endpoint: SocketAddr,
) {
    match tokio::try_join!(client, backend) {
        Ok((client, backend)) => {
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                Ok((up, down)) => debug!(%endpoint, up, down, "upgraded connection closed"),
                Err(e) => debug!(%endpoint, "upgraded connection ended: {e}"),
            }
        }
        Err(e) => warn!(%endpoint, "protocol upgrade failed: {e}"),
    }
}
