//! Session persistence (HAProxy's `cookie NAME insert|rewrite|prefix [indirect]
//! [nocache] [httponly] [secure] [domain] [maxidle] [maxlife]`): a cookie names
//! the endpoint a client stays on. The value is an opaque id (a keyed MAC of the
//! backend and the endpoint address), so replicas and restarts that share the
//! keys agree on it without sharing any state.

use super::{Duration, SecretText};
use serde::{Deserialize, Serialize};

/// How a backend keeps a client on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stickiness {
    Cookie(StickyCookie),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyCookie {
    pub name: String,
    #[serde(default)]
    pub mode: CookieMode,
    /// Our cookie never reaches the backend (insert mode), and is not set again
    /// on a response to a client whose cookie is still valid for the endpoint
    /// that answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indirect: bool,
    /// Responses that set the cookie get `Cache-Control: private`, so a shared
    /// cache does not hand one client's pin to everyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocache: bool,
    /// Attributes of an inserted cookie.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub http_only: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default = "root_path", skip_serializing_if = "is_root_path")]
    pub path: String,
    /// Insert mode: a cookie not seen for this long is ignored (the client is
    /// balanced again), enforced from a signed timestamp in the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle: Option<Duration>,
    /// Insert mode: a cookie first issued longer ago than this is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_life: Option<Duration>,
    /// When the pinned endpoint is down: balance the request again and re-pin
    /// (default), or answer 503.
    #[serde(default, skip_serializing_if = "IfUnavailable::is_redispatch")]
    pub if_unavailable: IfUnavailable,
    /// MAC keys: the first signs, all are accepted (rotation). Empty: the
    /// proxy's session keys (`--session-key-file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<SecretText>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieMode {
    /// The proxy sets a cookie of its own naming the endpoint.
    #[default]
    Insert,
    /// The application sets the cookie; the proxy replaces its value.
    Rewrite,
    /// The application's session cookie value is prefixed with the endpoint id
    /// (`ID~value`), and the prefix is stripped on the way in.
    Prefix,
}

impl CookieMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Rewrite => "rewrite",
            Self::Prefix => "prefix",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfUnavailable {
    #[default]
    Redispatch,
    Fail,
}

impl IfUnavailable {
    fn is_redispatch(&self) -> bool {
        *self == Self::Redispatch
    }
}

/// Shortest accepted key, in bytes.
pub const MIN_SESSION_KEY_LEN: usize = 16;

/// Session keys from text (a key file or a Secret): one key per line, the first
/// signs; blank lines and `#` comments are skipped. Each key is the line's
/// bytes, at least [`MIN_SESSION_KEY_LEN`] of them (`openssl rand -base64 32`).
pub fn parse_session_keys(text: &str) -> Result<Vec<SecretText>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() < MIN_SESSION_KEY_LEN {
            return Err(format!(
                "line {}: a session key needs at least {MIN_SESSION_KEY_LEN} bytes, this one has {}",
                n + 1,
                line.len()
            ));
        }
        keys.push(SecretText::new(line.to_owned()));
    }
    if keys.is_empty() {
        return Err("no session key in it (one key per line)".into());
    }
    Ok(keys)
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn root_path() -> String {
    "/".into()
}
fn is_root_path(p: &String) -> bool {
    p == "/"
}

impl Stickiness {
    /// Settings that cannot work, as (field below `sticky`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        match self {
            Self::Cookie(c) => c
                .problems()
                .into_iter()
                .map(|(f, m)| (format!("cookie.{f}"), m))
                .collect(),
        }
    }
}

impl StickyCookie {
    /// A cookie with every setting at its default (what `cookie: {name: ...}`
    /// reads as).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mode: CookieMode::default(),
            indirect: false,
            nocache: false,
            http_only: yes(),
            secure: false,
            same_site: None,
            domain: None,
            path: root_path(),
            max_idle: None,
            max_life: None,
            if_unavailable: IfUnavailable::default(),
            keys: Vec::new(),
        }
    }

    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |field: &str, message: String| out.push((field.to_owned(), message));
        if !is_cookie_name(&self.name) {
            push(
                "name",
                format!("{:?} is not a valid cookie name", self.name),
            );
        }
        if !is_attribute_value(&self.path) || !self.path.starts_with('/') {
            push(
                "path",
                format!(
                    "{:?} must start with / and hold no `;` or controls",
                    self.path
                ),
            );
        }
        if let Some(domain) = &self.domain {
            let bare = domain.strip_prefix('.').unwrap_or(domain);
            if super::validate::dns_name(&bare.to_ascii_lowercase()).is_err() {
                push("domain", format!("{domain:?} is not a valid domain"));
            }
        }
        if self.same_site == Some(SameSite::None) && !self.secure {
            push(
                "same_site",
                "`none` needs `secure: true` (browsers drop such cookies otherwise)".into(),
            );
        }
        for (field, limit) in [("max_idle", self.max_idle), ("max_life", self.max_life)] {
            let Some(limit) = limit else { continue };
            if self.mode != CookieMode::Insert {
                push(
                    field,
                    format!(
                        "only works in insert mode (the {} mode's cookie is the application's)",
                        self.mode.name()
                    ),
                );
            } else if limit.as_millis() < 1000 {
                push(
                    field,
                    "must be at least 1s (timestamps count seconds)".into(),
                );
            }
        }
        if self.indirect && self.mode == CookieMode::Prefix {
            push(
                "indirect",
                "has no meaning in prefix mode (the application owns the cookie)".into(),
            );
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.expose().len() < MIN_SESSION_KEY_LEN {
                push(
                    &format!("keys[{i}]"),
                    format!("a session key needs at least {MIN_SESSION_KEY_LEN} bytes"),
                );
            }
        }
        out
    }

    /// Whether cookie values carry signed first/last-seen timestamps.
    pub fn has_timestamps(&self) -> bool {
        self.max_idle.is_some() || self.max_life.is_some()
    }
}

/// RFC 6265 cookie-name: a token (visible ASCII without separators).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// An attribute value that cannot end the attribute early or smuggle another.
fn is_attribute_value(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(yaml: &str) -> StickyCookie {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_are_an_http_only_insert_cookie_on_the_root_path() {
        let c = cookie("name: SRV");
        assert_eq!(c, StickyCookie::named("SRV"), "one set of defaults");
        assert_eq!(c.mode, CookieMode::Insert);
        assert!(c.http_only && !c.secure && !c.indirect && !c.nocache);
        assert_eq!(c.path, "/");
        assert_eq!(c.if_unavailable, IfUnavailable::Redispatch);
        assert!(c.problems().is_empty());
        assert!(!c.has_timestamps());
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let c = cookie(
            "{name: 'a b', mode: prefix, indirect: true, path: 'x;y', domain: 'bad domain',
              same_site: none, max_idle: 30m, keys: [short]}",
        );
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "name",
                "path",
                "domain",
                "same_site",
                "max_idle",
                "indirect",
                "keys[0]"
            ]
        );
        let c = cookie("{name: SRV, max_life: 500ms}");
        assert_eq!(c.problems()[0].0, "max_life");
    }

    #[test]
    fn key_files_have_one_key_per_line_and_short_keys_are_refused() {
        let keys =
            parse_session_keys("# rotation: new first\nnew-key-0123456789\n\nold-key-0123456789\n")
                .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), "new-key-0123456789");
        assert!(
            parse_session_keys("short\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_session_keys("# nothing\n").is_err());
    }
}
