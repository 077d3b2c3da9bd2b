//! Route actions and edits, compiled: responses pre-rendered, header names and
//! values parsed, redirect targets split, so a request only assembles them.

use crate::table::{
    self, Action, HeaderEdits, PathRewrite, QueryHandling, Redirect, Scheme, parse_prefix,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use std::borrow::Cow;
use std::sync::Arc;

pub type BackendIx = usize;

pub enum CompiledAction {
    Forward(BackendIx),
    /// The route names a backend that does not exist: answer 503 and say which.
    MissingBackend(Arc<str>),
    Redirect(CompiledRedirect),
    /// A fixed response: `deny` and `respond`.
    Deny(FixedResponse),
    Respond(FixedResponse),
}

impl CompiledAction {
    pub fn describe(&self) -> String {
        match self {
            CompiledAction::Forward(_) => "forward".into(),
            CompiledAction::MissingBackend(id) => format!("forward to undefined backend `{id}`"),
            CompiledAction::Redirect(r) => format!("redirect {}", r.code.as_u16()),
            CompiledAction::Deny(r) => format!("deny {}", r.status.as_u16()),
            CompiledAction::Respond(r) => format!("respond {}", r.status.as_u16()),
        }
    }
}

/// A response written in the table.
#[derive(Clone)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

impl FixedResponse {
    pub fn new(status: u16, content_type: &table::HeaderValueText, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type: content_type.to_header_value(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

/// Builds the action's compiled form; `forward` resolves a backend id and
/// `error_page` finds the listener's page for a status (for `deny` without body).
pub fn compile_action(
    action: &Action,
    forward: impl FnOnce(&str) -> CompiledAction,
    error_page: impl Fn(u16) -> Option<FixedResponse>,
) -> Result<CompiledAction, String> {
    Ok(match action {
        Action::Forward(id) => forward(id),
        Action::Redirect(r) => CompiledAction::Redirect(CompiledRedirect::new(r)?),
        Action::Deny(d) => {
            let status = d.status.get();
            let content_type = d.content_type.clone().unwrap_or_else(table::text_plain);
            CompiledAction::Deny(match &d.body {
                Some(body) => FixedResponse::new(status, &content_type, body.as_str()),
                None => error_page(status).unwrap_or_else(|| {
                    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                    let text = format!(
                        "{} {}: request denied\n",
                        code.as_u16(),
                        code.canonical_reason().unwrap_or("")
                    );
                    FixedResponse::new(status, &table::text_plain(), &text)
                }),
            })
        }
        Action::Respond(r) => CompiledAction::Respond(FixedResponse::new(
            r.status.get(),
            &r.content_type,
            r.body.as_str(),
        )),
    })
}

pub struct CompiledRedirect {
    pub code: StatusCode,
    target: Target,
    keep_query: bool,
}

enum Target {
    Location(String),
    /// `origin` may be empty (a path prefix); `path` has no trailing `/`.
    Prefix {
        origin: String,
        path: String,
    },
    Parts {
        scheme: Option<Scheme>,
        host: Option<String>,
        port: Option<u16>,
        path: PathChange,
    },
}

enum PathChange {
    Keep,
    Replace(String),
    ReplacePrefix(String),
}

/// The request as a redirect sees it.
pub struct RedirectInput<'a> {
    pub scheme: Scheme,
    /// The host as the client sent it (may carry a port); empty when absent.
    pub host: &'a str,
    /// Normalised, so `//evil.example` cannot become a protocol-relative target.
    pub path: &'a str,
    pub matched_len: usize,
    pub query: Option<&'a str>,
}

impl CompiledRedirect {
    pub fn new(r: &Redirect) -> Result<Self, String> {
        r.validate()?;
        let keep_query = match r.query {
            Some(q) => q == QueryHandling::Keep,
            None => r.location.is_none(),
        };
        let target = if let Some(loc) = &r.location {
            Target::Location(loc.clone())
        } else if let Some(prefix) = &r.prefix {
            let (origin, path) = parse_prefix(prefix)?;
            Target::Prefix { origin, path }
        } else {
            Target::Parts {
                scheme: r.scheme,
                host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                port: r.port,
                path: match (&r.path, &r.replace_prefix) {
                    (Some(p), _) => PathChange::Replace(p.clone()),
                    (None, Some(p)) => PathChange::ReplacePrefix(p.clone()),
                    (None, None) => PathChange::Keep,
                },
            }
        };
        Ok(Self {
            code: StatusCode::from_u16(r.code.get()).unwrap_or(StatusCode::FOUND),
            target,
            keep_query,
        })
    }

    /// The `Location` value; `None` when an absolute target needs the request's
    /// host and the request has none.
    pub fn location(&self, req: &RedirectInput<'_>) -> Option<String> {
        let mut out = match &self.target {
            Target::Location(loc) => loc.clone(),
            Target::Prefix { origin, path } => format!("{origin}{path}{}", req.path),
            Target::Parts {
                scheme,
                host,
                port,
                path,
            } => {
                let path = match path {
                    PathChange::Keep => Cow::Borrowed(req.path),
                    PathChange::Replace(p) => Cow::Borrowed(p.as_str()),
                    PathChange::ReplacePrefix(p) => {
                        Cow::Owned(replace_prefix(req.path, req.matched_len, p))
                    }
                };
                if scheme.is_none() && host.is_none() && port.is_none() {
                    path.into_owned()
                } else {
                    let scheme = scheme.unwrap_or(req.scheme);
                    let host = match host {
                        Some(h) => h.as_str(),
                        None => host_without_port(req.host)?,
                    };
                    // The request's port is never carried over: it belongs to the
                    // old scheme or host. `port` sets one.
                    match port.filter(|p| *p != scheme.default_port()) {
                        Some(p) => format!("{}://{host}:{p}{path}", scheme.as_str()),
                        None => format!("{}://{host}{path}", scheme.as_str()),
                    }
                }
            }
        };
        // Browsers read `\` as `/`, so a request path `/\evil.example` would make
        // `Location: /\evil.example` protocol-relative: send it encoded. A written
        // `location` is the operator's and stays as written.
        if !matches!(self.target, Target::Location(_)) && out.contains('\\') {
            out = out.replace('\\', "%5C");
        }
        if self.keep_query
            && let Some(q) = req.query
        {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }
}

/// The request's host name for an absolute redirect target, or `None` when it is
/// absent or not a plain name or address: a `Host: evil.example/x` or one carrying
/// userinfo must not become the start of a `Location`.
fn host_without_port(raw: &str) -> Option<&str> {
    let host = super::router::strip_port(raw);
    let plain = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
    };
    (!host.is_empty() && plain).then_some(host)
}

/// Replaces the first `matched_len` bytes of `path` with `to`, joining with exactly
/// one `/`.
pub fn replace_prefix(path: &str, matched_len: usize, to: &str) -> String {
    let rest = path.get(matched_len..).unwrap_or_default();
    let mut new_path = String::with_capacity(to.len() + rest.len() + 1);
    new_path.push_str(to);
    if new_path.ends_with('/') && rest.starts_with('/') {
        new_path.pop();
    } else if !new_path.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
        new_path.push('/');
    }
    new_path.push_str(rest);
    if new_path.is_empty() {
        new_path.push('/');
    }
    new_path
}

pub enum CompiledRewrite {
    ReplacePrefix(String),
    Regex { regex: Regex, replace: String },
}

impl CompiledRewrite {
    /// `None` (with a reason) when the rewrite cannot produce a path.
    pub fn new(rewrite: &PathRewrite) -> Result<Self, String> {
        match rewrite {
            PathRewrite::ReplacePrefix(to) if !to.starts_with('/') => Err(format!(
                "rewrite {to:?} must start with `/`; the path is kept"
            )),
            PathRewrite::ReplacePrefix(to) => Ok(CompiledRewrite::ReplacePrefix(to.clone())),
            PathRewrite::Regex(r) => Ok(CompiledRewrite::Regex {
                regex: r.pattern.regex().clone(),
                replace: r.replace.clone(),
            }),
        }
    }

    pub fn apply<'p>(&self, path: &'p str, matched_len: usize) -> Cow<'p, str> {
        match self {
            CompiledRewrite::ReplacePrefix(to) => Cow::Owned(replace_prefix(path, matched_len, to)),
            CompiledRewrite::Regex { regex, replace } => {
                match regex.replacen(path, 1, replace.as_str()) {
                    Cow::Owned(p) if !p.starts_with('/') => Cow::Owned(format!("/{p}")),
                    other => other,
                }
            }
        }
    }
}

/// Header edits with names and values parsed once.
#[derive(Default)]
pub struct CompiledHeaderEdits {
    remove: Box<[HeaderName]>,
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
}

impl CompiledHeaderEdits {
    /// Edits of reserved headers (`HeaderEdits::reserved_names`) are dropped: the
    /// table check refuses them in files and the compiler warns about them.
    pub fn new(edits: &HeaderEdits) -> Self {
        let allowed = |n: &table::HeaderNameText| !table::RESERVED_HEADERS.contains(&n.as_str());
        let pairs =
            |m: &std::collections::BTreeMap<table::HeaderNameText, table::HeaderValueText>| {
                m.iter()
                    .filter(|(k, _)| allowed(k))
                    .map(|(k, v)| (k.to_header_name(), v.to_header_value()))
                    .collect()
            };
        Self {
            remove: edits
                .remove
                .iter()
                .filter(|n| allowed(n))
                .map(|n| n.to_header_name())
                .collect(),
            set: pairs(&edits.set),
            add: pairs(&edits.add),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(yaml: &str) -> CompiledRedirect {
        CompiledRedirect::new(&serde_saphyr::from_str(yaml).unwrap()).unwrap()
    }

    fn input<'a>(host: &'a str, path: &'a str, query: Option<&'a str>) -> RedirectInput<'a> {
        RedirectInput {
            scheme: Scheme::Http,
            host,
            path,
            matched_len: 0,
            query,
        }
    }

    #[test]
    fn scheme_redirect_keeps_host_path_and_query_and_drops_the_port() {
        let r = redirect("{scheme: https}");
        assert_eq!(r.code, StatusCode::FOUND);
        assert_eq!(
            r.location(&input("shop.test.com:8080", "/cart", Some("id=1")))
                .unwrap(),
            "https://shop.test.com/cart?id=1"
        );
        let r = redirect("{scheme: https, port: 8443, code: 301}");
        assert_eq!(r.code, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.location(&input("shop.test.com", "/", None)).unwrap(),
            "https://shop.test.com:8443/"
        );
        assert_eq!(
            redirect("{scheme: https, port: 443}")
                .location(&input("[::1]:80", "/", None))
                .unwrap(),
            "https://[::1]/"
        );
        assert!(
            redirect("{scheme: https}")
                .location(&input("", "/", None))
                .is_none()
        );
    }

    #[test]
    fn prefix_redirect_prepends_to_the_request_path() {
        let r = redirect("{prefix: 'http://3g-iphone.test.com'}");
        assert_eq!(
            r.location(&input("www.test.com", "/news/1", Some("a=b")))
                .unwrap(),
            "http://3g-iphone.test.com/news/1?a=b"
        );
        let r = redirect("{prefix: 'https://m.test.com/mobile/', query: drop}");
        assert_eq!(
            r.location(&input("www.test.com", "/x", Some("a=b")))
                .unwrap(),
            "https://m.test.com/mobile/x"
        );
    }

    #[test]
    fn location_is_used_as_written_unless_the_query_is_kept() {
        let r = redirect("{location: 'https://errors.test.com/blocked.html', code: 303}");
        assert_eq!(
            r.location(&input("a", "/x", Some("q=1"))).unwrap(),
            "https://errors.test.com/blocked.html"
        );
        let r = redirect("{location: '/search?src=old', query: keep}");
        assert_eq!(
            r.location(&input("a", "/x", Some("q=1"))).unwrap(),
            "/search?src=old&q=1"
        );
    }

    #[test]
    fn backslashes_from_the_request_path_cannot_make_a_protocol_relative_location() {
        let mut req = input("a", "/old/\\evil.example/x", Some("q=\\"));
        req.matched_len = 4;
        assert_eq!(
            redirect("{replace_prefix: /}").location(&req).unwrap(),
            "/%5Cevil.example/x?q=\\"
        );
        assert_eq!(
            redirect("{prefix: /}")
                .location(&input("a", "/\\evil.example", None))
                .unwrap(),
            "/%5Cevil.example"
        );
        assert_eq!(
            redirect("{location: '/a\\b'}").location(&req).unwrap(),
            "/a\\b"
        );
    }

    #[test]
    fn path_parts_give_a_relative_location() {
        let r = redirect("{replace_prefix: /v2}");
        let mut req = input("a", "/v1/users/7", Some("x=1"));
        req.matched_len = 3;
        assert_eq!(r.location(&req).unwrap(), "/v2/users/7?x=1");
        let r = redirect("{path: /moved, query: drop, code: 308}");
        assert_eq!(r.location(&req).unwrap(), "/moved");
        let r = redirect("{host: New.Test.com}");
        assert_eq!(
            r.location(&input("old.test.com:81", "/p", None)).unwrap(),
            "http://new.test.com/p"
        );
    }

    #[test]
    fn rewrites() {
        let rw = CompiledRewrite::new(&PathRewrite::ReplacePrefix("/v2".into())).unwrap();
        assert_eq!(rw.apply("/api/users", 4), "/v2/users");
        assert_eq!(rw.apply("/api", 4), "/v2");
        let rw = CompiledRewrite::new(
            &serde_saphyr::from_str::<PathRewrite>(
                "regex: {pattern: '^/user/([0-9]+)/(.*)$', replace: '/u/$2?uid=$1'}",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(rw.apply("/user/42/profile", 0), "/u/profile?uid=42");
        assert_eq!(rw.apply("/other", 0), "/other");
        let rw = CompiledRewrite::new(
            &serde_saphyr::from_str::<PathRewrite>("regex: {pattern: '^/api', replace: ''}")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rw.apply("/api/x", 0), "/x");
        assert_eq!(rw.apply("/api", 0), "/");
        assert!(CompiledRewrite::new(&PathRewrite::ReplacePrefix("v2".into())).is_err());
    }

    #[test]
    fn header_edits_remove_then_set_then_add() {
        let edits: HeaderEdits = serde_saphyr::from_str(
            "{remove: [Server, x-old], set: {X-Frame-Options: DENY, x-old: new}, add: {Via: sluice}}",
        )
        .unwrap();
        let edits = CompiledHeaderEdits::new(&edits);
        let mut h = HeaderMap::new();
        h.insert("server", "nginx".parse().unwrap());
        h.append("x-old", "1".parse().unwrap());
        h.append("x-old", "2".parse().unwrap());
        h.insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
        h.insert("via", "1.1 cdn".parse().unwrap());
        edits.apply(&mut h);
        assert!(h.get("server").is_none());
        assert_eq!(h.get_all("x-old").iter().collect::<Vec<_>>(), ["new"]);
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(
            h.get_all("via").iter().collect::<Vec<_>>(),
            ["1.1 cdn", "sluice"]
        );
    }

    #[test]
    fn framing_headers_cannot_be_edited() {
        let edits: HeaderEdits = serde_saphyr::from_str(
            "{remove: [Content-Length], set: {Transfer-Encoding: chunked, Host: a}}",
        )
        .unwrap();
        assert_eq!(edits.reserved_names().count(), 2);
        let mut h = HeaderMap::new();
        h.insert("content-length", "3".parse().unwrap());
        CompiledHeaderEdits::new(&edits).apply(&mut h);
        assert_eq!(h["content-length"], "3");
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(h["host"], "a", "Host is end-to-end and may be set");
    }
}
