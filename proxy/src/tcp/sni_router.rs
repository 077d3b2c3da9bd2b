//! Which target takes a connection, by the server name it asked for (SNI):
//! an exact name, then a `*.` wildcard covering one label, then the default.
//! Names are compared without case and without a trailing dot, as certificates
//! are chosen (`tls/certs.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

pub struct SniRouter<T> {
    targets: Vec<T>,
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` is kept as `example.com`.
    wildcard: HashMap<Box<str>, usize>,
    default: Option<usize>,
}

impl<T> Default for SniRouter<T> {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        }
    }
}

impl<T> SniRouter<T> {
    /// Adds a target for `hosts`. A host that is invalid, or routed already by
    /// an earlier target, is left out; each such problem is returned.
    pub fn add(&mut self, hosts: &[String], target: T) -> Vec<String> {
        let ix = self.targets.len();
        self.targets.push(target);
        let mut problems = Vec::new();
        for host in hosts {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            if let Err(e) = crate::table::validate_host(&name) {
                problems.push(format!("{e}; it is ignored"));
                continue;
            }
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_owned()),
                None => (&mut self.exact, name),
            };
            match map.entry(key.into_boxed_str()) {
                Entry::Vacant(slot) => {
                    slot.insert(ix);
                }
                Entry::Occupied(_) => problems.push(format!(
                    "host {host:?} is routed by an earlier route already; here it is ignored"
                )),
            }
        }
        problems
    }

    /// The target for names nothing else matches, and for no name.
    pub fn set_default(&mut self, target: T) {
        self.default = Some(self.targets.len());
        self.targets.push(target);
    }

    /// The target for `server_name` (`None`: the client sent no SNI).
    pub fn lookup(&self, server_name: Option<&str>) -> Option<&T> {
        let ix = server_name
            .and_then(|name| self.lookup_name(name))
            .or(self.default)?;
        self.targets.get(ix)
    }

    fn lookup_name(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        // The ClientHello parser lower-cases already; others may not.
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(&ix) = self.exact.get(&*name) {
            return Some(ix);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    /// No routes and no default: every connection would be closed.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn router(default: bool) -> SniRouter<&'static str> {
        let mut r = SniRouter::default();
        assert!(
            r.add(&hosts(&["a.example.com", "B.Example.com."]), "a")
                .is_empty()
        );
        assert!(r.add(&hosts(&["*.example.com"]), "wild").is_empty());
        assert!(r.add(&hosts(&["*.deep.example.com"]), "deep").is_empty());
        if default {
            r.set_default("default");
        }
        r
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let r = router(true);
        for (name, want) in [
            (Some("a.example.com"), "a"),
            (Some("b.example.com"), "a"),
            (Some("x.example.com"), "wild"),
            (Some("x.deep.example.com"), "deep"),
            // One label only: not covered by `*.example.com`.
            (Some("x.y.example.com"), "default"),
            (Some("example.com"), "default"),
            (Some("other.test"), "default"),
            (Some("localhost"), "default"),
            (None, "default"),
        ] {
            assert_eq!(r.lookup(name), Some(&want), "{name:?}");
        }
    }

    #[test]
    fn names_compare_without_case_or_trailing_dot() {
        let r = router(false);
        assert_eq!(r.lookup(Some("A.EXAMPLE.COM")), Some(&"a"));
        assert_eq!(r.lookup(Some("a.example.com.")), Some(&"a"));
        assert_eq!(r.lookup(Some("X.Example.Com")), Some(&"wild"));
    }

    #[test]
    fn without_a_default_unmatched_names_have_no_target() {
        let r = router(false);
        assert_eq!(r.lookup(Some("other.test")), None);
        assert_eq!(r.lookup(None), None);
        assert!(SniRouter::<()>::default().is_empty());
    }

    #[test]
    fn the_first_route_keeps_a_host_and_bad_hosts_are_ignored() {
        let mut r = SniRouter::default();
        assert!(r.add(&hosts(&["a.test", "*.b.test"]), 1).is_empty());
        let problems = r.add(&hosts(&["A.test", "*.b.test", "bad host", "c.test"]), 2);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[2].contains("bad host"), "{problems:?}");
        assert_eq!(r.lookup(Some("a.test")), Some(&1));
        assert_eq!(r.lookup(Some("x.b.test")), Some(&1));
        assert_eq!(r.lookup(Some("c.test")), Some(&2));
    }
}
