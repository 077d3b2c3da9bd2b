//! Health checks. Active: a task per checked endpoint runs a probe (`probe/`,
//! one file per protocol) on the schedule the hysteresis (`hysteresis.rs`) sets,
//! and marks the endpoint up or down (`active.rs`). Passive: failures of real
//! requests eject an endpoint for a while (`passive.rs`). Both act on the
//! endpoint's runtime state, keyed by address, so they survive table swaps.

mod active;
mod hysteresis;
mod passive;
pub mod probe;
mod slot;

pub use active::{CheckTasks, start_checks};
pub use hysteresis::Hysteresis;
pub use passive::{Outcome, record};
pub use slot::{CheckStatus, HealthSlot};
