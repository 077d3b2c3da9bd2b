//! Regular expressions in the table: validated (and size-limited) when read, so a
//! bad pattern fails `check` with its location instead of failing later.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest pattern source accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Compiled program size limit per pattern (the `regex` crate's `size_limit`).
pub const MAX_COMPILED_SIZE: usize = 512 * 1024;

/// A regular expression (`regex` crate syntax: linear time, no backreferences).
///
/// `ANCHORED` patterns must match the whole value (`^(?:…)$` is implied), which is
/// what every matcher uses; unanchored ones search, which is what substitution
/// (`rewrite: {regex: …}`) uses.
#[derive(Clone)]
pub struct Pattern<const ANCHORED: bool> {
    source: Box<str>,
    regex: regex::Regex,
}

/// Matches a whole value.
pub type MatchPattern = Pattern<true>;
/// Finds the first match inside a value.
pub type SearchPattern = Pattern<false>;

impl<const ANCHORED: bool> Pattern<ANCHORED> {
    pub fn new(source: &str) -> Result<Self, String> {
        Ok(Self {
            source: source.into(),
            regex: build(source, ANCHORED, false)?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    /// The same pattern compiled case-insensitively.
    pub fn case_insensitive(&self) -> Result<regex::Regex, String> {
        build(&self.source, ANCHORED, true)
    }
}

fn build(source: &str, anchored: bool, ignore_case: bool) -> Result<regex::Regex, String> {
    if source.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "regex is {} bytes long; the limit is {MAX_PATTERN_LEN}",
            source.len()
        ));
    }
    let full = if anchored {
        format!("^(?:{source})$")
    } else {
        source.to_owned()
    };
    regex::RegexBuilder::new(&full)
        .size_limit(MAX_COMPILED_SIZE)
        .case_insensitive(ignore_case)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("regex {source:?} compiles to more than {limit} bytes; simplify it")
            }
            // The syntax error text is multi-line with a caret; keep it on one line.
            other => format!(
                "invalid regex {source:?}: {}",
                other.to_string().replace('\n', " ")
            ),
        })
}

impl<const A: bool> std::fmt::Debug for Pattern<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl<const A: bool> PartialEq for Pattern<A> {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl<const A: bool> Eq for Pattern<A> {}
impl<const A: bool> PartialOrd for Pattern<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<const A: bool> Ord for Pattern<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.source.cmp(&other.source)
    }
}

impl<const A: bool> Serialize for Pattern<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de, const A: bool> Deserialize<'de> for Pattern<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Self::new(&source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_patterns_are_anchored_and_search_patterns_are_not() {
        let m = MatchPattern::new("/a/[0-9]+").unwrap();
        assert!(m.regex().is_match("/a/12"));
        assert!(!m.regex().is_match("/x/a/12"));
        assert!(!m.regex().is_match("/a/12/b"));
        let s = SearchPattern::new("[0-9]+").unwrap();
        assert!(s.regex().is_match("/x/12/y"));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let m = MatchPattern::new("/a|/b").unwrap();
        assert!(m.regex().is_match("/b"));
        assert!(!m.regex().is_match("/bc"));
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        assert!(
            MatchPattern::new("(")
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            MatchPattern::new(&"a".repeat(MAX_PATTERN_LEN + 1))
                .unwrap_err()
                .contains("limit")
        );
        // Counted repetition blows the compiled size up.
        assert!(
            MatchPattern::new(r"(\w{100}){100}")
                .unwrap_err()
                .contains("compiles to more than")
        );
    }

    #[test]
    fn case_insensitive_variant() {
        let m = MatchPattern::new(".*iphone.*").unwrap();
        assert!(!m.regex().is_match("Mozilla (iPhone)"));
        assert!(m.case_insensitive().unwrap().is_match("Mozilla (iPhone)"));
    }
}
