//! Which route answers a request.
//!
//! Routes are tried in this order, and the first whose path matches and whose
//! `match` conditions all hold wins:
//! 1. Priority, highest first, across all hosts (a priority-100 deny rule without
//!    hosts is tried before any host's routes).
//! 2. Host, most specific first: the exact name, then the `*.suffix` wildcard
//!    covering exactly one leading label, then routes without hosts. A request falls
//!    through to the next level when nothing matched at the more specific one.
//! 3. Path kind, within one host: `exact`; then `begins_with`, `ends_with` and
//!    `regex` in the order written (HAProxy's first-match ACLs; nginx also tries
//!    regexes before prefixes); then `prefix` (Ingress element-wise), longest first.
//! 4. Order written, among routes with the same host and path.
//!
//! Everything is decided at build time: hash maps for hosts and exact paths,
//! pre-sorted lists, regexes compiled once (with a `RegexSet` to skip all of a
//! host's regexes at once when none can match). Matching does not allocate.

use crate::table::PathMatch;
use regex::{Regex, RegexSet};
use std::collections::HashMap;

pub type RouteIx = usize;

/// A route and how many bytes of the path it matched (for prefix rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: RouteIx,
    pub matched_len: usize,
}

#[derive(Default)]
pub struct HostRouter {
    /// Highest priority first; usually exactly one.
    tiers: Vec<Tier>,
}

struct Tier {
    exact: HashMap<Box<str>, PathRouter>,
    /// Keyed by the suffix after `*.`, e.g. `example.com`.
    wildcard: HashMap<Box<str>, PathRouter>,
    any: PathRouter,
}

#[derive(Default)]
struct PathRouter {
    exact: HashMap<Box<str>, Box<[RouteIx]>>,
    /// `begins_with`, `ends_with` and `regex` paths, in the order written.
    rules: Vec<(Rule, RouteIx)>,
    /// All regexes of `rules`, when there are several: one pass says whether any
    /// of them can match.
    regex_set: Option<RegexSet>,
    /// Normalised prefixes (no trailing `/`; the root prefix is ""), longest first.
    prefixes: Vec<(Box<str>, Box<[RouteIx]>)>,
}

/// The path matchers tried in written order; also used by `PathSet`.
pub(super) enum Rule {
    BeginsWith(Box<str>),
    EndsWith(Box<str>),
    Regex(Regex),
}

impl Rule {
    /// `None` for `exact` and `prefix`, which are indexed instead.
    pub(super) fn new(path: &PathMatch) -> Option<Self> {
        match path {
            PathMatch::BeginsWith(p) => Some(Rule::BeginsWith(p.as_str().into())),
            PathMatch::EndsWith(s) => Some(Rule::EndsWith(s.as_str().into())),
            PathMatch::Regex(re) => Some(Rule::Regex(re.regex().clone())),
            PathMatch::Exact(_) | PathMatch::Prefix(_) => None,
        }
    }

    /// How much of `path` a match covers (for rewrites): the prefix for
    /// `begins_with`, the whole (anchored) path for `regex`, nothing for `ends_with`.
    pub(super) fn matched_len(&self, path: &str) -> Option<usize> {
        match self {
            Rule::BeginsWith(p) => path.starts_with(&**p).then_some(p.len()),
            Rule::EndsWith(s) => path.ends_with(&**s).then_some(0),
            Rule::Regex(re) => re.is_match(path).then_some(path.len()),
        }
    }
}

impl HostRouter {
    /// The first route, in precedence order, whose host and path match and which
    /// `accept` takes (its conditions hold). `host` must already be lower-case
    /// without port (see `normalize_host`).
    pub fn lookup(
        &self,
        host: &str,
        path: &str,
        mut accept: impl FnMut(RouteIx) -> bool,
    ) -> Option<RouteMatch> {
        let wildcard_key = host.split_once('.').map(|(_, suffix)| suffix);
        for tier in &self.tiers {
            if let Some(hit) = tier
                .exact
                .get(host)
                .and_then(|p| p.lookup(path, &mut accept))
            {
                return Some(hit);
            }
            if let Some(suffix) = wildcard_key
                && let Some(hit) = tier
                    .wildcard
                    .get(suffix)
                    .and_then(|p| p.lookup(path, &mut accept))
            {
                return Some(hit);
            }
            if let Some(hit) = tier.any.lookup(path, &mut accept) {
                return Some(hit);
            }
        }
        None
    }
}

impl PathRouter {
    fn lookup(&self, path: &str, accept: &mut impl FnMut(RouteIx) -> bool) -> Option<RouteMatch> {
        if let Some(routes) = self.exact.get(path)
            && let Some(&route) = routes.iter().find(|&&r| accept(r))
        {
            return Some(RouteMatch {
                route,
                matched_len: path.len(),
            });
        }
        let mut regex_possible: Option<bool> = None;
        for (rule, route) in &self.rules {
            if let Rule::Regex(_) = rule {
                let possible = *regex_possible.get_or_insert_with(|| {
                    self.regex_set.as_ref().is_none_or(|set| set.is_match(path))
                });
                if !possible {
                    continue;
                }
            }
            let Some(matched_len) = rule.matched_len(path) else {
                continue;
            };
            if accept(*route) {
                return Some(RouteMatch {
                    route: *route,
                    matched_len,
                });
            }
        }
        for (prefix, routes) in &self.prefixes {
            if prefix_matches(prefix, path)
                && let Some(&route) = routes.iter().find(|&&r| accept(r))
            {
                return Some(RouteMatch {
                    route,
                    matched_len: prefix.len(),
                });
            }
        }
        None
    }
}

/// Element-wise prefix match on a normalised prefix.
pub(super) fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Lower-cases and strips the port and a trailing dot. Borrows when already clean,
/// which is the common case, so matching does not allocate.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = strip_port(raw);
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// A `Host` value without its port; an IPv6 literal keeps its brackets.
pub(super) fn strip_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    }
}

/// A route's paths, where none means every path (`prefix: /`).
pub(super) fn or_root(paths: &[PathMatch]) -> &[PathMatch] {
    static ROOT: std::sync::LazyLock<[PathMatch; 1]> =
        std::sync::LazyLock::new(|| [PathMatch::Prefix("/".to_owned())]);
    if paths.is_empty() { &ROOT[..] } else { paths }
}

/// One route as the builder needs it.
pub(super) struct RouteKeys<'a> {
    pub ix: RouteIx,
    pub name: &'a str,
    pub priority: i32,
    pub hosts: &'a [String],
    pub paths: &'a [PathMatch],
    /// No conditions: the route takes every request its host and path match, so
    /// routes after it in the same slot can never answer.
    pub unconditional: bool,
}

#[derive(Default)]
pub(super) struct Builder {
    tiers: Vec<TierBuilder>,
}

struct TierBuilder {
    priority: i32,
    exact: HashMap<String, PathBuilder>,
    wildcard: HashMap<String, PathBuilder>,
    any: PathBuilder,
}

#[derive(Default)]
struct PathBuilder {
    exact: HashMap<String, Vec<Candidate>>,
    rules: Vec<(Rule, Candidate)>,
    prefixes: HashMap<String, Vec<Candidate>>,
}

#[derive(Clone)]
struct Candidate {
    ix: RouteIx,
    name: String,
    unconditional: bool,
}

impl Builder {
    /// Adds a route; returns problems (each degrades only that host or path).
    pub(super) fn add(&mut self, route: RouteKeys<'_>) -> Vec<String> {
        let mut problems = Vec::new();
        let paths = or_root(route.paths);
        let mut valid_paths = Vec::new();
        for path in paths {
            match crate::table::check::check_path(path) {
                Ok(()) => valid_paths.push(path),
                Err(p) => problems.push(format!("{p}; ignored")),
            }
        }

        let tier = match self.tiers.iter().position(|t| t.priority == route.priority) {
            Some(i) => &mut self.tiers[i],
            None => {
                self.tiers.push(TierBuilder {
                    priority: route.priority,
                    exact: HashMap::new(),
                    wildcard: HashMap::new(),
                    any: PathBuilder::default(),
                });
                let last = self.tiers.len() - 1;
                &mut self.tiers[last]
            }
        };
        let candidate = Candidate {
            ix: route.ix,
            name: route.name.to_owned(),
            unconditional: route.unconditional,
        };
        let mut targets: Vec<&mut PathBuilder> = Vec::new();
        if route.hosts.is_empty() {
            targets.push(&mut tier.any);
        }
        let mut exact_keys = Vec::new();
        let mut wildcard_keys = Vec::new();
        for host in route.hosts {
            match classify_host(host) {
                Ok(HostPattern::Exact(h)) => exact_keys.push(h),
                Ok(HostPattern::Wildcard(s)) => wildcard_keys.push(s),
                Err(problem) => problems.push(problem),
            }
        }
        for router in targets {
            router.add(&valid_paths, &candidate, &mut problems);
        }
        for key in exact_keys {
            let router = tier.exact.entry(key).or_default();
            router.add(&valid_paths, &candidate, &mut problems);
        }
        for key in wildcard_keys {
            let router = tier.wildcard.entry(key).or_default();
            router.add(&valid_paths, &candidate, &mut problems);
        }
        problems
    }

    pub(super) fn build(mut self) -> HostRouter {
        self.tiers.sort_by_key(|t| std::cmp::Reverse(t.priority));
        let tiers = self
            .tiers
            .into_iter()
            .map(|t| Tier {
                exact: t
                    .exact
                    .into_iter()
                    .map(|(k, p)| (k.into(), p.build()))
                    .collect(),
                wildcard: t
                    .wildcard
                    .into_iter()
                    .map(|(k, p)| (k.into(), p.build()))
                    .collect(),
                any: t.any.build(),
            })
            .collect();
        HostRouter { tiers }
    }
}

impl PathBuilder {
    fn add(&mut self, paths: &[&PathMatch], candidate: &Candidate, problems: &mut Vec<String>) {
        for path in paths {
            if let Some(rule) = Rule::new(path) {
                self.rules.push((rule, candidate.clone()));
                continue;
            }
            let slot = match path {
                PathMatch::Exact(p) => self.exact.entry(p.clone()).or_default(),
                _ => self
                    .prefixes
                    .entry(prefix_key(path).to_owned())
                    .or_default(),
            };
            if slot.iter().any(|c| c.ix == candidate.ix) {
                continue;
            }
            if let Some(first) = slot.iter().find(|c| c.unconditional) {
                problems.push(format!(
                    "{} is already routed by route `{}`, which has no conditions; this route is never used for it",
                    describe(path),
                    first.name
                ));
            }
            slot.push(candidate.clone());
        }
    }

    fn build(self) -> PathRouter {
        let ixs = |c: Vec<Candidate>| -> Box<[RouteIx]> { c.into_iter().map(|c| c.ix).collect() };
        let mut prefixes: Vec<(Box<str>, Box<[RouteIx]>)> = self
            .prefixes
            .into_iter()
            .map(|(p, c)| (p.into(), ixs(c)))
            .collect();
        // Longest first; equal lengths cannot collide (same key = same slot).
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let regexes: Vec<&str> = self
            .rules
            .iter()
            .filter_map(|(r, _)| match r {
                Rule::Regex(re) => Some(re.as_str()),
                _ => None,
            })
            .collect();
        // Only worth it with several; sources are already anchored and bounded.
        let regex_set = if regexes.len() >= 2 {
            RegexSet::new(&regexes).ok()
        } else {
            None
        };
        PathRouter {
            exact: self
                .exact
                .into_iter()
                .map(|(p, c)| (p.into(), ixs(c)))
                .collect(),
            rules: self.rules.into_iter().map(|(r, c)| (r, c.ix)).collect(),
            regex_set,
            prefixes,
        }
    }
}

/// The index key of a `prefix` path: without trailing `/` (the root prefix is "").
/// Only called for `exact`/`prefix` paths, whose text it is.
pub(super) fn prefix_key(path: &PathMatch) -> &str {
    let text = match path {
        PathMatch::Exact(p)
        | PathMatch::Prefix(p)
        | PathMatch::BeginsWith(p)
        | PathMatch::EndsWith(p) => p,
        PathMatch::Regex(p) => p.as_str(),
    };
    text.trim_end_matches('/')
}

fn describe(path: &PathMatch) -> String {
    match path {
        PathMatch::Exact(p) => format!("exact path {p:?}"),
        PathMatch::Prefix(p) => format!("prefix {p:?}"),
        PathMatch::BeginsWith(p) => format!("path beginning {p:?}"),
        PathMatch::EndsWith(p) => format!("path ending {p:?}"),
        PathMatch::Regex(p) => format!("path regex {:?}", p.as_str()),
    }
}

pub(super) enum HostPattern {
    Exact(String),
    Wildcard(String),
}

pub(super) fn classify_host(host: &str) -> Result<HostPattern, String> {
    let lower = host.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    crate::table::validate_host(lower).map_err(|problem| format!("{problem}; ignored"))?;
    Ok(match lower.strip_prefix("*.") {
        Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
        None => HostPattern::Exact(lower.to_owned()),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    impl HostRouter {
        /// Lookup as if every route's conditions held.
        pub fn find(&self, host: &str, path: &str) -> Option<RouteMatch> {
            self.lookup(host, path, |_| true)
        }
    }

    pub fn keys<'a>(ix: RouteIx, hosts: &'a [String], paths: &'a [PathMatch]) -> RouteKeys<'a> {
        RouteKeys {
            ix,
            name: "r",
            priority: 0,
            hosts,
            paths,
            unconditional: true,
        }
    }

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
            problems.extend(b.add(keys(ix, &hosts, paths)));
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
        assert_eq!(r.find("h", "/foo").ix(), Some(0));
        assert_eq!(r.find("h", "/foo/").ix(), Some(0));
        assert_eq!(r.find("h", "/foo/bar").ix(), Some(0));
        assert_eq!(r.find("h", "/foobar").ix(), None);
        assert_eq!(r.find("h", "/").ix(), None);
    }

    #[test]
    fn trailing_slash_prefix_matches_without_slash() {
        // Kubernetes spec table: Prefix `/aaa/bbb/` matches `/aaa/bbb`.
        let (r, _) = router(&[(&[], &[prefix("/aaa/bbb/")])]);
        assert_eq!(r.find("h", "/aaa/bbb").ix(), Some(0));
        assert_eq!(r.find("h", "/aaa/bbb/ccc").ix(), Some(0));
        assert_eq!(r.find("h", "/aaa/bbbxyz").ix(), None);
    }

    #[test]
    fn root_prefix_matches_everything() {
        let (r, _) = router(&[(&[], &[prefix("/")])]);
        assert_eq!(r.find("h", "/").ix(), Some(0));
        assert_eq!(r.find("h", "/anything/at/all").ix(), Some(0));
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let (r, _) = router(&[
            (&[], &[prefix("/")]),
            (&[], &[prefix("/api")]),
            (&[], &[prefix("/api/v2")]),
            (&[], &[exact("/api/v2/health")]),
        ]);
        assert_eq!(r.find("h", "/x").ix(), Some(0));
        assert_eq!(r.find("h", "/api/v1").ix(), Some(1));
        assert_eq!(r.find("h", "/api/v2/users").ix(), Some(2));
        assert_eq!(r.find("h", "/api/v2/health").ix(), Some(3));
        assert_eq!(
            r.find("h", "/api/v2/health/").ix(),
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
        assert_eq!(r.find("foo.example.com", "/a/b").ix(), Some(0));
        // falls through to the wildcard when the exact host has no matching path
        assert_eq!(r.find("foo.example.com", "/b").ix(), Some(1));
        assert_eq!(r.find("bar.example.com", "/").ix(), Some(1));
        // a wildcard covers exactly one label
        assert_eq!(r.find("a.b.example.com", "/").ix(), Some(2));
        assert_eq!(r.find("example.com", "/").ix(), Some(2));
    }

    #[test]
    fn first_route_wins_a_tie_and_the_loser_is_reported() {
        let (r, problems) = router(&[
            (&["a.com"], &[prefix("/x")]),
            (&["a.com"], &[prefix("/x/")]),
        ]);
        assert_eq!(r.find("a.com", "/x").ix(), Some(0));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn invalid_hosts_and_paths_degrade_only_themselves() {
        let (r, problems) = router(&[(
            &["bad host", "ok.com", "a.*.com"],
            &[prefix("nope"), prefix("/y")],
        )]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(r.find("ok.com", "/y").ix(), Some(0));
        assert_eq!(r.find("ok.com", "/nope").ix(), None);
    }

    #[test]
    fn hosts_are_case_insensitive_and_ports_ignored() {
        let (r, _) = router(&[(&["Foo.Example.COM"], &[prefix("/")])]);
        assert_eq!(
            r.find(&normalize_host("FOO.example.com:8080"), "/").ix(),
            Some(0)
        );
        assert_eq!(
            r.find(&normalize_host("foo.example.com."), "/").ix(),
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
    use super::tests::keys;
    use super::*;

    #[test]
    fn reports_the_matched_length() {
        let mut b = Builder::default();
        b.add(keys(0, &[], &[PathMatch::Prefix("/api/".into())]));
        b.add(keys(1, &[], &[PathMatch::Exact("/x".into())]));
        let r = b.build();
        assert_eq!(r.find("h", "/api/v1").map(|m| m.matched_len), Some(4));
        assert_eq!(r.find("h", "/x").map(|m| m.matched_len), Some(2));
    }
}
