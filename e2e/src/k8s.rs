//! A test's own namespace and the objects the controller tests create in it.
//!
//! The API server runs no controllers, so a test makes what a cluster would:
//! Services without selectors and EndpointSlices (`discovery.k8s.io/v1beta1`,
//! labelled `kubernetes.io/service-name`) pointing at in-process backends on
//! 127.0.0.1. One slice holds one backend (a slice has one port list and each
//! backend has its own port). Backend Services are headless: no cluster IP is
//! needed, and the small service range is not used up by repeated runs.

use crate::cluster::notice;
use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace as NamespaceObject, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The Service port every test Ingress uses.
pub const SERVICE_PORT: u16 = 80;
/// Ours even without an IngressClass object.
pub const INGRESS_CLASS: &str = "sluice";

/// A namespace unique to one test; deleted with what is in it on drop (the API
/// server has no namespace controller, so the namespace itself stays Terminating).
/// `SLUICE_E2E_KEEP=1` keeps it for debugging.
pub struct Namespace {
    name: String,
    client: Client,
}

fn from_json<T: DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn slices_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("discovery.k8s.io", "v1beta1", "EndpointSlice");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "endpointslices");
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The `ports` and `endpoints` of a slice holding `endpoint` (or nothing).
fn slice_body(endpoint: Option<SocketAddr>) -> Value {
    match endpoint {
        Some(addr) => json!({
            "ports": [{ "name": "", "port": addr.port(), "protocol": "TCP" }],
            "endpoints": [{ "addresses": [addr.ip().to_string()], "conditions": { "ready": true } }],
        }),
        None => json!({ "ports": [], "endpoints": [] }),
    }
}

impl Namespace {
    pub(crate) async fn create(client: Client, label: &str) -> Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "e2e-{label}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000
        );
        let api: Api<NamespaceObject> = Api::all(client.clone());
        let object = from_json(json!({ "metadata": { "name": name } }))?;
        api.create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("cannot create namespace {name}"))?;
        Ok(Self { name, client })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// A headless Service without selector, port [`SERVICE_PORT`].
    pub async fn create_service(&self, name: &str) -> Result<()> {
        let service: Service = from_json(json!({
            "metadata": { "name": name },
            "spec": { "clusterIP": "None", "ports": [{ "port": SERVICE_PORT, "protocol": "TCP" }] },
        }))?;
        self.api::<Service>()
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("cannot create Service {name}"))?;
        Ok(())
    }

    /// A ClusterIP Service (for `--publish-service`); returns its cluster IP.
    pub async fn create_cluster_ip_service(&self, name: &str) -> Result<String> {
        let service: Service = from_json(json!({
            "metadata": { "name": name },
            "spec": { "ports": [{ "port": SERVICE_PORT, "protocol": "TCP" }] },
        }))?;
        let created = self
            .api::<Service>()
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("cannot create Service {name}"))?;
        created
            .spec
            .and_then(|s| s.cluster_ip)
            .context("the API server allocated no cluster IP")
    }

    /// An EndpointSlice of `service` holding `endpoint` (ready), or no endpoint.
    pub async fn create_slice(
        &self,
        name: &str,
        service: &str,
        endpoint: Option<SocketAddr>,
    ) -> Result<()> {
        let mut slice = json!({
            "apiVersion": "discovery.k8s.io/v1beta1",
            "kind": "EndpointSlice",
            "metadata": { "name": name, "labels": { "kubernetes.io/service-name": service } },
            "addressType": "IPv4",
        });
        if let (Some(map), Value::Object(body)) = (slice.as_object_mut(), slice_body(endpoint)) {
            map.extend(body);
        }
        slices_api(&self.client, &self.name)
            .create(&PostParams::default(), &from_json(slice)?)
            .await
            .with_context(|| format!("cannot create EndpointSlice {name}"))?;
        Ok(())
    }

    /// Replaces the endpoints of slice `name` (a merge patch replaces both lists).
    pub async fn set_slice(&self, name: &str, endpoint: Option<SocketAddr>) -> Result<()> {
        slices_api(&self.client, &self.name)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(slice_body(endpoint)),
            )
            .await
            .with_context(|| format!("cannot update EndpointSlice {name}"))?;
        Ok(())
    }

    /// An Ingress of class [`INGRESS_CLASS`]: `host`, prefix `/` → `service`:80.
    pub async fn create_ingress(&self, name: &str, host: &str, service: &str) -> Result<()> {
        self.create_ingress_with(name, host, service, &[]).await
    }

    pub async fn create_ingress_with(
        &self,
        name: &str,
        host: &str,
        service: &str,
        annotations: &[(&str, &str)],
    ) -> Result<()> {
        let annotations: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let backend = json!({ "service": { "name": service, "port": { "number": SERVICE_PORT } } });
        let ingress: Ingress = from_json(json!({
            "metadata": { "name": name, "annotations": annotations },
            "spec": {
                "ingressClassName": INGRESS_CLASS,
                "rules": [{
                    "host": host,
                    "http": { "paths": [{ "path": "/", "pathType": "Prefix", "backend": backend }] },
                }],
            },
        }))?;
        self.api::<Ingress>()
            .create(&PostParams::default(), &ingress)
            .await
            .with_context(|| format!("cannot create Ingress {name}"))?;
        Ok(())
    }

    /// An Ingress written out in full (JSON, without apiVersion and kind), for
    /// shapes the helpers above do not cover (spec.tls, several rules).
    pub async fn create_ingress_from_json(&self, ingress: Value) -> Result<()> {
        let ingress: Ingress = from_json(ingress)?;
        self.api::<Ingress>()
            .create(&PostParams::default(), &ingress)
            .await
            .context("cannot create Ingress")?;
        Ok(())
    }

    /// A Secret of type `type_` whose `data` holds `entries` (given as
    /// `stringData`, which the API server moves into `data`).
    pub async fn create_secret(
        &self,
        name: &str,
        type_: &str,
        entries: &[(&str, &str)],
    ) -> Result<()> {
        let secret: Secret = from_json(json!({
            "metadata": { "name": name },
            "type": type_,
            "stringData": string_map(entries),
        }))?;
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("cannot create Secret {name}"))?;
        Ok(())
    }

    /// Replaces `entries` of Secret `name`, keeping its other data.
    pub async fn set_secret(&self, name: &str, entries: &[(&str, &str)]) -> Result<()> {
        self.api::<Secret>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": string_map(entries) })),
            )
            .await
            .with_context(|| format!("cannot update Secret {name}"))?;
        Ok(())
    }

    pub async fn delete_ingress(&self, name: &str) -> Result<()> {
        self.api::<Ingress>()
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("cannot delete Ingress {name}"))?;
        Ok(())
    }

    pub async fn ingress(&self, name: &str) -> Result<Ingress> {
        Ok(self.api::<Ingress>().get(name).await?)
    }

    /// `status.loadBalancer.ingress` of Ingress `name` as `ip` or `hostname` strings.
    pub async fn ingress_addresses(&self, name: &str) -> Result<Vec<String>> {
        let ingress = self.ingress(name).await?;
        Ok(ingress
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.or(i.hostname))
            .collect())
    }

    /// The field managers of Ingress `name` (managedFields), sorted, deduplicated.
    pub async fn ingress_managers(&self, name: &str) -> Result<Vec<String>> {
        let ingress = self.ingress(name).await?;
        let mut managers: Vec<String> = ingress
            .metadata
            .managed_fields
            .into_iter()
            .flatten()
            .filter_map(|f| f.manager)
            .collect();
        managers.sort();
        managers.dedup();
        Ok(managers)
    }

    /// `events.k8s.io/v1` Events whose `regarding` is the Ingress `name`.
    pub async fn events_for_ingress(&self, name: &str) -> Result<Vec<Event>> {
        let events = self.api::<Event>().list(&ListParams::default()).await?;
        Ok(events
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Ingress") && r.name.as_deref() == Some(name)
                })
            })
            .collect())
    }

    /// `spec.holderIdentity` of Lease `name`, once it exists.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        let lease = self.api::<Lease>().get_opt(name).await?;
        Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    }
}

fn string_map(entries: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_E2E_KEEP").is_some() {
            notice(&format!("SLUICE_E2E_KEEP: keeping namespace {}", self.name));
            return;
        }
        // The test's runtime may be gone or busy dropping: clean up on a fresh one
        // with a fresh client (a client is bound to the runtime that built it).
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), delete_namespace(&name))
                    .await
                    .context("timed out")?
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => notice(&format!("cleanup of namespace {}: {e:#}", self.name)),
            Err(_) => notice(&format!("cleanup of namespace {} panicked", self.name)),
        }
    }
}

/// Deletes what the tests create in `name`, then `name` itself.
async fn delete_namespace(name: &str) -> Result<()> {
    let client = Client::try_default().await?;
    let dp = DeleteParams::default();
    let all = ListParams::default();
    Api::<Ingress>::namespaced(client.clone(), name)
        .delete_collection(&dp, &all)
        .await?;
    slices_api(&client, name)
        .delete_collection(&dp, &all)
        .await?;
    Api::<Lease>::namespaced(client.clone(), name)
        .delete_collection(&dp, &all)
        .await?;
    Api::<Event>::namespaced(client.clone(), name)
        .delete_collection(&dp, &all)
        .await?;
    Api::<Secret>::namespaced(client.clone(), name)
        .delete_collection(&dp, &all)
        .await?;
    // Services have no deletecollection on this server version.
    let services: Api<Service> = Api::namespaced(client.clone(), name);
    for service in services.list(&all).await? {
        if let Some(service_name) = service.metadata.name {
            services.delete(&service_name, &dp).await?;
        }
    }
    Api::<NamespaceObject>::all(client)
        .delete(name, &dp)
        .await?;
    Ok(())
}
