//! Route conditions compiled for evaluation without allocation.

use super::facts::{RequestFacts, query_values};
use super::router::{HostPattern, Rule, classify_host, prefix_matches};
use crate::table::{Condition, IpNet, PathMatch, ValueTest};
use http::{HeaderName, Method};
use regex::Regex;

pub enum CompiledCondition {
    Host(HostSet),
    Path(PathSet),
    Method(Box<[Method]>),
    Header(HeaderName, TextTest),
    Query(Box<str>, TextTest),
    Source(Box<[IpNet]>),
    Not(Box<CompiledCondition>),
}

/// Host patterns, tested linearly (a condition holds few of them).
#[derive(Default)]
pub struct HostSet {
    exact: Box<[Box<str>]>,
    wildcard_suffixes: Box<[Box<str>]>,
}

/// Path alternatives, tested linearly.
#[derive(Default)]
pub struct PathSet {
    matchers: Box<[PathMatcher]>,
}

enum PathMatcher {
    Exact(Box<str>),
    /// Normalised: no trailing `/`.
    Prefix(Box<str>),
    /// The same matching the router does for these kinds.
    Rule(Rule),
}

pub enum TextTest {
    Exact(Box<str>, Case),
    Prefix(Box<str>, Case),
    Suffix(Box<str>, Case),
    Contains(Box<str>, Case),
    Regex(Regex),
    Present,
    Absent,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    Insensitive,
}

impl CompiledCondition {
    pub fn compile(condition: &Condition) -> Result<Self, String> {
        Ok(match condition {
            Condition::Host(hosts) => CompiledCondition::Host(HostSet::new(hosts)?),
            Condition::Path(paths) => CompiledCondition::Path(PathSet::new(paths)),
            Condition::Method(methods) => {
                CompiledCondition::Method(methods.iter().map(|m| m.to_method()).collect())
            }
            Condition::Header(h) => CompiledCondition::Header(
                h.name.to_header_name(),
                TextTest::new(&h.test, h.ignore_case)?,
            ),
            Condition::Query(q) => CompiledCondition::Query(
                q.name.as_str().into(),
                TextTest::new(&q.test, q.ignore_case)?,
            ),
            Condition::Source(nets) => {
                CompiledCondition::Source(nets.iter().map(IpNet::trunc).collect())
            }
            Condition::Not(inner) => CompiledCondition::Not(Box::new(Self::compile(inner)?)),
        })
    }

    pub fn holds(&self, req: &RequestFacts<'_>) -> bool {
        match self {
            CompiledCondition::Host(set) => set.matches(req.host),
            CompiledCondition::Path(set) => set.matches(req.path).is_some(),
            CompiledCondition::Method(methods) => methods.contains(req.method),
            CompiledCondition::Header(name, test) => {
                let mut values = req.headers.get_all(name).iter();
                match test {
                    TextTest::Absent => values.next().is_none(),
                    TextTest::Present => values.next().is_some(),
                    // Values that are not UTF-8 (obs-text) cannot match a text test.
                    _ => values.any(|v| v.to_str().is_ok_and(|v| test.matches(v))),
                }
            }
            CompiledCondition::Query(name, test) => {
                let query = req.query.unwrap_or_default();
                let mut values = query_values(query, name);
                match test {
                    TextTest::Absent => values.next().is_none(),
                    TextTest::Present => values.next().is_some(),
                    _ => values.any(|v| test.matches(&v)),
                }
            }
            CompiledCondition::Source(nets) => nets.iter().any(|n| n.contains(&req.client)),
            CompiledCondition::Not(inner) => !inner.holds(req),
        }
    }
}

impl HostSet {
    pub fn new(hosts: &[String]) -> Result<Self, String> {
        let mut exact = Vec::new();
        let mut wildcard = Vec::new();
        for host in hosts {
            match classify_host(host)? {
                HostPattern::Exact(h) => exact.push(h.into()),
                HostPattern::Wildcard(s) => wildcard.push(s.into()),
            }
        }
        Ok(Self {
            exact: exact.into(),
            wildcard_suffixes: wildcard.into(),
        })
    }

    /// Tolerant form for a route's own `hosts`, whose bad entries were already
    /// reported by the router: they are skipped.
    pub fn lenient(hosts: &[String]) -> Self {
        let valid: Vec<String> = hosts
            .iter()
            .filter(|h| classify_host(h).is_ok())
            .cloned()
            .collect();
        Self::new(&valid).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard_suffixes.is_empty()
    }

    pub fn matches(&self, host: &str) -> bool {
        self.exact.iter().any(|h| **h == *host)
            || host
                .split_once('.')
                .is_some_and(|(_, suffix)| self.wildcard_suffixes.iter().any(|s| **s == *suffix))
    }
}

impl PathSet {
    /// Paths that do not start with `/` where one is required are skipped (the table
    /// check refuses them in files; the router reports them).
    pub fn new(paths: &[PathMatch]) -> Self {
        let matchers = paths
            .iter()
            .filter(|p| crate::table::check::check_path(p).is_ok())
            .map(|p| match (p, Rule::new(p)) {
                (_, Some(rule)) => PathMatcher::Rule(rule),
                (PathMatch::Exact(p), None) => PathMatcher::Exact(p.as_str().into()),
                (p, None) => PathMatcher::Prefix(super::router::prefix_key(p).into()),
            })
            .collect();
        Self { matchers }
    }

    /// The length of the path the first matching alternative covers.
    pub fn matches(&self, path: &str) -> Option<usize> {
        self.matchers.iter().find_map(|m| match m {
            PathMatcher::Exact(p) => (**p == *path).then_some(path.len()),
            PathMatcher::Prefix(p) => prefix_matches(p, path).then_some(p.len()),
            PathMatcher::Rule(rule) => rule.matched_len(path),
        })
    }
}

impl TextTest {
    fn new(test: &ValueTest, ignore_case: bool) -> Result<Self, String> {
        let case = if ignore_case {
            Case::Insensitive
        } else {
            Case::Sensitive
        };
        // Insensitive needles are stored lower-case once.
        let text = |s: &str| -> Box<str> {
            match case {
                Case::Insensitive => s.to_ascii_lowercase().into(),
                Case::Sensitive => s.into(),
            }
        };
        Ok(match test {
            ValueTest::Exact(s) => TextTest::Exact(text(s), case),
            ValueTest::Prefix(s) => TextTest::Prefix(text(s), case),
            ValueTest::Suffix(s) => TextTest::Suffix(text(s), case),
            ValueTest::Contains(s) => TextTest::Contains(text(s), case),
            ValueTest::Regex(p) if ignore_case => TextTest::Regex(p.case_insensitive()?),
            ValueTest::Regex(p) => TextTest::Regex(p.regex().clone()),
            ValueTest::Present => TextTest::Present,
            ValueTest::Absent => TextTest::Absent,
        })
    }

    /// Tests one value. `Present`/`Absent` are decided by the caller.
    pub fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        match self {
            TextTest::Exact(n, case) => eq(v, n.as_bytes(), *case),
            TextTest::Prefix(n, case) => {
                v.get(..n.len()).is_some_and(|h| eq(h, n.as_bytes(), *case))
            }
            TextTest::Suffix(n, case) => v
                .len()
                .checked_sub(n.len())
                .is_some_and(|start| eq(&v[start..], n.as_bytes(), *case)),
            TextTest::Contains(n, case) => {
                n.is_empty() || v.windows(n.len()).any(|w| eq(w, n.as_bytes(), *case))
            }
            TextTest::Regex(re) => re.is_match(value),
            TextTest::Present => true,
            TextTest::Absent => false,
        }
    }
}

/// `needle` is already lower-case when insensitive.
fn eq(hay: &[u8], needle: &[u8], case: Case) -> bool {
    match case {
        Case::Sensitive => hay == needle,
        Case::Insensitive => hay.eq_ignore_ascii_case(needle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::facts::canonical_client;
    use http::HeaderMap;

    fn cond(yaml: &str) -> CompiledCondition {
        let c: Condition = serde_saphyr::from_str(yaml).unwrap();
        CompiledCondition::compile(&c).unwrap()
    }

    struct Req {
        host: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        method: Method,
        headers: HeaderMap,
        client: std::net::IpAddr,
    }

    impl Req {
        fn new() -> Self {
            Req {
                host: "www.test.com",
                path: "/",
                query: None,
                method: Method::GET,
                headers: HeaderMap::new(),
                client: "192.0.2.1".parse().unwrap(),
            }
        }
        fn header(mut self, k: &'static str, v: &'static str) -> Self {
            self.headers.append(k, v.parse().unwrap());
            self
        }
        fn holds(&self, c: &CompiledCondition) -> bool {
            c.holds(&RequestFacts {
                host: self.host,
                path: self.path,
                query: self.query,
                method: &self.method,
                headers: &self.headers,
                client: canonical_client(self.client),
            })
        }
    }

    #[test]
    fn header_tests_and_case_rules() {
        let ua = Req::new().header("user-agent", "Mozilla/5.0 (iPhone; CPU OS 17)");
        assert!(ua.holds(&cond(
            "header: {name: User-Agent, contains: iphone, ignore_case: true}"
        )));
        assert!(!ua.holds(&cond("header: {name: User-Agent, contains: iphone}")));
        assert!(ua.holds(&cond("header: {name: User-Agent, contains: iPhone}")));
        assert!(ua.holds(&cond(
            "header: {name: user-agent, prefix: MOZILLA, ignore_case: true}"
        )));
        assert!(!ua.holds(&cond("header: {name: user-agent, prefix: MOZILLA}")));
        assert!(ua.holds(&cond(
            "header: {name: user-agent, suffix: 'os 17)', ignore_case: true}"
        )));
        assert!(ua.holds(&cond("header: {name: user-agent, regex: '.*\\(iPhone;.*'}")));
        assert!(
            !ua.holds(&cond("header: {name: user-agent, regex: 'iPhone'}")),
            "regexes are anchored"
        );
        assert!(ua.holds(&cond(
            "header: {name: user-agent, regex: '.*IPHONE.*', ignore_case: true}"
        )));
        assert!(!ua.holds(&cond(
            "header: {name: user-agent, exact: 'mozilla/5.0 (iphone; cpu os 17)'}"
        )));
        assert!(ua.holds(&cond("header: {name: user-agent, exact: 'mozilla/5.0 (iphone; cpu os 17)', ignore_case: true}")));
    }

    #[test]
    fn present_absent_and_repeated_headers() {
        let r = Req::new().header("x-a", "one").header("x-a", "two");
        assert!(r.holds(&cond("header: {name: x-a, present: true}")));
        assert!(!r.holds(&cond("header: {name: x-a, absent: true}")));
        assert!(r.holds(&cond("header: {name: x-b, absent: true}")));
        assert!(
            r.holds(&cond("header: {name: x-a, exact: two}")),
            "any value may match"
        );
        let empty = Req::new().header("x-e", "");
        assert!(empty.holds(&cond("header: {name: x-e, present: true}")));
        assert!(empty.holds(&cond("header: {name: x-e, exact: ''}")));
    }

    #[test]
    fn query_tests() {
        let mut r = Req::new();
        r.query = Some("debug&lang=en%2DGB&id=42");
        assert!(r.holds(&cond("query: {name: debug, present: true}")));
        assert!(r.holds(&cond("query: {name: lang, exact: en-GB}")));
        assert!(r.holds(&cond(
            "query: {name: lang, exact: EN-gb, ignore_case: true}"
        )));
        assert!(r.holds(&cond("query: {name: id, regex: '[0-9]+'}")));
        assert!(!r.holds(&cond("query: {name: id, regex: '[0-9]'}")));
        assert!(r.holds(&cond("query: {name: other, absent: true}")));
        r.query = None;
        assert!(r.holds(&cond("query: {name: debug, absent: true}")));
    }

    #[test]
    fn source_cidrs_v4_v6_and_mapped() {
        let c = cond("source: [10.0.0.0/8, '2001:db8::/32']");
        let mut r = Req::new();
        for (ip, expected) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("2001:db8::5", true),
            ("2001:db9::5", false),
            ("::ffff:10.9.9.9", true),
        ] {
            r.client = ip.parse().unwrap();
            assert_eq!(r.holds(&c), expected, "{ip}");
        }
        // Host bits in the written network are ignored.
        let c = cond("source: [10.1.2.3/8]");
        r.client = "10.200.0.1".parse().unwrap();
        assert!(r.holds(&c));
    }

    #[test]
    fn methods_paths_hosts_and_negation() {
        let mut r = Req::new();
        let reads = cond("method: [GET, HEAD]");
        assert!(r.holds(&reads));
        r.method = Method::POST;
        assert!(!r.holds(&reads));
        assert!(r.holds(&cond("not: {method: [GET, HEAD]}")));
        r.path = "/static/app.js";
        assert!(r.holds(&cond("path: [{begins_with: /images}, {ends_with: .js}]")));
        assert!(!r.holds(&cond("not: {path: [{prefix: /static}]}")));
        assert!(r.holds(&cond("host: ['*.test.com']")));
        assert!(
            !r.holds(&cond("host: ['*.com']")),
            "a wildcard covers one label"
        );
        assert!(r.holds(&cond("not: {not: {host: [WWW.test.com]}}")));
    }
}
