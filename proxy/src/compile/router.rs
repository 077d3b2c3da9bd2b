//! Host and path lookup with Kubernetes Ingress precedence.
//!
//! Hosts: an exact name is tried first, then the `*.suffix` wildcard matching exactly
//! one leading label, then routes without hosts; a request falls through to the next
//! level when no path matched at the more specific one. Paths, within one host: an
//! Exact match beats any Prefix; among Prefixes the longest wins (element-wise, so
//! `/foo` matches `/foo/bar` but not `/foobar`); on an exact tie the earlier route wins.

use crate::table::PathMatch;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

pub type RouteIx = usize;

/// A route and how many bytes of the path it matched (for prefix rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: RouteIx,
    pub matched_len: usize,
}

#[derive(Default)]
pub struct HostRouter {
    exact: HashMap<Box<str>, PathRouter>,
    /// Keyed by the suffix after `*.`, e.g. `example.com`.
    wildcard: HashMap<Box<str>, PathRouter>,
    any: PathRouter,
}

#[derive(Default)]
struct PathRouter {
    exact: HashMap<Box<str>, RouteIx>,
    /// Normalised prefixes (no trailing `/`; the root prefix is ""), longest first.
    prefixes: Vec<(Box<str>, RouteIx)>,
}

impl HostRouter {
    /// `host` must already be lower-case without port (see `normalize_host`).
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteMatch> {
        if let Some(hit) = self.exact.get(host).and_then(|p| p.lookup(path)) {
            return Some(hit);
        }
        if let Some((_, suffix)) = host.split_once('.')
            && let Some(hit) = self.wildcard.get(suffix).and_then(|p| p.lookup(path))
        {
            return Some(hit);
        }
        self.any.lookup(path)
    }
}

impl PathRouter {
    fn lookup(&self, path: &str) -> Option<RouteMatch> {
        if let Some(&route) = self.exact.get(path) {
            return Some(RouteMatch {
                route,
                matched_len: path.len(),
            });
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(prefix, route)| RouteMatch {
                route: *route,
                matched_len: prefix.len(),
            })
    }

    fn add(&mut self, path: &PathMatch, ix: RouteIx) -> Option<String> {
        match path {
            PathMatch::Exact(p) => match self.exact.entry(p.as_str().into()) {
                Entry::Vacant(v) => {
                    v.insert(ix);
                    None
                }
                Entry::Occupied(_) => Some(format!("exact path {p:?} is already routed; ignored")),
            },
            PathMatch::Prefix(p) => {
                let normalized = p.trim_end_matches('/');
                if self.prefixes.iter().any(|(q, _)| &**q == normalized) {
                    return Some(format!("prefix {p:?} is already routed; ignored"));
                }
                self.prefixes.push((normalized.into(), ix));
                None
            }
        }
    }
}

/// Element-wise prefix match on a normalised prefix.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Lower-cases and strips the port and a trailing dot. Borrows when already clean,
/// which is the common case, so matching does not allocate.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

#[derive(Default)]
pub(super) struct Builder {
    router: HostRouter,
}

impl Builder {
    /// Adds a route; returns problems (each degrades only that host or path).
    pub(super) fn add(
        &mut self,
        ix: RouteIx,
        hosts: &[String],
        paths: &[PathMatch],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let root = [PathMatch::Prefix("/".to_owned())];
        let paths = if paths.is_empty() { &root[..] } else { paths };
        for path in paths {
            if let Err(p) = validate_path(path) {
                problems.push(p);
            }
        }
        let paths: Vec<&PathMatch> = paths.iter().filter(|p| validate_path(p).is_ok()).collect();

        let mut targets: Vec<&mut PathRouter> = Vec::new();
        if hosts.is_empty() {
            targets.push(&mut self.router.any);
        }
        let mut exact_keys = Vec::new();
        let mut wildcard_keys = Vec::new();
        for host in hosts {
            match classify_host(host) {
                Ok(HostPattern::Exact(h)) => exact_keys.push(h),
                Ok(HostPattern::Wildcard(s)) => wildcard_keys.push(s),
                Err(problem) => problems.push(problem),
            }
        }
        for router in targets {
            add_paths(router, &paths, ix, &mut problems);
        }
        for key in exact_keys {
            add_paths(
                self.router.exact.entry(key.into()).or_default(),
                &paths,
                ix,
                &mut problems,
            );
        }
        for key in wildcard_keys {
            let router = self.router.wildcard.entry(key.into()).or_default();
            add_paths(router, &paths, ix, &mut problems);
        }
        problems
    }

    pub(super) fn build(mut self) -> HostRouter {
        let routers = std::iter::once(&mut self.router.any)
            .chain(self.router.exact.values_mut())
            .chain(self.router.wildcard.values_mut());
        for router in routers {
            // Longest first; stable, so equal lengths keep route order.
            router
                .prefixes
                .sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        }
        self.router
    }
}

fn add_paths(
    router: &mut PathRouter,
    paths: &[&PathMatch],
    ix: RouteIx,
    problems: &mut Vec<String>,
) {
    for path in paths {
        if let Some(problem) = router.add(path, ix) {
            problems.push(problem);
        }
    }
}

enum HostPattern {
    Exact(String),
    Wildcard(String),
}

fn classify_host(host: &str) -> Result<HostPattern, String> {
    let lower = host.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    crate::table::validate_host(lower).map_err(|problem| format!("{problem}; ignored"))?;
    Ok(match lower.strip_prefix("*.") {
        Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
        None => HostPattern::Exact(lower.to_owned()),
    })
}

fn validate_path(path: &PathMatch) -> Result<(), String> {
    let p = match path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
    };
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!("path {p:?} must start with `/`; ignored"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matched route index only, for the precedence tests.
    trait Ix {
        fn ix(self) -> Option<RouteIx>;
    }
    impl Ix for Option<RouteMatch> {
        fn ix(self) -> Option<RouteIx> {
            self.map(|m| m.route)
        }
    }

    fn router(routes: &[(&[&str], &[PathMatch])]) -> (HostRouter, Vec<String>) {
        let mut b = Builder::default();
        let mut problems = Vec::new();
        for (ix, (hosts, paths)) in routes.iter().enumerate() {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            problems.extend(b.add(ix, &hosts, paths));
        }
        (b.build(), problems)
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }
    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    #[test]
    fn prefix_is_element_wise() {
        let (r, _) = router(&[(&[], &[prefix("/foo")])]);
        assert_eq!(r.lookup("h", "/foo").ix(), Some(0));
        assert_eq!(r.lookup("h", "/foo/").ix(), Some(0));
        assert_eq!(r.lookup("h", "/foo/bar").ix(), Some(0));
        assert_eq!(r.lookup("h", "/foobar").ix(), None);
        assert_eq!(r.lookup("h", "/").ix(), None);
    }

    #[test]
    fn trailing_slash_prefix_matches_without_slash() {
        // Kubernetes spec table: Prefix `/aaa/bbb/` matches `/aaa/bbb`.
        let (r, _) = router(&[(&[], &[prefix("/aaa/bbb/")])]);
        assert_eq!(r.lookup("h", "/aaa/bbb").ix(), Some(0));
        assert_eq!(r.lookup("h", "/aaa/bbb/ccc").ix(), Some(0));
        assert_eq!(r.lookup("h", "/aaa/bbbxyz").ix(), None);
    }

    #[test]
    fn root_prefix_matches_everything() {
        let (r, _) = router(&[(&[], &[prefix("/")])]);
        assert_eq!(r.lookup("h", "/").ix(), Some(0));
        assert_eq!(r.lookup("h", "/anything/at/all").ix(), Some(0));
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let (r, _) = router(&[
            (&[], &[prefix("/")]),
            (&[], &[prefix("/api")]),
            (&[], &[prefix("/api/v2")]),
            (&[], &[exact("/api/v2/health")]),
        ]);
        assert_eq!(r.lookup("h", "/x").ix(), Some(0));
        assert_eq!(r.lookup("h", "/api/v1").ix(), Some(1));
        assert_eq!(r.lookup("h", "/api/v2/users").ix(), Some(2));
        assert_eq!(r.lookup("h", "/api/v2/health").ix(), Some(3));
        assert_eq!(
            r.lookup("h", "/api/v2/health/").ix(),
            Some(2),
            "exact does not fold slashes"
        );
    }

    #[test]
    fn exact_host_then_wildcard_then_any() {
        let (r, _) = router(&[
            (&["foo.example.com"], &[prefix("/a")]),
            (&["*.example.com"], &[prefix("/")]),
            (&[], &[prefix("/")]),
        ]);
        assert_eq!(r.lookup("foo.example.com", "/a/b").ix(), Some(0));
        // falls through to the wildcard when the exact host has no matching path
        assert_eq!(r.lookup("foo.example.com", "/b").ix(), Some(1));
        assert_eq!(r.lookup("bar.example.com", "/").ix(), Some(1));
        // a wildcard covers exactly one label
        assert_eq!(r.lookup("a.b.example.com", "/").ix(), Some(2));
        assert_eq!(r.lookup("example.com", "/").ix(), Some(2));
    }

    #[test]
    fn first_route_wins_a_tie_and_the_loser_is_reported() {
        let (r, problems) = router(&[
            (&["a.com"], &[prefix("/x")]),
            (&["a.com"], &[prefix("/x/")]),
        ]);
        assert_eq!(r.lookup("a.com", "/x").ix(), Some(0));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn invalid_hosts_and_paths_degrade_only_themselves() {
        let (r, problems) = router(&[(
            &["bad host", "ok.com", "a.*.com"],
            &[prefix("nope"), prefix("/y")],
        )]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(r.lookup("ok.com", "/y").ix(), Some(0));
        assert_eq!(r.lookup("ok.com", "/nope").ix(), None);
    }

    #[test]
    fn hosts_are_case_insensitive_and_ports_ignored() {
        let (r, _) = router(&[(&["Foo.Example.COM"], &[prefix("/")])]);
        assert_eq!(
            r.lookup(&normalize_host("FOO.example.com:8080"), "/").ix(),
            Some(0)
        );
        assert_eq!(
            r.lookup(&normalize_host("foo.example.com."), "/").ix(),
            Some(0)
        );
        assert_eq!(&*normalize_host("[::1]:80"), "[::1]");
        assert!(matches!(
            normalize_host("plain.host"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}

#[cfg(test)]
mod match_len_tests {
    use super::*;

    #[test]
    fn reports_the_matched_length() {
        let mut b = Builder::default();
        b.add(0, &[], &[PathMatch::Prefix("/api/".into())]);
        b.add(1, &[], &[PathMatch::Exact("/x".into())]);
        let r = b.build();
        assert_eq!(r.lookup("h", "/api/v1").map(|m| m.matched_len), Some(4));
        assert_eq!(r.lookup("h", "/x").map(|m| m.matched_len), Some(2));
    }
}
