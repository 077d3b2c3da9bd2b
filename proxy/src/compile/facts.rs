//! What routing looks at in a request, prepared once per request, and the path
//! normalisation that makes `/admin` rules also catch `/%61dmin` and `/a/../admin`.

use http::{HeaderMap, Method};
use std::borrow::Cow;
use std::net::IpAddr;

/// The parts of a request that routes match on.
pub struct RequestFacts<'a> {
    /// Lower-case, without port (see `normalize_host`).
    pub host: &'a str,
    /// Normalised (see [`normalize_path`]).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// IPv4 clients of a dual-stack socket appear as IPv4, not `::ffff:a.b.c.d`.
    pub client: IpAddr,
}

/// An IPv4 client on a dual-stack socket shows up as `::ffff:a.b.c.d`.
pub fn canonical_client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Normalises a path the way RFC 3986 §6 treats equivalent paths, plus merging
/// slashes (as nginx does): percent-encoded unreserved characters are decoded,
/// remaining escapes get upper-case hex, `.` and `..` segments are resolved (never
/// above the root) and `//` becomes `/`. `%2F` stays encoded, so it never splits a
/// segment. Routing sees this path and so does the backend, so the two cannot
/// disagree about what was asked for. Borrows when nothing changes (the common case).
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || !needs_normalizing(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" | "." => {}
            ".." => {
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    // A trailing slash, `/.` or `/..` leaves the result a directory.
    let ends_as_dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if out.is_empty() || ends_as_dir {
        out.push('/');
    }
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

fn needs_normalizing(p: &[u8]) -> bool {
    p.windows(2).any(|w| w == b"//" || w == b"/.") || p.contains(&b'%')
}

fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = hex_pair(bytes.get(i + 1..i + 3))
        {
            if is_unreserved(v) {
                out.push(v);
            } else {
                out.push(b'%');
                out.extend_from_slice(&bytes[i + 1..i + 3].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were decoded, so valid UTF-8 stays valid.
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    match pair? {
        [hi, lo] => Some(hex(*hi)? << 4 | hex(*lo)?),
        _ => None,
    }
}

/// Query parameter values, percent-decoded (`+` is a space), for one name.
/// Allocates only for values that contain escapes.
pub fn query_values<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            decoded_eq(key, name).then(|| form_decode(value))
        })
}

/// Whether `encoded` decodes to `plain`, without allocating.
fn decoded_eq(encoded: &str, plain: &str) -> bool {
    if !encoded.contains(['%', '+']) {
        return encoded == plain;
    }
    form_decode(encoded) == plain
}

fn form_decode(value: &str) -> Cow<'_, str> {
    if !value.contains(['%', '+']) {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(v) = hex_pair(bytes.get(i + 1..i + 3)) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a.b/c", "/a-b_c~d", "*"] {
            assert!(matches!(normalize_path(p), Cow::Borrowed(_)), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved() {
        assert_eq!(normalize_path("/a/../admin"), "/admin");
        assert_eq!(normalize_path("/a/./b"), "/a/b");
        assert_eq!(normalize_path("//admin//x"), "/admin/x");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/a/."), "/a/");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("/a/"), "/a/");
        assert_eq!(normalize_path("/.well-known/x"), "/.well-known/x");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_upper_case() {
        assert_eq!(normalize_path("/%61dmin"), "/admin");
        assert_eq!(normalize_path("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize_path("/a/%2e%2e/x"), "/x");
        assert_eq!(normalize_path("/a%2e%2e/x"), "/a../x");
        assert_eq!(normalize_path("/%zz"), "/%zz");
        assert_eq!(normalize_path("/%"), "/%");
        assert_eq!(normalize_path("/%C3%A9"), "/%C3%A9");
    }

    #[test]
    fn query_values_are_decoded() {
        let q = "a=1&b=x%20y&c&lang=en+GB&a=2&%61=3";
        let values = |n| {
            query_values(q, n)
                .map(|v| v.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(values("a"), ["1", "2", "3"]);
        assert_eq!(values("b"), ["x y"]);
        assert_eq!(values("c"), [""]);
        assert_eq!(values("lang"), ["en GB"]);
        assert!(values("zz").is_empty());
    }
}
