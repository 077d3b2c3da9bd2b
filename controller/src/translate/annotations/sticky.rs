//! `sluice.dev/sticky-cookie*` (HAProxy's `cookie NAME insert|rewrite|prefix
//! [indirect] [nocache] [httponly] [secure] [domain] [maxidle] [maxlife]`): a
//! cookie that keeps a client on one endpoint of the Ingress's backends.
//!
//! `sluice.dev/sticky-cookie: NAME` turns it on; the other keys only refine it.
//! They are gathered while the annotations are read and resolved once all are
//! known. An invalid value is ignored with a warning and the rest applies; a
//! combination that cannot work turns stickiness off (a pin that browsers drop,
//! or that the proxy would refuse, is worse than none). Keywords are accepted in
//! any case. The MAC keys come from a Secret, read by [`load_keys`] because
//! parsing annotations sees no other object.

use crate::snapshot::{ObjectKey, SESSION_KEY_TYPE, Snapshot};
use sluice_proxy::table::{
    CookieMode, Duration, IfUnavailable, SameSite, SecretText, Stickiness, StickyCookie,
    is_cookie_name, parse_session_keys,
};

pub const STICKY_COOKIE: &str = "sluice.dev/sticky-cookie";
pub const KEY_SECRET: &str = "sluice.dev/sticky-cookie-key-secret";
/// The data key of such a Secret that holds the keys.
pub const KEYS_FIELD: &str = "keys";

/// The raw (trimmed) values, by name without the `sluice.dev/` prefix.
#[derive(Debug, Default)]
pub struct StickyAnnotations<'a> {
    given: Vec<(&'a str, &'a str)>,
}

/// What the annotations ask for: the cookie (without keys) and the Secret to
/// take its keys from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSticky {
    pub cookie: StickyCookie,
    pub key_secret: Option<String>,
}

impl IngressSticky {
    /// For the table's backend.
    pub fn stickiness(&self) -> Stickiness {
        Stickiness::Cookie(self.cookie.clone())
    }
}

impl<'a> StickyAnnotations<'a> {
    /// Keeps `value` if `name` is a sticky annotation; returns whether it was.
    pub fn take(&mut self, name: &'a str, value: &'a str) -> bool {
        let ours = name == "sticky-cookie" || name.starts_with("sticky-cookie-");
        if ours {
            self.given.push((name, value));
        }
        ours
    }

    pub fn resolve(self, warnings: &mut Vec<String>) -> Option<IngressSticky> {
        if self.given.is_empty() {
            return None;
        }
        let Some(&(_, name)) = self.given.iter().find(|(n, _)| *n == "sticky-cookie") else {
            for &(name, value) in &self.given {
                warn(
                    warnings,
                    name,
                    value,
                    &format!("needs {STICKY_COOKIE} (the cookie's name)"),
                );
            }
            return None;
        };
        if !is_cookie_name(name) {
            warnings.push(format!(
                "annotation {STICKY_COOKIE}={name:?}: not a valid cookie name (visible ASCII \
                 without spaces or ()<>@,;:\\\"/[]?={{}}); sticky sessions are off"
            ));
            return None;
        }
        let mut cookie = StickyCookie::named(name);
        let mut key_secret = None;
        for &(name, value) in &self.given {
            let result = match name {
                "sticky-cookie" => Ok(()),
                "sticky-cookie-mode" => mode(value).map(|m| cookie.mode = m),
                "sticky-cookie-indirect" => boolean(value).map(|b| cookie.indirect = b),
                "sticky-cookie-nocache" => boolean(value).map(|b| cookie.nocache = b),
                "sticky-cookie-httponly" => boolean(value).map(|b| cookie.http_only = b),
                "sticky-cookie-secure" => boolean(value).map(|b| cookie.secure = b),
                "sticky-cookie-samesite" => same_site(value).map(|s| cookie.same_site = Some(s)),
                "sticky-cookie-domain" => own_rule("domain", |c| c.domain = Some(value.to_owned()))
                    .map(|()| cookie.domain = Some(value.to_owned())),
                "sticky-cookie-path" => own_rule("path", |c| c.path = value.to_owned())
                    .map(|()| cookie.path = value.to_owned()),
                "sticky-cookie-max-idle" => limit(value, "max_idle", |c, d| c.max_idle = Some(d))
                    .map(|d| cookie.max_idle = Some(d)),
                "sticky-cookie-max-life" => limit(value, "max_life", |c, d| c.max_life = Some(d))
                    .map(|d| cookie.max_life = Some(d)),
                "sticky-cookie-if-unavailable" => {
                    if_unavailable(value).map(|i| cookie.if_unavailable = i)
                }
                "sticky-cookie-key-secret" if value.is_empty() => Err("names no Secret".to_owned()),
                "sticky-cookie-key-secret" => {
                    key_secret = Some(value.to_owned());
                    Ok(())
                }
                _ => Err("unknown annotation".to_owned()),
            };
            if let Err(problem) = result {
                warn(warnings, name, value, &problem);
            }
        }
        // What is left are combinations (the values passed their own rules).
        let problems = cookie.problems();
        if !problems.is_empty() {
            for (field, message) in problems {
                warnings.push(format!(
                    "annotation {}: {message}; sticky sessions are off",
                    annotation_of(&field)
                ));
            }
            return None;
        }
        Some(IngressSticky { cookie, key_secret })
    }
}

/// The keys in the `sluice.dev/session-key` Secret `name` of `namespace`. On a
/// problem the cookie still works, with the proxy's own keys; the warning says so.
pub fn load_keys(
    snapshot: &Snapshot,
    namespace: &str,
    name: &str,
    warnings: &mut Vec<String>,
) -> Vec<SecretText> {
    let key = ObjectKey::new(namespace, name);
    match keys_in(snapshot, &key) {
        Ok(keys) => keys,
        Err(problem) => {
            warnings.push(format!(
                "annotation {KEY_SECRET}={name:?}: {problem}; the cookie uses the proxy's session keys"
            ));
            Vec::new()
        }
    }
}

fn keys_in(snapshot: &Snapshot, key: &ObjectKey) -> Result<Vec<SecretText>, String> {
    let secret = snapshot
        .session_key_secrets
        .get(key)
        .ok_or_else(|| format!("Secret {key} not found (or not of type {SESSION_KEY_TYPE})"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYS_FIELD))
        .ok_or_else(|| format!("Secret {key} has no {KEYS_FIELD}"))?;
    let text = std::str::from_utf8(&bytes.0)
        .map_err(|_| format!("Secret {key}: {KEYS_FIELD} is not text"))?;
    // The parser's messages quote line numbers, never key bytes.
    parse_session_keys(text).map_err(|e| format!("Secret {key}: {KEYS_FIELD}: {e}"))
}

fn warn(warnings: &mut Vec<String>, name: &str, value: &str, problem: &str) {
    warnings.push(format!(
        "annotation sluice.dev/{name}={value:?}: {problem}; ignored"
    ));
}

/// The annotation that sets a field of the table's `StickyCookie`.
fn annotation_of(field: &str) -> String {
    match field {
        "name" => STICKY_COOKIE.to_owned(),
        "same_site" => format!("{STICKY_COOKIE}-samesite"),
        "http_only" => format!("{STICKY_COOKIE}-httponly"),
        other => format!("{STICKY_COOKIE}-{}", other.replace('_', "-")),
    }
}

/// Checks one value against the table's rule for its `field`, alone on an
/// otherwise default insert cookie, so the controller never disagrees with the
/// proxy about what is valid.
fn own_rule(field: &str, set: impl FnOnce(&mut StickyCookie)) -> Result<(), String> {
    let mut probe = StickyCookie::named("probe");
    set(&mut probe);
    match probe.problems().into_iter().find(|(f, _)| f == field) {
        Some((_, message)) => Err(message),
        None => Ok(()),
    }
}

/// `max-idle` / `max-life`: a duration that passes the table's rule.
fn limit(
    value: &str,
    field: &str,
    set: impl FnOnce(&mut StickyCookie, Duration),
) -> Result<Duration, String> {
    let d = super::parse_duration(value).map_err(|e| e.trim_end_matches("; ignored").to_owned())?;
    own_rule(field, |c| set(c, d)).map(|()| d)
}

fn boolean(value: &str) -> Result<bool, String> {
    super::parse_bool(value).map_err(|e| e.trim_end_matches("; ignored").to_owned())
}

fn mode(value: &str) -> Result<CookieMode, String> {
    match value.to_ascii_lowercase().as_str() {
        "insert" => Ok(CookieMode::Insert),
        "rewrite" => Ok(CookieMode::Rewrite),
        "prefix" => Ok(CookieMode::Prefix),
        // HAProxy's one-line form (`insert indirect nocache`).
        lower if lower.contains(char::is_whitespace) => Err(
            "must be one word: `insert`, `rewrite` or `prefix` (indirect, nocache, httponly, \
             secure, domain, maxidle and maxlife have annotations of their own: \
             sluice.dev/sticky-cookie-indirect, ...)"
                .into(),
        ),
        _ => Err("must be `insert`, `rewrite` or `prefix`".into()),
    }
}

fn same_site(value: &str) -> Result<SameSite, String> {
    match value.to_ascii_lowercase().as_str() {
        "strict" => Ok(SameSite::Strict),
        "lax" => Ok(SameSite::Lax),
        "none" => Ok(SameSite::None),
        _ => Err("must be `Strict`, `Lax` or `None`".into()),
    }
}

fn if_unavailable(value: &str) -> Result<IfUnavailable, String> {
    match value.to_ascii_lowercase().as_str() {
        "redispatch" => Ok(IfUnavailable::Redispatch),
        "fail" => Ok(IfUnavailable::Fail),
        _ => Err("must be `redispatch` (balance again) or `fail` (answer 503)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use std::sync::Arc;

    fn resolve(pairs: &[(&'static str, &'static str)]) -> (Option<IngressSticky>, Vec<String>) {
        let mut s = StickyAnnotations::default();
        for (name, value) in pairs {
            assert!(s.take(name, value), "{name}");
        }
        let mut warnings = Vec::new();
        let sticky = s.resolve(&mut warnings);
        (sticky, warnings)
    }

    fn cookie(sticky: Option<IngressSticky>) -> StickyCookie {
        sticky.expect("stickiness").cookie
    }

    #[test]
    fn nothing_given_means_no_stickiness() {
        assert_eq!(resolve(&[]), (None, vec![]));
        assert!(!StickyAnnotations::default().take("sticky", "x"));
        assert!(!StickyAnnotations::default().take("sticky-cookies", "x"));
    }

    #[test]
    fn a_name_alone_is_an_http_only_insert_cookie() {
        let (sticky, warnings) = resolve(&[("sticky-cookie", "SRV")]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(sticky.as_ref().and_then(|s| s.key_secret.clone()), None);
        assert_eq!(cookie(sticky), StickyCookie::named("SRV"));
    }

    #[test]
    fn every_setting() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie", "SRV"),
            ("sticky-cookie-mode", "insert"),
            ("sticky-cookie-indirect", "true"),
            ("sticky-cookie-nocache", "true"),
            ("sticky-cookie-httponly", "false"),
            ("sticky-cookie-secure", "true"),
            ("sticky-cookie-samesite", "None"),
            ("sticky-cookie-domain", ".example.com"),
            ("sticky-cookie-path", "/app"),
            ("sticky-cookie-max-idle", "30m"),
            ("sticky-cookie-max-life", "8h"),
            ("sticky-cookie-if-unavailable", "fail"),
            ("sticky-cookie-key-secret", "session-keys"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            sticky.as_ref().and_then(|s| s.key_secret.as_deref()),
            Some("session-keys")
        );
        let c = cookie(sticky);
        assert!(c.indirect && c.nocache && !c.http_only && c.secure);
        assert_eq!(c.same_site, Some(SameSite::None));
        assert_eq!(c.domain.as_deref(), Some(".example.com"));
        assert_eq!(c.path, "/app");
        assert_eq!(c.max_idle, Some(Duration::from_secs(30 * 60)));
        assert_eq!(c.max_life, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(c.if_unavailable, IfUnavailable::Fail);
    }

    #[test]
    fn keywords_are_accepted_in_any_case() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie", "SRV"),
            ("sticky-cookie-mode", "Prefix"),
            ("sticky-cookie-samesite", "lAX"),
            ("sticky-cookie-if-unavailable", "FAIL"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let c = cookie(sticky);
        assert_eq!(c.mode, CookieMode::Prefix);
        assert_eq!(c.same_site, Some(SameSite::Lax));
        assert_eq!(c.if_unavailable, IfUnavailable::Fail);
        for (value, expected) in [("strict", SameSite::Strict), ("NONE", SameSite::None)] {
            assert_eq!(same_site(value), Ok(expected));
        }
        assert_eq!(mode("REWRITE"), Ok(CookieMode::Rewrite));
    }

    #[test]
    fn booleans_are_true_or_false_as_elsewhere() {
        assert_eq!(boolean("true"), Ok(true));
        assert_eq!(boolean("false"), Ok(false));
        for bad in ["yes", "1", "True", ""] {
            assert_eq!(
                boolean(bad),
                Err("must be `true` or `false`".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn invalid_values_warn_and_the_rest_applies() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie", "SRV"),
            ("sticky-cookie-mode", "sticky"),
            ("sticky-cookie-secure", "yes"),
            ("sticky-cookie-samesite", "sometimes"),
            ("sticky-cookie-path", "app"),
            ("sticky-cookie-domain", "bad domain"),
            ("sticky-cookie-max-idle", "soon"),
            ("sticky-cookie-max-life", "500ms"),
            ("sticky-cookie-if-unavailable", "retry"),
            ("sticky-cookie-key-secret", ""),
            ("sticky-cookie-colour", "blue"),
            ("sticky-cookie-nocache", "true"),
        ]);
        assert_eq!(
            warnings,
            [
                "annotation sluice.dev/sticky-cookie-mode=\"sticky\": must be `insert`, `rewrite` or `prefix`; ignored",
                "annotation sluice.dev/sticky-cookie-secure=\"yes\": must be `true` or `false`; ignored",
                "annotation sluice.dev/sticky-cookie-samesite=\"sometimes\": must be `Strict`, `Lax` or `None`; ignored",
                "annotation sluice.dev/sticky-cookie-path=\"app\": \"app\" must start with / and hold no `;` or controls; ignored",
                "annotation sluice.dev/sticky-cookie-domain=\"bad domain\": \"bad domain\" is not a valid domain; ignored",
                "annotation sluice.dev/sticky-cookie-max-idle=\"soon\": invalid duration \"soon\": expected e.g. 250ms, 5s, 2m, 1h; ignored",
                "annotation sluice.dev/sticky-cookie-max-life=\"500ms\": must be at least 1s (timestamps count seconds); ignored",
                "annotation sluice.dev/sticky-cookie-if-unavailable=\"retry\": must be `redispatch` (balance again) or `fail` (answer 503); ignored",
                "annotation sluice.dev/sticky-cookie-key-secret=\"\": names no Secret; ignored",
                "annotation sluice.dev/sticky-cookie-colour=\"blue\": unknown annotation; ignored",
            ]
        );
        let expected = StickyCookie {
            nocache: true,
            ..StickyCookie::named("SRV")
        };
        assert_eq!(cookie(sticky), expected);
    }

    #[test]
    fn haproxy_one_line_mode_gets_a_hint() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie", "SRV"),
            ("sticky-cookie-mode", "insert indirect nocache"),
        ]);
        assert!(sticky.is_some());
        assert!(
            warnings[0].contains("must be one word")
                && warnings[0].contains("annotations of their own"),
            "{warnings:?}"
        );
    }

    #[test]
    fn settings_without_a_name_warn_and_are_ignored() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie-mode", "prefix"),
            ("sticky-cookie-secure", "true"),
        ]);
        assert_eq!(sticky, None);
        assert_eq!(
            warnings,
            [
                "annotation sluice.dev/sticky-cookie-mode=\"prefix\": needs sluice.dev/sticky-cookie (the cookie's name); ignored",
                "annotation sluice.dev/sticky-cookie-secure=\"true\": needs sluice.dev/sticky-cookie (the cookie's name); ignored",
            ]
        );
    }

    #[test]
    fn an_invalid_name_turns_stickiness_off() {
        for bad in ["", "S RV", "SRV;", "a=b", "naïve"] {
            let (sticky, warnings) =
                resolve(&[("sticky-cookie", bad), ("sticky-cookie-secure", "true")]);
            assert_eq!(sticky, None, "{bad:?}");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains("not a valid cookie name"),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn combinations_that_cannot_work_turn_stickiness_off() {
        let (sticky, warnings) = resolve(&[
            ("sticky-cookie", "SESSION"),
            ("sticky-cookie-mode", "prefix"),
            ("sticky-cookie-indirect", "true"),
            ("sticky-cookie-max-idle", "30m"),
            ("sticky-cookie-samesite", "none"),
        ]);
        assert_eq!(sticky, None);
        assert_eq!(
            warnings,
            [
                "annotation sluice.dev/sticky-cookie-samesite: `none` needs `secure: true` (browsers drop such cookies otherwise); sticky sessions are off",
                "annotation sluice.dev/sticky-cookie-max-idle: only works in insert mode (the prefix mode's cookie is the application's); sticky sessions are off",
                "annotation sluice.dev/sticky-cookie-indirect: has no meaning in prefix mode (the application owns the cookie); sticky sessions are off",
            ]
        );
    }

    fn snapshot_with(name: &str, data: Option<&[u8]>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("default".into());
        secret.type_ = Some(SESSION_KEY_TYPE.into());
        secret.data = data.map(|d| [(KEYS_FIELD.to_owned(), ByteString(d.to_vec()))].into());
        snapshot
            .session_key_secrets
            .insert(ObjectKey::new("default", name), Arc::new(secret));
        snapshot
    }

    #[test]
    fn keys_come_from_the_secret_or_a_warning_says_why_not() {
        let good = snapshot_with("keys", Some(b"new-key-0123456789\nold-key-0123456789\n"));
        let mut warnings = Vec::new();
        let keys = load_keys(&good, "default", "keys", &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), "new-key-0123456789");

        let cases: [(Snapshot, &str, &str); 5] = [
            (
                good.clone(),
                "other",
                "Secret default/other not found (or not of type sluice.dev/session-key)",
            ),
            (Snapshot::default(), "keys", "not found"),
            (
                snapshot_with("keys", None),
                "keys",
                "Secret default/keys has no keys",
            ),
            (
                snapshot_with("keys", Some(b"\xff\xfe")),
                "keys",
                "keys is not text",
            ),
            (
                snapshot_with("keys", Some(b"tooshort-secret\n")),
                "keys",
                "keys: line 1: a session key needs at least 16 bytes",
            ),
        ];
        for (snapshot, name, expected) in cases {
            let mut warnings = Vec::new();
            assert!(load_keys(&snapshot, "default", name, &mut warnings).is_empty());
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains(expected), "{warnings:?}");
            assert!(warnings[0].ends_with("the cookie uses the proxy's session keys"));
            assert!(!warnings[0].contains("tooshort"), "no key text in warnings");
        }
        let mut warnings = Vec::new();
        assert!(
            load_keys(&good, "elsewhere", "keys", &mut warnings).is_empty(),
            "own namespace only"
        );
    }
}
