//! Connections forwarded as bytes rather than HTTP requests: TLS passthrough
//! now, plain TCP listeners later. `sni_router.rs` picks a target by server
//! name, `prefixed.rs` hands on a stream whose first bytes were read already,
//! `forward.rs` leases an endpoint, connects (with retries) and copies both
//! ways, `passthrough.rs` reads the ClientHello and ties them together.

pub mod forward;
pub mod passthrough;
pub mod prefixed;
pub mod sni_router;

pub use forward::ConnTarget;
pub use passthrough::{SniRoutes, SniSplit};
pub use prefixed::Prefixed;
pub use sni_router::SniRouter;
