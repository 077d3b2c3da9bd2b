//! Compiles a [`RoutingTable`] once into lookup structures for the data plane.
//!
//! A bad node degrades only itself: an invalid host or a route naming a missing
//! backend produces a warning and the rest of the table is served. Only problems
//! that make the whole table unusable (two listeners on one address) are errors.

mod actions;
mod backend_tls;
mod conditions;
pub mod explain;
mod facts;
mod passthrough;
mod router;
mod tcp;

pub use actions::{
    BackendIx, CompiledAction, CompiledHeaderEdits, CompiledRedirect, CompiledRewrite,
    FixedResponse, RedirectInput, replace_prefix,
};
pub use conditions::{CompiledCondition, HostSet, PathSet};
pub use facts::{RequestFacts, canonical_client, normalize_path, query_values};
pub use passthrough::PassthroughListener;
pub use router::{HostRouter, RouteIx, RouteMatch, normalize_host};
pub use tcp::TcpListener;

use crate::balance::{BackendState, BackendStatus, Balancer, Member, Pin};
use crate::runtime::Runtime;
use crate::sticky::CompiledSticky;
use crate::table::{
    self, Backend, BackendTimeouts, HealthCheck, IpNet, Listener, PassiveCheck, RoutingTable,
    SourceRef, Stickiness,
};
use crate::tls::certs::CertStore;
use crate::tls::scopes::ListenerTlsConfigs;
use crate::tls::server_config::{MinVersion, TlsOptions};
use crate::upstream::Upstream;
use http::HeaderValue;
use http::uri::Authority;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// The compiled, immutable form of a table. Published with one `ArcSwap`.
pub struct CompiledTable {
    /// The table this was compiled from, for `/debug/table`.
    pub source: Arc<RoutingTable>,
    pub listeners: Vec<CompiledListener>,
    pub backends: Vec<CompiledBackend>,
    pub warnings: Vec<String>,
}

pub struct CompiledListener {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub kind: ListenerKind,
    pub transport: Transport,
}

/// What a connection speaks before HTTP.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// TLS with this listener's settings and the table's certificates, one
    /// configuration per client-certificate scope; a new table's connections
    /// get the new certificates.
    Tls(Arc<ListenerTlsConfigs>),
    /// An `https` listener whose TLS settings could not be used (warned):
    /// connections are closed rather than served in the clear.
    Unusable,
}

// One per listener, built once per table: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ListenerKind {
    Http(HttpListener),
    /// Raw TLS routed by SNI (`tls_passthrough`).
    Passthrough(PassthroughListener),
    /// Raw TCP to one backend.
    Tcp(TcpListener),
}

impl ListenerKind {
    pub fn http(&self) -> Option<&HttpListener> {
        match self {
            ListenerKind::Http(http) => Some(http),
            ListenerKind::Passthrough(_) | ListenerKind::Tcp(_) => None,
        }
    }
}

pub struct HttpListener {
    pub router: HostRouter,
    pub routes: Vec<CompiledRoute>,
    /// Answers requests no route matches (404 when absent).
    pub default_route: Option<CompiledRoute>,
    pub forwarded: table::ForwardedHeaders,
    pub timeouts: table::ListenerTimeouts,
    /// Replacement pages for errors the proxy generates, by status.
    pub error_pages: HashMap<u16, FixedResponse>,
    /// `https` only: names whose TLS is passed through raw, not terminated.
    pub passthrough: Option<crate::tcp::SniRoutes>,
    /// The port of `https_redirect` locations (`None`: 443, not written).
    pub https_redirect_port: Option<u16>,
}

/// The route that answers a request.
pub struct Selected<'a> {
    pub route: &'a CompiledRoute,
    /// Bytes of the path the route's path matcher covered (for prefix rewrites).
    pub matched_len: usize,
    /// Whether this is the listener's default backend rather than a route.
    pub is_default: bool,
}

impl HttpListener {
    /// The route for a request: the first in precedence order (see `router`) whose
    /// conditions hold, else the default route.
    pub fn select(&self, req: &RequestFacts<'_>) -> Option<Selected<'_>> {
        let hit = self.router.lookup(req.host, req.path, |ix| {
            self.routes[ix].conditions.iter().all(|c| c.holds(req))
        });
        match hit {
            Some(m) => Some(Selected {
                route: &self.routes[m.route],
                matched_len: m.matched_len,
                is_default: false,
            }),
            None => self.default_route.as_ref().map(|route| Selected {
                route,
                matched_len: 0,
                is_default: true,
            }),
        }
    }
}

pub struct CompiledRoute {
    pub name: Arc<str>,
    /// Position in the table's route list (`None` for the default route).
    pub declared: Option<usize>,
    pub source: Option<SourceRef>,
    pub priority: i32,
    /// The route's own hosts and paths, for explaining decisions (the router
    /// indexes them for matching).
    pub hosts: HostSet,
    pub paths: PathSet,
    pub conditions: Box<[CompiledCondition]>,
    pub action: CompiledAction,
    pub rewrite: Option<CompiledRewrite>,
    pub request_headers: CompiledHeaderEdits,
    pub response_headers: CompiledHeaderEdits,
    pub access: SourceFilter,
    /// Plain-HTTP requests get a 308 to `https` (see `http::secure`).
    pub https_redirect: bool,
    /// `Strict-Transport-Security` for responses over TLS.
    pub hsts: Option<HeaderValue>,
}

/// Which client addresses a route admits.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    allow: Option<Box<[IpNet]>>,
    deny: Box<[IpNet]>,
}

impl SourceFilter {
    pub fn new(allow: Option<&[IpNet]>, deny: &[IpNet]) -> Self {
        Self {
            allow: allow.map(|a| a.iter().map(IpNet::trunc).collect()),
            deny: deny.iter().map(IpNet::trunc).collect(),
        }
    }

    /// `client` as in [`RequestFacts::client`] (IPv4-mapped already unwrapped).
    pub fn admits(&self, client: std::net::IpAddr) -> bool {
        if self.deny.iter().any(|n| n.contains(&client)) {
            return false;
        }
        self.allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(|n| n.contains(&client)))
    }

    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

pub struct CompiledBackend {
    pub id: Arc<str>,
    pub source: Option<SourceRef>,
    pub balancer: Balancer,
    pub timeouts: BackendTimeouts,
    pub upstream: Upstream,
    pub retries: u32,
    pub redispatch: bool,
    pub health_check: Option<HealthCheck>,
    pub passive_check: Option<PassiveCheck>,
    pub retry_on_timeout: bool,
    pub sticky: Option<CompiledSticky>,
    /// A PROXY header first on each raw connection (`tcp`, `tls_passthrough`).
    pub proxy_protocol: Option<table::ProxyProtocolVersion>,
}

impl CompiledBackend {
    /// What the admin `/debug/backends` shows.
    pub fn status(&self) -> BackendStatus {
        let mut status = self.balancer.status();
        if let Some(sticky) = &self.sticky {
            status.sticky = Some(sticky.status());
            for (ep, m) in status.endpoints.iter_mut().zip(self.balancer.members()) {
                ep.cookie_id = sticky.cookie_id(&m.state.address);
            }
        }
        status
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("listeners `{first}` and `{second}` both bind {bind}")]
    DuplicateBind {
        first: String,
        second: String,
        bind: SocketAddr,
    },
    #[error("two listeners are named `{0}`")]
    DuplicateListenerName(String),
}

impl CompiledTable {
    /// What the proxy serves before its first table: nothing, and not ready.
    pub fn empty() -> Self {
        Self {
            source: Arc::new(RoutingTable::default()),
            listeners: Vec::new(),
            backends: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The listener bound to `bind`, if the table still has one.
    pub fn listener(&self, bind: SocketAddr) -> Option<&CompiledListener> {
        self.listeners.iter().find(|l| l.bind == bind)
    }
}

/// Compiles `table`. `runtime` holds the pools and balancing state that outlive tables.
pub fn compile(table: RoutingTable, runtime: &Runtime) -> Result<CompiledTable, CompileError> {
    let mut warnings = Vec::new();
    check_listener_identity(&table.listeners)?;

    runtime.balance.prune();
    let backend_ix: BTreeMap<&str, BackendIx> = table
        .backends
        .keys()
        .enumerate()
        .map(|(ix, id)| (id.as_str(), ix))
        .collect();
    // Backends of `tcp` listeners balance connections (least_conn by default).
    let connection_backends: Vec<&str> = table
        .listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Tcp(tcp) => Some(tcp.backend.as_str()),
            _ => None,
        })
        .collect();
    let backends = table
        .backends
        .iter()
        .map(|(id, b)| {
            let connections = connection_backends.contains(&id.as_str());
            if connections && b.sticky.is_some() {
                warnings.push(format!(
                    "backend `{id}` sticky: cookies need HTTP; the `tcp` listener's connections are balanced without them"
                ));
            }
            if b.proxy_protocol.is_some() && !raw_backends(&table).any(|r| r == id) {
                warnings.push(format!(
                    "backend `{id}` proxy_protocol: only `tcp` and `tls_passthrough` connections send a PROXY header; HTTP requests to it are sent without"
                ));
            }
            compile_backend(id, b, connections, &table.certificates, runtime, &mut warnings)
        })
        .collect();

    let mut cert_stores = HashMap::new();
    let listeners = table
        .listeners
        .iter()
        .map(|listener| {
            let (http, https) = match listener {
                Listener::Http(http) => (http, false),
                Listener::Https(http) => (http, true),
                Listener::TlsPassthrough(p) => {
                    let compiled =
                        passthrough::compile_passthrough(p, &table, &backend_ix, &mut warnings);
                    return CompiledListener {
                        name: Arc::from(p.name.as_str()),
                        bind: p.bind,
                        kind: ListenerKind::Passthrough(compiled),
                        transport: Transport::Plain,
                    };
                }
                Listener::Tcp(t) => {
                    let counters = runtime.listener_counters.listener(&t.name);
                    let compiled =
                        tcp::compile_tcp(t, &table, &backend_ix, counters, &mut warnings);
                    return CompiledListener {
                        name: Arc::from(t.name.as_str()),
                        bind: t.bind,
                        kind: ListenerKind::Tcp(compiled),
                        transport: Transport::Plain,
                    };
                }
            };
            let transport = if https {
                compile_tls(http, &table, runtime, &mut cert_stores, &mut warnings)
            } else {
                Transport::Plain
            };
            let mut compiled = compile_http(http, &backend_ix, &mut warnings);
            if let Some(tls) = http
                .tls
                .as_ref()
                .filter(|t| https && !t.passthrough.is_empty())
            {
                compiled.passthrough = Some(passthrough::compile_sni_routes(
                    &http.name,
                    &tls.passthrough,
                    None,
                    &table,
                    &backend_ix,
                    &mut warnings,
                ));
            }
            CompiledListener {
                name: Arc::from(http.name.as_str()),
                bind: http.bind,
                kind: ListenerKind::Http(compiled),
                transport,
            }
        })
        .collect();

    Ok(CompiledTable {
        source: Arc::new(table),
        listeners,
        backends,
        warnings,
    })
}

/// Backends that raw connections reach: of `tcp` listeners and passthrough routes.
fn raw_backends(table: &RoutingTable) -> impl Iterator<Item = &str> {
    table.listeners.iter().flat_map(|l| {
        let ids: Vec<&str> = match l {
            Listener::Tcp(tcp) => vec![tcp.backend.as_str()],
            Listener::TlsPassthrough(p) => p
                .routes
                .iter()
                .map(|r| r.backend.as_str())
                .chain(p.default_backend.as_deref())
                .collect(),
            Listener::Https(http) => http
                .tls
                .iter()
                .flat_map(|t| t.passthrough.iter().map(|r| r.backend.as_str()))
                .collect(),
            Listener::Http(_) => Vec::new(),
        };
        ids
    })
}

fn check_listener_identity(listeners: &[Listener]) -> Result<(), CompileError> {
    let mut binds: HashMap<SocketAddr, &str> = HashMap::new();
    let mut names: HashMap<&str, ()> = HashMap::new();
    for l in listeners {
        if names.insert(l.name(), ()).is_some() {
            return Err(CompileError::DuplicateListenerName(l.name().to_owned()));
        }
        if let Some(first) = binds.insert(l.bind(), l.name()) {
            return Err(CompileError::DuplicateBind {
                first: first.to_owned(),
                second: l.name().to_owned(),
                bind: l.bind(),
            });
        }
    }
    Ok(())
}

fn compile_http(
    listener: &table::HttpListener,
    backend_ix: &BTreeMap<&str, BackendIx>,
    warnings: &mut Vec<String>,
) -> HttpListener {
    let error_pages: HashMap<u16, FixedResponse> = listener
        .error_pages
        .iter()
        .map(|(status, page)| {
            let response = FixedResponse::new(status.get(), &page.content_type, page.body.as_str());
            (status.get(), response)
        })
        .collect();
    let mut routes = Vec::with_capacity(listener.routes.len());
    let mut router = router::Builder::default();
    for (declared, route) in listener.routes.iter().enumerate() {
        let context = RouteContext {
            listener: &listener.name,
            route: &route.name,
            source: route.source.as_ref(),
        };
        if let Some(compiled) = compile_route(
            declared,
            route,
            backend_ix,
            &error_pages,
            &context,
            warnings,
        ) {
            let keys = router::RouteKeys {
                ix: routes.len(),
                name: &route.name,
                priority: route.priority,
                hosts: &route.hosts,
                paths: &route.paths,
                unconditional: compiled.conditions.is_empty(),
            };
            for problem in router.add(keys) {
                warnings.push(context.describe(problem));
            }
            routes.push(compiled);
        }
    }
    let default_route = listener.default_backend.as_ref().map(|id| {
        let context = RouteContext {
            listener: &listener.name,
            route: "default",
            source: None,
        };
        CompiledRoute {
            name: Arc::from("default"),
            declared: None,
            source: None,
            priority: 0,
            hosts: HostSet::default(),
            paths: PathSet::default(),
            conditions: Box::new([]),
            action: forward_to(id, backend_ix, &context, warnings),
            rewrite: None,
            request_headers: CompiledHeaderEdits::default(),
            response_headers: CompiledHeaderEdits::default(),
            access: SourceFilter::default(),
            https_redirect: false,
            hsts: None,
        }
    });
    HttpListener {
        router: router.build(),
        routes,
        default_route,
        forwarded: listener.forwarded,
        timeouts: listener.timeouts,
        error_pages,
        passthrough: None,
        https_redirect_port: listener.https_redirect_port.filter(|&p| p != 443),
    }
}

/// Compiles one route; a route whose conditions or action cannot be compiled is
/// left out (with a warning) rather than served wrongly, since a condition that
/// silently matched everything could open what it was meant to guard.
fn compile_route(
    declared: usize,
    route: &table::Route,
    backend_ix: &BTreeMap<&str, BackendIx>,
    error_pages: &HashMap<u16, FixedResponse>,
    context: &RouteContext<'_>,
    warnings: &mut Vec<String>,
) -> Option<CompiledRoute> {
    let mut conditions = Vec::with_capacity(route.conditions.len());
    for condition in &route.conditions {
        match CompiledCondition::compile(condition) {
            Ok(c) => conditions.push(c),
            Err(e) => {
                warnings.push(context.describe(format!("{e}; the route is left out")));
                return None;
            }
        }
    }
    let action = actions::compile_action(
        &route.action,
        |id| forward_to(id, backend_ix, context, warnings),
        |status| error_pages.get(&status).cloned(),
    );
    let action = match action {
        Ok(a) => a,
        Err(e) => {
            warnings.push(context.describe(format!("{e}; the route is left out")));
            return None;
        }
    };
    for edits in [&route.request_headers, &route.response_headers] {
        for name in edits.reserved_names() {
            warnings.push(context.describe(format!(
                "header `{}` is managed by the proxy; the edit is ignored",
                name.as_str()
            )));
        }
    }
    let rewrite = route
        .rewrite
        .as_ref()
        .and_then(|rw| match CompiledRewrite::new(rw) {
            Ok(rw) => Some(rw),
            Err(e) => {
                warnings.push(context.describe(e));
                None
            }
        });
    Some(CompiledRoute {
        name: Arc::from(route.name.as_str()),
        declared: Some(declared),
        source: route.source.clone(),
        priority: route.priority,
        hosts: HostSet::lenient(&route.hosts),
        paths: PathSet::new(router::or_root(&route.paths)),
        conditions: conditions.into(),
        action,
        rewrite,
        request_headers: CompiledHeaderEdits::new(&route.request_headers),
        response_headers: CompiledHeaderEdits::new(&route.response_headers),
        access: SourceFilter::new(route.allow_sources.as_deref(), &route.deny_sources),
        https_redirect: route.https_redirect,
        // Built from digits and fixed words, so always a valid value.
        hsts: route
            .hsts
            .and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
    })
}

fn forward_to(
    id: &str,
    backend_ix: &BTreeMap<&str, BackendIx>,
    context: &RouteContext<'_>,
    warnings: &mut Vec<String>,
) -> CompiledAction {
    match backend_ix.get(id) {
        Some(&b) => CompiledAction::Forward(b),
        None => {
            warnings.push(context.describe(format!(
                "backend `{id}` is not defined; the route answers 503"
            )));
            CompiledAction::MissingBackend(Arc::from(id))
        }
    }
}

struct RouteContext<'a> {
    listener: &'a str,
    route: &'a str,
    source: Option<&'a SourceRef>,
}

impl RouteContext<'_> {
    fn describe(&self, problem: String) -> String {
        match self.source {
            Some(src) => format!(
                "listener `{}` route `{}` ({src}): {problem}",
                self.listener, self.route
            ),
            None => format!(
                "listener `{}` route `{}`: {problem}",
                self.listener, self.route
            ),
        }
    }
}

fn compile_backend(
    id: &str,
    backend: &Backend,
    connections: bool,
    certificates: &BTreeMap<String, table::Certificate>,
    runtime: &Runtime,
    warnings: &mut Vec<String>,
) -> CompiledBackend {
    let sanitized;
    let problems = backend.problems();
    let backend = if problems.is_empty() {
        backend
    } else {
        for (field, message) in &problems {
            warnings.push(format!(
                "backend `{id}` {field}: {message}; the default is used"
            ));
        }
        sanitized = without_problems(backend, &problems);
        &sanitized
    };
    let (upstream, usable) = backend_tls::upstream(id, backend, certificates, runtime, warnings);
    let state = runtime.balance.backend(id);
    state.prune();
    let mut members = Vec::with_capacity(backend.endpoints.len());
    // An unusable backend (warned) gets no endpoints: its routes answer 503.
    for ep in backend.endpoints.iter().filter(|_| usable) {
        let mut weight = ep.weight;
        if weight > table::MAX_WEIGHT {
            warnings.push(format!(
                "backend `{id}` endpoint {}: weight {weight} is above {}; using {}",
                ep.address,
                table::MAX_WEIGHT,
                table::MAX_WEIGHT
            ));
            weight = table::MAX_WEIGHT;
        }
        // Validated addresses always render as a valid authority.
        let Ok(authority) = Authority::try_from(ep.address.to_string()) else {
            warnings.push(format!(
                "backend `{id}` endpoint {}: unusable address",
                ep.address
            ));
            continue;
        };
        let (endpoint, is_new) = state.endpoint(&ep.address, &authority);
        if members
            .iter()
            .any(|(m, _): &(Member, bool)| Arc::ptr_eq(&m.state, &endpoint))
        {
            warnings.push(format!(
                "backend `{id}` endpoint {} is listed twice; the first one counts",
                ep.address
            ));
            continue;
        }
        endpoint.set_limits(weight, ep.max_conn);
        if is_new && backend.slow_start.is_some() {
            endpoint.start_ramp(state.now_ms());
        }
        let member = Member {
            state: endpoint,
            weight,
            max_conn: ep.max_conn.unwrap_or(0),
        };
        members.push((member, ep.backup));
    }
    if members.is_empty() && usable {
        warnings.push(format!(
            "backend `{id}` has no endpoints; its routes answer 503"
        ));
    }
    let sticky = backend
        .sticky
        .as_ref()
        .map(|s| compile_sticky(id, s, &members, &state, runtime, warnings));
    CompiledBackend {
        id: Arc::from(id),
        source: backend.source.clone(),
        balancer: Balancer::new(state, backend, &backend.balance_for(connections), members),
        proxy_protocol: backend.proxy_protocol,
        timeouts: backend.timeouts,
        upstream,
        retries: backend.retries,
        redispatch: backend.redispatch,
        health_check: backend.health_check.clone(),
        passive_check: backend.passive_check,
        retry_on_timeout: backend.retry_on_timeout,
        sticky,
    }
}

fn compile_sticky(
    id: &str,
    sticky: &Stickiness,
    members: &[(Member, bool)],
    state: &BackendState,
    runtime: &Runtime,
    warnings: &mut Vec<String>,
) -> CompiledSticky {
    let Stickiness::Cookie(cookie) = sticky;
    let keys = if cookie.keys.is_empty() {
        if runtime.session_keys.is_generated() {
            warnings.push(format!(
                "backend `{id}` sticky cookie `{}`: no session key configured (--session-key-file), \
                 so cookies hold only on this process until it exits",
                cookie.name
            ));
        }
        runtime.session_keys.keys()
    } else {
        &cookie.keys
    };
    let pins = members
        .iter()
        .map(|(m, backup)| {
            let pin = Pin {
                endpoint: m.state.clone(),
                max_conn: m.max_conn,
                backup: *backup,
            };
            (m.state.address.clone(), pin)
        })
        .collect();
    CompiledSticky::new(id, cookie, keys, pins, state.sticky_counts.clone())
}

/// An `https` listener's configurations (one per client-certificate scope); the
/// certificate stores are shared by listeners with the same default
/// certificate, so each warns once.
fn compile_tls(
    http: &table::HttpListener,
    table: &RoutingTable,
    runtime: &Runtime,
    stores: &mut HashMap<Option<String>, Arc<CertStore>>,
    warnings: &mut Vec<String>,
) -> Transport {
    let defaults = table::ListenerTls::default();
    let settings = http.tls.as_ref().unwrap_or(&defaults);
    let name = &http.name;
    let shared = match runtime.tls() {
        Ok(shared) => shared,
        Err(e) => {
            warnings.push(format!(
                "listener `{name}`: {e}; its connections are closed"
            ));
            return Transport::Unusable;
        }
    };
    let store = stores
        .entry(settings.default_certificate.clone())
        .or_insert_with(|| {
            Arc::new(CertStore::compile(
                &table.certificates,
                settings.default_certificate.as_deref(),
                &shared.fallback,
                std::time::SystemTime::now(),
                warnings,
            ))
        })
        .clone();
    let options = TlsOptions {
        min_version: match settings.min_version {
            table::TlsVersion::Tls12 => MinVersion::Tls12,
            table::TlsVersion::Tls13 => MinVersion::Tls13,
        },
        cipher_suites: settings.cipher_suites.clone(),
        alpn: settings
            .alpn
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
    };
    match ListenerTlsConfigs::compile(name, settings, store, &options, shared, warnings) {
        Ok(configs) => Transport::Tls(Arc::new(configs)),
        Err(e) => {
            warnings.push(format!(
                "listener `{name}` tls: {e}; its connections are closed"
            ));
            Transport::Unusable
        }
    }
}

/// `backend` with each setting named in `problems` back at its default.
fn without_problems(backend: &Backend, problems: &[(String, String)]) -> Backend {
    let mut fixed = backend.clone();
    for (field, _) in problems {
        if field.starts_with("balance") {
            fixed.balance = None;
        } else if field.starts_with("health_check") {
            fixed.health_check = None;
        } else if field.starts_with("passive_check") {
            fixed.passive_check = None;
        } else if field.starts_with("sticky") {
            fixed.sticky = None;
        } else if let Some(ix) = field
            .strip_prefix("endpoints[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(ix, _)| ix.parse::<usize>().ok())
            && let Some(ep) = fixed.endpoints.get_mut(ix)
        {
            ep.max_conn = None;
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::from_yaml_str;

    fn compile_yaml(yaml: &str) -> Result<CompiledTable, CompileError> {
        compile(from_yaml_str(yaml).unwrap(), &Runtime::default())
    }

    const TWO_ROUTES: &str = "
listeners:
  - http:
      name: web
      bind: 127.0.0.1:1
      routes:
        - {name: good, hosts: [a.com], action: {forward: b}}
        - {name: dangling, hosts: [b.com], action: {forward: nope}}
backends:
  b:
    endpoints: [{address: 127.0.0.1:2, weight: 900}]
";

    #[test]
    fn a_route_to_an_undefined_backend_degrades_only_itself() {
        let t = compile_yaml(TWO_ROUTES).unwrap();
        let http = t.listeners[0].kind.http().unwrap();
        let good = http.router.find("a.com", "/").unwrap().route;
        let dangling = http.router.find("b.com", "/").unwrap().route;
        assert!(matches!(
            http.routes[good].action,
            CompiledAction::Forward(0)
        ));
        assert!(
            matches!(&http.routes[dangling].action, CompiledAction::MissingBackend(id) if &**id == "nope")
        );
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("route `dangling`") && w.contains("`nope`")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn weights_above_the_maximum_are_clamped_with_a_warning() {
        let t = compile_yaml(TWO_ROUTES).unwrap();
        let weight = t.backends[0].balancer.members().next().unwrap().weight;
        assert_eq!(weight, table::MAX_WEIGHT);
        assert!(
            t.warnings.iter().any(|w| w.contains("weight 900")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn two_listeners_on_one_address_reject_the_table() {
        let yaml = "
listeners:
  - http: {name: a, bind: 127.0.0.1:1}
  - http: {name: b, bind: 127.0.0.1:1}
";
        let err = compile_yaml(yaml).err().unwrap();
        assert_eq!(
            err,
            CompileError::DuplicateBind {
                first: "a".into(),
                second: "b".into(),
                bind: "127.0.0.1:1".parse().unwrap()
            }
        );
    }

    #[test]
    fn source_refs_name_the_object_in_warnings() {
        let yaml = "
listeners:
  - http:
      name: web
      bind: 127.0.0.1:1
      routes:
        - name: r
          source: {kind: Ingress, namespace: shop, name: front}
          hosts: ['bad host']
          action: {forward: x}
";
        let t = compile_yaml(yaml).unwrap();
        assert!(
            t.warnings.iter().all(|w| w.contains("Ingress/shop/front")),
            "{:?}",
            t.warnings
        );
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
    }
}
