//! Ingress rules and default backends → routes, with conflicts resolved oldest-first.

use super::Options;
use super::annotations::{self, IngressAnnotations};
use super::backends::{self, PortRef, Resolver};
use super::tls;
use crate::snapshot::{ObjectKey, Snapshot};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use sluice_proxy::table::{
    self, Action, BackendId, PathMatch, PathRewrite, Route, RoutingTable, SourceRef,
};
use std::collections::BTreeMap;

/// A host (empty: any) and a path, as the router sees them.
type Claim = (String, PathMatch);

pub struct Builder<'a> {
    snapshot: &'a Snapshot,
    table: &'a mut RoutingTable,
    resolver: Resolver<'a>,
    claims: BTreeMap<Claim, ObjectKey>,
    routes: Vec<Route>,
    default_backend: Option<(ObjectKey, BackendId)>,
}

pub struct Routes {
    pub routes: Vec<Route>,
    pub default_backend: Option<BackendId>,
    /// Problems that belong to no Ingress (the `--default-backend-service`).
    pub warnings: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(snapshot: &'a Snapshot, table: &'a mut RoutingTable) -> Self {
        Self {
            snapshot,
            table,
            resolver: Resolver::new(snapshot),
            claims: BTreeMap::new(),
            routes: Vec::new(),
            default_backend: None,
        }
    }

    /// Adds one Ingress; returns whether anything of it is served, and its warnings.
    pub fn add_ingress(&mut self, key: &ObjectKey, ingress: &Ingress) -> (bool, Vec<String>) {
        let mut warnings = Vec::new();
        let options = annotations::parse(ingress.metadata.annotations.as_ref(), &mut warnings);
        let Some(spec) = ingress.spec.as_ref() else {
            warnings.push("the Ingress has no spec; nothing to route".into());
            return (false, warnings);
        };
        let mut served = false;

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
                None => {
                    if let Some(id) = self.backend(key, default, &options, "defaultBackend", &mut warnings) {
                        self.default_backend = Some((key.clone(), id));
                        served = true;
                    }
                }
            }
        }

        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            if !host.is_empty()
                && let Err(problem) = table::validate_host(&host)
            {
                warnings.push(format!("spec.rules[{i}]: {problem}; the rule is ignored"));
                continue;
            }
            let Some(http) = &rule.http else { continue };
            for (j, path) in http.paths.iter().enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{j}]");
                let Some(matcher) = path_match(
                    path.path_type.as_str(),
                    path.path.as_deref(),
                    &at,
                    &mut warnings,
                ) else {
                    continue;
                };
                let claim = (host.clone(), normalize(&matcher));
                if let Some(owner) = self.claims.get(&claim).filter(|o| *o != key) {
                    warnings.push(format!(
                        "{at}: host {:?} path {:?} is already served by the older Ingress {owner}; ignored",
                        display_host(&host),
                        path_text(&matcher)
                    ));
                    continue;
                }
                if self.claims.contains_key(&claim) {
                    warnings.push(format!(
                        "{at}: duplicates an earlier path of this Ingress; ignored"
                    ));
                    continue;
                }
                let Some(backend) = self.backend(key, &path.backend, &options, &at, &mut warnings)
                else {
                    continue;
                };
                self.claims.insert(claim, key.clone());
                self.routes
                    .push(route(key, i, j, &host, matcher, backend, &options));
                served = true;
            }
        }
        (served, warnings)
    }

    fn backend(
        &mut self,
        owner: &ObjectKey,
        backend: &IngressBackend,
        options: &IngressAnnotations,
        at: &str,
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
        let key = ObjectKey::new(owner.namespace.clone(), service.name.clone());
        Some(self.resolver.resolve(
            &mut self.table.backends,
            &key,
            &port,
            options,
            owner,
            warnings,
        ))
    }

    pub fn finish(mut self, options: &Options) -> Routes {
        let mut warnings = Vec::new();
        let mut default_backend = self.default_backend.take().map(|(_, id)| id);
        if default_backend.is_none()
            && let Some(service) = &options.default_backend_service
        {
            default_backend = self.flag_default_backend(service, &mut warnings);
        }
        Routes {
            routes: self.routes,
            default_backend,
            warnings,
        }
    }

    /// `--default-backend-service NS/NAME`: the Service's first port.
    fn flag_default_backend(
        &mut self,
        service: &ObjectKey,
        warnings: &mut Vec<String>,
    ) -> Option<BackendId> {
        let first_port = self
            .snapshot
            .services
            .get(service)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map(|p| p.port);
        let Some(port) = first_port else {
            warnings.push(format!("default backend Service {service} not found or has no ports; unmatched requests get 404"));
            return None;
        };
        let owner = service.clone();
        let id = self.resolver.resolve(
            &mut self.table.backends,
            service,
            &PortRef::Number(port),
            &IngressAnnotations::default(),
            &owner,
            warnings,
        );
        Some(id)
    }
}

fn route(
    key: &ObjectKey,
    i: usize,
    j: usize,
    host: &str,
    matcher: PathMatch,
    backend: BackendId,
    options: &IngressAnnotations,
) -> Route {
    Route {
        name: format!("{key}/{i}/{j}"),
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
        action: Action::Forward(backend),
        rewrite: options
            .rewrite_target
            .clone()
            .map(PathRewrite::ReplacePrefix),
        allow_sources: options.allow_cidrs.clone(),
        deny_sources: options.deny_cidrs.clone(),
        https_redirect: options.ssl_redirect.unwrap_or(false),
    }
}

/// pathType → matcher. ImplementationSpecific is Prefix here.
fn path_match(
    path_type: &str,
    path: Option<&str>,
    at: &str,
    warnings: &mut Vec<String>,
) -> Option<PathMatch> {
    let path = path.filter(|p| !p.is_empty()).unwrap_or("/");
    if !path.starts_with('/') {
        warnings.push(format!("{at}: path {path:?} must start with `/`; ignored"));
        return None;
    }
    match path_type {
        "Exact" => Some(PathMatch::Exact(path.to_owned())),
        "Prefix" | "ImplementationSpecific" => Some(PathMatch::Prefix(path.to_owned())),
        other => {
            warnings.push(format!(
                "{at}: pathType {other:?} is not Exact, Prefix or ImplementationSpecific; ignored"
            ));
            None
        }
    }
}

/// Two Prefix paths that differ by a trailing `/` claim the same requests.
fn normalize(m: &PathMatch) -> PathMatch {
    match m {
        PathMatch::Prefix(p) => PathMatch::Prefix(p.trim_end_matches('/').to_owned()),
        PathMatch::Exact(p) => PathMatch::Exact(p.clone()),
    }
}

fn path_text(m: &PathMatch) -> &str {
    match m {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
    }
}

fn display_host(host: &str) -> &str {
    if host.is_empty() { "*" } else { host }
}
