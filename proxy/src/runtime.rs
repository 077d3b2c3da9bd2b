//! State that outlives compiled tables: connection pools and balancing state
//! (requests in flight, health, positions, queues), and the session keys. One
//! per proxy.

use crate::balance::Registry;
use crate::health::CheckTasks;
use crate::sticky::SessionKeys;
use crate::tcp::counters::CounterRegistry;
use crate::tls::TlsRuntime;
use crate::upstream::Upstreams;
use std::sync::OnceLock;

#[derive(Default)]
pub struct Runtime {
    pub upstreams: Upstreams,
    pub balance: Registry,
    pub checks: CheckTasks,
    /// Keys of sticky-session cookies whose table entry names none.
    pub session_keys: SessionKeys,
    /// Connection counters by listener name (`/debug/listeners`).
    pub listener_counters: CounterRegistry,
    /// Made when the first `https` listener is compiled.
    tls: OnceLock<Result<TlsRuntime, String>>,
}

impl Runtime {
    /// The TLS state shared by every table, made on first use.
    pub fn tls(&self) -> Result<&TlsRuntime, &str> {
        self.tls
            .get_or_init(TlsRuntime::new)
            .as_ref()
            .map_err(String::as_str)
    }

    pub fn with_session_keys(keys: SessionKeys) -> Self {
        Self {
            session_keys: keys,
            ..Self::default()
        }
    }
}
