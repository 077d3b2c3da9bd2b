//! `sluice.dev/permanent-redirect` and `sluice.dev/temporal-redirect`, each with an
//! optional `-code`: every route of the Ingress answers with a redirect to a fixed
//! location (used as written; the request's query is dropped) instead of
//! forwarding.
//!
//! The four values are gathered while the annotations are read and resolved once
//! all are known, since which one wins and which code applies depend on each
//! other. When both are given, `temporal-redirect` wins: browsers cache a 301 or
//! 308 indefinitely, so of two contradictory answers the temporary one is the one
//! that can be taken back (ingress-nginx also reads `temporal-redirect` first).

use sluice_proxy::table::{Redirect, RedirectCode, validate};

pub const PERMANENT: &str = "sluice.dev/permanent-redirect";
pub const PERMANENT_CODE: &str = "sluice.dev/permanent-redirect-code";
pub const TEMPORAL: &str = "sluice.dev/temporal-redirect";
pub const TEMPORAL_CODE: &str = "sluice.dev/temporal-redirect-code";

/// A redirect, with the annotation that asked for it (for warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRedirect {
    pub annotation: &'static str,
    pub redirect: Redirect,
}

/// The raw (trimmed) values of the four annotations.
#[derive(Debug, Default)]
pub struct RedirectAnnotations<'a> {
    permanent: Option<&'a str>,
    permanent_code: Option<&'a str>,
    temporal: Option<&'a str>,
    temporal_code: Option<&'a str>,
}

impl<'a> RedirectAnnotations<'a> {
    /// Keeps `value` if `name` (without the `sluice.dev/` prefix) is one of the
    /// four; returns whether it was.
    pub fn take(&mut self, name: &str, value: &'a str) -> bool {
        let slot = match name {
            "permanent-redirect" => &mut self.permanent,
            "permanent-redirect-code" => &mut self.permanent_code,
            "temporal-redirect" => &mut self.temporal,
            "temporal-redirect-code" => &mut self.temporal_code,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    /// The redirect to install, if any. An invalid code falls back to the default
    /// of its kind (the Ingress still redirects, as asked); an invalid location
    /// ignores the redirect altogether (the Ingress forwards as if it were absent).
    pub fn resolve(self, warnings: &mut Vec<String>) -> Option<IngressRedirect> {
        let unused_code = |code: &str, of: &str, warnings: &mut Vec<String>| {
            warnings.push(format!(
                "annotation {code}: has no effect without {of}; ignored"
            ))
        };
        let (annotation, code_annotation, url, code, default) = match (
            self.temporal,
            self.permanent,
        ) {
            (Some(url), permanent) => {
                if permanent.is_some() {
                    let with_code = if self.permanent_code.is_some() {
                        format!(" (and {PERMANENT_CODE})")
                    } else {
                        String::new()
                    };
                    warnings.push(format!(
                        "annotation {PERMANENT}{with_code}: ignored, because {TEMPORAL} is also given and wins"
                    ));
                } else if self.permanent_code.is_some() {
                    unused_code(PERMANENT_CODE, PERMANENT, warnings);
                }
                (TEMPORAL, TEMPORAL_CODE, url, self.temporal_code, 302)
            }
            (None, Some(url)) => {
                if self.temporal_code.is_some() {
                    unused_code(TEMPORAL_CODE, TEMPORAL, warnings);
                }
                (PERMANENT, PERMANENT_CODE, url, self.permanent_code, 301)
            }
            (None, None) => {
                if self.permanent_code.is_some() {
                    unused_code(PERMANENT_CODE, PERMANENT, warnings);
                }
                if self.temporal_code.is_some() {
                    unused_code(TEMPORAL_CODE, TEMPORAL, warnings);
                }
                return None;
            }
        };
        let code = match code.map(parse_code) {
            None => default_code(default),
            Some(Ok(code)) => code,
            Some(Err(problem)) => {
                warnings.push(format!(
                    "annotation {code_annotation}={:?}: {problem}; using {default}",
                    code.unwrap_or_default()
                ));
                default_code(default)
            }
        };
        let redirect = check_location(url).and_then(|()| {
            let redirect = Redirect {
                code,
                location: Some(url.to_owned()),
                ..Redirect::default()
            };
            // The table's own rules, so the proxy never receives a redirect it refuses.
            redirect.validate()?;
            Ok(redirect)
        });
        match redirect {
            Ok(redirect) => Some(IngressRedirect {
                annotation,
                redirect,
            }),
            Err(problem) => {
                warnings.push(format!(
                    "annotation {annotation}={url:?}: {problem}; ignored"
                ));
                None
            }
        }
    }
}

fn default_code(code: u16) -> RedirectCode {
    // Only called with 301 and 302, which are valid; the fallback is unreachable.
    RedirectCode::new(code).unwrap_or_default()
}

fn parse_code(value: &str) -> Result<RedirectCode, String> {
    let number = value
        .parse::<u16>()
        .map_err(|_| "must be one of 301, 302, 303, 307, 308".to_owned())?;
    RedirectCode::new(number)
}

/// An absolute `http(s)://host[:port][/path][?query][#fragment]` or a path
/// starting with `/`, written with URI characters only (percent-encoded).
fn check_location(url: &str) -> Result<(), String> {
    const FORM: &str = "must be an absolute `http(s)://host[...]` URL or a path starting with `/`";
    if let Some(c) = url.chars().find(|c| !is_uri_char(*c)) {
        return Err(format!(
            "{FORM}, percent-encoded; {c:?} is not allowed in a URL"
        ));
    }
    if url.starts_with("//") {
        // A protocol-relative `//host/...` leaves the site; say so with a scheme.
        return Err(format!(
            "{FORM}; write `http://` or `https://` before a host"
        ));
    }
    if url.starts_with('/') {
        return Ok(());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(FORM.into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{FORM}; scheme {scheme:?} is not http or https"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    check_authority(&rest[..end])
}

/// `host[:port]`, where host is a DNS name, an IPv4 address or `[IPv6]`.
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("a user name (`user@host`) is not allowed in a redirect".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("host {authority:?} is missing `]`"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("{authority:?} is not `host[:port]`")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        validate::dns_name(&host.to_ascii_lowercase())?;
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("port {port:?} is not a number from 1 to 65535"));
    }
    Ok(())
}

/// RFC 3986's unreserved and reserved characters, and `%` for escapes.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(pairs: &[(&str, &'static str)]) -> (Option<IngressRedirect>, Vec<String>) {
        let mut raw = RedirectAnnotations::default();
        for (name, value) in pairs {
            assert!(raw.take(name, value), "{name}");
        }
        let mut warnings = Vec::new();
        (raw.resolve(&mut warnings), warnings)
    }

    fn code_and_location(r: &Option<IngressRedirect>) -> Option<(u16, &str)> {
        r.as_ref().map(|r| {
            (
                r.redirect.code.get(),
                r.redirect.location.as_deref().unwrap_or_default(),
            )
        })
    }

    #[test]
    fn permanent_is_301_and_temporal_302_unless_told() {
        let (r, w) = resolve(&[("permanent-redirect", "https://new.example.com/")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            code_and_location(&r),
            Some((301, "https://new.example.com/"))
        );
        assert_eq!(r.map(|r| r.annotation), Some(PERMANENT));
        let (r, w) = resolve(&[("temporal-redirect", "/maintenance.html")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(code_and_location(&r), Some((302, "/maintenance.html")));
        let (r, w) = resolve(&[
            ("permanent-redirect", "/x"),
            ("permanent-redirect-code", "308"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(code_and_location(&r), Some((308, "/x")));
        let (r, _) = resolve(&[
            ("temporal-redirect", "/x"),
            ("temporal-redirect-code", "307"),
        ]);
        assert_eq!(code_and_location(&r), Some((307, "/x")));
    }

    #[test]
    fn a_bad_code_warns_and_keeps_the_default() {
        for bad in ["304", "300", "abc", "-1"] {
            let (r, w) = resolve(&[
                ("permanent-redirect", "/x"),
                ("permanent-redirect-code", bad),
            ]);
            assert_eq!(code_and_location(&r), Some((301, "/x")), "{bad}");
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].starts_with(&format!("annotation {PERMANENT_CODE}={bad:?}: ")),
                "{w:?}"
            );
            assert!(w[0].ends_with("using 301"), "{w:?}");
        }
    }

    #[test]
    fn temporal_wins_over_permanent() {
        let (r, w) = resolve(&[
            ("permanent-redirect", "/p"),
            ("permanent-redirect-code", "308"),
            ("temporal-redirect", "/t"),
        ]);
        assert_eq!(code_and_location(&r), Some((302, "/t")));
        assert_eq!(
            w,
            [
                "annotation sluice.dev/permanent-redirect (and sluice.dev/permanent-redirect-code): ignored, because sluice.dev/temporal-redirect is also given and wins"
            ]
        );
        let (r, w) = resolve(&[("permanent-redirect", "/p"), ("temporal-redirect", "/t")]);
        assert_eq!(code_and_location(&r), Some((302, "/t")));
        assert!(
            w[0].starts_with("annotation sluice.dev/permanent-redirect: ignored"),
            "{w:?}"
        );
    }

    #[test]
    fn a_code_alone_has_no_effect() {
        let (r, w) = resolve(&[("permanent-redirect-code", "308")]);
        assert_eq!(r, None);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/permanent-redirect-code: has no effect without sluice.dev/permanent-redirect; ignored"
            ]
        );
        let (r, w) = resolve(&[
            ("temporal-redirect", "/t"),
            ("permanent-redirect-code", "308"),
        ]);
        assert_eq!(code_and_location(&r), Some((302, "/t")));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn locations_must_be_absolute_http_urls_or_paths() {
        for good in [
            "/",
            "/new/place?src=old#top",
            "/caf%C3%A9",
            "http://example.com",
            "HTTPS://Example.COM:8443/a/b?c=d",
            "https://[2001:db8::1]:443/",
            "http://10.0.0.1/x",
            "https://example.com?x=1",
        ] {
            assert_eq!(check_location(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "absolute"),
            ("new-place", "absolute"),
            ("ftp://example.com/", "scheme"),
            ("//evil.example/", "before a host"),
            ("https://", "no host"),
            ("https:///path", "no host"),
            ("https://exa mple.com/", "' '"),
            ("https://example.com/café", "'é'"),
            ("https://user:pw@example.com/", "user name"),
            ("https://example.com:0/", "port"),
            ("https://example.com:http/", "port"),
            ("https://example.com:99999/", "port"),
            ("https://bad_host!.com/", "DNS name"),
            ("https://[::1/", "missing `]`"),
            ("https://[nope]/", "IPv6"),
            ("/a\"b", "'\"'"),
        ] {
            let problem = check_location(bad).expect_err(bad);
            assert!(problem.contains(why), "{bad}: {problem}");
        }
    }

    #[test]
    fn an_invalid_location_ignores_the_redirect() {
        let (r, w) = resolve(&[("temporal-redirect", "somewhere")]);
        assert_eq!(r, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("annotation sluice.dev/temporal-redirect=\"somewhere\": must be"),
            "{w:?}"
        );
        assert!(w[0].ends_with("; ignored"), "{w:?}");
    }
}
