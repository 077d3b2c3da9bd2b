//! The routing table: the contract between the controller and the proxy.
//!
//! Plain, ordered, comparable data. The standalone YAML file *is* this type, so the
//! proxy runs without Kubernetes and golden tests can print it. Enums are externally
//! tagged (`http: {...}`, `prefix: /api`) so that new listener protocols, matchers,
//! actions and algorithms are new variants, not new flags.

mod actions;
mod address;
mod backend;
mod backend_tls;
pub(crate) mod check;
mod duration;
mod health;
mod load;
mod matchers;
mod passthrough;
mod pattern;
mod secret;
mod sticky;
mod tcp;
mod tls;
pub mod validate;

pub use actions::{
    Action, Deny, ErrorPage, ErrorStatus, FixedBody, HeaderEdits, HeaderValueText, MAX_FIXED_BODY,
    PathRewrite, QueryHandling, RESERVED_HEADERS, Redirect, RedirectCode, RegexRewrite, Respond,
    ResponseStatus, Scheme, parse_prefix, text_html, text_plain,
};
pub use backend::{
    Backend, BackendProtocol, BackendTimeouts, Balance, Endpoint, HashMethod, HashOptions,
    HeaderHash, MAX_WEIGHT, NamedHash, ProxyProtocolVersion, UriHash,
};
pub use backend_tls::{AlpnProtocol, BackendTls, server_name, trust_anchors};
pub use check::{TableError, check};
pub use health::{
    HealthCheck, HexBytes, HttpProbe, InitialState, MysqlProbe, PassiveCheck, PostgresProbe, Probe,
    RedisProbe, SendExpect, StatusRange, Step, TlsProbe,
};
pub use matchers::{
    Condition, HeaderMatch, HeaderNameText, MethodName, PathMatch, QueryMatch, ValueTest,
};
pub use passthrough::{PassthroughListener, PassthroughTimeouts, SniRoute};
pub use pattern::{MatchPattern, Pattern, SearchPattern};

pub use address::EndpointAddress;
pub use duration::Duration;
pub use ipnet::IpNet;
pub use load::{LoadError, from_yaml_bytes, from_yaml_file, from_yaml_str, to_yaml};
pub use secret::{Certificate, PrivateKeyPem, SecretText};
pub use sticky::{
    CookieMode, IfUnavailable, MIN_SESSION_KEY_LEN, SameSite, Stickiness, StickyCookie,
    is_cookie_name, parse_session_keys,
};
pub use tcp::{AcceptProxy, TcpListener, TcpTimeouts};
pub use tls::{ClientAuth, ClientAuthMode, Hsts, ListenerTls, OnFailure, TlsVersion};
pub use validate::host as validate_host;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Identifies a backend inside one table.
pub type BackendId = String;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub backends: BTreeMap<BackendId, Backend>,
    /// TLS certificates by id. Stored now; HTTPS listeners will select them by SNI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, Certificate>,
}

/// The Kubernetes object (or file section) a node came from, so that logs, errors
/// and status can name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A listening socket, by protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listener {
    Http(HttpListener),
    /// HTTP over TLS: the same settings, plus `tls` (defaults when absent).
    Https(HttpListener),
    /// Raw TLS routed by SNI to backends that terminate it themselves.
    TlsPassthrough(PassthroughListener),
    /// Raw TCP to one backend (databases and other non-HTTP services).
    Tcp(TcpListener),
}

impl Listener {
    pub fn name(&self) -> &str {
        match self {
            Listener::Http(l) | Listener::Https(l) => &l.name,
            Listener::TlsPassthrough(l) => &l.name,
            Listener::Tcp(l) => &l.name,
        }
    }
    pub fn bind(&self) -> SocketAddr {
        match self {
            Listener::Http(l) | Listener::Https(l) => l.bind,
            Listener::TlsPassthrough(l) => l.bind,
            Listener::Tcp(l) => l.bind,
        }
    }
    /// The HTTP side (routes, timeouts, ...) of `http` and `https` listeners.
    pub fn http(&self) -> Option<&HttpListener> {
        match self {
            Listener::Http(l) | Listener::Https(l) => Some(l),
            Listener::TlsPassthrough(_) | Listener::Tcp(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListener {
    pub name: String,
    pub bind: SocketAddr,
    /// Ordered routes. Precedence is computed from hosts and paths (see `compile`),
    /// not from the order, which only breaks exact ties (first wins).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Where requests that match no route go (Ingress `defaultBackend`); else 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<BackendId>,
    #[serde(default)]
    pub forwarded: ForwardedHeaders,
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    /// Pages served instead of the proxy's own text for errors it generates
    /// (404 no route, 403, 502, 503, 504, and `deny` without a body).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_pages: BTreeMap<ErrorStatus, ErrorPage>,
    /// TLS settings; only on `https` listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// The port in the `Location` of routes' `https_redirect` (absent or 443:
    /// none, the https default); only on `http` listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect_port: Option<u16>,
}

/// How `X-Forwarded-For`, `-Proto` and `-Host` are produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedHeaders {
    /// Incoming values are discarded and replaced by what this proxy saw (safe default
    /// for an edge proxy: clients cannot spoof their address).
    #[default]
    Replace,
    /// Incoming values come from a trusted proxy in front: the client address is
    /// appended to `X-Forwarded-For`, and existing `-Proto`/`-Host` are kept.
    Trust,
    /// Forwarded headers are passed through untouched and none are added.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTimeouts {
    /// Time allowed for a complete request head, from accept and (HTTP/1) from the
    /// first byte of each next request: the slowloris guard (`timeout http-request`).
    pub request_header: Duration,
    /// A connection with no request in flight and no bytes moving for this long is
    /// closed (`timeout http-keep-alive`).
    pub client_idle: Duration,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        Self {
            request_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
        }
    }
}

/// A rule of an HTTP listener. Which route answers a request: see `compile::router`
/// (priority first, then host specificity, then path kind and length, then order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Exact names or `*.example.com` (one label, per the Ingress spec). Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Any of these paths. Empty: every path (`prefix: /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Further conditions, all of which must hold; when one does not, the request
    /// goes on to the next candidate route.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Routes with a higher priority are tried first, across all hosts. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    pub action: Action,
    /// Rewrites the path before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<PathRewrite>,
    /// Edits of the request headers before forwarding.
    #[serde(default, skip_serializing_if = "HeaderEdits::is_empty")]
    pub request_headers: HeaderEdits,
    /// Edits of the response headers, for every response of this route.
    #[serde(default, skip_serializing_if = "HeaderEdits::is_empty")]
    pub response_headers: HeaderEdits,
    /// Client addresses admitted (absent: everyone; empty: nobody). Others get 403,
    /// without trying other routes (the Ingress allow-list semantics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_sources: Option<Vec<IpNet>>,
    /// Client addresses refused with 403, checked before `allow_sources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_sources: Vec<IpNet>,
    /// On an `http` listener, answer with a 308 to the same host and path over
    /// `https` (the port is the listener's `https_redirect_port`), except under
    /// `/.well-known/acme-challenge/` (ACME HTTP-01). Nothing on `https` listeners.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub https_redirect: bool,
    /// `Strict-Transport-Security` on this route's responses over TLS, replacing
    /// the backend's (never sent over plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Route {
    /// A route that forwards everything to `backend`; set hosts, paths and the
    /// rest with struct update syntax.
    pub fn forward(name: impl Into<String>, backend: impl Into<BackendId>) -> Self {
        Self::new(name, Action::Forward(backend.into()))
    }

    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Self {
            name: name.into(),
            source: None,
            hosts: Vec::new(),
            paths: Vec::new(),
            conditions: Vec::new(),
            priority: 0,
            action,
            rewrite: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            allow_sources: None,
            deny_sources: Vec::new(),
            https_redirect: false,
            hsts: None,
        }
    }
}
