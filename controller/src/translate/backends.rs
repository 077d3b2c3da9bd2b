//! Ingress backend → table backend: Service port (by number or name) → EndpointSlice
//! ports → ready endpoints; terminating-but-serving endpoints only when nothing else
//! is; ExternalName Services by name.

use super::annotations::IngressAnnotations;
use crate::snapshot::{ObjectKey, Snapshot};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use sluice_proxy::table::{
    Backend, BackendId, BackendTimeouts, Endpoint, EndpointAddress, SourceRef,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How an Ingress names a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

pub fn port_ref(backend: &IngressServiceBackend) -> Option<PortRef> {
    let port = backend.port.as_ref()?;
    match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => Some(PortRef::Name(name.clone())),
        (_, Some(n)) => Some(PortRef::Number(n)),
        _ => None,
    }
}

/// Resolves backends once per table; repeated uses get the same id and the same
/// warnings (each Ingress that uses a broken Service is told so).
pub struct Resolver<'a> {
    snapshot: &'a Snapshot,
    resolved: BTreeMap<BackendId, Vec<String>>,
}

impl<'a> Resolver<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            snapshot,
            resolved: BTreeMap::new(),
        }
    }

    pub fn resolve(
        &mut self,
        backends: &mut BTreeMap<BackendId, Backend>,
        service: &ObjectKey,
        port: &PortRef,
        options: &IngressAnnotations,
        owner: &ObjectKey,
        warnings: &mut Vec<String>,
    ) -> BackendId {
        let mut id = format!("{service}:{port}");
        if options.affects_backend() {
            // Timeouts and protocol are per Ingress, so this Ingress gets its own copy.
            id = format!("{id}@{owner}");
        }
        if let Some(known) = self.resolved.get(&id) {
            extend_unique(warnings, known);
            return id;
        }
        let mut problems = Vec::new();
        let endpoints = endpoints_for(self.snapshot, service, port, &mut problems);
        let defaults = BackendTimeouts::default();
        let backend = Backend {
            source: Some(SourceRef {
                kind: "Service".into(),
                namespace: service.namespace.clone(),
                name: service.name.clone(),
            }),
            endpoints,
            balance: Default::default(),
            protocol: options.backend_protocol.unwrap_or_default(),
            timeouts: BackendTimeouts {
                connect: options.timeout_connect.unwrap_or(defaults.connect),
                response: options.timeout_server.unwrap_or(defaults.response),
                ..defaults
            },
        };
        backends.insert(id.clone(), backend);
        extend_unique(warnings, &problems);
        self.resolved.insert(id.clone(), problems);
        id
    }
}

fn extend_unique(into: &mut Vec<String>, from: &[String]) {
    for w in from {
        if !into.contains(w) {
            into.push(w.clone());
        }
    }
}

fn endpoints_for(
    snapshot: &Snapshot,
    key: &ObjectKey,
    port: &PortRef,
    problems: &mut Vec<String>,
) -> Vec<Endpoint> {
    let Some(service) = snapshot.services.get(key) else {
        problems.push(format!("Service {key} not found; its routes answer 503"));
        return Vec::new();
    };
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return external_name(service, key, port, problems);
    }
    let Some(service_port) = find_port(service, port) else {
        problems.push(format!(
            "Service {key} has no port {port}; its routes answer 503"
        ));
        return Vec::new();
    };

    let mut ready = BTreeSet::new();
    let mut draining = BTreeSet::new();
    let slices = snapshot
        .endpoint_slices
        .iter()
        .filter(|(k, s)| k.namespace == key.namespace && service_of(s) == Some(key.name.as_str()))
        .map(|(_, s)| s);
    for slice in slices {
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
                ready.insert(addr);
            } else if serving && terminating {
                draining.insert(addr);
            }
        }
    }
    let chosen = if ready.is_empty() { draining } else { ready };
    if chosen.is_empty() {
        problems.push(format!(
            "Service {key} port {port} has no ready endpoints; its routes answer 503"
        ));
    }
    chosen
        .into_iter()
        .map(|a| Endpoint {
            address: EndpointAddress::from(a),
            weight: 1,
        })
        .collect()
}

fn find_port<'a>(service: &'a Service, port: &PortRef) -> Option<&'a ServicePort> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
    })
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
    port: &PortRef,
    problems: &mut Vec<String>,
) -> Vec<Endpoint> {
    let name = service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or("");
    let number = match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(_) => find_port(service, port).map(|p| p.port),
    };
    let Some(number) = number.and_then(|n| u16::try_from(n).ok()) else {
        problems.push(format!(
            "ExternalName Service {key} has no port {port}; its routes answer 503"
        ));
        return Vec::new();
    };
    match EndpointAddress::host_port(name, number) {
        Ok(address) => vec![Endpoint { address, weight: 1 }],
        Err(e) => {
            problems.push(format!(
                "ExternalName Service {key}: {e}; its routes answer 503"
            ));
            Vec::new()
        }
    }
}
