//! TLS settings of an `https` listener. Certificates are the table's
//! `certificates`, chosen by SNI (see `tls/certs.rs`).

use super::SniRoute;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The lowest protocol version accepted.
    #[serde(default, skip_serializing_if = "TlsVersion::is_default")]
    pub min_version: TlsVersion,
    /// IANA names, in the server's order of preference (`TLS13_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`). Empty: the modern default
    /// (Mozilla's intermediate set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Protocols offered by ALPN, in order. Empty: `h2`, then `http/1.1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// The certificate (an id of `certificates`) for clients whose SNI matches no
    /// certificate, or who send none. Absent: a self-signed certificate made at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<String>,
    /// Connections whose SNI matches one of these routes are passed through
    /// raw to its backend, before any handshake (nginx-ingress's
    /// `ssl-passthrough`); all others are terminated here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<SniRoute>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}
