//! Ingress rules and default backends → routes, with conflicts resolved oldest-first.

use super::Options;
use super::annotations::{self, IngressAnnotations};
use super::backends::{self, PortRef, Resolver};
use super::{client_auth, tls};
use crate::snapshot::{ObjectKey, Snapshot};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use sluice_proxy::table::{
    self, Action, BackendId, ClientAuth, PathMatch, PathRewrite, Route, RoutingTable, SniRoute,
    SourceRef,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::hash_map::{Entry, HashMap};
use std::fmt;

/// A host (empty: any) and a path, as the router tells them apart: whether the
/// path is Exact, and the path (a Prefix without its trailing `/`s). Borrowed
/// from the Ingresses, so claiming a path allocates nothing.
type Claim<'a> = (Cow<'a, str>, bool, &'a str);

pub struct Builder<'a> {
    snapshot: &'a Snapshot,
    table: &'a mut RoutingTable,
    resolver: Resolver<'a>,
    claims: HashMap<Claim<'a>, &'a ObjectKey>,
    routes: Vec<Route>,
    default_backend: Option<(&'a ObjectKey, BackendId)>,
    /// Whether an HTTPS listener exists to redirect to.
    https: bool,
    /// `ssl-passthrough` hosts, with the Ingress that claimed each.
    passthrough: Vec<(SniRoute, &'a ObjectKey)>,
    /// Hosts with client-certificate settings (`auth-tls-*`).
    client_auth: client_auth::Claims<'a>,
}

/// Where in an Ingress a problem is, for warnings (formatted only when needed).
#[derive(Clone, Copy)]
enum At {
    DefaultBackend,
    Path(usize, usize),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::DefaultBackend => f.write_str("defaultBackend"),
            At::Path(i, j) => write!(f, "spec.rules[{i}].http.paths[{j}]"),
        }
    }
}

pub struct Routes {
    pub routes: Vec<Route>,
    /// For the HTTPS listener's `tls.passthrough`.
    pub passthrough: Vec<SniRoute>,
    /// For the HTTPS listener's `tls.host_client_auth`.
    pub host_client_auth: BTreeMap<String, ClientAuth>,
    pub default_backend: Option<BackendId>,
    /// Problems that belong to no Ingress (the `--default-backend-service`).
    pub warnings: Vec<String>,
}

impl<'a> Builder<'a> {
    /// `paths`: how many Ingress paths will be added (a capacity hint).
    pub fn new(
        snapshot: &'a Snapshot,
        table: &'a mut RoutingTable,
        paths: usize,
        https: bool,
    ) -> Self {
        Self {
            snapshot,
            table,
            resolver: Resolver::new(snapshot),
            claims: HashMap::with_capacity(paths),
            routes: Vec::with_capacity(paths),
            default_backend: None,
            https,
            passthrough: Vec::new(),
            client_auth: client_auth::Claims::default(),
        }
    }

    /// Adds one Ingress; returns whether anything of it is served, and its warnings.
    pub fn add_ingress(&mut self, key: &'a ObjectKey, ingress: &'a Ingress) -> (bool, Vec<String>) {
        let mut warnings = Vec::new();
        let mut options = annotations::parse(ingress.metadata.annotations.as_ref(), &mut warnings);
        options.load_sticky_keys(self.snapshot, &key.namespace, &mut warnings);
        options.load_backend_tls(self.snapshot, &key.namespace, &mut warnings);
        let Some(spec) = ingress.spec.as_ref() else {
            warnings.push("the Ingress has no spec; nothing to route".into());
            return (false, warnings);
        };
        let mut served = false;
        let mut memo = Memo::new();
        if options.tls.passthrough {
            return self.add_passthrough(key, spec, options, warnings);
        }

        let client_auth = match &options.tls.client_auth {
            None => None,
            Some(_) if !self.https => {
                warnings.push(
                    "annotation sluice.dev/auth-tls-secret: there is no HTTPS listener (--no-https) to ask for client certificates; the Ingress is not served"
                        .into(),
                );
                return (false, warnings);
            }
            Some(wanted) => match client_auth::load(self.snapshot, &key.namespace, wanted) {
                Ok(auth) => Some(auth),
                Err(problem) => {
                    warnings.push(problem);
                    return (false, warnings);
                }
            },
        };
        if client_auth.is_some() && options.ssl_redirect == Some(false) {
            warnings.push(
                "annotation sluice.dev/ssl-redirect: \"false\" is overridden: with client certificates, plain HTTP is always redirected to HTTPS"
                    .into(),
            );
        }
        if options.ssl_redirect == Some(true) && !self.https {
            warnings.push(
                "annotation sluice.dev/ssl-redirect: there is no HTTPS listener (--no-https); not redirected"
                    .into(),
            );
        }
        // Hosts of spec.tls are redirected to HTTPS unless ssl-redirect says no
        // (nginx-ingress's default).
        let tls_hosts: Vec<String> = spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten())
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Some(tls) = &spec.tls {
            tls::add(
                self.snapshot,
                &key.namespace,
                tls,
                self.table,
                &mut warnings,
            );
        }

        if let Some(default) = &spec.default_backend {
            match &self.default_backend {
                Some((owner, _)) => warnings.push(format!(
                    "defaultBackend ignored: the older Ingress {owner} already sets the default backend"
                )),
                // The default backend answers every client; installing it would
                // bypass this Ingress's source restrictions, so fail closed.
                None if options.restricts_sources() => warnings.push(
                    "defaultBackend ignored: the default backend admits every client, so it cannot honour sluice.dev/allow-cidrs or sluice.dev/deny-cidrs"
                        .into(),
                ),
                None => {
                    if let Some(id) = backend(
                        &mut self.resolver,
                        &mut memo,
                        key,
                        default,
                        &options,
                        At::DefaultBackend,
                        &mut warnings,
                    ) {
                        for annotation in options.route_only() {
                            warnings.push(format!(
                                "annotation {annotation} does not apply to the defaultBackend"
                            ));
                        }
                        self.default_backend = Some((key, id));
                        served = true;
                    }
                }
            }
        }

        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let host = lowercase(rule.host.as_deref().unwrap_or_default());
            if !host.is_empty()
                && let Err(problem) = table::validate_host(&host)
            {
                warnings.push(format!("spec.rules[{i}]: {problem}; the rule is ignored"));
                continue;
            }
            let Some(http) = &rule.http else { continue };
            if let Some(auth) = &client_auth {
                if host.is_empty() {
                    warnings.push(format!(
                        "spec.rules[{i}]: client certificates are asked per host (SNI), so a rule needs a host; ignored"
                    ));
                    continue;
                }
                self.client_auth.claim(&host, auth, key, &mut warnings);
            }
            let name_prefix = route_name_prefix(key, i);
            for (j, path) in http.paths.iter().enumerate() {
                let at = At::Path(i, j);
                let Some((exact, text)) = path_match(
                    path.path_type.as_str(),
                    path.path.as_deref(),
                    at,
                    &mut warnings,
                ) else {
                    continue;
                };
                // Two Prefix paths that differ by a trailing `/` claim the same requests.
                let normalized = if exact {
                    text
                } else {
                    text.trim_end_matches('/')
                };
                let claim = match self.claims.entry((host.clone(), exact, normalized)) {
                    Entry::Occupied(owner) if *owner.get() != key => {
                        warnings.push(format!(
                            "{at}: host {:?} path {text:?} is already served by the older Ingress {}; ignored",
                            display_host(&host),
                            owner.get()
                        ));
                        continue;
                    }
                    Entry::Occupied(_) => {
                        warnings.push(format!(
                            "{at}: duplicates an earlier path of this Ingress; ignored"
                        ));
                        continue;
                    }
                    Entry::Vacant(claim) => claim,
                };
                // A redirecting route uses no backend, so its Service is not
                // resolved (and a missing one is not worth a warning).
                let action = match &options.redirect {
                    Some(r) => Action::Redirect(r.redirect.clone()),
                    None => match backend(
                        &mut self.resolver,
                        &mut memo,
                        key,
                        &path.backend,
                        &options,
                        at,
                        &mut warnings,
                    ) {
                        Some(id) => Action::Forward(id),
                        None => continue,
                    },
                };
                claim.insert(key);
                let matcher = if exact {
                    PathMatch::Exact(text.to_owned())
                } else {
                    PathMatch::Prefix(text.to_owned())
                };
                let mut route = route(key, &name_prefix, j, &host, matcher, action, &options);
                route.https_redirect = self.https
                    && (self.client_auth.covers(&host)
                        || options
                            .ssl_redirect
                            .unwrap_or_else(|| tls::covers(&tls_hosts, &host)));
                route.hsts = options.tls.hsts.map(|h| table::Hsts {
                    max_age: h.max_age,
                    include_subdomains: h.include_subdomains,
                    preload: h.preload,
                });
                self.routes.push(route);
                served = true;
            }
        }
        (served, warnings)
    }

    /// `ssl-passthrough`: each rule's host is routed by SNI, without TLS
    /// termination, to the backend of its `/` path (else its first path); the
    /// Ingress gets no HTTP routes (nginx-ingress's behaviour).
    fn add_passthrough(
        &mut self,
        key: &'a ObjectKey,
        spec: &'a k8s_openapi::api::networking::v1::IngressSpec,
        mut options: IngressAnnotations,
        mut warnings: Vec<String>,
    ) -> (bool, Vec<String>) {
        if !self.https {
            warnings.push(
                "annotation sluice.dev/ssl-passthrough: there is no HTTPS listener (--no-https); the Ingress is not served"
                    .into(),
            );
            return (false, warnings);
        }
        // A passed-through connection carries no HTTP: what needs it cannot apply.
        if options
            .balance
            .as_ref()
            .is_some_and(table::Balance::needs_http)
        {
            warnings.push(
                "annotation sluice.dev/balance: reads HTTP requests, which ssl-passthrough does not see; round robin is used"
                    .into(),
            );
            options.balance = None;
        }
        if options.sticky.take().is_some() {
            warnings.push(
                "annotation sluice.dev/sticky-cookie: cookies are not seen through ssl-passthrough; ignored"
                    .into(),
            );
        }
        for annotation in options.route_only() {
            warnings.push(format!(
                "annotation {annotation}: has no effect with ssl-passthrough; ignored"
            ));
        }
        let mut memo = Memo::new();
        let mut served = false;
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let host = lowercase(rule.host.as_deref().unwrap_or_default()).into_owned();
            if host.is_empty() {
                warnings.push(format!(
                    "spec.rules[{i}]: ssl-passthrough routes by the TLS server name, so a rule needs a host; ignored"
                ));
                continue;
            }
            if let Err(problem) = table::validate_host(&host) {
                warnings.push(format!("spec.rules[{i}]: {problem}; the rule is ignored"));
                continue;
            }
            if let Some((_, owner)) = self
                .passthrough
                .iter()
                .find(|(r, _)| r.hosts.contains(&host))
            {
                warnings.push(format!(
                    "spec.rules[{i}]: host {host:?} is already passed through for the older Ingress {owner}; ignored"
                ));
                continue;
            }
            let paths = rule.http.iter().flat_map(|h| h.paths.iter());
            let Some((j, path)) = paths
                .clone()
                .enumerate()
                .find(|(_, p)| p.path.as_deref().unwrap_or("/") == "/")
                .or_else(|| paths.enumerate().next())
            else {
                warnings.push(format!("spec.rules[{i}]: no path names a backend; ignored"));
                continue;
            };
            let Some(id) = backend(
                &mut self.resolver,
                &mut memo,
                key,
                &path.backend,
                &options,
                At::Path(i, j),
                &mut warnings,
            ) else {
                continue;
            };
            let mut name = route_name_prefix(key, i);
            name.push_str("passthrough");
            self.passthrough.push((
                SniRoute {
                    name,
                    source: Some(SourceRef {
                        kind: "Ingress".into(),
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                    }),
                    hosts: vec![host],
                    backend: id,
                },
                key,
            ));
            served = true;
        }
        (served, warnings)
    }

    pub fn finish(mut self, options: &'a Options) -> Routes {
        let mut warnings = Vec::new();
        let mut default_backend = self.default_backend.take().map(|(_, id)| id);
        if default_backend.is_none()
            && let Some(service) = &options.default_backend_service
        {
            default_backend = self.flag_default_backend(service, &mut warnings);
        }
        self.table
            .backends
            .append(&mut self.resolver.into_backends());
        Routes {
            routes: self.routes,
            passthrough: self.passthrough.into_iter().map(|(r, _)| r).collect(),
            host_client_auth: self.client_auth.into_table(),
            default_backend,
            warnings,
        }
    }

    /// `--default-backend-service NS/NAME`: the Service's first TCP port.
    fn flag_default_backend(
        &mut self,
        service: &'a ObjectKey,
        warnings: &mut Vec<String>,
    ) -> Option<BackendId> {
        let first_port = self
            .snapshot
            .services
            .get(service)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.iter().find(|p| backends::is_tcp(p)))
            .map(|p| p.port);
        let Some(port) = first_port else {
            warnings.push(format!("default backend Service {service} not found or has no TCP port; unmatched requests get 404"));
            return None;
        };
        let id = self.resolver.resolve(
            &service.namespace,
            &service.name,
            PortRef::Number(port),
            &IngressAnnotations::default(),
            service,
            warnings,
        );
        Some(id)
    }
}

/// Service ports one Ingress already resolved, so that its paths to the same
/// Service port skip the resolver (their warnings are already recorded).
type Memo<'a> = Vec<(&'a str, PortRef<'a>, BackendId)>;

/// Beyond this many distinct Service ports in one Ingress, `Memo` stops growing.
const MEMO_LIMIT: usize = 16;

/// Resolves an Ingress backend (a Service port) to a table backend.
fn backend<'a>(
    resolver: &mut Resolver<'a>,
    memo: &mut Memo<'a>,
    owner: &'a ObjectKey,
    backend: &'a IngressBackend,
    options: &IngressAnnotations,
    at: At,
    warnings: &mut Vec<String>,
) -> Option<BackendId> {
    if backend.resource.is_some() {
        warnings.push(format!(
            "{at}: resource backends are not supported; ignored"
        ));
        return None;
    }
    let Some(service) = &backend.service else {
        warnings.push(format!("{at}: no service backend; ignored"));
        return None;
    };
    let Some(port) = backends::port_ref(service) else {
        warnings.push(format!(
            "{at}: service {} names no port; ignored",
            service.name
        ));
        return None;
    };
    if let Some((.., id)) = memo
        .iter()
        .find(|(name, p, _)| *name == service.name && *p == port)
    {
        return Some(id.clone());
    }
    let id = resolver.resolve(
        &owner.namespace,
        &service.name,
        port,
        options,
        owner,
        warnings,
    );
    if memo.len() < MEMO_LIMIT {
        memo.push((&service.name, port, id.clone()));
    }
    Some(id)
}

/// `name_prefix`: see `route_name_prefix`.
fn route(
    key: &ObjectKey,
    name_prefix: &str,
    j: usize,
    host: &str,
    matcher: PathMatch,
    action: Action,
    options: &IngressAnnotations,
) -> Route {
    Route {
        name: {
            let mut name = String::with_capacity(name_prefix.len() + 4);
            name.push_str(name_prefix);
            push_decimal(&mut name, j);
            name
        },
        source: Some(SourceRef {
            kind: "Ingress".into(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }),
        hosts: if host.is_empty() {
            Vec::new()
        } else {
            vec![host.to_owned()]
        },
        paths: vec![matcher],
        conditions: Vec::new(),
        priority: 0,
        action,
        request_headers: options.request_headers.clone(),
        response_headers: options.response_headers.clone(),
        rewrite: options
            .rewrite_target
            .clone()
            .map(PathRewrite::ReplacePrefix),
        allow_sources: options.allow_cidrs.clone(),
        deny_sources: options.deny_cidrs.clone(),
        https_redirect: false,
        hsts: None,
    }
}

/// Route names are `NAMESPACE/INGRESS/RULE/PATH`; this is all but PATH.
fn route_name_prefix(key: &ObjectKey, i: usize) -> String {
    let mut name = String::with_capacity(key.namespace.len() + key.name.len() + 8);
    name.push_str(&key.namespace);
    name.push('/');
    name.push_str(&key.name);
    name.push('/');
    push_decimal(&mut name, i);
    name.push('/');
    name
}

/// Appends `n` in decimal (cheaper than the formatting machinery, per route).
fn push_decimal(s: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(s, n / 10);
    }
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// pathType → whether the path is Exact (else Prefix), and the path.
/// ImplementationSpecific is Prefix here.
fn path_match<'a>(
    path_type: &str,
    path: Option<&'a str>,
    at: At,
    warnings: &mut Vec<String>,
) -> Option<(bool, &'a str)> {
    let path = path.filter(|p| !p.is_empty()).unwrap_or("/");
    if !path.starts_with('/') {
        warnings.push(format!("{at}: path {path:?} must start with `/`; ignored"));
        return None;
    }
    match path_type {
        "Exact" => Some((true, path)),
        "Prefix" | "ImplementationSpecific" => Some((false, path)),
        other => {
            warnings.push(format!(
                "{at}: pathType {other:?} is not Exact, Prefix or ImplementationSpecific; ignored"
            ));
            None
        }
    }
}

/// Lower-cases, borrowing when already lower-case (the usual case).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn display_host(host: &str) -> &str {
    if host.is_empty() { "*" } else { host }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_count_rules_and_paths_in_decimal() {
        let key = ObjectKey::new("ns", "ing");
        let mut name = route_name_prefix(&key, 0);
        push_decimal(&mut name, 7);
        assert_eq!(name, "ns/ing/0/7");
        let mut name = route_name_prefix(&key, 120);
        push_decimal(&mut name, 3059);
        assert_eq!(name, "ns/ing/120/3059");
    }
}
