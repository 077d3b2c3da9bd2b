//! Passive checks: the data plane reports each exchange's outcome; a run of
//! failures ejects the endpoint for `eject_for` (it gets no new requests), as
//! long as no more than `max_ejected_percent` of the backend is ejected.

use crate::balance::{Balancer, EndpointState};
use crate::table::PassiveCheck;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::{info, warn};

/// What became of one request to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Success,
    /// A failure of the endpoint (connection, timeout, 5xx), described.
    Failure(&'a str),
}

impl Outcome<'_> {
    /// A response status as passive checks see it: 500, 502, 503 and 504 are
    /// the endpoint failing (501 and 505 are answers about the request).
    pub fn of_status(status: u16, check: &PassiveCheck) -> Outcome<'static> {
        if check.count_5xx && matches!(status, 500 | 502 | 503 | 504) {
            Outcome::Failure(match status {
                500 => "500 Internal Server Error",
                502 => "502 Bad Gateway",
                503 => "503 Service Unavailable",
                _ => "504 Gateway Timeout",
            })
        } else {
            Outcome::Success
        }
    }
}

/// Records an outcome for `endpoint` of the backend `balancer` serves.
pub fn record(
    balancer: &Balancer,
    check: &PassiveCheck,
    endpoint: &Arc<EndpointState>,
    outcome: Outcome<'_>,
) {
    let reason = match outcome {
        Outcome::Success => {
            // Read first: most requests succeed, and a store would bounce the
            // cache line between cores for nothing.
            if endpoint.consecutive_failures.load(Ordering::Relaxed) != 0 {
                endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        Outcome::Failure(reason) => reason,
    };
    let failures = endpoint
        .consecutive_failures
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    if failures < check.consecutive_failures || endpoint.is_ejected() {
        return;
    }
    let backend = &balancer.state;
    let limit = ejection_limit(balancer.len(), check.max_ejected_percent);
    if !backend.try_count_ejection(limit) {
        return;
    }
    if endpoint.ejected.swap(true, Ordering::AcqRel) {
        // Another request ejected it first.
        backend.uncount_ejection();
        return;
    }
    endpoint.consecutive_failures.store(0, Ordering::Relaxed);
    endpoint.ejections.fetch_add(1, Ordering::Relaxed);
    warn!(backend = %backend.id, endpoint = %endpoint.address,
          "endpoint EJECTED for {} after {failures} failures in a row (last: {reason})", check.eject_for);
    let backend_id = backend.id.clone();
    let gone = endpoint.gone.clone();
    let (endpoint, backend) = (Arc::downgrade(endpoint), Arc::downgrade(backend));
    let period = check.eject_for;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(period.to_std()) => {}
            _ = gone.cancelled() => {}
        }
        if let Some(backend) = backend.upgrade() {
            backend.uncount_ejection();
        }
        if let Some(endpoint) = endpoint.upgrade() {
            endpoint.ejected.store(false, Ordering::Release);
            info!(backend = %backend_id, endpoint = %endpoint.address,
                  "endpoint returns after its {period} ejection");
        }
    });
}

/// How many of `endpoints` may be ejected at once: the percentage rounded
/// down, but at least one unless the percentage is 0.
pub fn ejection_limit(endpoints: usize, percent: u32) -> u32 {
    let limit = endpoints.saturating_mul(percent as usize) / 100;
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    if percent > 0 { limit.max(1) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compile::{CompiledTable, compile};
    use crate::runtime::Runtime;
    use crate::table::from_yaml_str;

    fn backend(endpoints: usize) -> CompiledTable {
        let mut yaml = String::from("backends:\n  b:\n    endpoints:\n");
        for port in 0..endpoints {
            yaml.push_str(&format!("      - address: 127.0.0.1:{}\n", 30000 + port));
        }
        compile(from_yaml_str(&yaml).unwrap(), &Runtime::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_for_a_period() {
        let table = backend(4);
        let balancer = &table.backends[0].balancer;
        let check = PassiveCheck {
            consecutive_failures: 3,
            ..PassiveCheck::default()
        };
        let states: Vec<_> = balancer.members().map(|m| m.state.clone()).collect();
        let fail = |i: usize| record(balancer, &check, &states[i], Outcome::Failure("502"));
        fail(0);
        fail(0);
        record(balancer, &check, &states[0], Outcome::Success);
        fail(0);
        fail(0);
        assert!(states[0].is_up(), "a success resets the count");
        fail(0);
        assert!(!states[0].is_up() && states[0].is_ejected());
        assert_eq!(states[0].ejections.load(Ordering::Relaxed), 1);

        // 50% of 4: a second endpoint may go, a third may not.
        (0..3).for_each(|_| fail(1));
        assert!(states[1].is_ejected());
        (0..10).for_each(|_| fail(2));
        assert!(!states[2].is_ejected(), "max_ejected_percent holds");

        tokio::time::sleep(check.eject_for.to_std()).await;
        tokio::task::yield_now().await;
        assert!(
            states[0].is_up() && states[1].is_up(),
            "back after eject_for"
        );
        (0..3).for_each(|_| fail(2));
        assert!(states[2].is_ejected(), "the freed places can be used");
    }

    #[test]
    fn ejection_limits() {
        assert_eq!(ejection_limit(2, 50), 1);
        assert_eq!(ejection_limit(3, 50), 1);
        assert_eq!(ejection_limit(10, 50), 5);
        assert_eq!(ejection_limit(1, 10), 1, "one may always be ejected");
        assert_eq!(ejection_limit(10, 0), 0);
        assert_eq!(ejection_limit(4, 100), 4);
    }

    #[test]
    fn statuses_that_count() {
        let check = PassiveCheck::default();
        assert_eq!(Outcome::of_status(200, &check), Outcome::Success);
        assert_eq!(Outcome::of_status(404, &check), Outcome::Success);
        assert_eq!(Outcome::of_status(501, &check), Outcome::Success);
        assert!(matches!(
            Outcome::of_status(503, &check),
            Outcome::Failure(_)
        ));
        let lenient = PassiveCheck {
            count_5xx: false,
            ..check
        };
        assert_eq!(Outcome::of_status(503, &lenient), Outcome::Success);
    }
}
