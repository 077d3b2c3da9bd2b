//! Leader-only: writes `status.loadBalancer.ingress` on the Ingresses we serve and
//! emits a Warning Event for each new problem translation found on an Ingress.
//!
//! Events are created directly rather than through kube's `Recorder`: the Recorder
//! folds every Event with the same reason on the same object into one series and
//! keeps the first note, so a second problem on an Ingress (say, two bad
//! annotations) would never be named. Each distinct warning is its own Event here,
//! emitted once while it lasts (see `emitted`).

use crate::publish::Published;
use crate::snapshot::ObjectKey;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// `reportingController` of our Events.
const REPORTING_CONTROLLER: &str = "sluice-controller";

/// What to publish as the Ingresses' address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// A fixed IP or host name (`--publish-address`).
    Address(String),
    /// The address of a Service (`--publish-service`): its load-balancer ingress,
    /// else its external IPs, else its cluster IP.
    Service(ObjectKey),
    None,
}

pub struct StatusWriter {
    client: Client,
    target: PublishTarget,
    /// `reportingInstance` of our Events.
    identity: String,
    field_manager: String,
    /// Warnings already emitted per Ingress, so each is an Event once while it lasts.
    emitted: BTreeMap<ObjectKey, BTreeSet<String>>,
}

impl StatusWriter {
    pub fn new(client: Client, target: PublishTarget, identity: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            client,
            target,
            // Shows in managedFields which replica wrote a status.
            field_manager: format!("sluice-controller/{identity}"),
            emitted: BTreeMap::new(),
        }
    }

    /// Writes statuses whenever this replica leads and a translation arrives.
    pub async fn run(
        mut self,
        mut leader: watch::Receiver<bool>,
        mut published: watch::Receiver<Option<Arc<Published>>>,
    ) {
        loop {
            let leading = *leader.borrow_and_update();
            let current = published.borrow_and_update().clone();
            if leading && let Some(current) = current {
                self.sync(&current).await;
            } else if !leading {
                // A new leader emits what it finds; forget what we emitted.
                self.emitted.clear();
            }
            tokio::select! {
                r = leader.changed() => if r.is_err() { return },
                r = published.changed() => if r.is_err() { return },
            }
        }
    }

    pub async fn sync(&mut self, published: &Published) {
        let addresses = self.addresses().await;
        let mut seen = BTreeSet::new();
        for status in &published.translation.statuses {
            let key = &status.ingress;
            seen.insert(key.clone());
            let Some(ingress) = published.snapshot.ingresses.get(key) else {
                continue;
            };
            if let Some(addresses) = &addresses
                && current_addresses(ingress) != *addresses
            {
                self.patch_status(key, addresses).await;
            }
            let emitted = self.emitted.entry(key.clone()).or_default();
            // Warnings that went away are forgotten (they are new if they return);
            // one whose Event failed is tried again with the next translation.
            emitted.retain(|w| status.warnings.contains(w));
            for warning in &status.warnings {
                if !emitted.contains(warning)
                    && publish_warning(&self.client, &self.identity, ingress, warning).await
                {
                    emitted.insert(warning.clone());
                }
            }
        }
        self.emitted.retain(|k, _| seen.contains(k));
    }

    /// The `status.loadBalancer.ingress` entries to publish; `None` when unknown
    /// (then nothing is written rather than a wrong empty list).
    async fn addresses(&self) -> Option<Vec<Value>> {
        match &self.target {
            PublishTarget::None => None,
            PublishTarget::Address(a) => Some(vec![address_entry(a)]),
            PublishTarget::Service(key) => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                match api.get_opt(&key.name).await {
                    Ok(Some(service)) => Some(service_addresses(&service)),
                    Ok(None) => {
                        warn!(service = %key, "publish Service not found; Ingress status not written");
                        None
                    }
                    Err(e) => {
                        warn!(service = %key, "cannot read the publish Service: {e}");
                        None
                    }
                }
            }
        }
    }

    async fn patch_status(&self, key: &ObjectKey, addresses: &[Value]) {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = json!({ "status": { "loadBalancer": { "ingress": addresses } } });
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&key.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(ingress = %key, "status written"),
            Err(e) => warn!(ingress = %key, "cannot write status: {e}"),
        }
    }
}

fn address_entry(address: &str) -> Value {
    if address.parse::<IpAddr>().is_ok() {
        json!({ "ip": address })
    } else {
        json!({ "hostname": address })
    }
}

pub fn service_addresses(service: &Service) -> Vec<Value> {
    let lb: Vec<Value> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()).map(address_entry))
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let spec = service.spec.as_ref();
    let external: Vec<Value> = spec
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| address_entry(ip))
        .collect();
    if !external.is_empty() {
        return external;
    }
    spec.and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(address_entry)
        .into_iter()
        .collect()
}

fn current_addresses(ingress: &Ingress) -> Vec<Value> {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| match (&i.ip, &i.hostname) {
            (Some(ip), _) => json!({ "ip": ip }),
            (None, Some(h)) => json!({ "hostname": h }),
            (None, None) => json!({}),
        })
        .collect()
}

/// Creates the Event; false when the API refused it.
async fn publish_warning(
    client: &Client,
    identity: &str,
    ingress: &Ingress,
    warning: &str,
) -> bool {
    let reference: ObjectReference = ingress.object_ref(&());
    let namespace = reference
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = reference.name.clone().unwrap_or_else(|| "ingress".into());
    // Event notes are limited to 1 kB.
    let note: String = warning.chars().take(1000).collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    // Named like kube's Recorder does (older API servers reject a `generateName`
    // ending in a dot); the name part is cut to keep within 253 characters.
    let prefix: String = name.chars().take(200).collect();
    let prefix = prefix.trim_end_matches(['.', '-']);
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        type_: Some("Warning".into()),
        reason: Some(reason_of(warning).into()),
        note: Some(note),
        action: Some("Translate".into()),
        regarding: Some(reference),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(identity.to_owned()),
        event_time: Some(MicroTime(now)),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            debug!(ingress = %name, warning, "warning event emitted");
            true
        }
        Err(e) => {
            warn!(ingress = %name, "cannot emit event: {e}");
            false
        }
    }
}

/// A short PascalCase reason for `kubectl describe`, from the warning's wording.
fn reason_of(warning: &str) -> &'static str {
    if warning.starts_with("annotation ") {
        "InvalidAnnotation"
    } else if warning.contains("already served by the older Ingress")
        || warning.contains("older Ingress")
    {
        "Conflict"
    } else if warning.contains("Secret") {
        "InvalidTLSSecret"
    } else if warning.contains("Service") {
        "BackendUnavailable"
    } else {
        "InvalidIngress"
    }
}
