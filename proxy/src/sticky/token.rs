//! Cookie values. An endpoint's id is the first bytes of HMAC-SHA256(key,
//! backend id, endpoint address): opaque, stable for a given key, and not
//! computable without the key. Insert cookies with `max_idle`/`max_life` also
//! carry first- and last-seen times (seconds since the Unix epoch) and a MAC
//! over them, so a client cannot extend its session.
//!
//! Layout, URL-safe base64 without padding: `id` (9 bytes, 12 characters), or
//! `id | first (4) | last (4) | tag (10)` (27 bytes, 36 characters).

use crate::table::SecretText;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

pub const ID_LEN: usize = 9;
pub type EndpointId = [u8; ID_LEN];
/// Characters of an encoded id.
pub const ID_TEXT_LEN: usize = 12;
const TAG_LEN: usize = 10;
const STAMPED_LEN: usize = ID_LEN + 4 + 4 + TAG_LEN;
const STAMPED_TEXT_LEN: usize = 36;

/// When a session was pinned and last seen, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    pub first: u32,
    pub last: u32,
}

pub struct MacKey(hmac::Key);

impl MacKey {
    pub fn new(secret: &SecretText) -> Self {
        Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            secret.expose().as_bytes(),
        ))
    }

    pub fn endpoint_id(&self, backend: &str, address: &str) -> EndpointId {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"sluice sticky endpoint\0");
        ctx.update(backend.as_bytes());
        ctx.update(b"\0");
        ctx.update(address.as_bytes());
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&ctx.sign().as_ref()[..ID_LEN]);
        id
    }

    fn tag(&self, cookie: &str, id: &EndpointId, stamps: Stamps) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"sluice sticky stamps\0");
        ctx.update(cookie.as_bytes());
        ctx.update(b"\0");
        ctx.update(id);
        ctx.update(&stamps.first.to_be_bytes());
        ctx.update(&stamps.last.to_be_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&ctx.sign().as_ref()[..TAG_LEN]);
        tag
    }

    /// Whether `parsed`'s stamps were signed with this key for `cookie`.
    pub fn verify(&self, cookie: &str, parsed: &Parsed) -> bool {
        match parsed.stamped {
            None => true,
            Some((stamps, tag)) => constant_time_eq(&self.tag(cookie, &parsed.id, stamps), &tag),
        }
    }
}

/// A cookie value of the right shape; stamps still unverified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub id: EndpointId,
    pub stamped: Option<(Stamps, [u8; TAG_LEN])>,
}

pub fn encode_id(id: &EndpointId) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The value of a stamped cookie, signed with `key`.
pub fn encode_stamped(key: &MacKey, cookie: &str, id: &EndpointId, stamps: Stamps) -> String {
    let mut raw = [0u8; STAMPED_LEN];
    raw[..ID_LEN].copy_from_slice(id);
    raw[ID_LEN..ID_LEN + 4].copy_from_slice(&stamps.first.to_be_bytes());
    raw[ID_LEN + 4..ID_LEN + 8].copy_from_slice(&stamps.last.to_be_bytes());
    raw[ID_LEN + 8..].copy_from_slice(&key.tag(cookie, id, stamps));
    URL_SAFE_NO_PAD.encode(raw)
}

/// Reads a value of the expected shape; anything else is `None`. The length is
/// checked before decoding, so hostile values cost nothing.
pub fn parse(value: &str, stamped: bool) -> Option<Parsed> {
    if stamped {
        if value.len() != STAMPED_TEXT_LEN {
            return None;
        }
        let mut raw = [0u8; STAMPED_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(value.as_bytes(), &mut raw)
            .ok()?;
        if n != STAMPED_LEN {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&raw[..ID_LEN]);
        let word = |at: usize| u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let stamps = Stamps {
            first: word(ID_LEN),
            last: word(ID_LEN + 4),
        };
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&raw[ID_LEN + 8..]);
        Some(Parsed {
            id,
            stamped: Some((stamps, tag)),
        })
    } else {
        parse_id(value).map(|id| Parsed { id, stamped: None })
    }
}

pub fn parse_id(value: &str) -> Option<EndpointId> {
    if value.len() != ID_TEXT_LEN {
        return None;
    }
    let mut id = [0u8; ID_LEN];
    let n = URL_SAFE_NO_PAD
        .decode_slice(value.as_bytes(), &mut id)
        .ok()?;
    (n == ID_LEN).then_some(id)
}

/// Compares without an early exit, so timing does not reveal how much of a
/// forged tag was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> MacKey {
        MacKey::new(&SecretText::new(text.into()))
    }

    #[test]
    fn ids_depend_on_key_backend_and_address_only() {
        let k = key("0123456789abcdef0123");
        let id = k.endpoint_id("shop", "10.0.0.1:80");
        assert_eq!(
            id,
            key("0123456789abcdef0123").endpoint_id("shop", "10.0.0.1:80")
        );
        assert_ne!(id, k.endpoint_id("shop", "10.0.0.2:80"));
        assert_ne!(id, k.endpoint_id("cart", "10.0.0.1:80"));
        assert_ne!(
            id,
            key("another-key-0123456").endpoint_id("shop", "10.0.0.1:80")
        );
        // Separators keep ("a", "b:1") and ("a\0b", ":1")-like splits apart.
        assert_ne!(k.endpoint_id("a", "b:1"), k.endpoint_id("ab", ":1"));
        let text = encode_id(&id);
        assert_eq!(text.len(), ID_TEXT_LEN);
        assert!(!text.contains("10.0.0.1"));
        assert_eq!(parse(&text, false).map(|p| p.id), Some(id));
    }

    #[test]
    fn stamped_values_verify_only_untouched_and_under_their_key() {
        let k = key("0123456789abcdef0123");
        let id = k.endpoint_id("shop", "10.0.0.1:80");
        let stamps = Stamps {
            first: 1_700_000_000,
            last: 1_700_000_100,
        };
        let value = encode_stamped(&k, "SRV", &id, stamps);
        assert_eq!(value.len(), STAMPED_TEXT_LEN);
        let parsed = parse(&value, true).unwrap();
        assert_eq!(parsed.id, id);
        assert_eq!(parsed.stamped.unwrap().0, stamps);
        assert!(k.verify("SRV", &parsed));
        assert!(!k.verify("OTHER", &parsed), "bound to the cookie name");
        assert!(!key("another-key-0123456").verify("SRV", &parsed));
        // Moving the last-seen time forward breaks the tag.
        let forged = Parsed {
            stamped: Some((
                Stamps {
                    last: stamps.last + 3600,
                    ..stamps
                },
                parsed.stamped.unwrap().1,
            )),
            ..parsed
        };
        assert!(!k.verify("SRV", &forged));
        assert!(parse(&value, false).is_none(), "shape follows the settings");
        assert!(parse(&value[..35], true).is_none());
    }
}
