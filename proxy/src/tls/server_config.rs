//! A listener's rustls `ServerConfig`: protocol versions from a minimum, cipher
//! suites (ring's defaults unless named), ALPN, certificates by SNI from a
//! `CertStore`, client certificates, and session resumption (TLS 1.3 tickets
//! and TLS 1.2 session ids). The ticketer and the session cache are passed in,
//! because they belong to the process, not to one table: a swap must not end
//! resumption.
//!
//! A resumed session keeps the client certificate of its first handshake
//! without verifying it again, and rustls only checks that the SNI and suite
//! match. So configurations asking for client certificates never share ticket
//! keys or a session cache with others: each client-certificate policy has its
//! own (`PolicyResumption`), and a session made without client authentication,
//! or under another CA or mode, cannot resume where they are asked for.
//!
//! ring's default suites are the Mozilla "intermediate" set: TLS 1.3 AES-GCM and
//! ChaCha20-Poly1305, TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305, forward
//! secret and AEAD only.

use super::certs::CertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// The lowest protocol version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub min_version: MinVersion,
    /// IANA names (`TLS13_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`);
    /// empty: ring's defaults.
    pub cipher_suites: Vec<String>,
    /// Offered in this order; empty: `h2`, then `http/1.1`.
    pub alpn: Vec<Vec<u8>>,
}

/// What outlives tables: ticket keys (rotated by rustls every 6 hours, the
/// previous key still accepted) and the TLS 1.2 session cache.
#[derive(Clone)]
pub struct Resumption {
    pub ticketer: Arc<dyn ProducesTickets>,
    pub sessions: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    pub fn new() -> Result<Self, String> {
        Self::with_cache(64 * 1024)
    }

    /// `sessions`: TLS 1.2 sessions kept (rustls reserves room for them at once).
    fn with_cache(sessions: usize) -> Result<Self, String> {
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| format!("cannot make TLS ticket keys: {e}"))?;
        Ok(Self {
            ticketer,
            sessions: ServerSessionMemoryCache::new(sessions),
        })
    }
}

/// Resumption state per client-certificate policy (`ClientAuthPolicy::key`),
/// shared by every configuration with that policy, across tables. Held weakly:
/// the configurations of live tables keep it, and a policy no table uses any
/// more is forgotten (its sessions then make full handshakes).
#[derive(Default)]
pub struct PolicyResumption(Mutex<HashMap<[u8; 32], WeakResumption>>);

struct WeakResumption {
    ticketer: Weak<dyn ProducesTickets>,
    sessions: Weak<dyn StoresServerSessions>,
}

/// TLS 1.2 sessions kept per client-certificate policy: smaller than the
/// process-wide cache, since a table may hold many policies.
const POLICY_SESSIONS: usize = 4096;

impl PolicyResumption {
    pub fn get(&self, key: &[u8; 32]) -> Result<Resumption, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, r| r.ticketer.strong_count() > 0);
        if let Some(r) = map.get(key)
            && let (Some(ticketer), Some(sessions)) = (r.ticketer.upgrade(), r.sessions.upgrade())
        {
            return Ok(Resumption { ticketer, sessions });
        }
        let fresh = Resumption::with_cache(POLICY_SESSIONS)?;
        map.insert(
            *key,
            WeakResumption {
                ticketer: Arc::downgrade(&fresh.ticketer),
                sessions: Arc::downgrade(&fresh.sessions),
            },
        );
        Ok(fresh)
    }
}

/// `client_auth`: the verifier of client certificates (none: not asked for).
/// `resumption`: `None` turns it off (every handshake is a full one).
pub fn server_config(
    certs: Arc<CertStore>,
    options: &TlsOptions,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
    resumption: Option<&Resumption>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider(&options.cipher_suites)?;
    let versions: &[&'static SupportedProtocolVersion] = match options.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("the cipher suites do not fit the protocol versions: {e}"))?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = if options.alpn.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        options.alpn.clone()
    };
    match resumption {
        Some(r) => {
            config.ticketer = r.ticketer.clone();
            config.session_storage = r.sessions.clone();
            // One ticket per handshake, as OpenSSL sends after a resumption:
            // every connection leaves the client a ticket for its next one,
            // and a resumed handshake costs both sides one ticket less.
            config.send_tls13_tickets = 1;
        }
        None => {
            // The builder's ticketer makes no tickets; TLS 1.3 stateful tickets
            // would still come from the session storage.
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    // The server's preference decides, so a client cannot pick the weakest.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// What is wrong with a list of suite names (unknown names), for `check`.
pub fn suite_problems(names: &[String]) -> Vec<String> {
    match provider(names) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}

/// ring's provider, limited to the named suites (in the given order).
fn provider(names: &[String]) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let mut suites = Vec::with_capacity(names.len());
    for name in names {
        let suite = rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .find(|s| s.suite().as_str() == Some(name.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = rustls::crypto::ring::ALL_CIPHER_SUITES
                    .iter()
                    .filter_map(|s| s.suite().as_str())
                    .collect();
                format!(
                    "unknown cipher suite {name:?} (known: {})",
                    known.join(", ")
                )
            })?;
        suites.push(*suite);
    }
    provider.cipher_suites = suites;
    Ok(provider)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::table::{Certificate, PrivateKeyPem};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConnection};
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    fn store() -> Arc<CertStore> {
        let made = rcgen::generate_simple_self_signed(vec!["shop.test".to_owned()]).unwrap();
        let cert = Certificate {
            source: None,
            hosts: Vec::new(),
            chain_pem: made.cert.pem(),
            private_key: PrivateKeyPem::new(made.signing_key.serialize_pem()),
        };
        let certs = BTreeMap::from([("shop".to_owned(), cert)]);
        let fallback = super::super::certs::self_signed().unwrap();
        let mut warnings = Vec::new();
        let s = CertStore::compile(&certs, None, &fallback, SystemTime::now(), &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        Arc::new(s)
    }

    pub(crate) fn client(
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> ClientConfig {
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    crate::tls::InsecureAnyCertificate::ring(),
                ))
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// Runs a handshake in memory; the server's connection after it.
    pub(crate) fn handshake(
        server: &Arc<ServerConfig>,
        client: ClientConfig,
        sni: &str,
    ) -> Result<(ServerConnection, ClientConnection), rustls::Error> {
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(server.clone())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok((s, c));
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn sni_chooses_the_certificate_and_alpn_prefers_h2() {
        let resumption = Resumption::new().unwrap();
        let certs = store();
        let server = server_config(
            certs.clone(),
            &TlsOptions::default(),
            None,
            Some(&resumption),
        )
        .unwrap();
        let all = [&rustls::version::TLS13, &rustls::version::TLS12];
        let (s, c) = handshake(&server, client(&all, &[b"http/1.1", b"h2"]), "shop.test").unwrap();
        assert_eq!(s.server_name(), Some("shop.test"));
        assert_eq!(
            s.alpn_protocol(),
            Some(&b"h2"[..]),
            "the server's order wins"
        );
        let sent = &c.peer_certificates().unwrap()[0];
        assert_eq!(sent, &certs.select(Some("shop.test")).cert[0]);
        assert_ne!(sent, &certs.select(None).cert[0], "not the default one");
        let (s, _) = handshake(&server, client(&all, &[b"http/1.1"]), "shop.test").unwrap();
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn tls12_clients_are_refused_when_the_minimum_is_tls13() {
        let resumption = Resumption::new().unwrap();
        let tls12 = [&rustls::version::TLS12];
        let open = server_config(store(), &TlsOptions::default(), None, Some(&resumption)).unwrap();
        let (s, _) = handshake(&open, client(&tls12, &[]), "shop.test").unwrap();
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        let strict = TlsOptions {
            min_version: MinVersion::Tls13,
            ..TlsOptions::default()
        };
        let strict = server_config(store(), &strict, None, Some(&resumption)).unwrap();
        assert!(handshake(&strict, client(&tls12, &[]), "shop.test").is_err());
    }

    #[test]
    fn cipher_suites_are_named_and_unknown_names_are_refused() {
        let resumption = Resumption::new().unwrap();
        let only = TlsOptions {
            cipher_suites: vec![
                "TLS13_CHACHA20_POLY1305_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into(),
            ],
            ..TlsOptions::default()
        };
        let server = server_config(store(), &only, None, Some(&resumption)).unwrap();
        let all = [&rustls::version::TLS13, &rustls::version::TLS12];
        let (s, _) = handshake(&server, client(&all, &[]), "shop.test").unwrap();
        assert_eq!(
            s.negotiated_cipher_suite().unwrap().suite().as_str(),
            Some("TLS13_CHACHA20_POLY1305_SHA256")
        );
        let bad = TlsOptions {
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_MD5".into()],
            ..TlsOptions::default()
        };
        let err = server_config(store(), &bad, None, Some(&resumption)).unwrap_err();
        assert!(err.contains("unknown cipher suite"), "{err}");
    }

    #[test]
    fn a_new_config_with_the_same_ticketer_resumes_sessions() {
        let resumption = Resumption::new().unwrap();
        let first =
            server_config(store(), &TlsOptions::default(), None, Some(&resumption)).unwrap();
        // Clones share the client's session store.
        let client = client(&[&rustls::version::TLS13], &[]);
        let (mut s, mut c) = handshake(&first, client.clone(), "shop.test").unwrap();
        assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Full));
        // TLS 1.3 tickets travel after the handshake.
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
        // A table swap builds a new config; resumption survives it.
        let second =
            server_config(store(), &TlsOptions::default(), None, Some(&resumption)).unwrap();
        let (s, _) = handshake(&second, client.clone(), "shop.test").unwrap();
        assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        // Another process's ticket keys cannot open it.
        let stranger = server_config(
            store(),
            &TlsOptions::default(),
            None,
            Some(&Resumption::new().unwrap()),
        )
        .unwrap();
        let (s, _) = handshake(&stranger, client, "shop.test").unwrap();
        assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Full));
    }
}
