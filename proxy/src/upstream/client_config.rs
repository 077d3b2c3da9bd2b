//! A backend's `tls` settings compiled into a rustls `ClientConfig` (ring):
//! webpki verification against `ca` or the system trust store, or none at all
//! when `insecure_skip_verify` says so; ALPN; a client certificate.

use crate::table::{BackendTls, Certificate, trust_anchors};
use crate::tls::InsecureAnyCertificate;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// `system_roots` is called only when the settings need the system store.
pub fn client_config(
    tls: &BackendTls,
    client_certificate: Option<&Certificate>,
    system_roots: impl FnOnce() -> Result<Arc<RootCertStore>, String>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InsecureAnyCertificate::new(
                provider.clone(),
            )))
    } else {
        let roots = match &tls.ca {
            Some(pem) => Arc::new(trust_anchors(pem).map_err(|e| format!("ca: {e}"))?),
            None => system_roots()?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("certificate verification: {e}"))?;
        builder.with_webpki_verifier(verifier)
    };
    let mut config = match client_certificate {
        Some(cert) => {
            let (chain, key) = certificate_and_key(cert)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = tls.alpn.iter().map(|p| p.id().to_vec()).collect();
    Ok(Arc::new(config))
}

fn certificate_and_key(
    cert: &Certificate,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client_certificate chain_pem: {e}"))?;
    if chain.is_empty() {
        return Err("client_certificate chain_pem holds no certificate".into());
    }
    // The key's own error text could quote key material: only say it failed.
    let key = PrivateKeyDer::from_pem_slice(cert.private_key.expose().as_bytes())
        .map_err(|_| "client_certificate private_key is not a PEM private key".to_owned())?;
    Ok((chain, key))
}

/// The system trust store (rustls-native-certs: the OS's bundle, or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), read once per process.
pub fn load_system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "the system trust store has no usable certificate ({ignored} unusable; {}); set `ca`",
            if errors.is_empty() {
                "no error reported".to_owned()
            } else {
                errors.join("; ")
            }
        ));
    }
    tracing::debug!(added, ignored, "system trust store read");
    Ok(Arc::new(roots))
}
