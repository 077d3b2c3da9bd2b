//! Ingress backend → table backend: Service port (by number or name) → EndpointSlice
//! ports → ready endpoints; terminating-but-serving endpoints drained (weight 0:
//! no new requests, those in flight finish), or serving when nothing is ready;
//! ExternalName Services by name.

use super::annotations::IngressAnnotations;
use crate::snapshot::{ObjectKey, Snapshot};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use sluice_proxy::table::{
    Backend, BackendId, BackendTimeouts, Endpoint, EndpointAddress, SourceRef,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How an Ingress names a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

pub fn port_ref(backend: &IngressServiceBackend) -> Option<PortRef<'_>> {
    let port = backend.port.as_ref()?;
    match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => Some(PortRef::Name(name)),
        (_, Some(n)) => Some(PortRef::Number(n)),
        _ => None,
    }
}

/// Resolves backends once per table; repeated uses get the same id and the same
/// warnings (each Ingress that uses a broken Service is told so).
pub struct Resolver<'a> {
    /// Services, their EndpointSlices and the backends resolved from them, by
    /// (namespace, Service name). Indexed once per translation so that resolving
    /// a backend does not scan every slice.
    services: HashMap<(&'a str, &'a str), ServiceEntry<'a>>,
    /// The backends resolved so far, in resolution order (see `into_backends`).
    backends: Vec<(BackendId, Backend)>,
}

/// A Service (if it exists), the EndpointSlices labelled with its name, and the
/// backends already resolved from it.
#[derive(Default)]
struct ServiceEntry<'a> {
    service: Option<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
    resolved: Vec<Resolved<'a>>,
}

/// A backend already resolved: its Service port, the Ingress when its annotations
/// change how the backend is reached (see `resolve`), its id and its problems.
struct Resolved<'a> {
    port: PortRef<'a>,
    owner: Option<&'a ObjectKey>,
    id: BackendId,
    problems: Vec<String>,
}

impl<'a> Resolver<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let count = snapshot.services.len();
        let mut services: HashMap<(&str, &str), ServiceEntry<'_>> = HashMap::with_capacity(count);
        for (key, service) in &snapshot.services {
            services
                .entry((key.namespace.as_str(), key.name.as_str()))
                .or_default()
                .service = Some(service);
        }
        for (key, slice) in &snapshot.endpoint_slices {
            if let Some(service) = service_of(slice) {
                services
                    .entry((key.namespace.as_str(), service))
                    .or_default()
                    .slices
                    .push(slice);
            }
        }
        Self {
            services,
            backends: Vec::with_capacity(count),
        }
    }

    /// All backends resolved, for the table.
    pub fn into_backends(self) -> BTreeMap<BackendId, Backend> {
        // Built in one go rather than by inserting each: the ids are sorted by
        // index (moving the large backends once), then bulk-loaded, already sorted.
        let mut backends: Vec<Option<(BackendId, Backend)>> =
            self.backends.into_iter().map(Some).collect();
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_by(|&a, &b| {
            let id = |i: usize| backends[i].as_ref().map(|(id, _)| id);
            id(a).cmp(&id(b))
        });
        order
            .into_iter()
            .filter_map(|i| backends[i].take())
            .collect()
    }

    /// The id of the backend for Service `namespace/service` port `port`, as used
    /// by the Ingress `owner`; resolved on first use.
    pub fn resolve(
        &mut self,
        namespace: &'a str,
        service: &'a str,
        port: PortRef<'a>,
        options: &IngressAnnotations,
        owner: &'a ObjectKey,
        warnings: &mut Vec<String>,
    ) -> BackendId {
        // Timeouts, protocol, balancing, checks and stickiness are per Ingress, so
        // such an Ingress gets its own copy.
        let owner = options.affects_backend().then_some(owner);
        let entry = self.services.entry((namespace, service)).or_default();
        if let Some(known) = entry
            .resolved
            .iter()
            .find(|r| r.port == port && r.owner == owner)
        {
            extend_unique(warnings, &known.problems);
            return known.id.clone();
        }
        let id = backend_id(namespace, service, port, owner);
        let service = ObjectKey::new(namespace, service);
        let mut problems = Vec::new();
        let mut endpoints = endpoints_for(entry, &service, port, &mut problems);
        if options.backend_tls_unusable {
            endpoints.clear();
        }
        let defaults = Backend::default();
        let backend = Backend {
            source: Some(SourceRef {
                kind: "Service".into(),
                namespace: service.namespace,
                name: service.name,
            }),
            endpoints,
            balance: Some(options.balance.clone().unwrap_or_default()),
            protocol: options.backend_protocol.unwrap_or_default(),
            timeouts: BackendTimeouts {
                connect: options.timeout_connect.unwrap_or(defaults.timeouts.connect),
                response: options.timeout_server.unwrap_or(defaults.timeouts.response),
                ..defaults.timeouts
            },
            retries: options.retries.unwrap_or(defaults.retries),
            redispatch: options.redispatch.unwrap_or(defaults.redispatch),
            slow_start: options.slow_start.or(defaults.slow_start),
            health_check: options.health_check.clone(),
            passive_check: options.passive_check,
            retry_on_timeout: options
                .retry_on_timeout
                .unwrap_or(defaults.retry_on_timeout),
            sticky: options.sticky.as_ref().map(|s| s.stickiness()),
            tls: options.backend_tls.clone(),
            ..defaults
        };
        self.backends.push((id.clone(), backend));
        extend_unique(warnings, &problems);
        entry.resolved.push(Resolved {
            port,
            owner,
            id: id.clone(),
            problems,
        });
        id
    }
}

/// `NAMESPACE/SERVICE:PORT`, plus `@NAMESPACE/INGRESS` for an Ingress's own copy.
fn backend_id(
    namespace: &str,
    service: &str,
    port: PortRef<'_>,
    owner: Option<&ObjectKey>,
) -> BackendId {
    let mut id = String::with_capacity(namespace.len() + service.len() + 16);
    id.push_str(namespace);
    id.push('/');
    id.push_str(service);
    id.push(':');
    match port {
        // Writing to a String cannot fail.
        PortRef::Number(n) => {
            let _ = write!(id, "{n}");
        }
        PortRef::Name(name) => id.push_str(name),
    }
    if let Some(owner) = owner {
        id.push('@');
        id.push_str(&owner.namespace);
        id.push('/');
        id.push_str(&owner.name);
    }
    id
}

fn extend_unique(into: &mut Vec<String>, from: &[String]) {
    for w in from {
        if !into.contains(w) {
            into.push(w.clone());
        }
    }
}

/// `entry`: the Service `key` (if it exists) and its EndpointSlices.
fn endpoints_for(
    entry: &ServiceEntry<'_>,
    key: &ObjectKey,
    port: PortRef<'_>,
    problems: &mut Vec<String>,
) -> Vec<Endpoint> {
    let Some(service) = entry.service else {
        problems.push(format!("Service {key} not found; its routes answer 503"));
        return Vec::new();
    };
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return external_name(service, key, port, problems);
    }
    let Some(service_port) = find_port(service, port) else {
        problems.push(format!(
            "Service {key} has no TCP port {port}; its routes answer 503"
        ));
        return Vec::new();
    };

    // Sorted and deduplicated below (the same address can be in several slices).
    let mut ready = Vec::new();
    let mut draining = Vec::new();
    for slice in &entry.slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(number) = slice_port(slice, service_port) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let addr = SocketAddr::new(ip, number);
            let c = ep.conditions.as_ref();
            // Unset conditions mean "unknown", which consumers treat as ready.
            let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            if is_ready && !terminating {
                ready.push(addr);
            } else if serving && terminating {
                draining.push(addr);
            }
        }
    }
    ready.sort_unstable();
    ready.dedup();
    draining.sort_unstable();
    draining.dedup();
    if ready.is_empty() {
        if draining.is_empty() {
            problems.push(format!(
                "Service {key} port {port} has no ready endpoints; its routes answer 503"
            ));
        }
        // Terminating pods that still serve beat a 503.
        return draining.into_iter().map(|a| Endpoint::new(a, 1)).collect();
    }
    // Listed with weight 0 so they show as drained, and so their state (and
    // later their sticky sessions) is kept while they finish.
    draining.retain(|a| ready.binary_search(a).is_err());
    let mut endpoints: Vec<Endpoint> = ready.into_iter().map(|a| Endpoint::new(a, 1)).collect();
    endpoints.extend(draining.into_iter().map(|a| Endpoint::new(a, 0)));
    endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    endpoints
}

/// The Service's TCP port with that number or name (a number can also be in use
/// for UDP or SCTP, which HTTP cannot reach).
fn find_port<'a>(service: &'a Service, port: PortRef<'_>) -> Option<&'a ServicePort> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    ports.iter().filter(|p| is_tcp(p)).find(|p| match port {
        PortRef::Number(n) => p.port == n,
        PortRef::Name(name) => p.name.as_deref() == Some(name),
    })
}

/// Unset protocol means TCP.
pub fn is_tcp(port: &ServicePort) -> bool {
    port.protocol.as_deref().is_none_or(|p| p == "TCP")
}

fn service_of(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// EndpointSlice ports carry the Service port's name (unnamed when the Service has one port).
fn slice_port(slice: &EndpointSlice, service_port: &ServicePort) -> Option<u16> {
    let wanted = service_port.name.as_deref().unwrap_or("");
    slice
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref().unwrap_or("") == wanted)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
}

fn external_name(
    service: &Service,
    key: &ObjectKey,
    port: PortRef<'_>,
    problems: &mut Vec<String>,
) -> Vec<Endpoint> {
    let name = service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or("");
    let number = match port {
        PortRef::Number(n) => Some(n),
        PortRef::Name(_) => find_port(service, port).map(|p| p.port),
    };
    let Some(number) = number.and_then(|n| u16::try_from(n).ok()) else {
        problems.push(format!(
            "ExternalName Service {key} has no TCP port {port}; its routes answer 503"
        ));
        return Vec::new();
    };
    match EndpointAddress::host_port(name, number) {
        Ok(address) => vec![Endpoint::new(address, 1)],
        Err(e) => {
            problems.push(format!(
                "ExternalName Service {key}: {e}; its routes answer 503"
            ));
            Vec::new()
        }
    }
}
