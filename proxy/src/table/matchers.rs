//! What a route can match on: paths (indexed with Ingress precedence) and the
//! all-of `match` conditions (HAProxy's ACLs), each of which can be negated.

use super::pattern::MatchPattern;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Path matchers. `exact` and `prefix` have Kubernetes Ingress semantics; the others
/// are HAProxy's `path_beg`, `path_end` and `path_reg`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The path equals this string (case-sensitive, no trailing-slash folding).
    Exact(String),
    /// Element-wise prefix: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Prefix(String),
    /// Plain string prefix (`path_beg`): `/img` matches `/img`, `/img/a`, `/imgs`.
    BeginsWith(String),
    /// String suffix (`path_end`): `.jpg` matches `/a/b.jpg`.
    EndsWith(String),
    /// The whole path matches this regex.
    Regex(MatchPattern),
}

/// One condition of a route's `match` list; all of them must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The host is any of these (exact names or `*.suffix`, as `hosts`).
    Host(Vec<String>),
    /// The path matches any of these.
    Path(Vec<PathMatch>),
    /// The method is any of these (case-sensitive, as HTTP defines).
    Method(Vec<MethodName>),
    Header(HeaderMatch),
    Query(QueryMatch),
    /// The client address is inside any of these networks (IPv4 or IPv6).
    Source(Vec<IpNet>),
    /// The inner condition does not hold.
    Not(Box<Condition>),
}

/// A test on a string value (a header or query parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueTest {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(MatchPattern),
    /// At least one value exists (possibly empty).
    Present,
    /// No value exists.
    Absent,
}

/// `header: {name: User-Agent, contains: iphone, ignore_case: true}`: matches when
/// any value of the header passes the test (`absent`: when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: HeaderNameText,
    pub test: ValueTest,
    pub ignore_case: bool,
}

/// `query: {name: lang, exact: en}`: as a header match, on the percent-decoded
/// values of a query parameter (`+` reads as a space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    pub name: String,
    pub test: ValueTest,
    pub ignore_case: bool,
}

/// The written form of header and query matches: a name and exactly one test.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValueMatch<N> {
    name: N,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<MatchPattern>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    present: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    absent: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignore_case: bool,
}

impl<N> RawValueMatch<N> {
    fn into_test(self) -> Result<(N, ValueTest, bool), String> {
        let mut tests = Vec::new();
        let Self {
            name,
            exact,
            prefix,
            suffix,
            contains,
            regex,
            present,
            absent,
            ignore_case,
        } = self;
        tests.extend(exact.map(ValueTest::Exact));
        tests.extend(prefix.map(ValueTest::Prefix));
        tests.extend(suffix.map(ValueTest::Suffix));
        tests.extend(contains.map(ValueTest::Contains));
        tests.extend(regex.map(ValueTest::Regex));
        if present {
            tests.push(ValueTest::Present);
        }
        if absent {
            tests.push(ValueTest::Absent);
        }
        match tests.len() {
            1 => Ok((name, tests.remove(0), ignore_case)),
            0 => Err("give one test: exact, prefix, suffix, contains, regex, present: true or absent: true".into()),
            _ => Err("give only one test of exact, prefix, suffix, contains, regex, present, absent (use several conditions for all-of)".into()),
        }
    }

    fn from_test(name: N, test: &ValueTest, ignore_case: bool) -> Self {
        let mut raw = RawValueMatch {
            name,
            exact: None,
            prefix: None,
            suffix: None,
            contains: None,
            regex: None,
            present: false,
            absent: false,
            ignore_case,
        };
        match test.clone() {
            ValueTest::Exact(v) => raw.exact = Some(v),
            ValueTest::Prefix(v) => raw.prefix = Some(v),
            ValueTest::Suffix(v) => raw.suffix = Some(v),
            ValueTest::Contains(v) => raw.contains = Some(v),
            ValueTest::Regex(p) => raw.regex = Some(p),
            ValueTest::Present => raw.present = true,
            ValueTest::Absent => raw.absent = true,
        }
        raw
    }
}

impl Serialize for HeaderMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValueMatch::from_test(&self.name, &self.test, self.ignore_case).serialize(s)
    }
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawValueMatch::<HeaderNameText>::deserialize(d)?;
        let (name, test, ignore_case) = raw.into_test().map_err(serde::de::Error::custom)?;
        Ok(HeaderMatch {
            name,
            test,
            ignore_case,
        })
    }
}

impl Serialize for QueryMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValueMatch::from_test(&self.name, &self.test, self.ignore_case).serialize(s)
    }
}

impl<'de> Deserialize<'de> for QueryMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawValueMatch::<String>::deserialize(d)?;
        let (name, test, ignore_case) = raw.into_test().map_err(serde::de::Error::custom)?;
        if name.is_empty() {
            return Err(serde::de::Error::custom("query parameter name is empty"));
        }
        Ok(QueryMatch {
            name,
            test,
            ignore_case,
        })
    }
}

/// A header name, validated and kept lower-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeaderNameText(String);

impl HeaderNameText {
    pub fn new(name: &str) -> Result<Self, String> {
        http::HeaderName::from_bytes(name.as_bytes())
            .map(|h| Self(h.as_str().to_owned()))
            .map_err(|_| format!("{name:?} is not a valid header name"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_header_name(&self) -> http::HeaderName {
        // Validated in `new`; the fallback is unreachable but keeps this total.
        http::HeaderName::from_bytes(self.0.as_bytes())
            .unwrap_or(http::HeaderName::from_static("x-invalid"))
    }
}

impl Serialize for HeaderNameText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HeaderNameText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An HTTP method token. Methods are case-sensitive, so `get` is refused with a hint
/// rather than silently never matching.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodName(String);

impl MethodName {
    pub fn new(name: &str) -> Result<Self, String> {
        let method = http::Method::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid HTTP method"))?;
        let upper = name.to_ascii_uppercase();
        if upper != name
            && http::Method::from_bytes(upper.as_bytes())
                .is_ok_and(|m| is_standard(&m) && !is_standard(&method))
        {
            return Err(format!(
                "methods are case-sensitive: {name:?} is not {upper:?}; write {upper:?}"
            ));
        }
        Ok(Self(name.to_owned()))
    }
    pub fn get() -> Self {
        Self("GET".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_method(&self) -> http::Method {
        http::Method::from_bytes(self.0.as_bytes()).unwrap_or_default()
    }
}

fn is_standard(m: &http::Method) -> bool {
    [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::POST,
        http::Method::PUT,
        http::Method::DELETE,
        http::Method::PATCH,
        http::Method::OPTIONS,
        http::Method::CONNECT,
        http::Method::TRACE,
    ]
    .contains(m)
}

impl Serialize for MethodName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(yaml: &str) -> Result<HeaderMatch, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_header_match_needs_exactly_one_test() {
        let m = header("{name: User-Agent, contains: iphone, ignore_case: true}").unwrap();
        assert_eq!(m.name.as_str(), "user-agent");
        assert_eq!(m.test, ValueTest::Contains("iphone".into()));
        assert!(m.ignore_case);
        assert!(header("{name: x}").unwrap_err().contains("give one test"));
        assert!(
            header("{name: x, exact: a, prefix: b}")
                .unwrap_err()
                .contains("only one")
        );
        assert!(
            header("{name: 'bad name', present: true}")
                .unwrap_err()
                .contains("not a valid header name")
        );
    }

    #[test]
    fn header_matches_round_trip() {
        let m = header("{name: X-Debug, absent: true}").unwrap();
        let text = serde_saphyr::to_string(&m).unwrap();
        assert_eq!(header(&text).unwrap(), m);
    }

    #[test]
    fn methods_are_tokens_and_case_mistakes_are_caught() {
        assert!(MethodName::new("GET").is_ok());
        assert!(MethodName::new("PURGE").is_ok());
        assert!(
            MethodName::new("get")
                .unwrap_err()
                .contains("write \"GET\"")
        );
        assert!(MethodName::new("G T").is_err());
    }
}
