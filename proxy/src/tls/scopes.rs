//! A TLS listener's configurations, one per client-certificate scope: the
//! listener's own `client_auth` (scope 0) and each distinct `host_client_auth`
//! setting. The name a client sends (SNI) picks the scope: the exact name,
//! then a `*.` wildcard covering one label, then scope 0. Hosts with equal
//! settings share a scope, so a connection may serve all of them.
//!
//! Everything is built when the table is compiled; a handshake only looks up
//! the scope and hands its `ServerConfig` to rustls.

use super::TlsRuntime;
use super::certs::CertStore;
use super::client_auth::ClientAuthPolicy;
use super::server_config::{TlsOptions, server_config};
use crate::table::{ClientAuth, ListenerTls, validate_host};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::sync::Arc;

pub struct ListenerTlsConfigs {
    scopes: Box<[Scope]>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, usize>,
}

pub struct Scope {
    /// `None`: its client-certificate settings could not be used (warned), so
    /// its connections are refused rather than served without verification.
    pub config: Option<Arc<ServerConfig>>,
    pub client_auth: Option<Arc<ClientAuthPolicy>>,
}

impl ListenerTlsConfigs {
    /// Fails when the listener's TLS settings cannot be used at all.
    pub fn compile(
        listener: &str,
        settings: &ListenerTls,
        certs: Arc<CertStore>,
        options: &TlsOptions,
        runtime: &TlsRuntime,
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        let resume = settings.session_resumption;
        let plain = server_config(
            certs.clone(),
            options,
            None,
            resume.then_some(&runtime.resumption),
        )?;

        // Distinct settings, with the hosts naming each; the listener's first.
        let mut wanted: Vec<(Option<&ClientAuth>, Vec<&str>)> =
            vec![(settings.client_auth.as_ref(), Vec::new())];
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (host, auth) in &settings.host_client_auth {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            if let Err(e) = validate_host(&name) {
                warnings.push(format!(
                    "listener `{listener}` tls host_client_auth: {e}; the entry is ignored"
                ));
                continue;
            }
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut wildcard, parent.to_owned()),
                None => (&mut exact, name.clone()),
            };
            if map.contains_key(&key) {
                warnings.push(format!(
                    "listener `{listener}` tls host_client_auth: {host:?} is listed twice; the first is used"
                ));
                continue;
            }
            let ix = match wanted.iter().position(|(a, _)| *a == Some(auth)) {
                Some(ix) => ix,
                None => {
                    wanted.push((Some(auth), Vec::new()));
                    wanted.len() - 1
                }
            };
            wanted[ix].1.push(host);
            map.insert(key, ix);
        }

        let mut scopes = Vec::with_capacity(wanted.len());
        for (ix, (auth, hosts)) in wanted.iter().enumerate() {
            let Some(auth) = auth else {
                scopes.push(Scope {
                    config: Some(plain.clone()),
                    client_auth: None,
                });
                continue;
            };
            let built = ClientAuthPolicy::compile(auth).and_then(|policy| {
                let resumption = match resume {
                    true => Some(runtime.policy_resumption.get(&policy.key)?),
                    false => None,
                };
                let verifier = Some(policy.handshake.clone());
                let config = server_config(certs.clone(), options, verifier, resumption.as_ref())?;
                Ok((config, policy))
            });
            scopes.push(match built {
                Ok((config, policy)) => Scope {
                    config: Some(config),
                    client_auth: Some(Arc::new(policy)),
                },
                Err(e) => {
                    warnings.push(if ix == 0 {
                        format!(
                            "listener `{listener}` tls client_auth: {e}; its connections are refused"
                        )
                    } else {
                        format!(
                            "listener `{listener}` tls host_client_auth {hosts:?}: {e}; their connections are refused"
                        )
                    });
                    Scope {
                        config: None,
                        client_auth: None,
                    }
                }
            });
        }
        Ok(Self {
            scopes: scopes.into(),
            exact,
            wildcard,
        })
    }

    /// The scope of a name (SNI, or a request's `Host` without port), any case;
    /// `None` (no SNI) is the listener's.
    pub fn scope_of(&self, name: Option<&str>) -> usize {
        let Some(name) = name else {
            return 0;
        };
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return 0;
        }
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(&ix) = self.exact.get(name) {
            return ix;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }

    pub fn scope(&self, ix: usize) -> &Scope {
        // Indexes come from `scope_of`; the first scope always exists.
        self.scopes.get(ix).unwrap_or(&self.scopes[0])
    }

    /// Whether names map to more than one scope (so `Host` must be compared
    /// with the connection's).
    pub fn has_host_scopes(&self) -> bool {
        self.scopes.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::super::client_auth::testing::Ca;
    use super::super::server_config::tests::handshake;
    use super::*;
    use crate::table::{Certificate, ClientAuthMode, OnFailure, PrivateKeyPem};
    use rustls::{ClientConfig, HandshakeKind};
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    fn certs(runtime: &TlsRuntime) -> Arc<CertStore> {
        let made = rcgen::generate_simple_self_signed(vec!["*.test".to_owned()]).unwrap();
        let cert = Certificate {
            source: None,
            hosts: Vec::new(),
            chain_pem: made.cert.pem(),
            private_key: PrivateKeyPem::new(made.signing_key.serialize_pem()),
        };
        let certs = BTreeMap::from([("any".to_owned(), cert)]);
        let mut warnings = Vec::new();
        let now = SystemTime::now();
        Arc::new(CertStore::compile(
            &certs,
            None,
            &runtime.fallback,
            now,
            &mut warnings,
        ))
    }

    fn auth(ca: &Ca) -> ClientAuth {
        ClientAuth {
            ca: ca.pem.clone(),
            mode: ClientAuthMode::Require,
            on_failure: OnFailure::Alert,
        }
    }

    fn compile(runtime: &TlsRuntime, settings: &ListenerTls) -> (ListenerTlsConfigs, Vec<String>) {
        let mut warnings = Vec::new();
        let configs = ListenerTlsConfigs::compile(
            "web",
            settings,
            certs(runtime),
            &TlsOptions::default(),
            runtime,
            &mut warnings,
        )
        .unwrap();
        (configs, warnings)
    }

    #[test]
    fn names_pick_scopes_and_equal_settings_share_one() {
        let runtime = TlsRuntime::new().unwrap();
        let (a, b) = (Ca::new("a"), Ca::new("b"));
        let settings = ListenerTls {
            host_client_auth: BTreeMap::from([
                ("Secure.test".to_owned(), auth(&a)),
                ("*.partners.test".to_owned(), auth(&b)),
                ("also.test.".to_owned(), auth(&a)),
                ("bad name".to_owned(), auth(&a)),
                (
                    "broken.test".to_owned(),
                    ClientAuth {
                        ca: "x".into(),
                        ..auth(&a)
                    },
                ),
            ]),
            ..ListenerTls::default()
        };
        let (c, warnings) = compile(&runtime, &settings);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("\"bad name\""), "{warnings:?}");
        assert!(
            warnings[1].contains("[\"broken.test\"]") && warnings[1].contains("refused"),
            "{warnings:?}"
        );
        let secure = c.scope_of(Some("secure.test"));
        assert_ne!(secure, 0);
        assert_eq!(c.scope_of(Some("SECURE.test.")), secure);
        assert_eq!(
            c.scope_of(Some("also.test")),
            secure,
            "same settings, same scope"
        );
        let partners = c.scope_of(Some("x.partners.test"));
        assert!(partners != 0 && partners != secure);
        assert_eq!(c.scope_of(Some("x.y.partners.test")), 0, "one label");
        assert_eq!(c.scope_of(Some("public.test")), 0);
        assert_eq!(c.scope_of(None), 0);
        assert!(c.scope(0).client_auth.is_none() && c.scope(0).config.is_some());
        assert!(c.scope(secure).client_auth.is_some());
        let broken = c.scope_of(Some("broken.test"));
        assert!(
            c.scope(broken).config.is_none(),
            "refused, never unverified"
        );
        assert!(c.has_host_scopes());
        let (plain, _) = compile(&runtime, &ListenerTls::default());
        assert!(!plain.has_host_scopes());
    }

    fn client(ca: Option<&Ca>) -> ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::tls::InsecureAnyCertificate::ring()));
        match ca {
            Some(ca) => {
                let (chain, key) = ca.client("alice", &[1]);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        }
    }

    /// Handshakes (reading the TLS 1.3 tickets sent after it).
    fn connect(scope: &Scope, client: &ClientConfig) -> Result<HandshakeKind, rustls::Error> {
        let config = scope.config.as_ref().unwrap();
        let (mut s, mut c) = handshake(config, client.clone(), "secure.test")?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        Ok(s.handshake_kind().unwrap())
    }

    #[test]
    fn sessions_resume_only_under_the_same_client_certificate_policy() {
        let runtime = TlsRuntime::new().unwrap();
        let (a, b) = (Ca::new("a"), Ca::new("b"));
        let open = ListenerTls::default();
        let with = |ca: &Ca| ListenerTls {
            client_auth: Some(auth(ca)),
            ..ListenerTls::default()
        };
        let (open, _) = compile(&runtime, &open);
        let (by_a, _) = compile(&runtime, &with(&a));
        let (by_b, _) = compile(&runtime, &with(&b));
        // One client (one session store), with a certificate from CA a.
        let alice = client(Some(&a));
        assert_eq!(connect(open.scope(0), &alice), Ok(HandshakeKind::Full));
        assert_eq!(connect(open.scope(0), &alice), Ok(HandshakeKind::Resumed));
        // Same name, but a session made without client authentication is not
        // taken where it is asked for: the certificate is verified.
        assert_eq!(connect(by_a.scope(0), &alice), Ok(HandshakeKind::Full));
        assert_eq!(connect(by_a.scope(0), &alice), Ok(HandshakeKind::Resumed));
        // Another table with the same policy resumes it.
        let (again, _) = compile(&runtime, &with(&a));
        assert_eq!(connect(again.scope(0), &alice), Ok(HandshakeKind::Resumed));
        // Another CA verifies afresh, and refuses alice's certificate.
        assert!(connect(by_b.scope(0), &alice).is_err());
        // Without a certificate, a required policy refuses the handshake.
        assert!(connect(by_a.scope(0), &client(None)).is_err());

        let off = ListenerTls {
            session_resumption: false,
            ..with(&a)
        };
        let (off, _) = compile(&runtime, &off);
        let fresh = client(Some(&a));
        assert_eq!(connect(off.scope(0), &fresh), Ok(HandshakeKind::Full));
        assert_eq!(connect(off.scope(0), &fresh), Ok(HandshakeKind::Full));
        let (off, _) = compile(
            &runtime,
            &ListenerTls {
                session_resumption: false,
                ..ListenerTls::default()
            },
        );
        assert_eq!(connect(off.scope(0), &fresh), Ok(HandshakeKind::Full));
        assert_eq!(connect(off.scope(0), &fresh), Ok(HandshakeKind::Full));
    }
}
