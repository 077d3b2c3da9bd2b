//! One reflector per kind, per watched namespace. The stores are read into a
//! [`Snapshot`] when translating; any event nudges the publisher.
//!
//! kube's watcher re-lists after a 410 or an outage and its store swaps in the new
//! list only when it is complete, so a relist never blanks the table; while the API
//! is unreachable the stores keep the last state and the watcher backs off
//! ([`WatchBackoff`]: at most 10 s, so changes show soon after the API is back).

use crate::snapshot::{CA_TYPE, ObjectKey, SESSION_KEY_TYPE, Snapshot, key_of};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Which EndpointSlice API the cluster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceApi {
    V1,
    /// Clusters older than 1.21.
    V1Beta1,
}

pub struct Sources {
    ingresses: Vec<Store<Ingress>>,
    classes: Store<IngressClass>,
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    session_keys: Vec<Store<Secret>>,
    ca_bundles: Vec<Store<Secret>>,
    changed: Arc<Notify>,
}

impl Sources {
    /// Starts the watches. `namespaces` empty means all namespaces.
    pub async fn start(client: Client, namespaces: &[String]) -> Result<Self, kube::Error> {
        let changed = Arc::new(Notify::new());
        let slice_api = discover_slice_api(&client).await?;
        info!(?slice_api, "EndpointSlice API");
        let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let all = watcher::Config::default();
        // Only TLS, session-key and CA-bundle Secrets: the controller never sees
        // other Secrets' data. A watch each, since a field selector cannot say "or".
        let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
        let session_keys_only =
            watcher::Config::default().fields(&format!("type={SESSION_KEY_TYPE}"));
        let ca_bundles_only = watcher::Config::default().fields(&format!("type={CA_TYPE}"));

        let mut sources = Self {
            ingresses: Vec::new(),
            classes: watch(
                Api::all(client.clone()),
                all.clone(),
                &changed,
                "IngressClass",
            ),
            services: Vec::new(),
            slices: Vec::new(),
            secrets: Vec::new(),
            session_keys: Vec::new(),
            ca_bundles: Vec::new(),
            changed: changed.clone(),
        };
        for ns in scopes {
            sources
                .ingresses
                .push(watch(api(&client, ns), all.clone(), &changed, "Ingress"));
            sources
                .services
                .push(watch(api(&client, ns), all.clone(), &changed, "Service"));
            sources.secrets.push(watch(
                api(&client, ns),
                tls_only.clone(),
                &changed,
                "Secret",
            ));
            sources.session_keys.push(watch(
                api(&client, ns),
                session_keys_only.clone(),
                &changed,
                "Secret (session keys)",
            ));
            sources.ca_bundles.push(watch(
                api(&client, ns),
                ca_bundles_only.clone(),
                &changed,
                "Secret (CA bundles)",
            ));
            sources.slices.push(match slice_api {
                SliceApi::V1 => watch(api(&client, ns), all.clone(), &changed, "EndpointSlice"),
                SliceApi::V1Beta1 => watch_v1beta1_slices(&client, ns, all.clone(), &changed),
            });
        }
        Ok(sources)
    }

    /// Completes when every store has its first full list.
    pub async fn synced(&self) {
        let _ = self.classes.wait_until_ready().await;
        for s in &self.ingresses {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.services {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.slices {
            let _ = s.wait_until_ready().await;
        }
        for s in self
            .secrets
            .iter()
            .chain(&self.session_keys)
            .chain(&self.ca_bundles)
        {
            let _ = s.wait_until_ready().await;
        }
    }

    /// Notified on every watch event.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ingresses: namespaced(&self.ingresses),
            ingress_classes: self
                .classes
                .state()
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, c.clone())))
                .collect(),
            services: namespaced(&self.services),
            endpoint_slices: namespaced(&self.slices),
            secrets: namespaced(&self.secrets),
            session_key_secrets: namespaced(&self.session_keys),
            ca_secrets: namespaced(&self.ca_bundles),
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn namespaced<K>(stores: &[Store<K>]) -> BTreeMap<ObjectKey, Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    stores
        .iter()
        .flat_map(|s| s.state())
        .filter_map(|o| Some((key_of(o.meta())?, o)))
        .collect()
}

/// A reflector whose events nudge `changed`; errors are logged and retried with backoff.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    kind: &'static str,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let stream = watcher(api, config).backoff(WatchBackoff::default());
    reflect(stream, changed, kind)
}

fn reflect<K, S>(stream: S, changed: &Arc<Notify>, kind: &'static str) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let events = reflector::reflector(writer, stream);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => warn!(kind, "watch failed, retrying: {e}"),
            }
        }
    });
    reader
}

/// Delays between retries of a failing watch: 0.5 s doubling up to 5 s, with
/// jitter (so replicas spread out); reset by the next success.
///
/// kube's default (client-go's: up to 30 s plus jitter) left the controller blind
/// for up to a minute after the API server came back from an outage, while it
/// should follow endpoint changes again at once. A retry is one cheap request (the
/// watch resumes from its resource version), so a 5 to 10 s period is no burden.
pub struct WatchBackoff {
    builder: ExponentialBuilder,
    current: backon::ExponentialBackoff,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            current: builder.build(),
            builder,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.current.next()
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    watcher::watcher(api, config)
}

async fn discover_slice_api(client: &Client) -> Result<SliceApi, kube::Error> {
    let group = kube::discovery::group(client, "discovery.k8s.io").await?;
    let served: Vec<String> = group.versions().map(str::to_owned).collect();
    if served.iter().any(|v| v == "v1") {
        Ok(SliceApi::V1)
    } else {
        Ok(SliceApi::V1Beta1)
    }
}

/// `discovery.k8s.io/v1beta1` slices, converted to the v1 shape on arrival (the
/// fields translation reads are the same in both).
fn watch_v1beta1_slices(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    changed: &Arc<Notify>,
) -> Store<EndpointSlice> {
    let gvk = GroupVersionKind::gvk("discovery.k8s.io", "v1beta1", "EndpointSlice");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "endpointslices");
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let stream = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .map_ok(convert_event)
        .try_filter_map(|event| async move { Ok(event) });
    reflect(stream, changed, "EndpointSlice")
}

fn convert_event(event: Event<DynamicObject>) -> Option<Event<EndpointSlice>> {
    Some(match event {
        Event::Apply(o) => Event::Apply(to_v1(o)?),
        Event::Delete(o) => Event::Delete(to_v1(o)?),
        Event::InitApply(o) => Event::InitApply(to_v1(o)?),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    })
}

pub fn to_v1(object: DynamicObject) -> Option<EndpointSlice> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), "discovery.k8s.io/v1".into());
        map.insert("kind".into(), "EndpointSlice".into());
    }
    match serde_json::from_value(value) {
        Ok(slice) => Some(slice),
        Err(e) => {
            warn!(name, "cannot read v1beta1 EndpointSlice: {e}; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next().unwrap()).collect();
        let bases = [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*delay >= base && *delay < base * 2, "{delays:?}");
        }
        backoff.reset();
        assert!(backoff.next().unwrap() < Duration::from_secs(1));
    }
}
