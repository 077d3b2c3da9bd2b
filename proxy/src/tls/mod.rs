//! TLS: certificates chosen by SNI (`certs.rs`), a listener's configurations by
//! client-certificate scope (`scopes.rs`, `client_auth.rs`, `client_cert.rs`),
//! and the ClientHello peek used to route TLS without terminating it
//! (`client_hello.rs`). The crypto provider is ring, the one the rest of the
//! process (kube's client, health checks) uses.

pub mod certs;
pub mod client_auth;
pub mod client_cert;
pub mod client_hello;
mod insecure;
pub mod scopes;
pub mod server_config;

pub use insecure::InsecureAnyCertificate;

use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// What TLS listeners share across tables: the self-signed default certificate
/// (made once, so a swap does not change it) and session resumption state
/// (process-wide for connections without client certificates, and per
/// client-certificate policy).
pub struct TlsRuntime {
    pub fallback: Arc<CertifiedKey>,
    pub resumption: server_config::Resumption,
    pub policy_resumption: server_config::PolicyResumption,
}

impl TlsRuntime {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            fallback: certs::self_signed()?,
            resumption: server_config::Resumption::new()?,
            policy_resumption: server_config::PolicyResumption::default(),
        })
    }
}
