//! Active health checks (`check inter … rise … fall …`): a TCP connection to each
//! endpoint of a backend that asks for it. `fall` failures in a row mark the
//! endpoint down (it gets no new requests; backups take over when no primary is
//! left), `rise` successes in a row mark it up again and start its slow start.
//!
//! One task per endpoint state. It holds only a `Weak` to the state and reads its
//! settings from the state each round, so a table swap changes them in place,
//! and the task ends when the last table using the endpoint is gone or the check
//! is removed (the endpoint is then up again: unchecked endpoints always are).

use crate::balance::EndpointState;
use crate::compile::CompiledTable;
use crate::table::HealthCheck;
use std::sync::{Arc, Weak};
use tokio::net::TcpStream;
use tracing::{info, warn};

/// Starts checks the table asks for and that are not running yet, and tells
/// running checks of endpoints that no longer want one to stop.
pub fn start_checks(table: &CompiledTable) {
    for backend in &table.backends {
        for member in backend.balancer.members() {
            let state = &member.state;
            let mut slot = state.check.lock().unwrap_or_else(|e| e.into_inner());
            slot.config = backend.health_check;
            if slot.config.is_some() && !slot.running {
                slot.running = true;
                let epoch_now = backend.balancer.state.clone();
                tokio::spawn(run(Arc::downgrade(state), backend.id.clone(), move || {
                    epoch_now.now_ms()
                }));
            }
        }
    }
}

/// Consecutive results, and the state they lead to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// Records one result; returns the new state when it changes (`Some(true)`:
    /// now up), given the current one.
    pub fn record(&mut self, ok: bool, up: bool, check: &HealthCheck) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (!up && self.successes >= check.rise).then_some(true)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (up && self.failures >= check.fall).then_some(false)
        }
    }
}

async fn run(state: Weak<EndpointState>, backend: Arc<str>, now_ms: impl Fn() -> u64) {
    let mut history = Hysteresis::default();
    // Spread the first checks over an interval so endpoints do not align.
    let mut first = true;
    loop {
        let Some((check, _)) = current(&state) else {
            return;
        };
        let wait = if first {
            first = false;
            check.interval.to_std().mul_f64(fastrand::f64())
        } else {
            check.interval.to_std()
        };
        tokio::time::sleep(wait).await;
        // The table may have changed or dropped the check meanwhile.
        let Some((check, address)) = current(&state) else {
            return;
        };
        let target = address.to_string();
        let result =
            tokio::time::timeout(check.timeout.to_std(), TcpStream::connect(&target)).await;
        let (ok, reason) = match result {
            Ok(Ok(_)) => (true, String::from("L4OK")),
            Ok(Err(e)) => (false, format!("L4CON: {e}")),
            Err(_) => (false, format!("L4TOUT after {}", check.timeout)),
        };
        let Some(endpoint) = state.upgrade() else {
            return;
        };
        if let Some(up) = history.record(ok, endpoint.is_up(), &check)
            && endpoint.set_up(up)
        {
            if up {
                endpoint.start_ramp(now_ms());
                info!(backend = %backend, endpoint = %address, "endpoint is UP ({reason}, {} checks passed)", check.rise);
            } else {
                warn!(backend = %backend, endpoint = %address, "endpoint is DOWN ({reason}, {} checks failed)", check.fall);
            }
        }
    }
}

/// The check the latest table wants for this endpoint; `None` ends the task.
fn current(state: &Weak<EndpointState>) -> Option<(HealthCheck, crate::table::EndpointAddress)> {
    let endpoint = state.upgrade()?;
    let mut slot = endpoint.check.lock().unwrap_or_else(|e| e.into_inner());
    match slot.config {
        Some(check) => Some((check, endpoint.address.clone())),
        None => {
            slot.running = false;
            drop(slot);
            // Unchecked endpoints are always considered up.
            endpoint.set_up(true);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_fall_failures_and_up_after_rise_successes() {
        let check = HealthCheck {
            rise: 2,
            fall: 3,
            ..HealthCheck::default()
        };
        let mut h = Hysteresis::default();
        let mut up = true;
        let mut apply = |ok| {
            if let Some(new) = h.record(ok, up, &check) {
                up = new;
            }
            up
        };
        assert!(apply(false));
        assert!(apply(false));
        assert!(apply(true), "a success resets the failures");
        assert!(apply(false));
        assert!(apply(false));
        assert!(!apply(false), "third failure in a row");
        assert!(!apply(true));
        assert!(!apply(false), "a failure resets the successes");
        assert!(!apply(true));
        assert!(apply(true), "second success in a row");
    }
}
