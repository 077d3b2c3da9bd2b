//! Connections forwarded as bytes rather than HTTP requests: `tcp` listeners
//! (`tcp_listener.rs`, copying with `relay.rs`) and TLS passthrough. `sni_router.rs` picks a target by server
//! name, `prefixed.rs` hands on a stream whose first bytes were read already,
//! `forward.rs` leases an endpoint, connects (with retries) and copies both
//! ways, `passthrough.rs` reads the ClientHello and ties them together.

pub mod counters;
pub mod forward;
pub mod passthrough;
pub mod postgres;
pub mod prefixed;
pub mod relay;
#[cfg(test)]
mod relay_tests;
pub mod sni_router;
pub mod tcp_listener;

pub use forward::ConnTarget;
pub use passthrough::{SniRoutes, SniSplit};
pub use prefixed::Prefixed;
pub use sni_router::SniRouter;
