//! Runtime state beside the table: per backend (by id) its endpoints' states (by
//! address), the request count, round-robin cursors and the queue of requests
//! waiting for a slot. Compiled tables hold `Arc`s into it; the registry holds
//! `Weak`s, so state lives exactly as long as some table or request uses it, and
//! a swap that keeps a backend keeps its counts, positions and queue.

use super::endpoint::EndpointState;
use super::rendezvous::SlotCache;
use crate::table::EndpointAddress;
use http::uri::Authority;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Outlives tables; one per proxy.
pub struct Registry {
    epoch: Instant,
    backends: Mutex<HashMap<Arc<str>, Weak<BackendState>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            backends: Mutex::new(HashMap::new()),
        }
    }
}

impl Registry {
    /// Forgets backends no table or request uses any more (once per compile,
    /// not per lookup, which would be quadratic in the number of backends).
    pub fn prune(&self) {
        lock(&self.backends).retain(|_, b| b.strong_count() > 0);
    }

    /// The state of backend `id`, shared with earlier tables that still have it.
    pub fn backend(&self, id: &str) -> Arc<BackendState> {
        let mut backends = lock(&self.backends);
        if let Some(state) = backends.get(id).and_then(Weak::upgrade) {
            state.seen.store(true, Ordering::Relaxed);
            return state;
        }
        let state = Arc::new(BackendState::new(Arc::from(id), self.epoch));
        backends.insert(state.id.clone(), Arc::downgrade(&state));
        state
    }
}

pub struct BackendState {
    pub id: Arc<str>,
    epoch: Instant,
    /// True once a second table has compiled this backend: endpoints that appear
    /// later are new to traffic and get the slow start.
    seen: AtomicBool,
    endpoints: Mutex<HashMap<EndpointAddress, Weak<EndpointState>>>,
    in_flight: AtomicU32,
    /// Round-robin positions for schedules and tie-breaking: one for the
    /// primaries, one for the backups, so one group's turns do not move the other's.
    pub(super) cursors: [AtomicUsize; 2],
    /// Consistent-hashing tables of the primaries and the backups, reused while
    /// their endpoints and weights stay the same.
    pub(super) slot_caches: [SlotCache; 2],
    queue: Mutex<VecDeque<oneshot::Sender<Lease>>>,
    /// Entries in `queue`, readable without the lock on every release.
    queued: AtomicUsize,
    /// Endpoints passive checks have ejected now.
    ejected: AtomicU32,
    /// How sticky-session cookies were met.
    pub sticky_counts: Arc<crate::sticky::StickyCounts>,
}

impl BackendState {
    fn new(id: Arc<str>, epoch: Instant) -> Self {
        Self {
            id,
            epoch,
            seen: AtomicBool::new(false),
            endpoints: Mutex::new(HashMap::new()),
            in_flight: AtomicU32::new(0),
            cursors: [AtomicUsize::new(0), AtomicUsize::new(0)],
            slot_caches: Default::default(),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            ejected: AtomicU32::new(0),
            sticky_counts: Arc::default(),
        }
    }

    /// Forgets endpoints no table or request uses any more (once per compile).
    pub fn prune(&self) {
        lock(&self.endpoints).retain(|_, e| e.strong_count() > 0);
    }

    /// The state of the endpoint at `address`, and whether it is new to a
    /// backend that served traffic before (so it should warm up).
    pub fn endpoint(
        &self,
        address: &EndpointAddress,
        authority: &Authority,
    ) -> (Arc<EndpointState>, bool) {
        let mut endpoints = lock(&self.endpoints);
        if let Some(state) = endpoints.get(address).and_then(Weak::upgrade) {
            return (state, false);
        }
        let state = Arc::new(EndpointState::new(address.clone(), authority.clone()));
        endpoints.insert(address.clone(), Arc::downgrade(&state));
        (state, self.seen.load(Ordering::Relaxed))
    }

    /// Milliseconds since the registry's epoch (paused tokio time in tests).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Requests in flight across the backend's endpoints.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one more ejected endpoint if fewer than `limit` are.
    pub fn try_count_ejection(&self, limit: u32) -> bool {
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn uncount_ejection(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// A slot on `endpoint` if it has one under `max_conn` (0: no limit).
    pub(super) fn try_lease(
        self: &Arc<Self>,
        endpoint: &Arc<EndpointState>,
        max_conn: u32,
    ) -> Option<Lease> {
        if !endpoint.try_acquire(max_conn) {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease::new(endpoint.clone(), self.clone()))
    }

    /// Joins the queue, unless `max_queue` requests already wait.
    pub(super) fn enqueue(&self, max_queue: Option<u32>) -> Option<oneshot::Receiver<Lease>> {
        let mut queue = lock(&self.queue);
        if let Some(max) = max_queue
            && queue.len() >= max as usize
        {
            // Entries whose requests gave up still count until a release pops them.
            queue.retain(|tx| !tx.is_closed());
            self.queued.store(queue.len(), Ordering::SeqCst);
            if queue.len() >= max as usize {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        queue.push_back(tx);
        self.queued.fetch_add(1, Ordering::SeqCst);
        Some(rx)
    }

    fn release(self: &Arc<Self>, endpoint: &Arc<EndpointState>) {
        endpoint.release_slot();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        // The slot is free before the queue is read; a request that enqueues
        // concurrently looks for a free slot after enqueueing, so one of the two
        // always sees the other (both sides are SeqCst).
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.hand_off(endpoint);
        }
    }

    /// Gives a slot on `endpoint` to the oldest waiting request (HAProxy serves
    /// its queues when a server frees a connection).
    fn hand_off(self: &Arc<Self>, endpoint: &Arc<EndpointState>) {
        if !endpoint.accepts_new() {
            return;
        }
        let mut queue = lock(&self.queue);
        let mut holding = false;
        while let Some(tx) = queue.pop_front() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            if tx.is_closed() {
                continue;
            }
            if !holding {
                if !endpoint.try_acquire_latest() {
                    // Someone else took the slot; this waiter keeps its place.
                    queue.push_front(tx);
                    self.queued.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                holding = true;
            }
            match tx.send(Lease::new(endpoint.clone(), self.clone())) {
                Ok(()) => return,
                // The waiter gave up just now: keep the slot for the next one.
                Err(mut lease) => lease.forget(),
            }
        }
        if holding {
            endpoint.release_slot();
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request's slot on an endpoint: counted in flight until dropped (with the
/// response body, or the upgraded tunnel), then handed to a queued request.
pub struct Lease {
    endpoint: Arc<EndpointState>,
    backend: Arc<BackendState>,
    /// False once the slot was passed on without being released.
    holds_slot: bool,
}

impl Lease {
    fn new(endpoint: Arc<EndpointState>, backend: Arc<BackendState>) -> Self {
        Self {
            endpoint,
            backend,
            holds_slot: true,
        }
    }

    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.endpoint
    }

    /// Gives up the slot without releasing it (the caller keeps it).
    fn forget(&mut self) {
        self.holds_slot = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.holds_slot {
            self.backend.release(&self.endpoint);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({} on {})", self.endpoint.address, self.backend.id)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data is still consistent
    // counters and queues.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
