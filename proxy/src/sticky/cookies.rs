//! Reading and editing `Cookie` and `Set-Cookie` headers for one cookie name.
//! Edits splice only the pair or value concerned, so everything else (other
//! cookies, the application's attributes) passes byte for byte. The `cookie`
//! crate would re-render what it parses.

use http::header::{self, HeaderMap, HeaderValue};

/// The values of cookie `name` in the request, in header order (quotes
/// removed). Headers that are not text are skipped.
pub fn request_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| unquote(v.trim()))
        })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Rewrites the pairs named `name` in the request's `Cookie` headers: `edit`
/// returns the new value, or `None` to drop the pair. A header left empty is
/// removed; headers without the cookie are not touched.
pub fn edit_request(
    headers: &mut HeaderMap,
    name: &str,
    mut edit: impl FnMut(&str) -> Option<String>,
) {
    let lines: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if lines.is_empty() {
        return;
    }
    let mut rebuilt = Vec::with_capacity(lines.len());
    let mut changed = false;
    for line in lines {
        let Ok(text) = std::str::from_utf8(line.as_bytes()) else {
            rebuilt.push(line);
            continue;
        };
        let mut pairs: Vec<String> = Vec::new();
        let mut touched = false;
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((n, v)) if n.trim() == name => {
                    touched = true;
                    if let Some(new) = edit(unquote(v.trim())) {
                        pairs.push(format!("{name}={new}"));
                    }
                }
                _ => pairs.push(pair.to_owned()),
            }
        }
        if !touched {
            rebuilt.push(line);
            continue;
        }
        changed = true;
        if !pairs.is_empty()
            && let Ok(v) = HeaderValue::from_str(&pairs.join("; "))
        {
            rebuilt.push(v);
        }
    }
    if changed {
        headers.remove(header::COOKIE);
        for v in rebuilt {
            headers.append(header::COOKIE, v);
        }
    }
}

/// One `Set-Cookie` header value split around its cookie value.
struct SetCookie<'a> {
    name: &'a str,
    value: &'a str,
    /// From the first `;` on (attributes), or empty.
    rest: &'a str,
}

fn split_set_cookie(line: &str) -> Option<SetCookie<'_>> {
    let (pair, rest) = match line.find(';') {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    let (name, value) = pair.split_once('=')?;
    Some(SetCookie {
        name: name.trim(),
        value: value.trim(),
        rest,
    })
}

/// What to do with a backend's `Set-Cookie` for our name.
pub enum SetCookieEdit {
    Keep,
    Remove,
    Replace(String),
}

/// Applies `edit` to each `Set-Cookie` of cookie `name` (given its value);
/// returns how many were replaced.
pub fn edit_response(
    headers: &mut HeaderMap,
    name: &str,
    mut edit: impl FnMut(&str) -> SetCookieEdit,
) -> usize {
    if !headers.get_all(header::SET_COOKIE).iter().any(|v| {
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(split_set_cookie)
            .is_some_and(|c| c.name == name)
    }) {
        return 0;
    }
    let lines: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    let mut replaced = 0;
    for line in lines {
        let parsed = std::str::from_utf8(line.as_bytes())
            .ok()
            .and_then(split_set_cookie)
            .filter(|c| c.name == name);
        let Some(cookie) = parsed else {
            headers.append(header::SET_COOKIE, line);
            continue;
        };
        match edit(cookie.value) {
            SetCookieEdit::Keep => {
                headers.append(header::SET_COOKIE, line);
            }
            SetCookieEdit::Remove => {}
            SetCookieEdit::Replace(value) => {
                match HeaderValue::from_str(&format!("{}={value}{}", cookie.name, cookie.rest)) {
                    Ok(v) => {
                        headers.append(header::SET_COOKIE, v);
                        replaced += 1;
                    }
                    Err(_) => {
                        headers.append(header::SET_COOKIE, line);
                    }
                }
            }
        }
    }
    replaced
}

/// Marks a response that sets a pin as private to one client: `private` is
/// added and `public`/`s-maxage` (which would let a shared cache keep it) are
/// dropped; `no-store` already keeps every cache away.
pub fn make_private(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let is = |d: &str, name: &str| {
        d.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
    };
    if directives
        .iter()
        .any(|d| is(d, "private") || is(d, "no-store"))
    {
        return;
    }
    let mut kept: Vec<&str> = directives
        .iter()
        .map(String::as_str)
        .filter(|d| !is(d, "public") && !is(d, "s-maxage"))
        .collect();
    kept.push("private");
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn all(h: &HeaderMap, name: header::HeaderName) -> Vec<&str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn request_values_come_from_every_cookie_header_in_order() {
        let h = headers(
            header::COOKIE,
            &["a=1; SRV=x; b=2", "SRV=\"y\"", "SRVX=z;SRV=w"],
        );
        assert_eq!(
            request_values(&h, "SRV").collect::<Vec<_>>(),
            ["x", "y", "w"]
        );
        assert_eq!(
            request_values(&h, "srv").count(),
            0,
            "names are case-sensitive"
        );
    }

    #[test]
    fn request_edits_touch_only_our_pairs() {
        let mut h = headers(header::COOKIE, &["a=1; SRV=x;b=2", "SRV=y", "c=3"]);
        edit_request(&mut h, "SRV", |_| None);
        assert_eq!(all(&h, header::COOKIE), ["a=1; b=2", "c=3"]);

        let mut h = headers(header::COOKIE, &["JSESSIONID=id~abc; other=1"]);
        edit_request(&mut h, "JSESSIONID", |v| {
            Some(v.split_once('~').map_or(v, |(_, rest)| rest).to_owned())
        });
        assert_eq!(all(&h, header::COOKIE), ["JSESSIONID=abc; other=1"]);

        let untouched = "a=1;b=2 ;  c";
        let mut h = headers(header::COOKIE, &[untouched]);
        edit_request(&mut h, "SRV", |_| None);
        assert_eq!(all(&h, header::COOKIE), [untouched], "byte for byte");
    }

    #[test]
    fn set_cookie_edits_keep_the_attributes_and_other_cookies() {
        let mut h = headers(
            header::SET_COOKIE,
            &[
                "JSESSIONID=abc; Path=/app; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                "theme=dark",
                "JSESSIONID=def",
            ],
        );
        let n = edit_response(&mut h, "JSESSIONID", |v| {
            SetCookieEdit::Replace(format!("ID~{v}"))
        });
        assert_eq!(n, 2);
        assert_eq!(
            all(&h, header::SET_COOKIE),
            [
                "JSESSIONID=ID~abc; Path=/app; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                "theme=dark",
                "JSESSIONID=ID~def"
            ]
        );
        edit_response(&mut h, "JSESSIONID", |_| SetCookieEdit::Remove);
        assert_eq!(all(&h, header::SET_COOKIE), ["theme=dark"]);
    }

    #[test]
    fn private_replaces_public_and_respects_no_store() {
        let mut h = headers(
            header::CACHE_CONTROL,
            &["public, max-age=60", "s-maxage=600"],
        );
        make_private(&mut h);
        assert_eq!(all(&h, header::CACHE_CONTROL), ["max-age=60, private"]);
        let mut h = HeaderMap::new();
        make_private(&mut h);
        assert_eq!(all(&h, header::CACHE_CONTROL), ["private"]);
        let mut h = headers(header::CACHE_CONTROL, &["no-store"]);
        make_private(&mut h);
        assert_eq!(all(&h, header::CACHE_CONTROL), ["no-store"]);
    }
}
