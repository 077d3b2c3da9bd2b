//! TLS passthrough: connections routed by the SNI of their ClientHello to a
//! backend, without terminating TLS (HAProxy's `mode tcp` with `req.ssl_sni`,
//! nginx-ingress's `ssl-passthrough`). The backend holds the certificate.

use super::{BackendId, Duration, SourceRef};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughListener {
    pub name: String,
    pub bind: SocketAddr,
    /// Which backend takes a connection, by the SNI host name it sends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<SniRoute>,
    /// Connections without SNI, or whose SNI matches no route; absent: closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<BackendId>,
    #[serde(default)]
    pub timeouts: PassthroughTimeouts,
}

/// Raw TLS for these host names goes to `backend` (also `tls.passthrough` of
/// an `https` listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniRoute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Exact names or `*.example.com` (one label), compared without case.
    pub hosts: Vec<String>,
    pub backend: BackendId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassthroughTimeouts {
    /// The whole ClientHello must arrive within this time from accept
    /// (`tcp-request inspect-delay`); else the connection is closed.
    pub client_hello: Duration,
    /// A connection with no bytes moving either way for this long is closed
    /// (`timeout client` / `timeout server` of a TCP proxy).
    pub idle: Duration,
}

impl Default for PassthroughTimeouts {
    fn default() -> Self {
        Self {
            client_hello: Duration::from_secs(5),
            idle: Duration::from_secs(3600),
        }
    }
}
