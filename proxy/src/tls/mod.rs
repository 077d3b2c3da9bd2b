//! TLS: certificates chosen by SNI (`certs.rs`) and the ClientHello peek used to
//! route TLS without terminating it (`client_hello.rs`). The crypto provider is
//! ring, the one the rest of the process (kube's client, health checks) uses.

pub mod certs;
pub mod client_hello;
pub mod server_config;
