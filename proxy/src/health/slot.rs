//! What an endpoint's state holds for active checks: the settings the latest
//! table asks for, whether a task runs them, and what the checks saw (for logs
//! and the admin output).

use crate::table::HealthCheck;
use serde::Serialize;
use std::sync::Arc;

#[derive(Default)]
pub struct HealthSlot {
    pub(crate) config: Option<Arc<HealthCheck>>,
    pub(crate) running: bool,
    pub(crate) status: CheckStatus,
}

impl HealthSlot {
    /// The latest results, when the endpoint is checked.
    pub fn status(&self) -> Option<CheckStatus> {
        self.config.as_ref().map(|_| self.status.clone())
    }
}

/// The admin view of an endpoint's active check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStatus {
    pub probe: &'static str,
    /// `UP`, `UP, going down 1/3`, `DOWN`, `DOWN, going up 1/2`.
    pub state: String,
    /// The last result's code (`L7OK`, `L4CON`, `L7STS`, …); empty before the first.
    pub code: &'static str,
    /// The last result in full: `L7STS 503: HTTP/1.1 503 Service Unavailable`.
    pub last: String,
    /// Why the endpoint last went down, with the count of failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_down: Option<String>,
    pub checks: u64,
    pub failures: u64,
    /// Times it went down.
    pub downs: u64,
}
