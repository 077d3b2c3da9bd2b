//! Sluice ingress controller: Kubernetes objects → routing table → embedded proxy.
//!
//! sources (reflectors) → snapshot → translate (pure) → publish (proxy swap) →
//! status (leader only).

pub mod publish;
pub mod snapshot;
pub mod sources;
pub mod status;
pub mod translate;
