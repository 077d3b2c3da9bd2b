//! One request: load the table once, route, forward to a picked endpoint.

use super::ProxyBody;
use super::errors::ProxyError;
use super::headers;
use crate::compile::{
    CompiledAction, CompiledBackend, CompiledRoute, HttpListener, ListenerKind, normalize_host,
};
use crate::server::Proxy;
use crate::table::{EndpointAddress, PathRewrite};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
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
    let path = req.uri().path();
    let matched = http.router.lookup(&normalize_host(host), path);
    let (route, matched_len) = match (matched, &http.default_route) {
        (Some(m), _) => (&http.routes[m.route], m.matched_len),
        (None, Some(default)) => (default, 0),
        (None, None) => {
            info!(listener = %listener.name, host, path, status = 404, "no route");
            return ProxyError::NoRoute.into_response();
        }
    };
    if !route.access.admits(conn.peer.ip()) {
        info!(listener = %listener.name, route = %route.name, client = %conn.peer.ip(), status = 403, "client address not allowed");
        return ProxyError::Forbidden.into_response();
    }
    match &route.action {
        CompiledAction::Forward(ix) => {
            let backend = &table.backends[*ix];
            let target = Target {
                listener_name: &listener.name,
                listener: http,
                route,
                matched_len,
                backend,
            };
            forward(target, req, conn).await
        }
        CompiledAction::MissingBackend(id) => {
            let err = ProxyError::MissingBackend(id.clone());
            warn!(listener = %listener.name, route = %route.name, status = 503, "{err}");
            err.into_response()
        }
    }
}

/// HTTP/1 carries the host in `Host`; HTTP/2 in `:authority` (the URI).
fn request_host(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// Where a request goes, as decided by the table.
struct Target<'a> {
    listener_name: &'a str,
    listener: &'a HttpListener,
    route: &'a CompiledRoute,
    /// Bytes of the path the route matched, replaced by a prefix rewrite.
    matched_len: usize,
    backend: &'a CompiledBackend,
}

/// The upstream path and query: the client's, or rewritten by the route.
fn upstream_path_and_query(
    uri: &Uri,
    rewrite: Option<&PathRewrite>,
    matched_len: usize,
) -> Result<PathAndQuery, http::Error> {
    let Some(PathRewrite::ReplacePrefix(to)) = rewrite else {
        return Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")));
    };
    let path = uri.path();
    let rest = path.get(matched_len..).unwrap_or_default();
    let mut new_path = String::with_capacity(to.len() + rest.len() + 1);
    new_path.push_str(to);
    if new_path.ends_with('/') && rest.starts_with('/') {
        new_path.pop();
    } else if !new_path.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
        new_path.push('/');
    }
    new_path.push_str(rest);
    if new_path.is_empty() {
        new_path.push('/');
    }
    if let Some(query) = uri.query() {
        new_path.push('?');
        new_path.push_str(query);
    }
    Ok(PathAndQuery::try_from(new_path)?)
}

async fn forward(
    target: Target<'_>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ProxyBody> {
    let Target {
        listener_name,
        listener,
        route,
        matched_len,
        backend,
    } = target;
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

    let uri =
        upstream_path_and_query(&parts.uri, route.rewrite.as_ref(), matched_len).and_then(|pq| {
            Uri::builder()
                .scheme("http")
                .authority(endpoint.authority.clone())
                .path_and_query(pq)
                .build()
        });
    parts.uri = match uri {
        Ok(u) => u,
        Err(e) => {
            // Only a rewrite can produce an invalid path; the client's was parsed already.
            let err = ProxyError::Upstream(format!("cannot build the upstream URI: {e}"));
            warn!(listener = listener_name, route = %route.name, status = 502, "{err}");
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
                tokio::spawn(tunnel(client_side, backend_side, endpoint.address.clone()));
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
    endpoint: EndpointAddress,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str, to: &str, matched_len: usize) -> String {
        let uri: Uri = uri.parse().unwrap();
        let rw = PathRewrite::ReplacePrefix(to.into());
        upstream_path_and_query(&uri, Some(&rw), matched_len)
            .unwrap()
            .to_string()
    }

    #[test]
    fn prefix_rewrite_keeps_the_rest_and_the_query() {
        assert_eq!(rewrite("/api/users?x=1", "/v2", 4), "/v2/users?x=1");
        assert_eq!(rewrite("/api/users", "/", 4), "/users");
        assert_eq!(rewrite("/api", "/", 4), "/");
        assert_eq!(rewrite("/api/", "/v2/", 4), "/v2/");
        assert_eq!(rewrite("/anything", "/root", 0), "/root/anything");
        assert_eq!(rewrite("/exact", "/other", 6), "/other");
    }

    #[test]
    fn no_rewrite_forwards_the_path_unchanged() {
        let uri: Uri = "/a/b?c".parse().unwrap();
        assert_eq!(
            upstream_path_and_query(&uri, None, 2).unwrap().as_str(),
            "/a/b?c"
        );
    }
}
