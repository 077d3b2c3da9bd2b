//! State that outlives compiled tables: connection pools and balancing state
//! (requests in flight, health, positions, queues). One per proxy.

use crate::balance::Registry;
use crate::health::CheckTasks;
use crate::upstream::Upstreams;

#[derive(Default)]
pub struct Runtime {
    pub upstreams: Upstreams,
    pub balance: Registry,
    pub checks: CheckTasks,
}
