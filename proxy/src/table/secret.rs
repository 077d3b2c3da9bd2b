//! Certificates, private keys and passwords in the table. Secrets are write-only:
//! `Debug` and serialisation (golden files, `/debug/table`, logs) never show
//! their bytes.

use super::SourceRef;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Names this certificate is served for (exact or `*.` wildcard).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// PEM: the leaf certificate first, then intermediates.
    pub chain_pem: String,
    pub private_key: PrivateKeyPem,
}

/// A private key in PEM.
pub type PrivateKeyPem = SecretText;

/// Text that is never shown (keys, passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn redacted(&self) -> String {
        format!("<redacted: {} bytes>", self.0.len())
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_never_show() {
        let key = PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n".into());
        assert!(!format!("{key:?}").contains("SECRETBYTES"));
        assert!(!serde_json::to_string(&key).unwrap().contains("SECRETBYTES"));
        assert_eq!(key.expose().len(), 40);
    }
}
