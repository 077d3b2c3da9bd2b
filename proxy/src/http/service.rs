//! One request: load the table once, select a route, act (forward to a picked
//! endpoint, redirect, deny, respond), edit the response headers.

use super::ProxyBody;
use super::body::{RequestBody, ResponseBody};
use super::errors::ProxyError;
use super::headers;
use super::secure::{self, TlsSession};
use crate::balance::{EndpointState, Lease, NoEndpoint, PinnedLease};
use crate::compile::{
    CompiledAction, CompiledBackend, CompiledRewrite, CompiledRoute, FixedResponse, HttpListener,
    RedirectInput, RequestFacts, canonical_client, normalize_host, normalize_path,
};
use crate::health::{self, Outcome};
use crate::server::Proxy;
use crate::sticky::{self, CompiledSticky, Session};
use crate::table::{ForwardedHeaders, IfUnavailable, Scheme};
use crate::upstream;
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tracing::{debug, info, warn};

/// Where a connection came from and which listener accepted it.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub bind: SocketAddr,
    /// The client spoke TLS to us.
    pub tls: bool,
    /// What the TLS handshake established (set after it).
    pub tls_session: Option<Arc<TlsSession>>,
}

/// What the requests of one connection share: where it came from, and what
/// is worked out once for all of them.
pub struct ConnContext {
    pub info: ConnInfo,
    /// The client's address as an `X-Forwarded-For` value, made at first use.
    forwarded_for: OnceLock<HeaderValue>,
}

impl ConnContext {
    pub fn new(info: ConnInfo) -> Self {
        Self {
            info,
            forwarded_for: OnceLock::new(),
        }
    }

    /// The address routing saw: an IPv4 client of a dual-stack socket is IPv4 here too.
    fn forwarded_for(&self) -> &HeaderValue {
        self.forwarded_for
            .get_or_init(|| headers::client_value(canonical_client(self.info.peer.ip())))
    }
}

pub async fn handle(
    proxy: &Proxy,
    req: Request<Incoming>,
    cx: &ConnContext,
) -> Response<ProxyBody> {
    let conn = &cx.info;
    // The one load of this request: it keeps this table version to the end.
    let table = proxy.table();
    let Some(listener) = table.listener(conn.bind) else {
        return ProxyError::ListenerGone.into_response();
    };
    // A listener at this address that is no longer HTTP is gone for HTTP.
    let Some(http) = listener.kind.http() else {
        return ProxyError::ListenerGone.into_response();
    };
    let client = canonical_client(conn.peer.ip());

    let host = normalize_host(request_host(&req));
    if let Some(tls) = &conn.tls_session
        && let Some(refusal) = tls.refusal(&host)
    {
        return secure::refused(http, &listener.name, &host, tls, refusal);
    }
    let path = normalize_path(req.uri().path());
    let facts = RequestFacts {
        host: &host,
        path: &path,
        query: req.uri().query(),
        method: req.method(),
        headers: req.headers(),
        client,
    };
    let Some(selected) = http.select(&facts) else {
        info!(listener = %listener.name, host = %host, path = %path, status = 404, "no route");
        return error_response(http, ProxyError::NoRoute);
    };
    let route = selected.route;
    if route.https_redirect && !conn.tls && !secure::is_acme_challenge(&path) {
        let response = secure::https_redirect(&host, http.https_redirect_port, req.uri());
        debug!(listener = %listener.name, route = %route.name, status = response.status().as_u16(), "redirect to https");
        return with_route_headers(route, conn, response);
    }
    if !route.access.admits(client) {
        info!(listener = %listener.name, route = %route.name, %client, status = 403, "client address not allowed");
        return with_route_headers(route, conn, error_response(http, ProxyError::Forbidden));
    }
    let response = match &route.action {
        CompiledAction::Forward(ix) => {
            let backend = &table.backends[*ix];
            let hash = backend.balancer.hash(&facts);
            // The routed path goes upstream only when normalising changed it.
            let normalized = match path {
                Cow::Owned(p) => Some(p),
                Cow::Borrowed(_) => None,
            };
            let target = Target {
                listener_name: &listener.name,
                listener: http,
                route,
                matched_len: selected.matched_len,
                normalized_path: normalized.as_deref(),
                backend,
            };
            forward(target, req, cx, hash).await
        }
        CompiledAction::MissingBackend(id) => {
            let err = ProxyError::MissingBackend(id.clone());
            warn!(listener = %listener.name, route = %route.name, status = 503, "{err}");
            error_response(http, err)
        }
        CompiledAction::Redirect(redirect) => {
            let input = RedirectInput {
                scheme: if conn.tls {
                    Scheme::Https
                } else {
                    Scheme::Http
                },
                host: request_host(&req),
                path: &path,
                matched_len: selected.matched_len,
                query: req.uri().query(),
            };
            match redirect
                .location(&input)
                .and_then(|l| HeaderValue::from_str(&l).ok())
            {
                Some(location) => {
                    debug!(listener = %listener.name, route = %route.name, status = redirect.code.as_u16(), location = ?location, "redirect");
                    let mut r = text_response(redirect.code, Bytes::new());
                    r.headers_mut().insert(header::LOCATION, location);
                    r
                }
                None => {
                    info!(listener = %listener.name, route = %route.name, status = 400, "redirect needs the request's host, and there is none");
                    text_response(
                        StatusCode::BAD_REQUEST,
                        Bytes::from_static(b"400 Bad Request: missing Host header\n"),
                    )
                }
            }
        }
        CompiledAction::Deny(fixed) => {
            info!(listener = %listener.name, route = %route.name, %client, status = fixed.status.as_u16(), "denied");
            fixed_response(fixed)
        }
        CompiledAction::Respond(fixed) => fixed_response(fixed),
    };
    with_route_headers(route, conn, response)
}

/// The route's response edits, and its HSTS header over TLS only (RFC 6797
/// §7.2: never over plain HTTP), replacing the backend's.
fn with_route_headers(
    route: &CompiledRoute,
    conn: &ConnInfo,
    mut response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    route.response_headers.apply(response.headers_mut());
    if conn.tls
        && let Some(hsts) = &route.hsts
    {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

/// A proxy-generated error: the listener's page for the status, else our text.
fn error_response(listener: &HttpListener, err: ProxyError) -> Response<ProxyBody> {
    match listener.error_pages.get(&err.status().as_u16()) {
        Some(page) => fixed_response(page),
        None => err.into_response(),
    }
}

pub(super) fn fixed_response(fixed: &FixedResponse) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(fixed.body.clone())));
    *response.status_mut() = fixed.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, fixed.content_type.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn text_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    response
}

/// HTTP/1 carries the host in `Host`; HTTP/2 in `:authority` (the URI).
fn request_host<B>(req: &Request<B>) -> &str {
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
    /// The normalised path, when it differs from the client's.
    normalized_path: Option<&'a str>,
    backend: &'a CompiledBackend,
}

/// The upstream path and query: the client's, normalised and rewritten by the route.
fn upstream_path_and_query(
    uri: &Uri,
    normalized: Option<&str>,
    rewrite: Option<&CompiledRewrite>,
    matched_len: usize,
) -> Result<PathAndQuery, http::Error> {
    if normalized.is_none() && rewrite.is_none() {
        return Ok(uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")));
    }
    let path = normalized.unwrap_or(uri.path());
    let path = match rewrite {
        Some(rw) => rw.apply(path, matched_len),
        None => Cow::Borrowed(path),
    };
    let mut out = path.into_owned();
    if let Some(query) = uri.query() {
        // A regex rewrite may have added a query of its own.
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(query);
    }
    Ok(PathAndQuery::try_from(out)?)
}

/// Forwards the request to an endpoint of the route's backend, retrying on
/// another endpoint when the connection fails and the request can be sent again
/// (see [`replayable`]).
async fn forward(
    target: Target<'_>,
    mut req: Request<Incoming>,
    cx: &ConnContext,
    hash: Option<u64>,
) -> Response<ProxyBody> {
    let conn = &cx.info;
    let Target {
        listener_name,
        listener,
        route,
        matched_len,
        normalized_path,
        backend,
    } = target;

    let upgrade = match req.version() {
        Version::HTTP_11 => headers::requested_upgrade(req.headers()),
        _ => None,
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    // The client's cookie as sent, before the backend's view of it is made.
    let sticky = backend.sticky.as_ref().map(|s| {
        let session = s.read(&parts.headers, sticky::now_secs());
        s.edit_request(&mut parts.headers);
        (s, session)
    });
    headers::join_cookies(&mut parts.headers);
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
    if listener.forwarded != ForwardedHeaders::Off {
        let host = parts.headers.get(header::HOST).cloned();
        headers::set_forwarded(
            &mut parts.headers,
            listener.forwarded,
            cx.forwarded_for(),
            if conn.tls { "https" } else { "http" },
            host.as_ref(),
        );
    }
    // Only this proxy says what a client certificate was.
    headers::strip_client_cert(&mut parts.headers);
    // The route's edits come next, so they can override anything above.
    route.request_headers.apply(&mut parts.headers);
    if let Some(client) = conn.tls_session.as_ref().and_then(|t| t.client.as_ref()) {
        client.headers.apply(&mut parts.headers);
    }

    let path_and_query = match upstream_path_and_query(
        &parts.uri,
        normalized_path,
        route.rewrite.as_ref(),
        matched_len,
    ) {
        Ok(pq) => pq,
        Err(e) => {
            // Only a rewrite can produce an invalid path; the client's was parsed already.
            let err = ProxyError::Upstream(format!("cannot build the upstream URI: {e}"));
            warn!(listener = listener_name, route = %route.name, status = 502, "{err}");
            return error_response(listener, err);
        }
    };

    let bodyless = body.is_end_stream();
    let idempotent = is_idempotent(&parts.method);
    let mut body = (!bodyless).then_some(body);
    let mut avoid: Vec<Arc<EndpointState>> = Vec::new();
    let mut kept: Option<Lease> = None;
    let mut attempt = 0;
    // Retries stay on a pinned endpoint that must not be left (`if_unavailable: fail`).
    let mut hold_pin = false;
    loop {
        let picked = match (kept.take(), &sticky) {
            (Some(lease), _) => Ok(lease),
            (None, Some((s, session))) if attempt == 0 => {
                let picked = lease_for_session(backend, s, session, hash).await;
                hold_pin = picked.as_ref().is_ok_and(|(_, pinned)| *pinned)
                    && s.if_unavailable == IfUnavailable::Fail;
                picked.map(|(lease, _)| lease)
            }
            (None, _) => backend.balancer.lease(hash, &avoid).await,
        };
        let lease = match picked {
            Ok(lease) => lease,
            Err(reason) => {
                let err = ProxyError::NoEndpoint(reason);
                warn!(listener = listener_name, route = %route.name, backend = %backend.id, status = 503, "{err}");
                return error_response(listener, err);
            }
        };
        let endpoint = lease.endpoint();
        let last = attempt >= backend.retries;
        let (request_body, returned) = match body.take() {
            Some(b) if !last => {
                let (b, rx) = RequestBody::returnable(b);
                (b, Some(rx))
            }
            Some(b) => (RequestBody::new(b), None),
            None => (RequestBody::empty(), None),
        };
        let mut upstream_req = Request::new(request_body);
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = if last {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        // Origin form; the client adds the endpoint.
        *upstream_req.uri_mut() = Uri::from(path_and_query.clone());

        let timeout = backend.timeouts.response;
        let result = tokio::time::timeout(
            timeout.to_std(),
            backend.upstream.request(&endpoint.authority, upstream_req),
        )
        .await;
        let err = match result {
            Ok(Ok(mut response)) => {
                if let Some(check) = &backend.passive_check {
                    let outcome = Outcome::of_status(response.status().as_u16(), check);
                    health::record(&backend.balancer, check, endpoint, outcome);
                }
                if let Some((s, session)) = &sticky {
                    s.count_pin(session, endpoint);
                    s.edit_response(response.headers_mut(), session, endpoint);
                }
                let exchange = Exchange {
                    listener_name,
                    listener,
                    route,
                    backend,
                };
                return respond(exchange, response, lease, client_upgrade);
            }
            Ok(Err(e)) => Failed::Upstream(e),
            Err(_) => Failed::Timeout,
        };
        let (failure, can_replay, returned, endpoint_failed) = match err {
            Failed::Upstream(err) => {
                let returned = returned.and_then(|mut rx| rx.try_recv().ok());
                let can_replay =
                    replayable(err.is_connect(), idempotent, bodyless, returned.is_some());
                let endpoint_failed = !client_body_failed(&err);
                // A session that may not leave its endpoint finds it unusable:
                // the 503 `if_unavailable: fail` promises, not a 502.
                let failure = if hold_pin && err.is_connect() {
                    ProxyError::NoEndpoint(NoEndpoint::PinnedUnavailable)
                } else {
                    ProxyError::from_client(&err)
                };
                (failure, can_replay, returned, endpoint_failed)
            }
            // The backend may be working on it: sent again only when asked,
            // and only if doing it twice cannot differ from once.
            Failed::Timeout => (
                ProxyError::ResponseTimeout(timeout),
                backend.retry_on_timeout && idempotent && bodyless,
                None,
                true,
            ),
        };
        if let Some(check) = &backend.passive_check
            && endpoint_failed
        {
            let reason = failure.to_string();
            health::record(
                &backend.balancer,
                check,
                endpoint,
                Outcome::Failure(&reason),
            );
        }
        if last || !can_replay {
            warn!(listener = listener_name, route = %route.name, backend = %backend.id,
                  endpoint = %endpoint.address, status = failure.status().as_u16(), attempts = attempt + 1, "{failure}");
            return error_response(listener, failure);
        }
        attempt += 1;
        info!(listener = listener_name, route = %route.name, backend = %backend.id,
              endpoint = %endpoint.address, attempt, redispatch = backend.redispatch, "retrying: {failure}");
        body = returned;
        if backend.redispatch && !hold_pin {
            avoid.push(endpoint.clone());
            drop(lease);
        } else {
            kept = Some(lease);
        }
    }
}

/// The first lease of a request with a sticky cookie: its pinned endpoint when
/// that can take it, else balanced (or refused, with `if_unavailable: fail`).
/// True when the lease is on the pinned endpoint.
async fn lease_for_session(
    backend: &CompiledBackend,
    sticky: &CompiledSticky,
    session: &Session<'_>,
    hash: Option<u64>,
) -> Result<(Lease, bool), NoEndpoint> {
    let Some(pin) = session.pin else {
        return backend.balancer.lease(hash, &[]).await.map(|l| (l, false));
    };
    match backend.balancer.lease_pinned(pin).await {
        PinnedLease::Leased(lease) => Ok((lease, true)),
        PinnedLease::TimedOut(waited) => Err(NoEndpoint::QueueTimeout(waited)),
        PinnedLease::Unavailable => match sticky.if_unavailable {
            IfUnavailable::Redispatch => {
                backend.balancer.lease(hash, &[]).await.map(|l| (l, false))
            }
            IfUnavailable::Fail => Err(NoEndpoint::PinnedUnavailable),
        },
    }
}

/// Whether the request body failed (the client went away mid-upload): not the
/// endpoint's fault, so passive checks do not count it.
fn client_body_failed(err: &upstream::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// How an attempt failed before a response arrived.
enum Failed {
    Upstream(upstream::Error),
    Timeout,
}

/// Whether a failed request may be sent again. When the connection failed,
/// nothing reached the backend, so any request may, provided its body was not
/// touched. After that, only an idempotent request without a body may, since
/// the backend cannot have acted on it differently the second time (RFC 9110
/// §9.2.2), and there is no body that could be partly consumed.
fn replayable(connect_failed: bool, idempotent: bool, bodyless: bool, body_back: bool) -> bool {
    (connect_failed && (bodyless || body_back)) || (idempotent && bodyless)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Who answered, for logging the response.
struct Exchange<'a> {
    listener_name: &'a str,
    listener: &'a HttpListener,
    route: &'a CompiledRoute,
    backend: &'a CompiledBackend,
}

/// The backend's response on its way to the client, holding the endpoint's slot
/// until its body (or the upgraded tunnel) ends.
fn respond(
    exchange: Exchange<'_>,
    mut response: Response<Incoming>,
    lease: Lease,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upgraded_protocol = response.headers().get(header::UPGRADE).cloned();
    headers::strip_hop_by_hop(response.headers_mut());
    if switching {
        match (client_upgrade, upgraded_protocol) {
            (Some(client_side), Some(protocol)) => {
                headers::restore_upgrade(response.headers_mut(), protocol);
                let backend_side = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client_side, backend_side, lease));
                // A 101 has no body; the slot stays with the tunnel.
                return response.map(|_| Either::Right(Full::new(Bytes::new())));
            }
            _ => {
                let err = ProxyError::Upstream(
                    "101 Switching Protocols without an upgrade request".into(),
                );
                warn!(listener = exchange.listener_name, route = %exchange.route.name, backend = %exchange.backend.id,
                      endpoint = %lease.endpoint().address, status = 502, "{err}");
                return error_response(exchange.listener, err);
            }
        }
    }
    response.map(|body| Either::Left(ResponseBody::new(body, lease)))
}

/// Copies both ways between an upgraded client connection and its backend.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    lease: Lease,
) {
    let endpoint = &lease.endpoint().address;
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
    use crate::table::PathRewrite;

    fn upstream(uri: &str, rewrite: Option<PathRewrite>, matched_len: usize) -> String {
        let uri: Uri = uri.parse().unwrap();
        let normalized = normalize_path(uri.path());
        let normalized = match &normalized {
            Cow::Owned(p) => Some(p.as_str()),
            Cow::Borrowed(_) => None,
        };
        let rw = rewrite.map(|r| CompiledRewrite::new(&r).unwrap());
        upstream_path_and_query(&uri, normalized, rw.as_ref(), matched_len)
            .unwrap()
            .to_string()
    }

    #[test]
    fn what_may_be_sent_again() {
        // (connect failed, idempotent, bodyless, body came back) → replay?
        let cases = [
            (
                (true, false, true, false),
                true,
                "POST without body, never connected",
            ),
            (
                (true, false, false, true),
                true,
                "POST whose body was never read",
            ),
            (
                (true, true, false, false),
                false,
                "PUT whose body was partly sent",
            ),
            (
                (false, true, true, false),
                true,
                "GET after the connection died",
            ),
            (
                (false, false, true, false),
                false,
                "POST after the connection died",
            ),
            (
                (false, true, false, true),
                false,
                "PUT with a body after sending began",
            ),
        ];
        for ((connect, idem, bodyless, back), want, what) in cases {
            assert_eq!(replayable(connect, idem, bodyless, back), want, "{what}");
        }
    }

    #[test]
    fn prefix_rewrite_keeps_the_rest_and_the_query() {
        let to = |p: &str| Some(PathRewrite::ReplacePrefix(p.into()));
        assert_eq!(upstream("/api/users?x=1", to("/v2"), 4), "/v2/users?x=1");
        assert_eq!(upstream("/api/users", to("/"), 4), "/users");
        assert_eq!(upstream("/api", to("/"), 4), "/");
        assert_eq!(upstream("/api/", to("/v2/"), 4), "/v2/");
        assert_eq!(upstream("/anything", to("/root"), 0), "/root/anything");
        assert_eq!(upstream("/exact", to("/other"), 6), "/other");
    }

    #[test]
    fn the_backend_gets_the_normalised_path_it_was_routed_by() {
        assert_eq!(upstream("/a/b?c", None, 0), "/a/b?c");
        assert_eq!(upstream("/x/../%61dmin?q", None, 0), "/admin?q");
    }

    #[test]
    fn a_regex_rewrite_that_adds_a_query_keeps_the_client_query() {
        let rw: PathRewrite =
            serde_saphyr::from_str("regex: {pattern: '^/u/([0-9]+)$', replace: '/user?id=$1'}")
                .unwrap();
        assert_eq!(upstream("/u/7?lang=en", Some(rw), 0), "/user?id=7&lang=en");
    }
}
