//! What hash-based algorithms hash: the client address (`source`), the path
//! (`uri`, optionally cut to `depth` directories and `len` characters, with the
//! query when `whole`), a query parameter (`url_param`), a header (`hdr`) or a
//! cookie. xxh3 with a fixed seed: the same key gives the same hash in every
//! process and every table version, so replicas and reloads agree.

use crate::compile::{RequestFacts, query_values};
use crate::table::{Balance, UriHash};
use http::HeaderName;
use http::header::COOKIE;
use std::net::IpAddr;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

pub enum HashKey {
    Source,
    Uri(UriHash),
    UrlParam(String),
    Header(HeaderName),
    Cookie(String),
}

impl HashKey {
    /// The key of a hash-based algorithm; `None` for the others.
    pub fn of(balance: &Balance) -> Option<Self> {
        Some(match balance {
            Balance::Source(_) => HashKey::Source,
            Balance::Uri(u) => HashKey::Uri(*u),
            Balance::UrlParam(p) => HashKey::UrlParam(p.name.clone()),
            Balance::Header(h) => HashKey::Header(h.name.to_header_name()),
            Balance::Cookie(c) => HashKey::Cookie(c.name.clone()),
            _ => return None,
        })
    }

    /// The request's hash, or `None` when it lacks the key (round robin then).
    pub fn hash(&self, facts: &RequestFacts<'_>) -> Option<u64> {
        match self {
            HashKey::Source => Some(hash_client(facts.client)),
            HashKey::Uri(options) => Some(hash_uri(facts.path, facts.query, options)),
            HashKey::UrlParam(name) => {
                let value = query_values(facts.query?, name).next()?;
                (!value.is_empty()).then(|| xxh3_64(value.as_bytes()))
            }
            HashKey::Header(name) => {
                let value = facts.headers.get(name)?.as_bytes();
                (!value.is_empty()).then(|| xxh3_64(value))
            }
            HashKey::Cookie(name) => {
                let value = cookie_value(facts.headers.get_all(COOKIE).iter(), name)?;
                (!value.is_empty()).then(|| xxh3_64(value))
            }
        }
    }
}

pub fn hash_client(client: IpAddr) -> u64 {
    match client {
        IpAddr::V4(v4) => xxh3_64(&v4.octets()),
        IpAddr::V6(v6) => xxh3_64(&v6.octets()),
    }
}

/// HAProxy's `balance uri`: `depth` counts slashes (depth 1 keeps `/a` of
/// `/a/b`), `len` counts bytes, and both stop at the first limit reached.
fn hash_uri(path: &str, query: Option<&str>, options: &UriHash) -> u64 {
    let mut end = path.len();
    if let Some(depth) = options.depth {
        let mut slashes = 0;
        if let Some(cut) = path.bytes().position(|b| {
            slashes += u32::from(b == b'/');
            slashes > depth
        }) {
            end = cut;
        }
    }
    if let Some(len) = options.len {
        end = end.min(len as usize);
    }
    let path_hash = xxh3_64(&path.as_bytes()[..end]);
    match query {
        Some(q) if options.whole && end == path.len() => xxh3_64_with_seed(q.as_bytes(), path_hash),
        _ => path_hash,
    }
}

/// The value of cookie `name` in `Cookie` headers (`a=1; b=2`).
fn cookie_value<'h>(
    headers: impl Iterator<Item = &'h http::HeaderValue>,
    name: &str,
) -> Option<&'h [u8]> {
    for header in headers {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii_start();
            if let Some(value) = pair
                .strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                return Some(value.trim_ascii_end());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(
        path: &str,
        query: Option<&str>,
        depth: Option<u32>,
        len: Option<u32>,
        whole: bool,
    ) -> u64 {
        let options = UriHash {
            depth,
            len,
            whole,
            ..UriHash::default()
        };
        hash_uri(path, query, &options)
    }

    #[test]
    fn uri_depth_and_len_cut_the_path() {
        let h = |p: &str| xxh3_64(p.as_bytes());
        assert_eq!(uri("/a/b/c", None, Some(1), None, false), h("/a"));
        assert_eq!(uri("/a/b/c", None, Some(2), None, false), h("/a/b"));
        assert_eq!(uri("/a/b/c", None, Some(9), None, false), h("/a/b/c"));
        assert_eq!(uri("/a/b/c", None, None, Some(3), false), h("/a/"));
        assert_eq!(uri("/a/b/c", None, Some(2), Some(2), false), h("/a"));
    }

    #[test]
    fn uri_whole_adds_the_query() {
        assert_ne!(
            uri("/a", Some("x=1"), None, None, true),
            uri("/a", Some("x=2"), None, None, true)
        );
        assert_eq!(
            uri("/a", Some("x=1"), None, None, false),
            uri("/a", Some("x=2"), None, None, false)
        );
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let v = [
            http::HeaderValue::from_static("session2=x; session=abc ; z=1"),
            http::HeaderValue::from_static("other=2"),
        ];
        assert_eq!(cookie_value(v.iter(), "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(v.iter(), "other"), Some(&b"2"[..]));
        assert_eq!(cookie_value(v.iter(), "sess"), None);
    }
}
