//! Sources → translate → proxy. Nothing is published before every source has
//! synced; bursts of events are coalesced (a short hold-off, bounded by a maximum);
//! a table equal to the last one is not applied again. Statuses go to the status
//! writer after every translation.

use crate::snapshot::Snapshot;
use crate::translate::{Options, Translation, translate};
use sluice_proxy::server::Proxy;
use sluice_proxy::table::RoutingTable;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Where snapshots come from (the reflectors in production, memory in tests).
pub trait SnapshotSource: Send + Sync {
    fn snapshot(&self) -> Snapshot;
    fn changed(&self) -> Arc<Notify>;
    fn synced(&self) -> impl Future<Output = ()> + Send;
}

impl SnapshotSource for crate::sources::Sources {
    fn snapshot(&self) -> Snapshot {
        crate::sources::Sources::snapshot(self)
    }
    fn changed(&self) -> Arc<Notify> {
        crate::sources::Sources::changed(self)
    }
    async fn synced(&self) {
        crate::sources::Sources::synced(self).await;
    }
}

/// Where tables go (the embedded proxy in production).
pub trait TableSink: Send + Sync {
    fn publish(&self, table: RoutingTable) -> impl Future<Output = ()> + Send;
}

impl TableSink for Arc<Proxy> {
    async fn publish(&self, table: RoutingTable) {
        match self.apply(table).await {
            Ok(applied) => {
                for w in &applied.warnings {
                    warn!("{w}");
                }
                for e in &applied.bind_errors {
                    error!("{e}");
                }
                info!(warnings = applied.warnings.len(), "routing table published");
            }
            Err(e) => error!("routing table rejected, keeping the last one: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// Publish once no event arrived for this long...
    pub hold: Duration,
    /// ...or this long after the first event of a burst, whichever comes first.
    pub max: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Self {
            hold: Duration::from_millis(50),
            max: Duration::from_millis(500),
        }
    }
}

/// What the status writer needs: the translation and the objects it came from.
pub struct Published {
    pub translation: Translation,
    pub snapshot: Snapshot,
}

pub async fn run<S: SnapshotSource, T: TableSink>(
    source: &S,
    sink: &T,
    options: &Options,
    debounce: Debounce,
    statuses: &watch::Sender<Option<Arc<Published>>>,
) {
    source.synced().await;
    info!("all sources synced");
    let changed = source.changed();
    let mut last: Option<RoutingTable> = None;
    loop {
        let snapshot = source.snapshot();
        let translation = translate(&snapshot, options);
        if last.as_ref() != Some(&translation.table) {
            sink.publish(translation.table.clone()).await;
            last = Some(translation.table.clone());
        }
        for w in &translation.warnings {
            warn!("{w}");
        }
        statuses.send_replace(Some(Arc::new(Published {
            translation,
            snapshot,
        })));
        settle(&changed, debounce).await;
    }
}

/// Waits for a change, then until the burst it starts is over (see [`Debounce`]).
pub async fn settle(changed: &Notify, debounce: Debounce) {
    changed.notified().await;
    let deadline = Instant::now() + debounce.max;
    loop {
        let quiet_until = (Instant::now() + debounce.hold).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(quiet_until) => return,
            () = changed.notified() => {
                if Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ObjectKey;
    use k8s_openapi::api::networking::v1::{
        Ingress, IngressBackend, IngressServiceBackend, IngressSpec, ServiceBackendPort,
    };
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemorySource {
        snapshot: Mutex<Snapshot>,
        changed: Arc<Notify>,
        synced: Notify,
        synced_flag: std::sync::atomic::AtomicBool,
    }

    impl MemorySource {
        fn set(&self, f: impl FnOnce(&mut Snapshot)) {
            f(&mut self.snapshot.lock().unwrap());
            self.changed.notify_one();
        }
        fn mark_synced(&self) {
            self.synced_flag
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.synced.notify_waiters();
        }
    }

    impl SnapshotSource for MemorySource {
        fn snapshot(&self) -> Snapshot {
            self.snapshot.lock().unwrap().clone()
        }
        fn changed(&self) -> Arc<Notify> {
            self.changed.clone()
        }
        async fn synced(&self) {
            while !self.synced_flag.load(std::sync::atomic::Ordering::SeqCst) {
                let wait = self.synced.notified();
                if self.synced_flag.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                wait.await;
            }
        }
    }

    #[derive(Default)]
    struct CountingSink {
        tables: Mutex<Vec<RoutingTable>>,
    }

    impl TableSink for CountingSink {
        async fn publish(&self, table: RoutingTable) {
            self.tables.lock().unwrap().push(table);
        }
    }

    impl CountingSink {
        fn count(&self) -> usize {
            self.tables.lock().unwrap().len()
        }
    }

    fn ingress(name: &str, default_service: &str) -> Arc<Ingress> {
        Arc::new(Ingress {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: Some("sluice".into()),
                default_backend: Some(IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: default_service.into(),
                        port: Some(ServiceBackendPort {
                            number: Some(80),
                            name: None,
                        }),
                    }),
                    resource: None,
                }),
                ..Default::default()
            }),
            status: None,
        })
    }

    const DEBOUNCE: Debounce = Debounce {
        hold: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };

    async fn step() {
        // Let spawned tasks run; with paused time, sleeping advances the clock.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn spawn_loop(
        source: Arc<MemorySource>,
        sink: Arc<CountingSink>,
    ) -> watch::Receiver<Option<Arc<Published>>> {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            run(&*source, &*sink, &Options::default(), DEBOUNCE, &tx).await;
        });
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_nothing_before_sync() {
        let source = Arc::new(MemorySource::default());
        let sink = Arc::new(CountingSink::default());
        let _rx = spawn_loop(source.clone(), sink.clone());
        source.set(|s| {
            s.ingresses
                .insert(ObjectKey::new("default", "a"), ingress("a", "svc"));
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(sink.count(), 0, "not synced yet");
        source.mark_synced();
        step().await;
        assert_eq!(sink.count(), 1);
        let published = sink.tables.lock().unwrap()[0].clone();
        assert!(
            published.backends.contains_key("default/svc:80"),
            "{published:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_are_coalesced_and_equal_tables_skipped() {
        let source = Arc::new(MemorySource::default());
        let sink = Arc::new(CountingSink::default());
        let rx = spawn_loop(source.clone(), sink.clone());
        source.mark_synced();
        step().await;
        assert_eq!(sink.count(), 1, "the initial (empty) table");

        // 20 changes 10 ms apart: one burst, bounded by `max`.
        for i in 0..20 {
            source.set(|s| {
                s.ingresses.insert(
                    ObjectKey::new("default", "a"),
                    ingress("a", &format!("svc{i}")),
                );
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sink.count(), 2, "one publish for the whole burst");
        assert!(
            sink.tables.lock().unwrap()[1]
                .backends
                .contains_key("default/svc19:80")
        );

        // An event that does not change the table: statuses refresh, no publish.
        let before = rx.borrow().as_ref().map(Arc::as_ptr);
        source.set(|_| {});
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sink.count(), 2);
        assert_ne!(
            rx.borrow().as_ref().map(Arc::as_ptr),
            before,
            "statuses were refreshed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_events_still_publishes_every_max() {
        let source = Arc::new(MemorySource::default());
        let sink = Arc::new(CountingSink::default());
        let _rx = spawn_loop(source.clone(), sink.clone());
        source.mark_synced();
        step().await;
        // 2 s of events every 20 ms (never quiet for `hold`).
        for i in 0..100 {
            source.set(|s| {
                s.ingresses.insert(
                    ObjectKey::new("default", "a"),
                    ingress("a", &format!("svc{i}")),
                );
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let published = sink.count() - 1;
        assert!(
            (3..=5).contains(&published),
            "about one publish per 500 ms, got {published}"
        );
    }
}
