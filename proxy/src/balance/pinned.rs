//! A request pinned to one endpoint (a sticky-session cookie): it goes there if
//! the endpoint can take it, whatever its weight (weight 0 drains: existing
//! sessions stay, new ones go elsewhere), and waits for a slot there when the
//! endpoint is at `max_conn` (HAProxy queues such requests on the server).

use super::{Balancer, EndpointState, Lease};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An endpoint a cookie can name, with this table's settings.
#[derive(Clone)]
pub struct Pin {
    pub endpoint: Arc<EndpointState>,
    pub max_conn: u32,
    pub backup: bool,
}

pub enum PinnedLease {
    Leased(Lease),
    /// Down, ejected, or a backup while some primary is available again (so
    /// load returns to the primaries).
    Unavailable,
    /// No slot on it freed up within the queue timeout.
    TimedOut(Duration),
}

impl Balancer {
    pub async fn lease_pinned(&self, pin: &Pin) -> PinnedLease {
        if !self.pin_available(pin) {
            return PinnedLease::Unavailable;
        }
        if let Some(lease) = self.state.try_lease(&pin.endpoint, pin.max_conn) {
            return PinnedLease::Leased(lease);
        }
        let endpoint = &pin.endpoint;
        endpoint.pinned_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(endpoint);
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        loop {
            // Registered before looking, so a release between the look and the
            // wait still wakes this request.
            let freed = endpoint.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !self.pin_available(pin) {
                return PinnedLease::Unavailable;
            }
            if let Some(lease) = self.state.try_lease(endpoint, pin.max_conn) {
                return PinnedLease::Leased(lease);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return PinnedLease::TimedOut(self.queue_timeout);
            }
        }
    }

    fn pin_available(&self, pin: &Pin) -> bool {
        if !pin.endpoint.is_up() {
            return false;
        }
        if pin.backup {
            let ctx = self.context(&[]);
            return !self.primary.members.iter().any(|m| m.available(&ctx));
        }
        true
    }
}

/// Counts a waiting pinned request until it leaves, however it leaves.
struct Waiting<'a>(&'a EndpointState);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pinned_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
