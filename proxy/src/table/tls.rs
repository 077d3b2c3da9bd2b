//! TLS settings of an `https` listener (certificates are the table's
//! `certificates`, chosen by SNI, see `tls/certs.rs`; client certificates, see
//! `tls/client_auth.rs`), and a route's HSTS header.

use super::Duration;
use super::SniRoute;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// TLS 1.3 session tickets and the TLS 1.2 session cache. `false`: every
    /// connection makes a full handshake.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub session_resumption: bool,
    /// Client certificates asked for on the whole listener (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Client certificates by the name the client sent (SNI): an exact name or a
    /// `*.` wildcard of one label, chosen before `client_auth`. A request whose
    /// `Host` falls under other settings than its connection's SNI gets 421.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_client_auth: BTreeMap<String, ClientAuth>,
    /// Connections whose SNI matches one of these routes are passed through
    /// raw to its backend, before any handshake (nginx-ingress's
    /// `ssl-passthrough`); all others are terminated here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<SniRoute>,
}

impl Default for ListenerTls {
    fn default() -> Self {
        Self {
            min_version: TlsVersion::default(),
            cipher_suites: Vec::new(),
            alpn: Vec::new(),
            default_certificate: None,
            session_resumption: true,
            client_auth: None,
            host_client_auth: BTreeMap::new(),
            passthrough: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
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

/// How client certificates are asked for and judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM bundle of the CA certificates client certificates must chain to.
    pub ca: String,
    #[serde(default, skip_serializing_if = "ClientAuthMode::is_default")]
    pub mode: ClientAuthMode,
    #[serde(default, skip_serializing_if = "OnFailure::is_default")]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// A client must present a certificate that chains to `ca`.
    #[default]
    Require,
    /// A client may present none (the backend sees `ssl-client-verify: NONE`);
    /// one it presents must chain to `ca`.
    Optional,
}

impl ClientAuthMode {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What a client whose certificate is missing (when required) or not accepted
/// gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The handshake fails with a TLS alert.
    #[default]
    Alert,
    /// The handshake completes, and every request on the connection gets this
    /// status (a 4xx) with a short body, so browsers show a page rather than a
    /// TLS error.
    Status(u16),
}

impl OnFailure {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `Strict-Transport-Security` on a route's responses over TLS (RFC 6797).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// How long browsers remember to use HTTPS only; sent in whole seconds.
    #[serde(default = "Hsts::one_year")]
    pub max_age: Duration,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_subdomains: bool,
    /// Asks to be built into browsers (hstspreload.org); needs
    /// `include_subdomains` and a `max_age` of at least a year.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

impl Hsts {
    pub const ONE_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    fn one_year() -> Duration {
        Self::ONE_YEAR
    }

    /// The header value: `max-age=N[; includeSubDomains][; preload]`.
    pub fn header_value(&self) -> String {
        let mut value = format!("max-age={}", self.max_age.as_millis() / 1000);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_shapes() {
        let tls: ListenerTls = serde_saphyr::from_str(
            "session_resumption: false
client_auth: {ca: x, mode: optional, on_failure: {status: 403}}
host_client_auth:
  secure.example.com: {ca: y}
",
        )
        .unwrap();
        assert!(!tls.session_resumption);
        let all = tls.client_auth.as_ref().unwrap();
        assert_eq!(all.mode, ClientAuthMode::Optional);
        assert_eq!(all.on_failure, OnFailure::Status(403));
        let host = &tls.host_client_auth["secure.example.com"];
        assert_eq!(
            (host.mode, host.on_failure),
            (ClientAuthMode::Require, OnFailure::Alert)
        );
        let empty: ListenerTls = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(empty, ListenerTls::default());
        assert!(empty.session_resumption, "resumption is on by default");
        let alert: ClientAuth = serde_saphyr::from_str("{ca: x, on_failure: alert}").unwrap();
        assert_eq!(alert.on_failure, OnFailure::Alert);
        assert!(serde_saphyr::from_str::<ClientAuth>("{ca: x, mode: maybe}").is_err());
        // What the proxy prints (`/debug/table`) reads back the same.
        let text = serde_saphyr::to_string(&tls).unwrap();
        assert!(text.contains("status: 403"), "{text}");
        assert_eq!(serde_saphyr::from_str::<ListenerTls>(&text).unwrap(), tls);
    }

    #[test]
    fn hsts_header_values() {
        let h: Hsts = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(h.header_value(), "max-age=31536000");
        let h: Hsts =
            serde_saphyr::from_str("{max_age: 8760h, include_subdomains: true, preload: true}")
                .unwrap();
        assert_eq!(
            h.header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
        let h: Hsts = serde_saphyr::from_str("{max_age: 1500ms}").unwrap();
        assert_eq!(h.header_value(), "max-age=1");
    }
}
