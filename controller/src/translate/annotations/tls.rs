//! TLS annotations: re-encryption to the backend (`backend-protocol: https|grpcs`
//! with `backend-tls-*`), `ssl-passthrough`, client certificates (`auth-tls-*`,
//! nginx-ingress's names) and HSTS (`hsts-*`).
//!
//! Gathered while the annotations are read and resolved once all are known, like
//! the sticky and health annotations. Options that only refine another one
//! (`backend-tls-*` without an HTTPS backend protocol, `auth-tls-verify-client`
//! without `auth-tls-secret`) are warned and dropped. The Secrets they name are
//! read later (`translate/tls.rs`), since parsing sees no other object.

use sluice_proxy::table::{Duration, validate_host};

/// Ten years: more is a typo (and would overflow milliseconds).
const MAX_HSTS_SECS: u64 = 315_360_000;

/// Backend protocols that re-encrypt (`backend-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProtocol {
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 over TLS, chosen by ALPN (gRPC).
    Grpcs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTlsAnnotations {
    pub protocol: TlsProtocol,
    /// SNI and the name the endpoint's certificate must carry.
    pub server_name: Option<String>,
    /// Secret (this namespace) whose `ca.crt` verifies endpoints; absent: the
    /// system trust store.
    pub ca_secret: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthAnnotations {
    /// `NAME` or `NAMESPACE/NAME` of a Secret with `ca.crt`.
    pub secret: String,
    /// `auth-tls-verify-client: optional`: a client may send no certificate.
    pub optional: bool,
    /// `auth-tls-error-status`: answer a failed verification with this 4xx
    /// instead of failing the handshake.
    pub error_status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HstsAnnotations {
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

/// What the TLS annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressTls {
    pub backend: Option<BackendTlsAnnotations>,
    pub passthrough: bool,
    pub client_auth: Option<ClientAuthAnnotations>,
    pub hsts: Option<HstsAnnotations>,
}

/// The raw (trimmed) values, by name without the `sluice.dev/` prefix.
#[derive(Debug, Default)]
pub struct TlsAnnotations<'a> {
    given: Vec<(&'a str, &'a str)>,
}

const NAMES: &[&str] = &[
    "backend-tls-server-name",
    "backend-tls-ca-secret",
    "backend-tls-insecure-skip-verify",
    "ssl-passthrough",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-error-status",
    "hsts-max-age",
    "hsts-include-subdomains",
    "hsts-preload",
];

impl<'a> TlsAnnotations<'a> {
    /// Keeps `value` if `name` is a TLS annotation; returns whether it was.
    pub fn take(&mut self, name: &'a str, value: &'a str) -> bool {
        let ours = NAMES.contains(&name);
        if ours {
            self.given.push((name, value));
        }
        ours
    }

    /// `protocol`: the TLS protocol `backend-protocol` chose, if any.
    pub fn resolve(self, protocol: Option<TlsProtocol>, warnings: &mut Vec<String>) -> IngressTls {
        let mut out = IngressTls::default();
        let mut backend = protocol.map(|protocol| BackendTlsAnnotations {
            protocol,
            server_name: None,
            ca_secret: None,
            insecure_skip_verify: false,
        });
        let mut client_secret = None;
        let mut optional = None;
        let mut error_status = None;
        let mut hsts_max_age = None;
        let mut include_subdomains = None;
        let mut preload = None;
        for &(name, value) in &self.given {
            let result = match name {
                "backend-tls-server-name" => with_backend(&mut backend, |b| {
                    let host = value.to_ascii_lowercase();
                    validate_host(&host).map_err(|e| format!("{e}; ignored"))?;
                    if host.starts_with("*.") {
                        return Err("must be a name, not a wildcard; ignored".into());
                    }
                    b.server_name = Some(host);
                    Ok(())
                }),
                "backend-tls-ca-secret" => with_backend(&mut backend, |b| {
                    b.ca_secret = Some(secret_name(value)?);
                    Ok(())
                }),
                "backend-tls-insecure-skip-verify" => with_backend(&mut backend, |b| {
                    b.insecure_skip_verify = super::parse_bool(value)?;
                    Ok(())
                }),
                "ssl-passthrough" => super::parse_bool(value).map(|v| out.passthrough = v),
                "auth-tls-secret" => qualified_secret_name(value).map(|v| client_secret = Some(v)),
                "auth-tls-verify-client" => match value.to_ascii_lowercase().as_str() {
                    "on" => {
                        optional = Some(false);
                        Ok(())
                    }
                    "optional" => {
                        optional = Some(true);
                        Ok(())
                    }
                    _ => Err("must be `on` or `optional`; ignored".into()),
                },
                "auth-tls-error-status" => match value.parse::<u16>() {
                    Ok(status @ 400..=499) => {
                        error_status = Some(status);
                        Ok(())
                    }
                    _ => Err("must be a 4xx status code; ignored".into()),
                },
                // Seconds, as in the header itself and nginx-ingress.
                "hsts-max-age" => match value.parse::<u64>() {
                    Ok(secs @ 0..=MAX_HSTS_SECS) if value.bytes().all(|b| b.is_ascii_digit()) => {
                        hsts_max_age = Some(Duration::from_secs(secs));
                        Ok(())
                    }
                    _ => Err("must be a number of seconds (31536000 is a year); ignored".into()),
                },
                "hsts-include-subdomains" => {
                    super::parse_bool(value).map(|v| include_subdomains = Some(v))
                }
                "hsts-preload" => super::parse_bool(value).map(|v| preload = Some(v)),
                _ => Ok(()),
            };
            if let Err(problem) = result {
                warn(warnings, name, value, &problem);
            }
        }
        if let Some(b) = &mut backend
            && b.insecure_skip_verify
            && b.ca_secret.take().is_some()
        {
            warnings.push(format!(
                "annotation {}backend-tls-ca-secret: has no effect with backend-tls-insecure-skip-verify; ignored",
                super::PREFIX
            ));
        }
        out.backend = backend;
        match client_secret {
            Some(secret) => {
                out.client_auth = Some(ClientAuthAnnotations {
                    secret,
                    optional: optional.unwrap_or(false),
                    error_status,
                })
            }
            None => {
                for (name, given) in [
                    ("auth-tls-verify-client", optional.is_some()),
                    ("auth-tls-error-status", error_status.is_some()),
                ] {
                    if given {
                        warnings.push(format!(
                            "annotation {}{name}: needs {}auth-tls-secret; ignored",
                            super::PREFIX,
                            super::PREFIX
                        ));
                    }
                }
            }
        }
        match hsts_max_age {
            Some(max_age) => {
                out.hsts = Some(HstsAnnotations {
                    max_age,
                    include_subdomains: include_subdomains.unwrap_or(false),
                    preload: preload.unwrap_or(false),
                })
            }
            None => {
                for (name, given) in [
                    ("hsts-include-subdomains", include_subdomains.is_some()),
                    ("hsts-preload", preload.is_some()),
                ] {
                    if given {
                        warnings.push(format!(
                            "annotation {}{name}: needs {}hsts-max-age; ignored",
                            super::PREFIX,
                            super::PREFIX
                        ));
                    }
                }
            }
        }
        if let Some(hsts) = &out.hsts
            && hsts.preload
            && !(hsts.include_subdomains && hsts.max_age >= Duration::from_secs(31_536_000))
        {
            // The preload list refuses such headers; sending one misleads.
            warnings.push(format!(
                "annotation {}hsts-preload: needs hsts-include-subdomains and an hsts-max-age of at least 1 year; preload left out",
                super::PREFIX
            ));
            out.hsts = out.hsts.map(|h| HstsAnnotations {
                preload: false,
                ..h
            });
        }
        out
    }
}

fn with_backend(
    backend: &mut Option<BackendTlsAnnotations>,
    apply: impl FnOnce(&mut BackendTlsAnnotations) -> Result<(), String>,
) -> Result<(), String> {
    match backend {
        Some(b) => apply(b),
        None => Err(format!(
            "needs {}backend-protocol: https or grpcs; ignored",
            super::PREFIX
        )),
    }
}

/// A Secret of the Ingress's own namespace.
fn secret_name(value: &str) -> Result<String, String> {
    if is_dns_label_or_subdomain(value) {
        Ok(value.to_owned())
    } else {
        Err("must be the name of a Secret in the Ingress's namespace; ignored".into())
    }
}

/// `NAME` or `NAMESPACE/NAME` (nginx-ingress writes the namespace).
fn qualified_secret_name(value: &str) -> Result<String, String> {
    let ok = match value.split_once('/') {
        Some((ns, name)) => is_dns_label_or_subdomain(ns) && is_dns_label_or_subdomain(name),
        None => is_dns_label_or_subdomain(value),
    };
    if ok {
        Ok(value.to_owned())
    } else {
        Err("must be a Secret's NAME or NAMESPACE/NAME; ignored".into())
    }
}

fn is_dns_label_or_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn warn(warnings: &mut Vec<String>, name: &str, value: &str, problem: &str) {
    warnings.push(format!(
        "annotation {}{name}={value:?}: {problem}",
        super::PREFIX
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(pairs: &[(&str, &str)], protocol: Option<TlsProtocol>) -> (IngressTls, Vec<String>) {
        let mut gathered = TlsAnnotations::default();
        for (name, value) in pairs {
            assert!(gathered.take(name, value), "{name} is a TLS annotation");
        }
        let mut warnings = Vec::new();
        let out = gathered.resolve(protocol, &mut warnings);
        (out, warnings)
    }

    #[test]
    fn backend_tls_options_refine_an_https_backend_protocol() {
        let pairs = [
            ("backend-tls-server-name", "API.internal"),
            ("backend-tls-ca-secret", "api-ca"),
        ];
        let (out, w) = resolve(&pairs, Some(TlsProtocol::Https));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            out.backend,
            Some(BackendTlsAnnotations {
                protocol: TlsProtocol::Https,
                server_name: Some("api.internal".into()),
                ca_secret: Some("api-ca".into()),
                insecure_skip_verify: false,
            })
        );
        // Without an HTTPS protocol they are dropped, each with a warning.
        let (out, w) = resolve(&pairs, None);
        assert_eq!(out.backend, None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|w| w.contains("backend-protocol")), "{w:?}");
    }

    #[test]
    fn skipping_verification_drops_the_ca() {
        let pairs = [
            ("backend-tls-ca-secret", "api-ca"),
            ("backend-tls-insecure-skip-verify", "true"),
        ];
        let (out, w) = resolve(&pairs, Some(TlsProtocol::Grpcs));
        let backend = out.backend.unwrap();
        assert!(backend.insecure_skip_verify);
        assert_eq!(backend.ca_secret, None);
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn client_auth_needs_its_secret() {
        let (out, w) = resolve(
            &[
                ("auth-tls-secret", "certs/client-ca"),
                ("auth-tls-verify-client", "optional"),
                ("auth-tls-error-status", "403"),
            ],
            None,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            out.client_auth,
            Some(ClientAuthAnnotations {
                secret: "certs/client-ca".into(),
                optional: true,
                error_status: Some(403),
            })
        );
        let (out, w) = resolve(
            &[
                ("auth-tls-verify-client", "on"),
                ("auth-tls-error-status", "500"),
            ],
            None,
        );
        assert_eq!(out.client_auth, None);
        assert_eq!(w.len(), 2, "a bad status and a missing secret: {w:?}");
    }

    #[test]
    fn hsts_preload_needs_what_the_preload_list_needs() {
        let (out, w) = resolve(&[("hsts-max-age", "3600"), ("hsts-preload", "true")], None);
        assert_eq!(
            out.hsts,
            Some(HstsAnnotations {
                max_age: Duration::from_secs(3600),
                include_subdomains: false,
                preload: false,
            })
        );
        assert_eq!(w.len(), 1, "{w:?}");
        let (out, w) = resolve(
            &[
                ("hsts-max-age", "31536000"),
                ("hsts-include-subdomains", "true"),
                ("hsts-preload", "true"),
            ],
            None,
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(out.hsts.unwrap().preload);
        let (out, w) = resolve(&[("hsts-preload", "true")], None);
        assert_eq!(out.hsts, None);
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn invalid_values_are_warned() {
        let (out, w) = resolve(
            &[
                ("ssl-passthrough", "yes"),
                ("auth-tls-secret", "Not A Name"),
                ("hsts-max-age", "forever"),
            ],
            None,
        );
        assert_eq!(out, IngressTls::default());
        assert_eq!(w.len(), 3, "{w:?}");
    }
}
