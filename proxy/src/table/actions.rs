//! What a route does with a request it matched, and the edits around it.

use super::BackendId;
use super::matchers::HeaderNameText;
use super::pattern::SearchPattern;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Longest fixed body (responses, deny bodies, error pages) accepted, in bytes.
pub const MAX_FIXED_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Proxy the request to a backend (`use_backend`).
    Forward(BackendId),
    /// Answer with a redirect (`redirect location|prefix|scheme`).
    Redirect(Redirect),
    /// Refuse the request (`http-request deny`).
    Deny(Deny),
    /// Answer with a fixed response (`http-request return`).
    Respond(Respond),
}

/// Where a redirect points. Either `location` (used as is), or `prefix` (prepended
/// to the request path, HAProxy's `redirect prefix`), or any of the parts
/// `scheme`, `host`, `port` and one of `path` / `replace_prefix`; parts not given
/// are taken from the request. With only path parts the `Location` is relative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRedirect")]
pub struct Redirect {
    #[serde(default)]
    pub code: RedirectCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Replaces the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Replaces the part of the path the route matched, keeping the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix: Option<String>,
    /// Whether the request's query is appended. Default: `keep`, except with
    /// `location`, which is used as written unless `keep` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryHandling>,
}

/// The same fields, checked for a coherent combination before becoming a `Redirect`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    #[serde(default)]
    code: RedirectCode,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    scheme: Option<Scheme>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    replace_prefix: Option<String>,
    #[serde(default)]
    query: Option<QueryHandling>,
}

impl TryFrom<RawRedirect> for Redirect {
    type Error = String;
    fn try_from(r: RawRedirect) -> Result<Self, String> {
        let redirect = Redirect {
            code: r.code,
            location: r.location,
            prefix: r.prefix,
            scheme: r.scheme,
            host: r.host,
            port: r.port,
            path: r.path,
            replace_prefix: r.replace_prefix,
            query: r.query,
        };
        redirect.validate()?;
        Ok(redirect)
    }
}

impl Redirect {
    /// The combination rules, also used for tables built in code.
    pub fn validate(&self) -> Result<(), String> {
        let parts = [
            ("scheme", self.scheme.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("path", self.path.is_some()),
            ("replace_prefix", self.replace_prefix.is_some()),
        ];
        let given: Vec<&str> = parts.iter().filter(|p| p.1).map(|p| p.0).collect();
        for (whole, value) in [("location", &self.location), ("prefix", &self.prefix)] {
            if value.is_some() && !given.is_empty() {
                return Err(format!(
                    "`{whole}` replaces the whole target; it cannot be combined with {}",
                    given.join(", ")
                ));
            }
        }
        if self.location.is_some() && self.prefix.is_some() {
            return Err("give `location` or `prefix`, not both".into());
        }
        if self.location.is_none() && self.prefix.is_none() && given.is_empty() {
            return Err("a redirect needs a target: location, prefix, scheme, host, port, path or replace_prefix".into());
        }
        if self.path.is_some() && self.replace_prefix.is_some() {
            return Err("give `path` or `replace_prefix`, not both".into());
        }
        if let Some(loc) = &self.location
            && (loc.is_empty() || http::HeaderValue::from_str(loc).is_err())
        {
            return Err(format!("location {loc:?} is not a valid header value"));
        }
        if let Some(prefix) = &self.prefix {
            parse_prefix(prefix)?;
        }
        if let Some(host) = &self.host {
            super::validate::dns_name(host).map_err(|e| format!("redirect host: {e}"))?;
        }
        for (field, p) in [
            ("path", &self.path),
            ("replace_prefix", &self.replace_prefix),
        ] {
            if let Some(p) = p
                && (!p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err())
            {
                return Err(format!(
                    "redirect {field} {p:?} must be a path starting with `/`"
                ));
            }
        }
        Ok(())
    }
}

/// A redirect prefix split into its origin (`scheme://host[:port]`, may be empty)
/// and path (no trailing `/`).
pub fn parse_prefix(prefix: &str) -> Result<(String, String), String> {
    let err =
        || format!("redirect prefix {prefix:?} must be `/path` or `scheme://host[:port][/path]`");
    if http::HeaderValue::from_str(prefix).is_err() || prefix.contains(['?', '#']) {
        return Err(err());
    }
    if prefix.starts_with('/') {
        return Ok((String::new(), prefix.trim_end_matches('/').to_owned()));
    }
    let uri: http::Uri = prefix.parse().map_err(|_| err())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(err());
    };
    Ok((
        format!("{scheme}://{authority}"),
        uri.path().trim_end_matches('/').to_owned(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryHandling {
    Keep,
    Drop,
}

/// 301, 302, 303, 307 or 308; 302 by default, as HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectCode(u16);

impl RedirectCode {
    pub fn new(code: u16) -> Result<Self, String> {
        match code {
            301 | 302 | 303 | 307 | 308 => Ok(Self(code)),
            _ => Err(format!(
                "redirect code {code} is not one of 301, 302, 303, 307, 308"
            )),
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for RedirectCode {
    fn default() -> Self {
        Self(302)
    }
}

/// `http-request deny`: 403 unless told otherwise; the body defaults to the
/// listener's error page for the status, else a short text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    #[serde(default = "forbidden")]
    pub status: ResponseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<FixedBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<HeaderValueText>,
}

fn forbidden() -> ResponseStatus {
    ResponseStatus(403)
}

/// `http-request return`: a fixed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    #[serde(default = "ok")]
    pub status: ResponseStatus,
    #[serde(default = "text_plain")]
    pub content_type: HeaderValueText,
    #[serde(default)]
    pub body: FixedBody,
}

fn ok() -> ResponseStatus {
    ResponseStatus(200)
}

pub fn text_plain() -> HeaderValueText {
    HeaderValueText("text/plain; charset=utf-8".into())
}

pub fn text_html() -> HeaderValueText {
    HeaderValueText("text/html; charset=utf-8".into())
}

/// A page served instead of the proxy's own text for an error it generates
/// (HAProxy's `errorfile`), keyed by status in the listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPage {
    #[serde(default = "text_html")]
    pub content_type: HeaderValueText,
    pub body: FixedBody,
}

/// A final status, 200–599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResponseStatus(u16);

impl ResponseStatus {
    pub fn new(code: u16) -> Result<Self, String> {
        if (200..=599).contains(&code) {
            Ok(Self(code))
        } else {
            Err(format!("status {code} is not a final status (200–599)"))
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

/// An error status the proxy can generate, 400–599: the key of `error_pages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErrorStatus(u16);

impl ErrorStatus {
    pub fn new(code: u16) -> Result<Self, String> {
        if (400..=599).contains(&code) {
            Ok(Self(code))
        } else {
            Err(format!(
                "error page status {code} is not an error (400–599)"
            ))
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

/// A response body written in the table, at most [`MAX_FIXED_BODY`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedBody(String);

impl FixedBody {
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if text.len() > MAX_FIXED_BODY {
            return Err(format!(
                "body is {} bytes; the limit is {MAX_FIXED_BODY}",
                text.len()
            ));
        }
        Ok(Self(text))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A header value, validated (no control characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeaderValueText(String);

impl HeaderValueText {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        http::HeaderValue::from_str(&value)
            .map_err(|_| format!("{value:?} is not a valid header value"))?;
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0).unwrap_or(http::HeaderValue::from_static(""))
    }
}

/// Header edits applied in order: `remove`, then `set` (replacing all values),
/// then `add` (appending). Values are fixed strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<HeaderNameText>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<HeaderNameText, HeaderValueText>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<HeaderNameText, HeaderValueText>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Edited names that frame the message or describe one hop: the proxy owns
    /// them, and an edit could desynchronise client, proxy and backend.
    pub fn reserved_names(&self) -> impl Iterator<Item = &HeaderNameText> {
        self.remove
            .iter()
            .chain(self.set.keys())
            .chain(self.add.keys())
            .filter(|n| RESERVED_HEADERS.contains(&n.as_str()))
    }
}

/// Headers that edits may not touch (`Host` may be set; it is end-to-end).
pub const RESERVED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRewrite {
    /// Replaces the part of the path the route matched (the whole path for Exact,
    /// the prefix for Prefix and BeginsWith, nothing otherwise) with this, keeping
    /// the rest and the query.
    ReplacePrefix(String),
    /// Replaces the first match of `pattern` in the path with `replace`, where `$1`
    /// or `${name}` insert capture groups (HAProxy's `replace-path`).
    Regex(RegexRewrite),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pub pattern: SearchPattern,
    pub replace: String,
}

macro_rules! validated_scalar {
    ($ty:ty, $inner:ty, $get:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let get: fn(&$ty) -> $inner = $get;
                get(self).serialize(s)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let inner = <$inner>::deserialize(d)?;
                <$ty>::new(inner).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_scalar!(RedirectCode, u16, |c| c.0);
validated_scalar!(ResponseStatus, u16, |c| c.0);
validated_scalar!(ErrorStatus, u16, |c| c.0);
validated_scalar!(FixedBody, String, |b| b.0.clone());
validated_scalar!(HeaderValueText, String, |v| v.0.clone());

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(yaml: &str) -> Result<Redirect, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn redirect_combinations() {
        assert!(redirect("{scheme: https}").is_ok());
        assert!(redirect("{prefix: 'http://3g-iphone.test.com'}").is_ok());
        assert!(redirect("{location: /maintenance.html, code: 301}").is_ok());
        assert!(
            redirect("{location: /x, host: a.com}")
                .unwrap_err()
                .contains("cannot be combined")
        );
        assert!(redirect("{}").unwrap_err().contains("needs a target"));
        assert!(
            redirect("{path: /a, replace_prefix: /b}")
                .unwrap_err()
                .contains("not both")
        );
        assert!(redirect("{path: a}").unwrap_err().contains("starting with"));
        assert!(
            redirect("{scheme: https, code: 304}")
                .unwrap_err()
                .contains("304")
        );
        assert!(redirect("{prefix: 'ftp:'}").is_err());
    }

    #[test]
    fn prefixes_split_into_origin_and_path() {
        assert_eq!(
            parse_prefix("http://3g-iphone.test.com").unwrap(),
            ("http://3g-iphone.test.com".into(), "".into())
        );
        assert_eq!(
            parse_prefix("https://m.example.com:8443/mobile/").unwrap(),
            ("https://m.example.com:8443".into(), "/mobile".into())
        );
        assert_eq!(parse_prefix("/new").unwrap(), ("".into(), "/new".into()));
        assert!(parse_prefix("http://a.com/x?y").is_err());
    }

    #[test]
    fn statuses_and_bodies_are_bounded() {
        assert!(ResponseStatus::new(199).is_err());
        assert!(ResponseStatus::new(503).is_ok());
        assert!(ErrorStatus::new(302).is_err());
        assert!(FixedBody::new("x".repeat(MAX_FIXED_BODY + 1)).is_err());
        assert!(HeaderValueText::new("a\nb").is_err());
    }

    #[test]
    fn deny_defaults_to_403() {
        let d: Deny = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(d.status.get(), 403);
    }
}
