//! The proxy's session keys: from `--session-key-file` (one key per line, the
//! first signs), else one random key per process, which keeps cookies valid only
//! until it exits and only on this replica.

use crate::table::{SecretText, parse_session_keys};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SessionKeys {
    keys: Arc<[SecretText]>,
    /// Made up at start: not shared with other replicas or restarts.
    generated: bool,
}

impl Default for SessionKeys {
    fn default() -> Self {
        Self::generate()
    }
}

impl SessionKeys {
    /// Keys given by the operator; the first signs.
    pub fn new(keys: Vec<SecretText>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no session key".into());
        }
        Ok(Self {
            keys: keys.into(),
            generated: false,
        })
    }

    /// Reads a key file (see [`parse_session_keys`]).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read session key file {}: {e}", path.display()))?;
        let keys = parse_session_keys(&text)
            .map_err(|e| format!("session key file {}: {e}", path.display()))?;
        Self::new(keys)
    }

    /// One random 256-bit key for this process.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        // The OS random source failing is not recoverable, and a fixed key
        // would be worse than none: fall back to the time-seeded generator.
        if SystemRandom::new().fill(&mut bytes).is_err() {
            for b in &mut bytes {
                *b = fastrand::u8(..);
            }
        }
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        Self {
            keys: vec![SecretText::new(text)].into(),
            generated: true,
        }
    }

    pub fn keys(&self) -> &[SecretText] {
        &self.keys
    }

    pub fn is_generated(&self) -> bool {
        self.generated
    }
}
