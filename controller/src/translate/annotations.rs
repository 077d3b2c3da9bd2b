//! The closed allow-list of `sluice.dev/` Ingress annotations, each parsed into a
//! typed option. Unknown keys and invalid values are warnings and are ignored,
//! except an unusable `allow-cidrs`, which fails closed (nobody is allowed).

mod balance;
mod headers;
mod health;
mod redirect;
mod sticky;
mod tls;

pub use redirect::IngressRedirect;
pub use sticky::IngressSticky;
pub use tls::{ClientAuthAnnotations, IngressTls, TlsProtocol};

use crate::snapshot::{ObjectKey, Snapshot};

use ipnet::IpNet;
use sluice_proxy::table::{
    AlpnProtocol, BackendProtocol, BackendTls, Balance, Duration, HeaderEdits, HealthCheck,
    PassiveCheck,
};
use std::collections::BTreeMap;

pub const PREFIX: &str = "sluice.dev/";
const REWRITE_TARGET: &str = "sluice.dev/rewrite-target";
const REQUEST_HEADERS: &str = "sluice.dev/request-headers";
const RESPONSE_HEADERS: &str = "sluice.dev/response-headers";
const HIDE_RESPONSE_HEADERS: &str = "sluice.dev/hide-response-headers";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// Replaces the matched path prefix before forwarding.
    pub rewrite_target: Option<String>,
    pub ssl_redirect: Option<bool>,
    pub backend_protocol: Option<BackendProtocol>,
    pub timeout_connect: Option<Duration>,
    pub timeout_server: Option<Duration>,
    /// `Some(empty)` admits nobody.
    pub allow_cidrs: Option<Vec<IpNet>>,
    pub deny_cidrs: Vec<IpNet>,
    /// Every route answers with this redirect instead of forwarding.
    pub redirect: Option<IngressRedirect>,
    /// `set` edits (`request-headers`).
    pub request_headers: HeaderEdits,
    /// `remove` (`hide-response-headers`) and `set` (`response-headers`) edits.
    pub response_headers: HeaderEdits,
    /// `balance`, with `hash-type` and `hash-balance-factor` folded in.
    pub balance: Option<Balance>,
    pub slow_start: Option<Duration>,
    pub retries: Option<u32>,
    pub redispatch: Option<bool>,
    /// `health-check*`: active checks of the Ingress's backends.
    pub health_check: Option<HealthCheck>,
    /// `passive-check*`: ejection on failures of real traffic.
    pub passive_check: Option<PassiveCheck>,
    pub retry_on_timeout: Option<bool>,
    /// `sticky-cookie*`: session persistence; its keys are filled in by
    /// `load_sticky_keys`.
    pub sticky: Option<IngressSticky>,
    /// Backend re-encryption, passthrough, client certificates, HSTS.
    pub tls: IngressTls,
    /// The backends' TLS settings, from `tls.backend` and its CA Secret
    /// (`load_backend_tls`).
    pub backend_tls: Option<BackendTls>,
    /// The CA Secret could not be read: the backends get no endpoints (503)
    /// rather than a weaker verification.
    pub backend_tls_unusable: bool,
}

impl IngressAnnotations {
    /// Options that change how a backend is reached, which therefore cannot be
    /// shared with Ingresses that do not set them.
    pub fn affects_backend(&self) -> bool {
        self.backend_protocol.is_some()
            || self.timeout_connect.is_some()
            || self.timeout_server.is_some()
            || self.balance.is_some()
            || self.slow_start.is_some()
            || self.retries.is_some()
            || self.redispatch.is_some()
            || self.health_check.is_some()
            || self.passive_check.is_some()
            || self.retry_on_timeout.is_some()
            || self.sticky.is_some()
            || self.tls.backend.is_some()
    }

    /// Fills the sticky cookie's keys from `sluice.dev/sticky-cookie-key-secret`:
    /// the one annotation that reads another object, hence apart from `parse`.
    pub fn load_sticky_keys(
        &mut self,
        snapshot: &Snapshot,
        namespace: &str,
        warnings: &mut Vec<String>,
    ) {
        if let Some(sticky) = &mut self.sticky
            && let Some(secret) = &sticky.key_secret
        {
            sticky.cookie.keys = sticky::load_keys(snapshot, namespace, secret, warnings);
        }
    }

    /// Builds the backends' TLS settings from `backend-protocol: https|grpcs` and
    /// `backend-tls-*`, reading the CA Secret.
    pub fn load_backend_tls(
        &mut self,
        snapshot: &Snapshot,
        namespace: &str,
        warnings: &mut Vec<String>,
    ) {
        let Some(wanted) = &self.tls.backend else {
            return;
        };
        let mut tls = BackendTls {
            server_name: wanted.server_name.clone(),
            insecure_skip_verify: wanted.insecure_skip_verify,
            ..BackendTls::default()
        };
        if wanted.protocol == TlsProtocol::Grpcs {
            tls.alpn = vec![AlpnProtocol::H2];
        }
        if wanted.insecure_skip_verify {
            warnings.push(format!(
                "annotation {PREFIX}backend-tls-insecure-skip-verify: endpoints' certificates are not verified"
            ));
        }
        if let Some(secret) = &wanted.ca_secret {
            match super::tls::ca_bundle(snapshot, &ObjectKey::new(namespace, secret)) {
                Ok(pem) => tls.ca = Some(pem),
                Err(problem) => {
                    warnings.push(format!(
                        "annotation {PREFIX}backend-tls-ca-secret: {problem}; the backends are not used (503) until it is fixed"
                    ));
                    self.backend_tls_unusable = true;
                }
            }
        }
        self.backend_tls = Some(tls);
    }

    /// Whether some clients are refused (`allow-cidrs` or `deny-cidrs`).
    pub fn restricts_sources(&self) -> bool {
        self.allow_cidrs.is_some() || !self.deny_cidrs.is_empty()
    }

    /// The annotations given that shape routes only, so not the listener-wide
    /// default backend (which has no rewrite, edits or redirect of its own).
    pub fn route_only(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.rewrite_target.is_some() {
            given.push(REWRITE_TARGET);
        }
        if let Some(redirect) = &self.redirect {
            given.push(redirect.annotation);
        }
        if !self.request_headers.set.is_empty() {
            given.push(REQUEST_HEADERS);
        }
        if !self.response_headers.set.is_empty() {
            given.push(RESPONSE_HEADERS);
        }
        if !self.response_headers.remove.is_empty() {
            given.push(HIDE_RESPONSE_HEADERS);
        }
        given
    }
}

pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    warnings: &mut Vec<String>,
) -> IngressAnnotations {
    let mut out = IngressAnnotations::default();
    let Some(annotations) = annotations else {
        return out;
    };
    let mut redirects = redirect::RedirectAnnotations::default();
    let mut balancing = balance::BalanceAnnotations::default();
    let mut health = health::HealthAnnotations::default();
    let mut sticky = sticky::StickyAnnotations::default();
    let mut tls = tls::TlsAnnotations::default();
    let mut tls_protocol = None;
    for (key, raw) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let value = raw.trim();
        if redirects.take(name, value)
            || balancing.take(name, value)
            || health.take(name, value)
            || sticky.take(name, value)
            || tls.take(name, value)
        {
            continue;
        }
        let result = match name {
            "rewrite-target" => parse_path(value).map(|v| out.rewrite_target = Some(v)),
            "ssl-redirect" => parse_bool(value).map(|v| out.ssl_redirect = Some(v)),
            "backend-protocol" => parse_protocol(value).map(|(protocol, tls)| {
                out.backend_protocol = Some(protocol);
                tls_protocol = tls;
            }),
            "timeout-connect" => parse_duration(value).map(|v| out.timeout_connect = Some(v)),
            "timeout-server" => parse_duration(value).map(|v| out.timeout_server = Some(v)),
            "slow-start" => parse_duration(value).map(|v| out.slow_start = Some(v)),
            "retries" => parse_retries(value).map(|v| out.retries = Some(v)),
            "redispatch" => parse_bool(value).map(|v| out.redispatch = Some(v)),
            "retry-on-timeout" => parse_bool(value).map(|v| out.retry_on_timeout = Some(v)),
            "allow-cidrs" => {
                let nets = parse_cidrs(key, value, warnings);
                if nets.is_empty() {
                    warnings.push(format!(
                        "annotation {key}: no valid CIDR in {value:?}; nobody is allowed"
                    ));
                }
                out.allow_cidrs = Some(nets);
                Ok(())
            }
            "deny-cidrs" => {
                out.deny_cidrs = parse_cidrs(key, value, warnings);
                Ok(())
            }
            // Untrimmed, so that warnings count lines as the author wrote them.
            "request-headers" => {
                out.request_headers.set =
                    headers::parse_set(key, raw, warnings).unwrap_or_default();
                Ok(())
            }
            "response-headers" => {
                out.response_headers.set =
                    headers::parse_set(key, raw, warnings).unwrap_or_default();
                Ok(())
            }
            "hide-response-headers" => {
                out.response_headers.remove =
                    headers::parse_names(key, value, warnings).unwrap_or_default();
                Ok(())
            }
            _ => Err("unknown annotation; ignored".to_owned()),
        };
        if let Err(problem) = result {
            warnings.push(format!("annotation {key}={value:?}: {problem}"));
        }
    }
    out.redirect = redirects.resolve(warnings);
    out.balance = balancing.resolve(warnings);
    (out.health_check, out.passive_check) = health.resolve(warnings);
    out.sticky = sticky.resolve(warnings);
    out.tls = tls.resolve(tls_protocol, warnings);
    if let Some(redirect) = &out.redirect {
        // Nothing is forwarded from a redirecting route. Backend options stay: they
        // still apply to the Ingress's defaultBackend, if it has one.
        let unused = [
            (REWRITE_TARGET, out.rewrite_target.take().is_some()),
            (
                REQUEST_HEADERS,
                !std::mem::take(&mut out.request_headers).is_empty(),
            ),
        ];
        for (annotation, _) in unused.into_iter().filter(|u| u.1) {
            warnings.push(format!(
                "annotation {annotation}: has no effect, since {} redirects every request; ignored",
                redirect.annotation
            ));
        }
    }
    out
}

fn parse_path(value: &str) -> Result<String, String> {
    if value.starts_with('/') && !value.contains(char::is_whitespace) {
        Ok(value.to_owned())
    } else {
        Err("must be a path starting with `/`; ignored".into())
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be `true` or `false`; ignored".into()),
    }
}

/// The table protocol, and whether it runs over TLS (which the table says in
/// the backend's `tls`, HTTP/2 over TLS being chosen by ALPN).
fn parse_protocol(value: &str) -> Result<(BackendProtocol, Option<TlsProtocol>), String> {
    match value.to_ascii_lowercase().as_str() {
        "http" => Ok((BackendProtocol::Http1, None)),
        "h2c" | "grpc" => Ok((BackendProtocol::H2c, None)),
        "https" => Ok((BackendProtocol::Http1, Some(TlsProtocol::Https))),
        "grpcs" => Ok((BackendProtocol::Http1, Some(TlsProtocol::Grpcs))),
        _ => Err("must be `http`, `h2c`, `grpc`, `https` or `grpcs`; ignored".into()),
    }
}

/// Further attempts after a failed connection (HAProxy `retries`).
const MAX_RETRIES: u32 = 10;

fn parse_retries(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if n <= MAX_RETRIES && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 0 to {MAX_RETRIES}; ignored"
        )),
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    match value.parse::<Duration>() {
        Ok(d) if d.as_millis() > 0 => Ok(d),
        Ok(_) => Err("must be longer than 0; ignored".into()),
        Err(e) => Err(format!("{e}; ignored")),
    }
}

/// Comma-separated CIDRs or bare addresses; invalid entries are dropped with a warning.
fn parse_cidrs(key: &str, value: &str, warnings: &mut Vec<String>) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => warnings.push(format!(
                "annotation {key}: {item:?} is not a CIDR or address; ignored"
            )),
        }
    }
    nets.sort();
    nets.dedup();
    nets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_map(pairs: &[(&str, &str)]) -> (IngressAnnotations, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut warnings = Vec::new();
        let a = parse(Some(&map), &mut warnings);
        (a, warnings)
    }

    #[test]
    fn parses_every_known_annotation() {
        let (a, w) = parse_map(&[
            ("sluice.dev/rewrite-target", "/v2"),
            ("sluice.dev/ssl-redirect", "true"),
            ("sluice.dev/backend-protocol", "H2C"),
            ("sluice.dev/timeout-connect", "2s"),
            ("sluice.dev/timeout-server", "90s"),
            (
                "sluice.dev/allow-cidrs",
                "10.0.0.0/8, 2001:db8::/32,192.168.1.7",
            ),
            ("sluice.dev/deny-cidrs", "10.1.2.3/8"),
            ("other.io/ignored", "x"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(a.rewrite_target.as_deref(), Some("/v2"));
        assert_eq!(a.ssl_redirect, Some(true));
        assert_eq!(a.backend_protocol, Some(BackendProtocol::H2c));
        assert_eq!(a.timeout_connect, Some(Duration::from_secs(2)));
        assert_eq!(a.timeout_server, Some(Duration::from_secs(90)));
        assert_eq!(a.allow_cidrs.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            a.deny_cidrs,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()],
            "host bits are cleared"
        );
    }

    #[test]
    fn invalid_values_warn_and_are_ignored() {
        let (a, w) = parse_map(&[
            ("sluice.dev/rewrite-target", "v2"),
            ("sluice.dev/ssl-redirect", "yes"),
            ("sluice.dev/timeout-server", "0s"),
            ("sluice.dev/no-such-thing", "1"),
        ]);
        assert_eq!(a, IngressAnnotations::default());
        assert_eq!(w.len(), 4, "{w:?}");
    }

    #[test]
    fn balancing_annotations_parse_and_affect_the_backend() {
        let (a, w) = parse_map(&[
            ("sluice.dev/balance", "hdr(X-Tenant)"),
            ("sluice.dev/hash-type", "consistent"),
            ("sluice.dev/hash-balance-factor", "150"),
            ("sluice.dev/slow-start", "10s"),
            ("sluice.dev/retries", "0"),
            ("sluice.dev/redispatch", "false"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let balance = a.balance.as_ref().unwrap();
        assert_eq!(balance.name(), "header");
        assert_eq!(
            balance.hash_options(),
            Some(sluice_proxy::table::HashOptions::new(
                sluice_proxy::table::HashMethod::Consistent,
                Some(150)
            ))
        );
        assert_eq!(a.slow_start, Some(Duration::from_secs(10)));
        assert_eq!(a.retries, Some(0));
        assert_eq!(a.redispatch, Some(false));
        assert!(a.affects_backend());
        assert!(a.route_only().is_empty());
        for (key, value) in [
            ("sluice.dev/balance", "roundrobin"),
            ("sluice.dev/slow-start", "1m"),
            ("sluice.dev/retries", "10"),
            ("sluice.dev/redispatch", "true"),
        ] {
            let (a, w) = parse_map(&[(key, value)]);
            assert!(w.is_empty(), "{w:?}");
            assert!(a.affects_backend(), "{key}");
        }
    }

    #[test]
    fn invalid_balancing_values_warn_and_are_ignored() {
        let (a, w) = parse_map(&[
            ("sluice.dev/balance", "fastest"),
            ("sluice.dev/hash-type", "consistent"),
            ("sluice.dev/slow-start", "0s"),
            ("sluice.dev/retries", "11"),
            ("sluice.dev/redispatch", "yes"),
        ]);
        assert_eq!(a, IngressAnnotations::default());
        assert!(!a.affects_backend());
        assert_eq!(
            w,
            [
                "annotation sluice.dev/redispatch=\"yes\": must be `true` or `false`; ignored",
                "annotation sluice.dev/retries=\"11\": must be a whole number from 0 to 10; ignored",
                "annotation sluice.dev/slow-start=\"0s\": must be longer than 0; ignored",
                "annotation sluice.dev/balance=\"fastest\": unknown algorithm \"fastest\"; expected one of roundrobin, static-rr, leastconn, first, random, source, uri [len N] [depth N] [whole], url_param NAME, hdr(NAME), cookie NAME; ignored",
                "annotation sluice.dev/hash-type=\"consistent\": has no effect without a hashing sluice.dev/balance (source, uri, url_param, hdr or cookie); ignored",
            ]
        );
        for bad in ["-1", "+3", "three", "", "1.0", "4294967296"] {
            assert!(parse_retries(bad).is_err(), "{bad:?}");
        }
        let (_, w) = parse_map(&[("sluice.dev/slow-start", "soon")]);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/slow-start=\"soon\": invalid duration \"soon\": expected e.g. 250ms, 5s, 2m, 1h; ignored"
            ]
        );
    }

    #[test]
    fn a_sticky_cookie_affects_the_backend_and_orphans_do_not() {
        let (a, w) = parse_map(&[
            ("sluice.dev/sticky-cookie", "SRV"),
            ("sluice.dev/sticky-cookie-secure", "true"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(a.sticky.as_ref().is_some_and(|s| s.cookie.secure));
        assert!(a.affects_backend());
        let (a, w) = parse_map(&[("sluice.dev/sticky-cookie-secure", "true")]);
        assert_eq!(a, IngressAnnotations::default());
        assert!(w[0].contains("needs sluice.dev/sticky-cookie"), "{w:?}");
    }

    #[test]
    fn unusable_allow_list_fails_closed() {
        let (a, w) = parse_map(&[("sluice.dev/allow-cidrs", "nope, 300.1.1.1")]);
        assert_eq!(a.allow_cidrs, Some(vec![]));
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn header_annotations_become_edits() {
        let (a, w) = parse_map(&[
            (
                "sluice.dev/response-headers",
                "X-Frame-Options: DENY\nCache-Control: no-store\n",
            ),
            ("sluice.dev/hide-response-headers", "Server, X-Powered-By"),
            ("sluice.dev/request-headers", "X-From: sluice"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let names = |edits: &HeaderEdits| -> Vec<String> {
            edits
                .set
                .keys()
                .chain(&edits.remove)
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            names(&a.response_headers),
            ["cache-control", "x-frame-options", "server", "x-powered-by"]
        );
        assert_eq!(names(&a.request_headers), ["x-from"]);
        assert_eq!(
            a.route_only(),
            [REQUEST_HEADERS, RESPONSE_HEADERS, HIDE_RESPONSE_HEADERS]
        );
    }

    #[test]
    fn header_lines_are_counted_as_written() {
        // The loop trims values; header warnings count lines in the raw value.
        let (a, w) = parse_map(&[("sluice.dev/request-headers", "\nX-Ok: 1\nbad\n")]);
        assert!(a.request_headers.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("line 3 \"bad\""), "{w:?}");
    }

    #[test]
    fn a_redirect_drops_what_only_forwarding_uses() {
        let (a, w) = parse_map(&[
            ("sluice.dev/permanent-redirect", "https://new.example.com/"),
            ("sluice.dev/rewrite-target", "/v2"),
            ("sluice.dev/request-headers", "X-A: 1"),
            ("sluice.dev/response-headers", "X-B: 2"),
            ("sluice.dev/timeout-server", "5s"),
        ]);
        let redirect = a.redirect.as_ref().map(|r| &r.redirect);
        assert_eq!(redirect.map(|r| r.code.get()), Some(301));
        assert_eq!(a.rewrite_target, None);
        assert!(a.request_headers.is_empty());
        assert_eq!(
            a.response_headers.set.len(),
            1,
            "kept: redirects have responses"
        );
        assert_eq!(
            a.timeout_server,
            Some(Duration::from_secs(5)),
            "kept for a defaultBackend"
        );
        assert_eq!(
            w,
            [
                "annotation sluice.dev/rewrite-target: has no effect, since sluice.dev/permanent-redirect redirects every request; ignored",
                "annotation sluice.dev/request-headers: has no effect, since sluice.dev/permanent-redirect redirects every request; ignored",
            ]
        );
        assert_eq!(
            a.route_only(),
            ["sluice.dev/permanent-redirect", RESPONSE_HEADERS]
        );
    }
}
