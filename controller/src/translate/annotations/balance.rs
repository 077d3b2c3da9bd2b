//! `sluice.dev/balance` (HAProxy's `balance`), `sluice.dev/hash-type` (`hash-type`)
//! and `sluice.dev/hash-balance-factor` (`hash-balance-factor`): how requests are
//! spread over the endpoints of the Ingress's backends.
//!
//! The three values are gathered while the annotations are read and resolved once
//! all are known, since the hashing options only mean something with a hashing
//! algorithm. Keywords are case-sensitive, as in HAProxy. An invalid value is
//! ignored whole, with a warning: an invalid `balance` leaves the default (round
//! robin), and then the hashing options have nothing to apply to.

use sluice_proxy::table::{
    Backend, Balance, HashMethod, HashOptions, HeaderHash, HeaderNameText, NamedHash, UriHash,
};

pub const BALANCE: &str = "sluice.dev/balance";
pub const HASH_TYPE: &str = "sluice.dev/hash-type";
pub const HASH_BALANCE_FACTOR: &str = "sluice.dev/hash-balance-factor";

/// The accepted forms, for messages.
const FORMS: &str = "roundrobin, static-rr, leastconn, first, random, source, \
                     uri [len N] [depth N] [whole], url_param NAME, hdr(NAME), cookie NAME";

/// The hashing algorithms, for messages.
const HASHING: &str = "source, uri, url_param, hdr or cookie";

/// The raw (trimmed) values of the three annotations.
#[derive(Debug, Default)]
pub struct BalanceAnnotations<'a> {
    balance: Option<&'a str>,
    hash_type: Option<&'a str>,
    factor: Option<&'a str>,
}

impl<'a> BalanceAnnotations<'a> {
    /// Keeps `value` if `name` (without the `sluice.dev/` prefix) is one of the
    /// three; returns whether it was.
    pub fn take(&mut self, name: &str, value: &'a str) -> bool {
        let slot = match name {
            "balance" => &mut self.balance,
            "hash-type" => &mut self.hash_type,
            "hash-balance-factor" => &mut self.factor,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    /// The algorithm to install, with its hashing options, if `balance` is given
    /// and valid.
    pub fn resolve(self, warnings: &mut Vec<String>) -> Option<Balance> {
        let mut warn = |annotation: &str, value: &str, problem: String| {
            warnings.push(format!("annotation {annotation}={value:?}: {problem}"));
        };
        let balance = self.balance.and_then(|value| match parse_balance(value) {
            Ok(balance) => Some(balance),
            Err(problem) => {
                warn(BALANCE, value, format!("{problem}; ignored"));
                None
            }
        });
        let hash_type = self
            .hash_type
            .and_then(|value| match parse_hash_type(value) {
                Ok(method) => Some((value, method)),
                Err(problem) => {
                    warn(HASH_TYPE, value, format!("{problem}; ignored"));
                    None
                }
            });
        let factor = self
            .factor
            .and_then(|value| match parse_balance_factor(value) {
                Ok(factor) => Some((value, factor)),
                Err(problem) => {
                    warn(HASH_BALANCE_FACTOR, value, format!("{problem}; ignored"));
                    None
                }
            });

        let hashing = balance.as_ref().is_some_and(|b| b.hash_options().is_some());
        let not_hashing = || match &balance {
            Some(_) => format!(
                "has no effect, since {BALANCE} is not a hashing algorithm ({HASHING}); ignored"
            ),
            None => format!("has no effect without a hashing {BALANCE} ({HASHING}); ignored"),
        };
        let mut options = HashOptions::default();
        if let Some((value, method)) = hash_type {
            if hashing {
                options.hash = method;
            } else {
                warn(HASH_TYPE, value, not_hashing());
            }
        }
        if let Some((value, factor)) = factor {
            if !hashing {
                warn(HASH_BALANCE_FACTOR, value, not_hashing());
            } else if options.hash != HashMethod::Consistent {
                warn(
                    HASH_BALANCE_FACTOR,
                    value,
                    format!("needs consistent hashing ({HASH_TYPE}: consistent); ignored"),
                );
            } else {
                options.bounded_load = Some(factor);
            }
        }
        let value = self.balance.unwrap_or_default();
        let balance = with_hash_options(balance?, options);
        // The table's own rules, so the proxy never receives a backend it refuses.
        match problems(&balance) {
            None => Some(balance),
            Some(problem) => {
                warn(BALANCE, value, format!("{problem}; ignored"));
                None
            }
        }
    }
}

/// HAProxy's `balance` arguments: `roundrobin`, `static-rr`, `leastconn`, `first`,
/// `random`, `source`, `uri [len N] [depth N] [whole]`, `url_param NAME`,
/// `hdr(NAME)`, `cookie NAME`; hashing options at their defaults (map-based).
pub fn parse_balance(value: &str) -> Result<Balance, String> {
    let value = value.trim();
    // `hdr(NAME)` is read from the text, so that a name with a space in it is
    // reported as an invalid name rather than as a missing `)`.
    if let Some(rest) = value.strip_prefix("hdr(") {
        return parse_header(rest);
    }
    let mut words = value.split_ascii_whitespace();
    let Some(algorithm) = words.next() else {
        return Err(format!("names no algorithm; expected one of {FORMS}"));
    };
    let args: Vec<&str> = words.collect();
    let balance = match algorithm {
        "roundrobin" => no_args(algorithm, &args, Balance::RoundRobin)?,
        "static-rr" => no_args(algorithm, &args, Balance::StaticRr)?,
        "leastconn" => no_args(algorithm, &args, Balance::LeastConn)?,
        "first" => no_args(algorithm, &args, Balance::First)?,
        "random" => no_args(algorithm, &args, Balance::Random)?,
        "source" => no_args(algorithm, &args, Balance::Source(HashOptions::default()))?,
        "uri" => Balance::Uri(parse_uri(&args)?),
        "url_param" => Balance::UrlParam(named(algorithm, "a query parameter", &args)?),
        "cookie" => Balance::Cookie(named(algorithm, "a cookie", &args)?),
        "hdr" => return Err("write the header name in parentheses: `hdr(NAME)`".into()),
        _ if algorithm.starts_with("random(") => {
            return Err(
                "`random` always makes two draws here; write `random` without a count".into(),
            );
        }
        _ if algorithm == "rdp-cookie" || algorithm.starts_with("rdp-cookie(") => {
            return Err("HAProxy's `rdp-cookie` is not supported (it reads TCP payloads)".into());
        }
        _ if algorithm == "hash" => {
            return Err(format!(
                "HAProxy's `hash EXPRESSION` is not supported; expected one of {FORMS}"
            ));
        }
        _ => return Err(unknown(algorithm)),
    };
    // Names are held to the table's rules (parameter and cookie names are tokens).
    match problems(&balance) {
        None => Ok(balance),
        Some(problem) => Err(problem),
    }
}

/// `hash-type map-based|consistent`; HAProxy's hash function and modifier cannot
/// be chosen.
pub fn parse_hash_type(value: &str) -> Result<HashMethod, String> {
    let mut words = value.split_ascii_whitespace();
    let method = match words.next() {
        Some("map-based") => HashMethod::Map,
        Some("consistent") => HashMethod::Consistent,
        _ => return Err("must be `map-based` or `consistent`".into()),
    };
    match words.next() {
        None => Ok(method),
        Some(extra) => Err(format!(
            "only the method can be chosen (`map-based` or `consistent`), not a hash function or modifier (got {extra:?})"
        )),
    }
}

/// `hash-balance-factor N`: a percentage of the average load, at least 100.
pub fn parse_balance_factor(value: &str) -> Result<u32, String> {
    const MUST: &str = "must be a whole number of at least 100 (percent of the average load)";
    match number(value) {
        Some(n) if n >= 100 => Ok(n),
        Some(n) => Err(format!("{n} is below 100; {MUST}")),
        None => Err(MUST.into()),
    }
}

/// The algorithm with its hashing options set (unchanged when it does not hash).
fn with_hash_options(balance: Balance, options: HashOptions) -> Balance {
    let HashOptions { hash, bounded_load } = options;
    match balance {
        Balance::Source(_) => Balance::Source(options),
        Balance::Uri(uri) => Balance::Uri(UriHash {
            hash,
            bounded_load,
            ..uri
        }),
        Balance::UrlParam(n) => Balance::UrlParam(NamedHash {
            hash,
            bounded_load,
            ..n
        }),
        Balance::Cookie(n) => Balance::Cookie(NamedHash {
            hash,
            bounded_load,
            ..n
        }),
        Balance::Header(h) => Balance::Header(HeaderHash {
            hash,
            bounded_load,
            ..h
        }),
        other => other,
    }
}

/// What the table's check would say of a backend with this algorithm, if anything.
fn problems(balance: &Balance) -> Option<String> {
    let backend = Backend {
        balance: Some(balance.clone()),
        ..Backend::default()
    };
    let problems: Vec<String> = backend
        .problems()
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn no_args(algorithm: &str, args: &[&str], balance: Balance) -> Result<Balance, String> {
    match args {
        [] => Ok(balance),
        _ => Err(format!(
            "`{algorithm}` takes no arguments (got {:?})",
            args.join(" ")
        )),
    }
}

/// `url_param NAME` or `cookie NAME`.
fn named(algorithm: &str, what: &str, args: &[&str]) -> Result<NamedHash, String> {
    match args {
        [name] => Ok(NamedHash {
            name: (*name).to_owned(),
            ..NamedHash::default()
        }),
        [] => Err(format!(
            "`{algorithm}` needs the name of {what}: `{algorithm} NAME`"
        )),
        [_, extra @ ..] => Err(format!(
            "`{algorithm}` takes one name, nothing after it (got {:?})",
            extra.join(" ")
        )),
    }
}

/// `len N`, `depth N` and `whole`, in any order, each at most once.
fn parse_uri(args: &[&str]) -> Result<UriHash, String> {
    let mut uri = UriHash::default();
    let mut args = args.iter();
    while let Some(&option) = args.next() {
        match option {
            "len" | "depth" => {
                let slot = if option == "len" {
                    &mut uri.len
                } else {
                    &mut uri.depth
                };
                if slot.is_some() {
                    return Err(format!("`uri`: `{option}` is given twice"));
                }
                let Some(&text) = args.next() else {
                    return Err(format!("`uri`: `{option}` needs a number: `{option} N`"));
                };
                match number(text) {
                    Some(n) if n > 0 => *slot = Some(n),
                    _ => {
                        return Err(format!(
                            "`uri`: `{option}` must be a whole number of at least 1 (got {text:?})"
                        ));
                    }
                }
            }
            "whole" if uri.whole => return Err("`uri`: `whole` is given twice".into()),
            "whole" => uri.whole = true,
            _ => {
                return Err(format!(
                    "`uri` takes only `len N`, `depth N` and `whole` (got {option:?})"
                ));
            }
        }
    }
    Ok(uri)
}

/// `rest`: what follows `hdr(`.
fn parse_header(rest: &str) -> Result<Balance, String> {
    let Some((name, after)) = rest.split_once(')') else {
        return Err("`hdr(NAME)` is missing its `)`".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("`hdr()` needs a header name: `hdr(NAME)`".into());
    }
    let after = after.trim();
    if !after.is_empty() {
        return Err(format!(
            "`hdr(NAME)` takes nothing after it (got {after:?}; HAProxy's `use_domain_only` is not supported)"
        ));
    }
    Ok(Balance::Header(HeaderHash {
        name: HeaderNameText::new(name)?,
        hash: HashMethod::default(),
        bounded_load: None,
    }))
}

/// Decimal digits only (no sign), within `u32`.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An unknown algorithm, with the keyword meant when only case or separators differ.
fn unknown(algorithm: &str) -> String {
    const KEYWORDS: [(&str, &str); 11] = [
        ("roundrobin", "roundrobin"),
        ("static-rr", "static-rr"),
        ("leastconn", "leastconn"),
        ("first", "first"),
        ("random", "random"),
        ("source", "source"),
        ("uri", "uri"),
        ("url_param", "url_param NAME"),
        ("hdr", "hdr(NAME)"),
        ("header", "hdr(NAME)"),
        ("cookie", "cookie NAME"),
    ];
    let loose = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let word = algorithm.split('(').next().unwrap_or(algorithm);
    match KEYWORDS.iter().find(|(k, _)| loose(k) == loose(word)) {
        Some((_, form)) => format!(
            "unknown algorithm {algorithm:?}; did you mean `{form}`? (keywords are case-sensitive, as in HAProxy)"
        ),
        None => format!("unknown algorithm {algorithm:?}; expected one of {FORMS}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named_hash(name: &str, hash: HashMethod, bounded_load: Option<u32>) -> NamedHash {
        NamedHash {
            name: name.into(),
            hash,
            bounded_load,
        }
    }

    fn header(name: &str) -> Balance {
        Balance::Header(HeaderHash {
            name: HeaderNameText::new(name).unwrap(),
            hash: HashMethod::Map,
            bounded_load: None,
        })
    }

    fn resolve(pairs: &[(&str, &'static str)]) -> (Option<Balance>, Vec<String>) {
        let mut raw = BalanceAnnotations::default();
        for (name, value) in pairs {
            assert!(raw.take(name, value), "{name}");
        }
        let mut warnings = Vec::new();
        (raw.resolve(&mut warnings), warnings)
    }

    #[test]
    fn every_algorithm_parses() {
        let map = HashOptions::default();
        for (text, expected) in [
            ("roundrobin", Balance::RoundRobin),
            ("static-rr", Balance::StaticRr),
            ("leastconn", Balance::LeastConn),
            ("first", Balance::First),
            ("random", Balance::Random),
            ("source", Balance::Source(map)),
            ("  source  ", Balance::Source(map)),
            ("uri", Balance::Uri(UriHash::default())),
            (
                "url_param session",
                Balance::UrlParam(named_hash("session", HashMethod::Map, None)),
            ),
            (
                "cookie  JSESSIONID",
                Balance::Cookie(named_hash("JSESSIONID", HashMethod::Map, None)),
            ),
            ("hdr(X-Tenant)", header("x-tenant")),
            ("hdr( host )", header("host")),
        ] {
            assert_eq!(parse_balance(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn uri_options_in_any_order() {
        let all = UriHash {
            len: Some(64),
            depth: Some(2),
            whole: true,
            ..UriHash::default()
        };
        for text in [
            "uri len 64 depth 2 whole",
            "uri whole depth 2 len 64",
            "uri depth 2 whole len 64",
            "uri\tlen 64\n depth 2  whole",
        ] {
            assert_eq!(parse_balance(text), Ok(Balance::Uri(all)), "{text:?}");
        }
        assert_eq!(
            parse_balance("uri depth 3"),
            Ok(Balance::Uri(UriHash {
                depth: Some(3),
                ..UriHash::default()
            }))
        );
        assert_eq!(
            parse_balance("uri whole"),
            Ok(Balance::Uri(UriHash {
                whole: true,
                ..UriHash::default()
            }))
        );
    }

    #[test]
    fn every_error_says_what_is_wrong() {
        for (text, why) in [
            ("", "names no algorithm; expected one of roundrobin"),
            ("   ", "names no algorithm"),
            (
                "fastest",
                "unknown algorithm \"fastest\"; expected one of roundrobin, static-rr",
            ),
            (
                "RoundRobin",
                "did you mean `roundrobin`? (keywords are case-sensitive",
            ),
            ("round_robin", "did you mean `roundrobin`?"),
            ("least_conn", "did you mean `leastconn`?"),
            ("static_rr", "did you mean `static-rr`?"),
            ("URI", "did you mean `uri`?"),
            ("url-param x", "did you mean `url_param NAME`?"),
            ("Hdr(X-A)", "did you mean `hdr(NAME)`?"),
            ("header X-A", "did you mean `hdr(NAME)`?"),
            ("Cookie a", "did you mean `cookie NAME`?"),
            ("random(3)", "always makes two draws"),
            ("rdp-cookie(mstshash)", "`rdp-cookie` is not supported"),
            ("hash path", "`hash EXPRESSION` is not supported"),
            (
                "roundrobin now",
                "`roundrobin` takes no arguments (got \"now\")",
            ),
            ("static-rr 1", "`static-rr` takes no arguments"),
            (
                "leastconn x y",
                "`leastconn` takes no arguments (got \"x y\")",
            ),
            ("first 2", "`first` takes no arguments"),
            ("random 2", "`random` takes no arguments"),
            ("source 10.0.0.1", "`source` takes no arguments"),
            (
                "uri path-only",
                "`uri` takes only `len N`, `depth N` and `whole` (got \"path-only\")",
            ),
            ("uri len", "`len` needs a number: `len N`"),
            ("uri whole depth", "`depth` needs a number"),
            (
                "uri len 0",
                "`len` must be a whole number of at least 1 (got \"0\")",
            ),
            (
                "uri depth -1",
                "`depth` must be a whole number of at least 1 (got \"-1\")",
            ),
            ("uri depth +2", "(got \"+2\")"),
            ("uri len ten", "(got \"ten\")"),
            ("uri len 99999999999", "(got \"99999999999\")"),
            ("uri len 5 len 6", "`len` is given twice"),
            ("uri depth 1 depth 1", "`depth` is given twice"),
            ("uri whole whole", "`whole` is given twice"),
            (
                "url_param",
                "`url_param` needs the name of a query parameter: `url_param NAME`",
            ),
            (
                "url_param a b",
                "`url_param` takes one name, nothing after it (got \"b\")",
            ),
            ("url_param user check_post", "(got \"check_post\")"),
            (
                "url_param a=b",
                "\"a=b\" is not a valid parameter or cookie name",
            ),
            (
                "cookie",
                "`cookie` needs the name of a cookie: `cookie NAME`",
            ),
            ("cookie a b c", "(got \"b c\")"),
            (
                "cookie a;b",
                "\"a;b\" is not a valid parameter or cookie name",
            ),
            ("hdr", "write the header name in parentheses: `hdr(NAME)`"),
            ("hdr X-A", "in parentheses"),
            ("hdr(X-A", "`hdr(NAME)` is missing its `)`"),
            ("hdr()", "`hdr()` needs a header name"),
            ("hdr(  )", "needs a header name"),
            ("hdr(X Tenant)", "\"X Tenant\" is not a valid header name"),
            ("hdr(X:A)", "\"X:A\" is not a valid header name"),
            (
                "hdr(host) use_domain_only",
                "`use_domain_only` is not supported",
            ),
            ("hdr(a)b", "takes nothing after it (got \"b\""),
        ] {
            let problem = parse_balance(text).expect_err(text);
            assert!(problem.contains(why), "{text:?}: {problem}");
        }
    }

    #[test]
    fn hash_type_and_factor_parse() {
        assert_eq!(parse_hash_type("map-based"), Ok(HashMethod::Map));
        assert_eq!(parse_hash_type("consistent"), Ok(HashMethod::Consistent));
        for bad in ["", "Consistent", "map", "map_based", "ring"] {
            assert_eq!(
                parse_hash_type(bad),
                Err("must be `map-based` or `consistent`".into()),
                "{bad:?}"
            );
        }
        let problem = parse_hash_type("consistent sdbm avalanche").unwrap_err();
        assert!(
            problem.contains("not a hash function or modifier (got \"sdbm\")"),
            "{problem}"
        );

        assert_eq!(parse_balance_factor("100"), Ok(100));
        assert_eq!(parse_balance_factor("150"), Ok(150));
        assert_eq!(
            parse_balance_factor("99"),
            Err("99 is below 100; must be a whole number of at least 100 (percent of the average load)".into())
        );
        assert!(
            parse_balance_factor("0")
                .unwrap_err()
                .starts_with("0 is below 100")
        );
        for bad in ["", "1.5", "-150", "+150", "150%", "a lot", "99999999999"] {
            assert_eq!(
                parse_balance_factor(bad),
                Err("must be a whole number of at least 100 (percent of the average load)".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hashing_options_join_the_algorithm() {
        let (b, w) = resolve(&[
            ("balance", "url_param user"),
            ("hash-type", "consistent"),
            ("hash-balance-factor", "125"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            b,
            Some(Balance::UrlParam(named_hash(
                "user",
                HashMethod::Consistent,
                Some(125)
            )))
        );
        let (b, w) = resolve(&[("balance", "uri depth 2"), ("hash-type", "consistent")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            b,
            Some(Balance::Uri(UriHash {
                depth: Some(2),
                hash: HashMethod::Consistent,
                ..UriHash::default()
            }))
        );
        let (b, w) = resolve(&[("balance", "source"), ("hash-type", "map-based")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(b, Some(Balance::Source(HashOptions::default())));
        for (text, name) in [("hdr(X-A)", "header"), ("cookie c", "cookie")] {
            let (b, w) = resolve(&[
                ("balance", text),
                ("hash-type", "consistent"),
                ("hash-balance-factor", "100"),
            ]);
            assert!(w.is_empty(), "{w:?}");
            let b = b.unwrap();
            assert_eq!(b.name(), name);
            assert_eq!(
                b.hash_options(),
                Some(HashOptions::new(HashMethod::Consistent, Some(100)))
            );
        }
        let (b, w) = resolve(&[("balance", "leastconn")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(b, Some(Balance::LeastConn));
        assert_eq!(resolve(&[]), (None, vec![]));
    }

    #[test]
    fn hashing_options_need_a_hashing_algorithm() {
        let (b, w) = resolve(&[
            ("balance", "leastconn"),
            ("hash-type", "consistent"),
            ("hash-balance-factor", "150"),
        ]);
        assert_eq!(b, Some(Balance::LeastConn));
        assert_eq!(
            w,
            [
                "annotation sluice.dev/hash-type=\"consistent\": has no effect, since sluice.dev/balance is not a hashing algorithm (source, uri, url_param, hdr or cookie); ignored",
                "annotation sluice.dev/hash-balance-factor=\"150\": has no effect, since sluice.dev/balance is not a hashing algorithm (source, uri, url_param, hdr or cookie); ignored",
            ]
        );
        let (b, w) = resolve(&[("hash-type", "consistent")]);
        assert_eq!(b, None);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/hash-type=\"consistent\": has no effect without a hashing sluice.dev/balance (source, uri, url_param, hdr or cookie); ignored"
            ]
        );
    }

    #[test]
    fn a_balance_factor_needs_consistent_hashing() {
        for hash_type in [None, Some("map-based"), Some("ring")] {
            let mut pairs = vec![("balance", "source"), ("hash-balance-factor", "150")];
            pairs.extend(hash_type.map(|t| ("hash-type", t)));
            let (b, w) = resolve(&pairs);
            assert_eq!(
                b,
                Some(Balance::Source(HashOptions::default())),
                "{hash_type:?}"
            );
            assert_eq!(
                w.last().map(String::as_str),
                Some(
                    "annotation sluice.dev/hash-balance-factor=\"150\": needs consistent hashing (sluice.dev/hash-type: consistent); ignored"
                ),
                "{hash_type:?}"
            );
            assert_eq!(w.len(), 1 + usize::from(hash_type == Some("ring")), "{w:?}");
        }
    }

    #[test]
    fn an_invalid_balance_is_ignored_with_its_options() {
        let (b, w) = resolve(&[
            ("balance", "uri len 0"),
            ("hash-type", "consistent"),
            ("hash-balance-factor", "50"),
        ]);
        assert_eq!(b, None);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/balance=\"uri len 0\": `uri`: `len` must be a whole number of at least 1 (got \"0\"); ignored",
                "annotation sluice.dev/hash-balance-factor=\"50\": 50 is below 100; must be a whole number of at least 100 (percent of the average load); ignored",
                "annotation sluice.dev/hash-type=\"consistent\": has no effect without a hashing sluice.dev/balance (source, uri, url_param, hdr or cookie); ignored",
            ]
        );
    }

    #[test]
    fn resolved_balances_pass_the_table_check() {
        for text in [
            "roundrobin",
            "source",
            "uri len 10 depth 1 whole",
            "url_param u",
            "hdr(x-a)",
            "cookie c",
        ] {
            for (hash, factor) in [
                ("map-based", "100"),
                ("consistent", "100"),
                ("consistent", "300"),
            ] {
                let mut raw = BalanceAnnotations::default();
                raw.take("balance", text);
                raw.take("hash-type", hash);
                raw.take("hash-balance-factor", factor);
                let balance = raw.resolve(&mut Vec::new()).unwrap();
                assert_eq!(problems(&balance), None, "{text} {hash} {factor}");
            }
        }
    }
}
