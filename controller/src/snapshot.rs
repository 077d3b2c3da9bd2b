//! The objects translation reads: plain ordered maps, filled by the sources.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The type of the Secrets that hold sticky-cookie keys: the only Secrets
/// besides `kubernetes.io/tls` ones that the controller watches.
pub const SESSION_KEY_TYPE: &str = "sluice.dev/session-key";

/// The type of Secrets that hold only a CA bundle (`ca.crt`), for client
/// certificates (`auth-tls-secret`) and backend verification
/// (`backend-tls-ca-secret`). A `kubernetes.io/tls` Secret's `ca.crt` serves too.
pub const CA_TYPE: &str = "sluice.dev/ca";

/// Namespace and name of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self::new(ns, name))
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// Everything the controller watches, as of one moment. Objects are shared with
/// the reflector stores (`Arc`), so taking a snapshot copies no object.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    /// Cluster-scoped: keyed by name.
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// In the `discovery.k8s.io/v1` shape; `v1beta1` slices are converted on arrival.
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Only `kubernetes.io/tls` Secrets.
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// Only `sluice.dev/session-key` Secrets (sticky-cookie keys), apart so that
    /// a certificate lookup can never find one, nor the other way round.
    pub session_key_secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// Only `sluice.dev/ca` Secrets (CA bundles).
    pub ca_secrets: BTreeMap<ObjectKey, Arc<Secret>>,
}

/// Key of any namespaced object from its metadata; `None` when it lacks a name.
pub fn key_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectKey> {
    Some(ObjectKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone()?,
    ))
}
