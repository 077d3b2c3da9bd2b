//! The table's certificates compiled into rustls `CertifiedKey`s and chosen by
//! SNI: the exact name, then a `*.` wildcard covering one label, then the
//! default certificate. Each certificate is checked when the table is compiled
//! (PEM, the key matches the leaf, the validity period, the names it covers);
//! a bad one is left out with a warning naming its source, so only its hosts
//! fall back to the default.

use crate::table::Certificate;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Certificates by the names they serve, and the one for everything else.
#[derive(Debug)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// One certificate, checked.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// DNS names in the leaf's subjectAltName (lower-case).
    names: Vec<String>,
}

impl CertStore {
    /// Compiles `certificates`; `default_id` names the one served when no name
    /// matches (else `fallback`, the process's self-signed certificate). `now`
    /// judges the validity periods.
    pub fn compile(
        certificates: &BTreeMap<String, Certificate>,
        default_id: Option<&str>,
        fallback: &Arc<CertifiedKey>,
        now: SystemTime,
        warnings: &mut Vec<String>,
    ) -> Self {
        let provider = rustls::crypto::ring::default_provider();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for (id, cert) in certificates {
            let what = match &cert.source {
                Some(source) => format!("certificate `{id}` ({source})"),
                None => format!("certificate `{id}`"),
            };
            let loaded = match load(cert, &provider, now, &what, warnings) {
                Ok(loaded) => loaded,
                Err(problem) => {
                    warnings.push(format!(
                        "{what}: {problem}; its hosts get the default certificate"
                    ));
                    continue;
                }
            };
            if default_id == Some(id.as_str()) {
                default = Some(loaded.key.clone());
            }
            let hosts: Vec<String> = if cert.hosts.is_empty() {
                loaded.names.clone()
            } else {
                cert.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            };
            for host in hosts {
                if !loaded.names.iter().any(|n| covers(n, &host)) {
                    warnings.push(format!(
                        "{what} does not cover {host:?} (its names: {:?}); clients will refuse it",
                        loaded.names
                    ));
                }
                let (map, name) = match host.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix.to_owned()),
                    None => (&mut exact, host.clone()),
                };
                if map.contains_key(&name) {
                    warnings.push(format!(
                        "{what}: {host:?} already has a certificate; the first (by id) is served"
                    ));
                    continue;
                }
                map.insert(name, loaded.key.clone());
            }
        }
        if let Some(id) = default_id
            && default.is_none()
        {
            warnings.push(format!(
                "default certificate `{id}` is missing or unusable; the built-in self-signed one is served"
            ));
        }
        Self {
            exact,
            wildcard,
            default: default.unwrap_or_else(|| fallback.clone()),
        }
    }

    /// The certificate for `server_name` (as the client sent it, any case).
    pub fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return key.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()))
    }
}

/// A self-signed certificate for when none is configured (made once per
/// process with rcgen, so a swap does not change it).
pub fn self_signed() -> Result<Arc<CertifiedKey>, String> {
    let made = rcgen::generate_simple_self_signed(vec!["sluice.invalid".to_owned()])
        .map_err(|e| format!("cannot make the default certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(vec![made.cert.der().clone()], key, &provider)
        .map(Arc::new)
        .map_err(|e| format!("cannot use the default certificate: {e}"))
}

fn load(
    cert: &Certificate,
    provider: &CryptoProvider,
    now: SystemTime,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Loaded, String> {
    let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the chain is not PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("the chain holds no certificate".into());
    };
    let (_, parsed) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    let names = dns_names(&parsed);
    let validity = parsed.validity();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if validity.not_after.timestamp() < now_secs {
        warnings.push(format!(
            "{what} expired on {}; it is still served",
            validity.not_after
        ));
    } else if validity.not_before.timestamp() > now_secs {
        warnings.push(format!(
            "{what} is not valid before {}; it is still served",
            validity.not_before
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(cert.private_key.expose().as_bytes())
        .map_err(|e| format!("the private key is not PEM (PKCS#8, PKCS#1 or SEC1): {e}"))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not belong to the leaf certificate".to_owned()
        }
        other => format!("the private key is unusable: {other}"),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
    })
}

/// DNS names of the subjectAltName extension (lower-case).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether certificate name `pattern` (possibly `*.x`) covers `host` (possibly
/// a wildcard itself, which needs the same wildcard).
fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => label != "*" && rest == suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{PrivateKeyPem, SourceRef};
    use rcgen::{CertificateParams, KeyPair};

    fn made(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn certificate(hosts: &[&str], (chain, key): (String, String)) -> Certificate {
        Certificate {
            source: Some(SourceRef {
                kind: "Secret".into(),
                namespace: "shop".into(),
                name: "tls".into(),
            }),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            chain_pem: chain,
            private_key: PrivateKeyPem::new(key),
        }
    }

    fn leaf_names(key: &CertifiedKey) -> Vec<String> {
        let (_, parsed) = X509Certificate::from_der(key.cert[0].as_ref()).unwrap();
        dns_names(&parsed)
    }

    fn store(certs: Vec<(&str, Certificate)>, default: Option<&str>) -> (CertStore, Vec<String>) {
        let certs: BTreeMap<String, Certificate> = certs
            .into_iter()
            .map(|(id, c)| (id.to_owned(), c))
            .collect();
        let mut warnings = Vec::new();
        let fallback = self_signed().unwrap();
        let s = CertStore::compile(&certs, default, &fallback, SystemTime::now(), &mut warnings);
        (s, warnings)
    }

    #[test]
    fn exact_names_beat_wildcards_which_beat_the_default() {
        let (s, warnings) = store(
            vec![
                (
                    "a",
                    certificate(
                        &[],
                        made(&["shop.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256),
                    ),
                ),
                (
                    "b",
                    certificate(&[], made(&["*.example.com"], &rcgen::PKCS_ED25519)),
                ),
                (
                    "c",
                    certificate(&[], made(&["other.test"], &rcgen::PKCS_ECDSA_P384_SHA384)),
                ),
            ],
            Some("c"),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let names = |sni: Option<&str>| leaf_names(&s.select(sni));
        assert_eq!(names(Some("SHOP.example.com.")), ["shop.example.com"]);
        assert_eq!(names(Some("cart.example.com")), ["*.example.com"]);
        assert_eq!(
            names(Some("a.b.example.com")),
            ["other.test"],
            "one label only"
        );
        assert_eq!(names(Some("example.com")), ["other.test"]);
        assert_eq!(names(None), ["other.test"], "no SNI: the default");
    }

    #[test]
    fn a_bad_certificate_degrades_only_its_hosts() {
        let good = certificate(&[], made(&["good.test"], &rcgen::PKCS_ECDSA_P256_SHA256));
        let (chain, _) = made(&["bad.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = made(&["x.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let mismatched = certificate(&[], (chain, other_key));
        let garbage = certificate(&["junk.test"], ("not pem".into(), "nor this".into()));
        let (s, warnings) = store(
            vec![
                ("good", good),
                ("mismatched", mismatched),
                ("garbage", garbage),
            ],
            None,
        );
        assert_eq!(leaf_names(&s.select(Some("good.test"))), ["good.test"]);
        assert_eq!(leaf_names(&s.select(Some("bad.test"))), ["sluice.invalid"]);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`mismatched` (Secret/shop/tls)")
                    && w.contains("does not belong to the leaf")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("`garbage`")),
            "{warnings:?}"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn uncovered_or_expired_names_warn() {
        let (s, warnings) = store(
            vec![(
                "one",
                certificate(
                    &["one.test", "nope.test"],
                    made(&["one.test"], &rcgen::PKCS_ED25519),
                ),
            )],
            None,
        );
        assert_eq!(leaf_names(&s.select(Some("one.test"))), ["one.test"]);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("does not cover \"nope.test\"")),
            "{warnings:?}"
        );

        let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let expired = (params.self_signed(&key).unwrap().pem(), key.serialize_pem());
        let (s, warnings) = store(vec![("old", certificate(&[], expired))], None);
        assert!(
            warnings.iter().any(|w| w.contains("expired")),
            "{warnings:?}"
        );
        assert_eq!(
            leaf_names(&s.select(Some("old.test"))),
            ["old.test"],
            "still served"
        );
    }

    #[test]
    fn the_first_certificate_for_a_name_wins() {
        let (s, warnings) = store(
            vec![
                (
                    "a",
                    certificate(
                        &[],
                        made(&["dup.test", "a.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
                    ),
                ),
                (
                    "b",
                    certificate(&[], made(&["dup.test"], &rcgen::PKCS_ED25519)),
                ),
            ],
            None,
        );
        assert_eq!(
            leaf_names(&s.select(Some("dup.test"))),
            ["dup.test", "a.test"]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn wildcard_coverage_follows_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("*.example.com", "*.example.com"));
    }
}
