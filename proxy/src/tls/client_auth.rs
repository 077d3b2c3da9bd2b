//! Client certificates (mTLS): a table's `ClientAuth` compiled into the rustls
//! verifier used at the handshake, and the judgement of a connection's chain.
//!
//! - `on_failure: alert`: rustls's `WebPkiClientVerifier` checks the chain at
//!   the handshake, so a bad or (when required) missing certificate fails it.
//! - `on_failure: {status}`: the handshake accepts any chain (its handshake
//!   signature is still checked, so a client cannot present a certificate whose
//!   key it does not hold); the chain is verified against the CA right after
//!   the handshake and a failure answers every request with the status.
//!
//! Session resumption restores the chain of the first handshake without
//! verifying it again, so a session may only resume under the same policy:
//! `key` identifies it (mode, failure handling, CA certificates) and each key
//! gets its own ticket keys and session cache (see `server_config.rs`).

use crate::table::{ClientAuth, ClientAuthMode, OnFailure};
use http::StatusCode;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// A compiled `ClientAuth`.
pub struct ClientAuthPolicy {
    /// Given to rustls for the handshake.
    pub handshake: Arc<dyn ClientCertVerifier>,
    /// Verifies the chain after the handshake (`on_failure: {status}` only).
    after: Option<Arc<dyn ClientCertVerifier>>,
    mode: ClientAuthMode,
    on_failure: Option<StatusCode>,
    /// Sessions resume only between configurations with the same key.
    pub key: [u8; 32],
}

/// How a connection's client certificate was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A certificate chaining to the CA.
    Success,
    /// No certificate.
    None,
    /// A certificate that does not verify, and why.
    Failed(&'static str),
}

impl Verdict {
    /// The `ssl-client-verify` value (nginx's `$ssl_client_verify`).
    pub fn header_text(&self) -> String {
        match self {
            Self::Success => "SUCCESS".into(),
            Self::None => "NONE".into(),
            Self::Failed(reason) => format!("FAILED:{reason}"),
        }
    }
}

/// A connection's verdict, and the status its requests get instead of being
/// served (`on_failure: {status}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub verdict: Verdict,
    pub reject: Option<StatusCode>,
}

impl ClientAuthPolicy {
    pub fn compile(auth: &ClientAuth) -> Result<Self, String> {
        let cas = ca_certificates(&auth.ca)?;
        let mut roots = RootCertStore::empty();
        for (i, der) in cas.iter().enumerate() {
            roots
                .add(der.clone())
                .map_err(|e| format!("CA certificate {} is unusable: {e}", i + 1))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = |unauthenticated: bool| {
            let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let b = if unauthenticated {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| format!("cannot verify client certificates with this CA: {e}"))
        };
        let (handshake, after, on_failure) = match auth.on_failure {
            OnFailure::Alert => (builder(auth.mode == ClientAuthMode::Optional)?, None, None),
            OnFailure::Status(code) => {
                let status = StatusCode::from_u16(code)
                    .ok()
                    .filter(StatusCode::is_client_error)
                    .ok_or_else(|| format!("on_failure status {code} is not a 4xx"))?;
                let verify = builder(true)?;
                let any: Arc<dyn ClientCertVerifier> = Arc::new(AnySignedChain(verify.clone()));
                (any, Some(verify), Some(status))
            }
        };
        Ok(Self {
            handshake,
            after,
            mode: auth.mode,
            on_failure,
            key: policy_key(auth, &cas),
        })
    }

    /// Judges the chain a client presented (from the handshake, or restored by
    /// resumption under this same policy).
    pub fn judge(&self, chain: Option<&[CertificateDer<'_>]>, now: UnixTime) -> Judged {
        let verdict = match chain.and_then(<[_]>::split_first) {
            None => Verdict::None,
            Some((leaf, intermediates)) => match &self.after {
                // rustls verified it during the handshake.
                None => Verdict::Success,
                Some(verify) => match verify.verify_client_cert(leaf, intermediates, now) {
                    Ok(_) => Verdict::Success,
                    Err(e) => Verdict::Failed(reason(&e)),
                },
            },
        };
        let failed = match verdict {
            Verdict::Success => false,
            Verdict::None => self.mode == ClientAuthMode::Require,
            Verdict::Failed(_) => true,
        };
        Judged {
            reject: self.on_failure.filter(|_| failed),
            verdict,
        }
    }
}

/// The certificates of a PEM bundle; at least one, all parsable.
pub fn ca_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA bundle is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    for (i, der) in certs.iter().enumerate() {
        webpki_anchor(der).map_err(|e| format!("CA certificate {} does not parse: {e}", i + 1))?;
    }
    Ok(certs)
}

/// What is wrong with a `ClientAuth`, for `check` (field, message).
pub fn problems(auth: &ClientAuth) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Err(e) = ca_certificates(&auth.ca) {
        out.push(("ca", e));
    }
    if let OnFailure::Status(code) = auth.on_failure
        && !(400..=499).contains(&code)
    {
        out.push((
            "on_failure.status",
            format!("{code} is not a client error (400–499)"),
        ));
    }
    out
}

fn webpki_anchor(der: &CertificateDer<'_>) -> Result<(), String> {
    let mut store = RootCertStore::empty();
    store.add(der.clone()).map_err(|e| e.to_string())
}

/// SHA-256 over what decides whether a chain is accepted and how.
fn policy_key(auth: &ClientAuth, cas: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sluice client auth v1\0");
    ctx.update(&[match auth.mode {
        ClientAuthMode::Require => 1,
        ClientAuthMode::Optional => 2,
    }]);
    match auth.on_failure {
        OnFailure::Alert => ctx.update(&[0]),
        OnFailure::Status(code) => {
            ctx.update(&[1]);
            ctx.update(&code.to_be_bytes());
        }
    }
    for der in cas {
        ctx.update(&u64::try_from(der.len()).unwrap_or(u64::MAX).to_be_bytes());
        ctx.update(der.as_ref());
    }
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// A short reason for `ssl-client-verify: FAILED:<reason>` and logs.
fn reason(e: &rustls::Error) -> &'static str {
    let rustls::Error::InvalidCertificate(e) = e else {
        return "invalid certificate";
    };
    match e {
        CertificateError::UnknownIssuer => "unknown issuer",
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not yet valid"
        }
        CertificateError::Revoked => "certificate revoked",
        CertificateError::BadEncoding => "bad encoding",
        CertificateError::BadSignature => "bad signature",
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "not for client authentication"
        }
        _ => "invalid certificate",
    }
}

/// Asks for a certificate, accepts any chain, and checks the handshake
/// signatures with the chain's key (`on_failure: {status}`: the chain itself is
/// judged after the handshake).
#[derive(Debug)]
struct AnySignedChain(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AnySignedChain {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A CA and certificates it signs, for tests.
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    pub struct Ca {
        pub pem: String,
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        pub fn new(name: &str) -> Self {
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let issuer =
                CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            Self {
                pem: issuer.pem(),
                issuer,
            }
        }

        /// A client certificate: its chain (leaf only) and key.
        pub fn client(
            &self,
            cn: &str,
            serial: &[u8],
        ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Acme, Inc.");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.serial_number = Some(SerialNumber::from_slice(serial));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &*self.issuer).unwrap();
            let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            (vec![cert.der().clone()], key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Ca;
    use super::*;

    fn auth(ca: &Ca, mode: ClientAuthMode, on_failure: OnFailure) -> ClientAuth {
        ClientAuth {
            ca: ca.pem.clone(),
            mode,
            on_failure,
        }
    }

    #[test]
    fn status_mode_judges_the_chain_after_the_handshake() {
        let (ours, theirs) = (Ca::new("ours"), Ca::new("theirs"));
        let policy = ClientAuthPolicy::compile(&auth(
            &ours,
            ClientAuthMode::Require,
            OnFailure::Status(403),
        ))
        .unwrap();
        let now = UnixTime::now();
        let (good, _) = ours.client("alice", &[1]);
        let (bad, _) = theirs.client("mallory", &[2]);
        assert_eq!(
            policy.judge(Some(&good), now),
            Judged {
                verdict: Verdict::Success,
                reject: None
            }
        );
        assert_eq!(
            policy.judge(Some(&bad), now),
            Judged {
                verdict: Verdict::Failed("unknown issuer"),
                reject: Some(StatusCode::FORBIDDEN)
            }
        );
        assert_eq!(
            policy.judge(None, now).reject,
            Some(StatusCode::FORBIDDEN),
            "required"
        );
        let optional = ClientAuthPolicy::compile(&auth(
            &ours,
            ClientAuthMode::Optional,
            OnFailure::Status(496),
        ))
        .unwrap();
        assert_eq!(
            optional.judge(None, now),
            Judged {
                verdict: Verdict::None,
                reject: None
            }
        );
        assert_eq!(
            optional.judge(Some(&bad), now).reject.map(|s| s.as_u16()),
            Some(496)
        );
        assert_eq!(
            Verdict::Failed("unknown issuer").header_text(),
            "FAILED:unknown issuer"
        );
    }

    #[test]
    fn the_key_changes_with_anything_that_decides_acceptance() {
        let (a, b) = (Ca::new("a"), Ca::new("b"));
        let key = |auth: ClientAuth| ClientAuthPolicy::compile(&auth).unwrap().key;
        let base = key(auth(&a, ClientAuthMode::Require, OnFailure::Alert));
        assert_eq!(
            base,
            key(auth(&a, ClientAuthMode::Require, OnFailure::Alert))
        );
        for other in [
            auth(&b, ClientAuthMode::Require, OnFailure::Alert),
            auth(&a, ClientAuthMode::Optional, OnFailure::Alert),
            auth(&a, ClientAuthMode::Require, OnFailure::Status(403)),
        ] {
            assert_ne!(base, key(other));
        }
    }

    #[test]
    fn unusable_bundles_are_named() {
        let problems = |ca: &str, on_failure| {
            problems(&ClientAuth {
                ca: ca.into(),
                mode: ClientAuthMode::Require,
                on_failure,
            })
        };
        assert_eq!(
            problems("", OnFailure::Alert)[0].1,
            "the CA bundle holds no certificate"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let p = problems(garbage, OnFailure::Status(500));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].1.contains("does not parse"), "{p:?}");
        assert_eq!(p[1].0, "on_failure.status");
        assert!(problems(&Ca::new("x").pem, OnFailure::Status(495)).is_empty());
        assert!(
            ClientAuthPolicy::compile(&ClientAuth {
                ca: String::new(),
                mode: ClientAuthMode::Require,
                on_failure: OnFailure::Alert
            })
            .is_err()
        );
    }
}
