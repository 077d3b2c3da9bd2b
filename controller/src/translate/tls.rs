//! `spec.tls` → certificates from `kubernetes.io/tls` Secrets in the Ingress's
//! namespace, served by the HTTPS listener by SNI. A rotated Secret is a new
//! table: the next handshake gets the new certificate.

use crate::snapshot::{CA_TYPE, ObjectKey, Snapshot};
use k8s_openapi::api::networking::v1::IngressTLS;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_proxy::table::{Certificate, PrivateKeyPem, RoutingTable, SourceRef};

pub fn add(
    snapshot: &Snapshot,
    namespace: &str,
    tls: &[IngressTLS],
    table: &mut RoutingTable,
    warnings: &mut Vec<String>,
) {
    for (i, entry) in tls.iter().enumerate() {
        let hosts: Vec<String> = entry.hosts.clone().unwrap_or_default();
        let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            warnings.push(format!(
                "spec.tls[{i}] names no Secret; its hosts get the default certificate"
            ));
            continue;
        };
        let key = ObjectKey::new(namespace, secret_name);
        let id = key.to_string();
        match load(snapshot, &key) {
            Ok((chain, private_key)) => {
                let cert = table.certificates.entry(id).or_insert_with(|| Certificate {
                    source: Some(SourceRef {
                        kind: "Secret".into(),
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                    }),
                    hosts: Vec::new(),
                    chain_pem: chain,
                    private_key,
                });
                cert.hosts
                    .extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
                cert.hosts.sort();
                cert.hosts.dedup();
            }
            Err(problem) => warnings.push(format!(
                "spec.tls[{i}]: {problem}; hosts {hosts:?} get the default certificate"
            )),
        }
    }
}

/// The PEM CA bundle (`ca.crt`) of Secret `key`: a `sluice.dev/ca` Secret, or a
/// `kubernetes.io/tls` one (cert-manager writes its issuer's CA there).
/// Checked to hold at least one certificate.
pub fn ca_bundle(snapshot: &Snapshot, key: &ObjectKey) -> Result<String, String> {
    let secret = snapshot
        .ca_secrets
        .get(key)
        .or_else(|| snapshot.secrets.get(key))
        .ok_or_else(|| {
            format!("Secret {key} not found (or not of type {CA_TYPE} or kubernetes.io/tls)")
        })?;
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .ok_or_else(|| format!("Secret {key} has no ca.crt"))?;
    let certs = CertificateDer::pem_slice_iter(&pem.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Secret {key}: ca.crt is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("Secret {key}: ca.crt holds no certificate"));
    }
    String::from_utf8(pem.0.clone()).map_err(|_| format!("Secret {key}: ca.crt is not text"))
}

/// Whether a rule's `host` is among `tls_hosts` (spec.tls hosts, lower-case),
/// directly or by a one-label `*.` wildcard. A rule without host is not: it
/// answers any name, most of which the certificates do not cover.
pub fn covers(tls_hosts: &[String], host: &str) -> bool {
    if host.is_empty() {
        return false;
    }
    let parent = host.split_once('.').map(|(_, rest)| rest);
    tls_hosts.iter().any(|t| {
        t == host
            || t.strip_prefix("*.")
                .is_some_and(|suffix| Some(suffix) == parent && !host.starts_with("*."))
    })
}

fn load(snapshot: &Snapshot, key: &ObjectKey) -> Result<(String, PrivateKeyPem), String> {
    let secret = snapshot
        .secrets
        .get(key)
        .ok_or_else(|| format!("Secret {key} not found (or not of type kubernetes.io/tls)"))?;
    let data = secret.data.as_ref();
    let field = |name: &str| {
        data.and_then(|d| d.get(name))
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("Secret {key} has no {name}"))
    };
    let chain = field("tls.crt")?;
    let private_key = field("tls.key")?;
    let certs = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Secret {key}: tls.crt is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("Secret {key}: tls.crt holds no certificate"));
    }
    PrivateKeyDer::from_pem_slice(&private_key)
        .map_err(|e| format!("Secret {key}: tls.key holds no usable private key: {e}"))?;
    let chain =
        String::from_utf8(chain).map_err(|_| format!("Secret {key}: tls.crt is not text"))?;
    let private_key =
        String::from_utf8(private_key).map_err(|_| format!("Secret {key}: tls.key is not text"))?;
    Ok((chain, PrivateKeyPem::new(private_key)))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn tls_hosts_cover_exact_names_and_one_label_wildcards() {
        let hosts = vec![
            "shop.example.com".to_owned(),
            "*.apps.example.com".to_owned(),
        ];
        assert!(covers(&hosts, "shop.example.com"));
        assert!(covers(&hosts, "a.apps.example.com"));
        assert!(!covers(&hosts, "a.b.apps.example.com"));
        assert!(!covers(&hosts, "apps.example.com"));
        assert!(!covers(&hosts, "other.example.com"));
        assert!(!covers(&hosts, ""), "a rule for any host is not covered");
        let wild = vec!["*.example.com".to_owned()];
        assert!(covers(&wild, "*.example.com"), "the same wildcard");
    }
}
