//! Sluice data plane: the routing table contract and the proxy that serves it.
pub mod admin;
pub mod balance;
pub mod compile;
pub mod demo;
pub mod health;
pub mod http;
pub mod process;
pub mod proxy_protocol;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod sticky;
pub mod table;
pub mod tcp;
pub mod tls;
pub mod upstream;
