//! The pure part of active checks: consecutive results, the state they lead to
//! (`rise`/`fall`), and how long to wait before the next check (`inter`,
//! `fastinter` while the state is changing, `downinter` while down).

use crate::table::{Duration, HealthCheck};

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
            (!up && self.successes >= check.rise).then(|| {
                self.successes = 0;
                true
            })
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (up && self.failures >= check.fall).then(|| {
                self.failures = 0;
                false
            })
        }
    }

    /// The wait before the next check: `fast_interval` while a change is under
    /// way, `down_interval` while steadily down, else `interval`.
    pub fn next_interval(&self, up: bool, check: &HealthCheck) -> Duration {
        match (up, self.failures, self.successes) {
            (true, 0, _) => check.interval,
            (false, _, 0) => check.down_interval(),
            _ => check.fast_interval(),
        }
    }

    /// HAProxy's stats wording: `UP`, `UP 1/3` (going down: failures of
    /// `fall`), `DOWN`, `DOWN 1/2` (going up: successes of `rise`).
    pub fn describe(&self, up: bool, check: &HealthCheck) -> String {
        match (up, self.failures, self.successes) {
            (true, 0, _) => "UP".into(),
            (true, n, _) => format!("UP, going down {n}/{}", check.fall),
            (false, _, 0) => "DOWN".into(),
            (false, _, n) => format!("DOWN, going up {n}/{}", check.rise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            rise: 2,
            fall: 3,
            interval: Duration::from_secs(2),
            fast_interval: Some(Duration::from_millis(500)),
            down_interval: Some(Duration::from_secs(5)),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn down_after_fall_failures_and_up_after_rise_successes() {
        let check = check();
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
        assert!(!apply(false), "still down");
        assert!(!apply(true));
        assert!(!apply(false), "a failure resets the successes");
        assert!(!apply(true));
        assert!(apply(true), "second success in a row");
        assert!(
            apply(false) && apply(false),
            "counting starts afresh after a change"
        );
        assert!(!apply(false));
    }

    #[test]
    fn intervals_follow_the_state() {
        let check = check();
        let mut h = Hysteresis::default();
        assert_eq!(h.next_interval(true, &check), Duration::from_secs(2));
        assert_eq!(h.describe(true, &check), "UP");
        h.record(false, true, &check);
        assert_eq!(h.next_interval(true, &check), Duration::from_millis(500));
        assert_eq!(h.describe(true, &check), "UP, going down 1/3");
        h.record(false, true, &check);
        assert_eq!(h.record(false, true, &check), Some(false));
        assert_eq!(h.next_interval(false, &check), Duration::from_secs(5));
        assert_eq!(h.describe(false, &check), "DOWN");
        h.record(true, false, &check);
        assert_eq!(h.next_interval(false, &check), Duration::from_millis(500));
        assert_eq!(h.describe(false, &check), "DOWN, going up 1/2");
        assert_eq!(h.record(true, false, &check), Some(true));
        assert_eq!(h.next_interval(true, &check), Duration::from_secs(2));
    }

    #[test]
    fn defaults_fall_back_to_the_interval() {
        let check = HealthCheck::default();
        let mut h = Hysteresis::default();
        h.record(false, true, &check);
        assert_eq!(h.next_interval(true, &check), check.interval);
        assert_eq!(h.next_interval(false, &check), check.interval);
    }
}
