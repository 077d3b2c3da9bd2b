//! Per-listener connection counters, for `/debug/listeners`: kept by listener
//! name for the life of the proxy, so a table change does not reset them.

use super::relay::Meter;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct ListenerCounters {
    accepted: AtomicU64,
    active: AtomicU64,
    over_limit: AtomicU64,
    denied: AtomicU64,
    proxy_header_rejected: AtomicU64,
    connect_failed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A snapshot, as the admin listener shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountersView {
    /// Connections accepted, including those closed at once.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Closed at once: the listener was at `max_conn`.
    pub over_limit: u64,
    /// Closed at once: the client address is not admitted.
    pub denied: u64,
    /// Closed: a PROXY header was malformed, late, missing, or sent by an
    /// untrusted peer.
    pub proxy_header_rejected: u64,
    /// Closed: no endpoint could be reached (after retries).
    pub connect_failed: u64,
    /// Bytes from clients, and to them.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A listener of the live table and its counters, for `/debug/listeners`.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerView {
    pub name: String,
    pub bind: std::net::SocketAddr,
    pub kind: &'static str,
    /// Only `tcp` listeners count connections; others show none rather than zeros.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub counters: Option<CountersView>,
}

/// Every listener of `table`; counters are kept for `tcp` listeners.
pub fn listeners_view(table: &crate::compile::CompiledTable) -> Vec<ListenerView> {
    use crate::compile::{ListenerKind, Transport};
    table
        .listeners
        .iter()
        .map(|l| {
            let (kind, counters) = match (&l.kind, &l.transport) {
                (ListenerKind::Tcp(tcp), _) => ("tcp", Some(tcp.counters.view())),
                (ListenerKind::Passthrough(_), _) => ("tls_passthrough", None),
                (ListenerKind::Http(_), Transport::Plain) => ("http", None),
                (ListenerKind::Http(_), _) => ("https", None),
            };
            ListenerView {
                name: l.name.to_string(),
                bind: l.bind,
                kind,
                counters,
            }
        })
        .collect()
}

/// One open connection; dropping it counts it closed.
#[derive(Debug)]
pub struct Open(Arc<ListenerCounters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ListenerCounters {
    /// Counts an accepted connection and opens it, unless `max_conn` are open
    /// already (then it is counted as over the limit and `None` is returned).
    pub fn open(self: &Arc<Self>, max_conn: Option<u32>) -> Option<Open> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let before = self.active.fetch_add(1, Ordering::Relaxed);
        let open = Open(self.clone());
        if max_conn.is_some_and(|max| before >= u64::from(max)) {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(open)
    }

    pub fn denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    pub fn proxy_header_rejected(&self) {
        self.proxy_header_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connect_failed(&self) {
        self.connect_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn view(&self) -> CountersView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersView {
            accepted: get(&self.accepted),
            active: get(&self.active),
            over_limit: get(&self.over_limit),
            denied: get(&self.denied),
            proxy_header_rejected: get(&self.proxy_header_rejected),
            connect_failed: get(&self.connect_failed),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }
}

impl Meter for ListenerCounters {
    fn client_to_server(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }
    fn server_to_client(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The counters of every listener the proxy has had, by name.
#[derive(Debug, Default)]
pub struct CounterRegistry(Mutex<HashMap<String, Arc<ListenerCounters>>>);

impl CounterRegistry {
    pub fn listener(&self, name: &str) -> Arc<ListenerCounters> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_listeners_show_counters() {
        let table = crate::table::from_yaml_str(
            "
listeners:
  - tcp: {name: db, bind: 127.0.0.1:1, backend: b}
  - http: {name: web, bind: 127.0.0.1:2}
backends:
  b: {}
",
        )
        .unwrap();
        let runtime = crate::runtime::Runtime::default();
        let compiled = crate::compile::compile(table, &runtime).unwrap();
        let json = serde_json::to_value(listeners_view(&compiled)).unwrap();
        assert_eq!(json[0]["kind"], "tcp");
        assert_eq!(json[0]["accepted"], 0);
        assert_eq!(json[1]["kind"], "http");
        assert!(json[1].get("accepted").is_none(), "{json}");
    }

    #[test]
    fn the_limit_admits_max_conn_and_counts_the_rest() {
        let counters = Arc::new(ListenerCounters::default());
        let first = counters.open(Some(2)).expect("first");
        let second = counters.open(Some(2)).expect("second");
        assert!(counters.open(Some(2)).is_none(), "third is over the limit");
        assert_eq!(counters.view().active, 2, "a refused one is not left open");
        drop(first);
        let third = counters.open(Some(2)).expect("a slot freed up");
        let v = counters.view();
        assert_eq!((v.accepted, v.active, v.over_limit), (4, 2, 1));
        drop((second, third));
        assert_eq!(counters.view().active, 0);
    }
}
