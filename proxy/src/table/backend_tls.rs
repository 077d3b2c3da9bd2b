//! TLS from the proxy to a backend's endpoints (re-encryption): HAProxy's
//! `server ... ssl verify required ca-file sni alpn crt`, nginx's `proxy_ssl_*`.
//! Compiled into a rustls `ClientConfig` in `upstream/client_config.rs`.

use super::{Backend, BackendProtocol, Certificate};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// The name sent as SNI, and the name the endpoint's certificate must carry.
    /// Absent: the endpoint's DNS name (`name:port` endpoints); for `ip:port`
    /// endpoints no SNI is sent and the certificate must carry that IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM bundle of the CAs trusted to sign endpoint certificates. Absent: the
    /// system trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// No certificate verification at all: the endpoint is whoever answers
    /// (handshake signatures are still checked). For self-signed test backends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Protocols offered by ALPN, in order. `[h2, http/1.1]` lets the endpoint
    /// choose HTTP/2 (gRPC over TLS); `[h2]` speaks HTTP/2 even if the endpoint
    /// answers no ALPN.
    #[serde(default = "default_alpn", skip_serializing_if = "is_default_alpn")]
    pub alpn: Vec<AlpnProtocol>,
    /// An id of the table's `certificates`, presented to endpoints that ask for a
    /// client certificate (mutual TLS to the backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

impl Default for BackendTls {
    fn default() -> Self {
        Self {
            server_name: None,
            ca: None,
            insecure_skip_verify: false,
            alpn: default_alpn(),
            client_certificate: None,
        }
    }
}

/// A protocol the proxy can speak over TLS, by its ALPN name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlpnProtocol {
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "http/1.1")]
    Http11,
}

impl AlpnProtocol {
    /// The protocol id on the wire.
    pub fn id(self) -> &'static [u8] {
        match self {
            Self::H2 => b"h2",
            Self::Http11 => b"http/1.1",
        }
    }
}

fn default_alpn() -> Vec<AlpnProtocol> {
    vec![AlpnProtocol::Http11]
}

fn is_default_alpn(alpn: &Vec<AlpnProtocol>) -> bool {
    *alpn == default_alpn()
}

impl Backend {
    /// Problems of the backend's TLS settings, as (field path below the backend,
    /// message). `check` refuses a table file with any; the compiler makes such
    /// a backend unusable (503), never plaintext.
    pub fn tls_problems(
        &self,
        certificates: &BTreeMap<String, Certificate>,
    ) -> Vec<(String, String)> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut push = |field: &str, message: String| out.push((field.to_owned(), message));
        if self.protocol == BackendProtocol::H2c {
            push(
                "protocol",
                "h2c is cleartext HTTP/2 and cannot be used with `tls`; \
                 for HTTP/2 over TLS leave the protocol out and set `tls.alpn: [h2]`"
                    .into(),
            );
        }
        if let Some(name) = &tls.server_name
            && server_name(name).is_err()
        {
            push(
                "tls.server_name",
                format!("{name:?} is neither a DNS name nor an IP address"),
            );
        }
        if let Some(ca) = &tls.ca {
            if let Err(e) = trust_anchors(ca) {
                push("tls.ca", e);
            }
            if tls.insecure_skip_verify {
                push(
                    "tls.insecure_skip_verify",
                    "cannot be used with `ca`: either verify against `ca` or verify nothing".into(),
                );
            }
        }
        if tls.alpn.is_empty() {
            push(
                "tls.alpn",
                "offers no protocol; leave it out for the default `[http/1.1]`".into(),
            );
        }
        for (i, p) in tls.alpn.iter().enumerate() {
            if tls.alpn[..i].contains(p) {
                push(
                    &format!("tls.alpn[{i}]"),
                    format!("{} is listed twice", String::from_utf8_lossy(p.id())),
                );
            }
        }
        if let Some(id) = &tls.client_certificate
            && !certificates.contains_key(id)
        {
            push(
                "tls.client_certificate",
                format!("no certificate `{id}` in `certificates`"),
            );
        }
        out
    }
}

/// A TLS server name: an IP address (no SNI is sent; the certificate must
/// carry the address) or a DNS name.
pub fn server_name(text: &str) -> Result<ServerName<'static>, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(text.to_owned())
        .map_err(|_| format!("{text:?} is neither a DNS name nor an IP address"))
}

/// The certificates of a `ca` bundle, each checked to be usable as a trust
/// anchor.
pub fn trust_anchors(pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for (i, der) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let der = der.map_err(|e| format!("not a valid PEM bundle: {e}"))?;
        roots
            .add(der)
            .map_err(|e| format!("certificate #{} cannot be a trust anchor: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{RoutingTable, from_yaml_str, to_yaml};

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn indent(text: &str, by: usize) -> String {
        let pad = " ".repeat(by);
        text.lines().map(|l| format!("{pad}{l}\n")).collect()
    }

    #[test]
    fn settings_parse_with_defaults_and_round_trip() {
        let yaml = format!(
            "backends:
  api:
    tls:
      server_name: api.internal
      ca: |
{}      alpn: [h2, http/1.1]
  plain: {{tls: {{}}}}
",
            indent(&ca_pem(), 8)
        );
        let table: RoutingTable = from_yaml_str(&yaml).unwrap();
        let tls = table.backends["api"].tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
        assert_eq!(tls.alpn, [AlpnProtocol::H2, AlpnProtocol::Http11]);
        assert!(!tls.insecure_skip_verify);
        let defaults = table.backends["plain"].tls.as_ref().unwrap();
        assert_eq!(*defaults, BackendTls::default());
        assert_eq!(defaults.alpn, [AlpnProtocol::Http11]);
        assert_eq!(table.backends["plain"].tls_problems(&BTreeMap::new()), []);
        let again: RoutingTable = from_yaml_str(&to_yaml(&table)).unwrap();
        assert_eq!(again, table);
        // Defaults are not written out, and a backend without TLS has no `tls`.
        let text = to_yaml(&from_yaml_str("backends: {a: {tls: {}}, b: {}}").unwrap());
        assert!(text.contains("tls: {}"), "{text}");
        assert_eq!(text.matches("tls").count(), 1, "{text}");
    }

    #[test]
    fn unknown_protocols_and_fields_are_refused_while_reading() {
        let err = from_yaml_str("backends: {a: {tls: {alpn: [h3]}}}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backends.a.tls.alpn") && err.contains("h3"),
            "{err}"
        );
        let err = from_yaml_str("backends: {a: {tls: {verify: false}}}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("verify"), "{err}");
    }

    #[test]
    fn server_names_are_addresses_or_dns_names() {
        for (text, want) in [
            ("api.internal", "DnsName"),
            ("10.0.0.1", "IpAddress"),
            ("[::1]", "IpAddress"),
            ("::1", "IpAddress"),
        ] {
            let name = format!("{:?}", server_name(text).unwrap());
            assert!(name.starts_with(want), "{text}: {name}");
        }
        assert!(server_name("a b").is_err());
        assert!(server_name("").is_err());
    }

    #[test]
    fn trust_anchors_need_real_certificates() {
        assert!(trust_anchors(&ca_pem()).is_ok());
        assert_eq!(trust_anchors("").unwrap_err(), "holds no PEM certificate");
        assert_eq!(
            trust_anchors("just text").unwrap_err(),
            "holds no PEM certificate"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = trust_anchors(garbage).unwrap_err();
        assert!(
            err.starts_with("certificate #1 cannot be a trust anchor"),
            "{err}"
        );
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = trust_anchors(broken).unwrap_err();
        assert!(err.starts_with("not a valid PEM bundle"), "{err}");
    }
}
