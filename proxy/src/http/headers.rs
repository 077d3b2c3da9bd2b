//! Request and response header rewriting between client and backend.

use crate::table::ForwardedHeaders;
use crate::tls::client_auth::Verdict;
use crate::tls::client_cert::LeafFacts;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the backend learns of a client certificate (nginx-ingress's names;
/// HAProxy's `ssl_c_verify`, `ssl_c_s_dn`, `ssl_c_i_dn`, `ssl_c_serial`,
/// `ssl_c_sha256`-like fetches). Only the proxy sets them.
static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static SSL_CLIENT_SERIAL: HeaderName = HeaderName::from_static("ssl-client-serial");
static SSL_CLIENT_FINGERPRINT: HeaderName = HeaderName::from_static("ssl-client-fingerprint");

fn client_cert_names() -> [&'static HeaderName; 5] {
    [
        &SSL_CLIENT_VERIFY,
        &SSL_CLIENT_SUBJECT_DN,
        &SSL_CLIENT_ISSUER_DN,
        &SSL_CLIENT_SERIAL,
        &SSL_CLIENT_FINGERPRINT,
    ]
}

/// Removes client-certificate headers a client sent, on every listener, so a
/// backend can trust them.
pub fn strip_client_cert(headers: &mut HeaderMap) {
    let names = client_cert_names();
    let here = found(headers, &names);
    for (name, here) in names.into_iter().zip(here) {
        if here {
            headers.remove(name);
        }
    }
}

/// Which of `names` `headers` holds, in one pass over its names: messages
/// rarely carry any, and a hashed removal of each absent name costs more
/// than comparing the few names a message has.
fn found<const N: usize>(headers: &HeaderMap, names: &[&HeaderName; N]) -> [bool; N] {
    let mut here = [false; N];
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|n| *n == name) {
            here[i] = true;
        }
    }
    here
}

/// The client-certificate headers of one connection, built once at its
/// handshake and added to each of its requests.
#[derive(Debug, Clone)]
pub struct ClientCertHeaders(Box<[(HeaderName, HeaderValue)]>);

impl ClientCertHeaders {
    pub fn new(verdict: &Verdict, leaf: Option<&LeafFacts>) -> Self {
        let mut out = Vec::with_capacity(5);
        let mut push = |name: &HeaderName, text: &str| {
            // The texts are ASCII by construction (DNs escape the rest).
            if let Ok(v) = HeaderValue::from_str(text) {
                out.push((name.clone(), v));
            }
        };
        push(&SSL_CLIENT_VERIFY, &verdict.header_text());
        if let Some(leaf) = leaf {
            if let Some(dn) = &leaf.subject_dn {
                push(&SSL_CLIENT_SUBJECT_DN, dn);
            }
            if let Some(dn) = &leaf.issuer_dn {
                push(&SSL_CLIENT_ISSUER_DN, dn);
            }
            if let Some(serial) = &leaf.serial {
                push(&SSL_CLIENT_SERIAL, serial);
            }
            push(&SSL_CLIENT_FINGERPRINT, &leaf.fingerprint);
        }
        Self(out.into())
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
fn fixed_hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// The protocol a client asks to switch to (`Connection: upgrade` + `Upgrade: x`).
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Joins several `Cookie` headers into one, as HTTP/2 clients may split them
/// and an HTTP/1.1 server expects one (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `TE: trailers` is end-to-end in practice (gRPC) and is kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let fixed = fixed_hop_by_hop();
    let here = found(headers, &fixed);
    if !here.contains(&true) {
        return;
    }
    // Only the names `Connection` lists that are present need a new name to
    // remove them by (usually none: `keep-alive`, `close`).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            headers
                .keys()
                .any(|k| k.as_str().eq_ignore_ascii_case(token))
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let keep_te = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for (name, here) in fixed.into_iter().zip(here) {
        if !here || (*name == header::TE && keep_te) {
            continue;
        }
        headers.remove(name);
    }
}

/// Re-adds the headers a protocol switch needs after hop-by-hop stripping.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` per the listener's policy.
/// `client` is the client's address as a value ([`client_value`]); `host` is
/// the request's original Host (or :authority).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    mode: ForwardedHeaders,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    match mode {
        ForwardedHeaders::Off => {}
        ForwardedHeaders::Replace => {
            headers.insert(&X_FORWARDED_FOR, client.clone());
            headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            match host {
                Some(h) => headers.insert(&X_FORWARDED_HOST, h.clone()),
                None => headers.remove(&X_FORWARDED_HOST),
            };
        }
        ForwardedHeaders::Trust => {
            let previous: Vec<&[u8]> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let mut joined = previous.join(&b", "[..]);
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(&X_FORWARDED_FOR, v);
            }
            if !headers.contains_key(&X_FORWARDED_PROTO) {
                headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            }
            if let Some(h) = host
                && !headers.contains_key(&X_FORWARDED_HOST)
            {
                headers.insert(&X_FORWARDED_HOST, h.clone());
            }
        }
    }
}

/// A client address as an `X-Forwarded-For` value, made once per connection
/// (formatting it per request cost more than the rest of the header edits).
pub fn client_value(client: IpAddr) -> HeaderValue {
    // An address's text is always a valid value.
    HeaderValue::try_from(client.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-kept", "yes"),
            ("host", "a.com"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept", "host"]);
    }

    #[test]
    fn te_trailers_survives() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("te").unwrap(), "trailers");
    }

    #[test]
    fn detects_upgrade_only_with_connection_token() {
        assert!(
            requested_upgrade(&map(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket")
            ]))
            .is_some()
        );
        assert!(requested_upgrade(&map(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn replace_discards_spoofed_values() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
        ]);
        let host = HeaderValue::from_static("shop.example.com");
        set_forwarded(
            &mut h,
            ForwardedHeaders::Replace,
            &client_value("10.0.0.7".parse().unwrap()),
            "http",
            Some(&host),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "shop.example.com");
    }

    #[test]
    fn trust_appends_and_keeps() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("shop.example.com");
        set_forwarded(
            &mut h,
            ForwardedHeaders::Trust,
            &client_value("::1".parse().unwrap()),
            "http",
            Some(&host),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, 2.2.2.2, ::1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "shop.example.com");
    }

    #[test]
    fn client_certificate_headers_replace_the_clients() {
        let mut h = map(&[
            ("ssl-client-verify", "SUCCESS"),
            ("SSL-Client-Subject-DN", "CN=admin"),
            ("ssl-client-serial", "01"),
            ("x-kept", "yes"),
        ]);
        strip_client_cert(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);

        let leaf = LeafFacts {
            subject_dn: Some("CN=alice,O=Acme\\, Inc.".into()),
            issuer_dn: Some("CN=ca".into()),
            serial: Some("0ABC".into()),
            fingerprint: "ab".repeat(32),
        };
        ClientCertHeaders::new(&Verdict::Success, Some(&leaf)).apply(&mut h);
        assert_eq!(h["ssl-client-verify"], "SUCCESS");
        assert_eq!(h["ssl-client-subject-dn"], "CN=alice,O=Acme\\, Inc.");
        assert_eq!(h["ssl-client-issuer-dn"], "CN=ca");
        assert_eq!(h["ssl-client-serial"], "0ABC");
        assert_eq!(h["ssl-client-fingerprint"], "ab".repeat(32).as_str());

        let mut h = HeaderMap::new();
        ClientCertHeaders::new(&Verdict::None, None).apply(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["ssl-client-verify"], "NONE");
        let mut h = HeaderMap::new();
        ClientCertHeaders::new(&Verdict::Failed("unknown issuer"), None).apply(&mut h);
        assert_eq!(h["ssl-client-verify"], "FAILED:unknown issuer");
    }

    #[test]
    fn off_touches_nothing() {
        let mut h = map(&[("x-forwarded-for", "1.1.1.1")]);
        set_forwarded(
            &mut h,
            ForwardedHeaders::Off,
            &client_value("10.0.0.1".parse().unwrap()),
            "http",
            None,
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1");
        assert!(h.get("x-forwarded-proto").is_none());
    }
}
