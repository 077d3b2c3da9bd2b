//! State that outlives compiled tables: connection pools and balancing state
//! (requests in flight, health, positions, queues), and the session keys. One
//! per proxy.

use crate::balance::Registry;
use crate::health::CheckTasks;
use crate::sticky::SessionKeys;
use crate::upstream::Upstreams;

#[derive(Default)]
pub struct Runtime {
    pub upstreams: Upstreams,
    pub balance: Registry,
    pub checks: CheckTasks,
    /// Keys of sticky-session cookies whose table entry names none.
    pub session_keys: SessionKeys,
}

impl Runtime {
    pub fn with_session_keys(keys: SessionKeys) -> Self {
        Self {
            session_keys: keys,
            ..Self::default()
        }
    }
}
