//! What the proxy knows about one endpoint of one backend at run time: requests in
//! flight, whether checks say it is up or traffic ejected it, when its slow
//! start began. It lives in
//! the backend's runtime state, keyed by address, so it outlives table swaps;
//! each compiled table holds an `Arc` to it beside its own weight and limit.

use crate::health::HealthSlot;
use crate::table::EndpointAddress;
use http::uri::Authority;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct EndpointState {
    pub address: EndpointAddress,
    /// `ip:port` pre-rendered once for request URIs.
    pub authority: Authority,
    in_flight: AtomicU32,
    /// Requests sent here, ever (for the admin output).
    requests: AtomicU64,
    /// Active checks say up (always, without checks).
    up: AtomicBool,
    /// Passive checks took it out for a while.
    pub(crate) ejected: AtomicBool,
    /// Failures of real traffic in a row, and ejections so far.
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) ejections: AtomicU64,
    /// Milliseconds since the registry's epoch, plus one, when the weight
    /// started ramping up; 0 when not ramping.
    ramp_from: AtomicU64,
    /// The latest table's weight and limit, for queue hand-off at release time
    /// (a lease may outlive the table it was taken under).
    weight: AtomicU32,
    max_conn: AtomicU32,
    /// Round-robin virtual deadline (f64 bits), so a new table resumes the turn.
    pub(super) rr_deadline: AtomicU64,
    pub(crate) health: Mutex<HealthSlot>,
    /// Cancelled when the state is dropped, so its check task ends at once.
    pub(crate) gone: CancellationToken,
    /// Requests pinned here (sticky sessions) waiting for a slot, woken by
    /// `freed` when one is released.
    pub(super) pinned_waiters: AtomicU32,
    pub(super) freed: Notify,
}

impl Drop for EndpointState {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

impl EndpointState {
    pub fn new(address: EndpointAddress, authority: Authority) -> Self {
        Self {
            address,
            authority,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            up: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            ramp_from: AtomicU64::new(0),
            weight: AtomicU32::new(1),
            max_conn: AtomicU32::new(0),
            rr_deadline: AtomicU64::new(0),
            health: Mutex::new(HealthSlot::default()),
            gone: CancellationToken::new(),
            pinned_waiters: AtomicU32::new(0),
            freed: Notify::new(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// May take new requests: checks say up and traffic did not eject it.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) && !self.ejected.load(Ordering::Relaxed)
    }

    /// What active checks say, ejection aside.
    pub fn checks_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Marks the endpoint up or down; returns true when that changed it.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel) != up
    }

    /// Starts the slow-start ramp at `now_ms` (milliseconds since the epoch).
    pub fn start_ramp(&self, now_ms: u64) {
        self.ramp_from.store(now_ms + 1, Ordering::Relaxed);
    }

    /// `weight` scaled by the slow-start ramp at `now_ms`: from 1 up to the full
    /// weight over `slow_start_ms` (HAProxy's proportional `slowstart`).
    pub fn ramped(&self, weight: u32, now_ms: u64, slow_start_ms: u64) -> u32 {
        let from = self.ramp_from.load(Ordering::Relaxed);
        if from == 0 || weight == 0 {
            return weight;
        }
        let elapsed = now_ms.saturating_sub(from - 1);
        if elapsed >= slow_start_ms {
            // Done: later picks skip the arithmetic.
            self.ramp_from.store(0, Ordering::Relaxed);
            return weight;
        }
        let scaled = u64::from(weight) * elapsed / slow_start_ms;
        u32::try_from(scaled).unwrap_or(weight).max(1)
    }

    pub fn set_limits(&self, weight: u32, max_conn: Option<u32>) {
        self.weight.store(weight, Ordering::Relaxed);
        self.max_conn
            .store(max_conn.unwrap_or(0), Ordering::Relaxed);
    }

    /// Up and not drained, by the latest table: may be handed a queued request.
    pub(super) fn accepts_new(&self) -> bool {
        self.is_up() && self.weight.load(Ordering::Relaxed) > 0
    }

    /// Takes a slot if fewer than `max_conn` (0: no limit) are in flight.
    pub(super) fn try_acquire(&self, max_conn: u32) -> bool {
        if max_conn == 0 {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        } else if self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| {
                (n < max_conn).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A slot under the latest table's limit, for queue hand-off.
    pub(super) fn try_acquire_latest(&self) -> bool {
        self.try_acquire(self.max_conn.load(Ordering::Relaxed))
    }

    pub(super) fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.pinned_waiters.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// One endpoint as a compiled table sees it: the shared state plus this table's
/// settings.
pub struct Member {
    pub state: Arc<EndpointState>,
    pub weight: u32,
    /// 0: no limit.
    pub max_conn: u32,
}

/// What a pick needs besides the members: the clock for slow start and the
/// endpoints a retry wants to avoid.
pub struct PickContext<'a> {
    /// Milliseconds since the epoch, when the backend has a slow start.
    pub now_ms: Option<u64>,
    pub slow_start_ms: u64,
    pub exclude: &'a [Arc<EndpointState>],
}

impl Member {
    /// Up, not drained and not excluded: it counts as available even when full.
    pub fn available(&self, ctx: &PickContext<'_>) -> bool {
        self.weight > 0
            && self.state.is_up()
            && !ctx.exclude.iter().any(|e| Arc::ptr_eq(e, &self.state))
    }

    /// The effective weight if this member can take a request now: available
    /// and below its `max_conn`.
    #[inline]
    pub fn open(&self, ctx: &PickContext<'_>) -> Option<u32> {
        if !self.available(ctx) {
            return None;
        }
        if self.max_conn != 0 && self.state.in_flight() >= self.max_conn {
            return None;
        }
        Some(self.effective_weight(ctx))
    }

    pub fn effective_weight(&self, ctx: &PickContext<'_>) -> u32 {
        match ctx.now_ms {
            Some(now) => self.state.ramped(self.weight, now, ctx.slow_start_ms),
            None => self.weight,
        }
    }

    /// Requests in flight plus one, relative to weight: `a` is less loaded than
    /// `b` when `a.0 * b.1 < b.0 * a.1`.
    #[inline]
    pub fn load(&self, weight: u32) -> (u64, u64) {
        (u64::from(self.state.in_flight()) + 1, u64::from(weight))
    }
}

/// Whether load `a` (in flight + 1, weight) is strictly below load `b`.
#[inline]
pub fn less_loaded(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 * b.1 < b.0 * a.1
}
