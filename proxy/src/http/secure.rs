//! Request handling that depends on TLS: the connection's session (its
//! client-certificate scope and what its certificate said), requests refused
//! because of them (421 for a `Host` of another scope, `on_failure` statuses),
//! and the redirect of plain HTTP to HTTPS, with their responses.

use super::ProxyBody;
use super::headers::ClientCertHeaders;
use super::service::{fixed_response, text_response};
use crate::compile::HttpListener;
use crate::tls::client_auth::Judged;
use crate::tls::client_cert::LeafFacts;
use crate::tls::scopes::ListenerTlsConfigs;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};
use rustls::ServerConnection;
use rustls::pki_types::UnixTime;
use std::fmt::Write as _;
use std::sync::Arc;
use tracing::info;

/// What a TLS handshake established, shared by the connection's requests.
pub struct TlsSession {
    /// The configurations the handshake used (a later table's do not apply to
    /// this connection, as with certificates).
    pub configs: Arc<ListenerTlsConfigs>,
    /// The client-certificate scope the SNI chose.
    pub scope: usize,
    /// Set when the scope asks for client certificates.
    pub client: Option<ClientSession>,
}

pub struct ClientSession {
    pub judged: Judged,
    pub headers: ClientCertHeaders,
}

/// Why a request is answered without being routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its `Host` falls under other client-certificate settings than the
    /// connection's SNI (421 Misdirected Request, RFC 9110 §15.5.20): without
    /// this, SNI `public.example.com` with `Host: secure.example.com` would
    /// skip the secure host's client certificates.
    OtherScope,
    /// The client certificate was missing or not accepted (`on_failure: {status}`).
    ClientCertificate(StatusCode),
}

impl TlsSession {
    /// Judges the client's certificate once, for all of the connection's requests.
    pub fn new(configs: Arc<ListenerTlsConfigs>, scope: usize, conn: &ServerConnection) -> Self {
        let client = configs.scope(scope).client_auth.as_ref().map(|policy| {
            let chain = conn.peer_certificates();
            let judged = policy.judge(chain, UnixTime::now());
            let leaf = chain.and_then(<[_]>::first).map(LeafFacts::of);
            let headers = ClientCertHeaders::new(&judged.verdict, leaf.as_ref());
            ClientSession { judged, headers }
        });
        Self {
            configs,
            scope,
            client,
        }
    }

    /// Whether a request for `host` (normalised) must be refused.
    pub fn refusal(&self, host: &str) -> Option<Refusal> {
        if self.configs.has_host_scopes()
            && self.configs.scope_of((!host.is_empty()).then_some(host)) != self.scope
        {
            return Some(Refusal::OtherScope);
        }
        self.client
            .as_ref()
            .and_then(|c| c.judged.reject)
            .map(Refusal::ClientCertificate)
    }
}

/// A request answered before routing because of its TLS session.
pub(super) fn refused(
    listener: &HttpListener,
    name: &str,
    host: &str,
    tls: &TlsSession,
    refusal: Refusal,
) -> Response<ProxyBody> {
    match refusal {
        Refusal::OtherScope => {
            info!(listener = %name, %host, status = 421, "host needs other client-certificate settings than the connection's SNI");
            text_response(
                StatusCode::MISDIRECTED_REQUEST,
                Bytes::from_static(
                    b"421 Misdirected Request: open a new connection for this host\n",
                ),
            )
        }
        Refusal::ClientCertificate(status) => {
            let verify = tls.client.as_ref().map(|c| c.judged.verdict.header_text());
            info!(listener = %name, %host, status = status.as_u16(), verify = verify.as_deref().unwrap_or("-"), "client certificate missing or not accepted");
            match listener.error_pages.get(&status.as_u16()) {
                Some(page) => fixed_response(page),
                None => {
                    let reason = status.canonical_reason().unwrap_or("Client Error");
                    let body = format!(
                        "{} {reason}: a valid client certificate is required\n",
                        status.as_u16()
                    );
                    text_response(status, Bytes::from(body))
                }
            }
        }
    }
}

/// 308 to the same host and request target over https (400 without a usable host).
pub(super) fn https_redirect(host: &str, port: Option<u16>, uri: &Uri) -> Response<ProxyBody> {
    match https_location(host, port, uri).and_then(|l| HeaderValue::from_str(&l).ok()) {
        Some(location) => {
            let mut r = text_response(StatusCode::PERMANENT_REDIRECT, Bytes::new());
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        None => text_response(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"400 Bad Request: missing or invalid Host header\n"),
        ),
    }
}

/// ACME HTTP-01 challenges are answered over plain HTTP, never redirected.
pub fn is_acme_challenge(path: &str) -> bool {
    path.starts_with("/.well-known/acme-challenge/")
}

/// `https://host[:port]/path?query` for a plain-HTTP request; `host` is the
/// normalised request host (no port). `None` when there is no usable host.
pub fn https_location(host: &str, port: Option<u16>, uri: &Uri) -> Option<String> {
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')),
    };
    if host.is_empty() || !valid {
        return None;
    }
    // The request target as sent (nginx's `$request_uri`); `*` becomes `/`.
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|t| t.starts_with('/'))
        .unwrap_or("/");
    let mut location = String::with_capacity(16 + host.len() + target.len());
    location.push_str("https://");
    location.push_str(host);
    if let Some(port) = port.filter(|&p| p != 443) {
        let _ = write!(location, ":{port}");
    }
    location.push_str(target);
    Some(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: &str, port: Option<u16>, target: &str) -> Option<String> {
        https_location(host, port, &target.parse().unwrap())
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(
            location("shop.test", None, "/cart?id=1&x=%2F").as_deref(),
            Some("https://shop.test/cart?id=1&x=%2F")
        );
        assert_eq!(
            location("shop.test", Some(8443), "/").as_deref(),
            Some("https://shop.test:8443/")
        );
        assert_eq!(
            location("shop.test", Some(443), "/a").as_deref(),
            Some("https://shop.test/a")
        );
        assert_eq!(
            location("[::1]", Some(8443), "/a").as_deref(),
            Some("https://[::1]:8443/a")
        );
        assert_eq!(
            location("shop.test", None, "http://other.test/x?y").as_deref(),
            Some("https://shop.test/x?y"),
            "absolute form: the path only"
        );
        assert_eq!(
            location("shop.test", None, "*").as_deref(),
            Some("https://shop.test/")
        );
        for bad in ["", "evil.test/x", "a@b", "[::1", "[zz]", "a b"] {
            assert_eq!(location(bad, None, "/"), None, "{bad:?}");
        }
    }

    #[test]
    fn acme_challenges_are_exempt() {
        assert!(is_acme_challenge("/.well-known/acme-challenge/token"));
        assert!(!is_acme_challenge("/.well-known/acme-challenge"));
        assert!(!is_acme_challenge("/.well-known/security.txt"));
    }
}
