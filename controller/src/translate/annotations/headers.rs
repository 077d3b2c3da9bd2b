//! `sluice.dev/request-headers` and `sluice.dev/response-headers` (`Name: value`
//! lines, each a `set` edit) and `sluice.dev/hide-response-headers` (a comma list,
//! each a `remove` edit).
//!
//! One bad line makes the whole annotation ignored, not just that line: headers
//! often come as a set (a security policy, CORS), and half of one applied silently
//! is harder to notice than none of it with a warning.

use sluice_proxy::table::{HeaderNameText, HeaderValueText};
// Headers that frame the message or belong to one connection: the proxy manages
// them (its table check refuses edits of them), so an Ingress cannot edit them.
use sluice_proxy::table::RESERVED_HEADERS as RESERVED;
use std::collections::BTreeMap;

/// `Name: value` lines (blank lines skipped; name and value trimmed) → `set` edits.
/// `None`, with a warning per problem, when any line is bad or none is given.
pub fn parse_set(
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Option<BTreeMap<HeaderNameText, HeaderValueText>> {
    let mut set = BTreeMap::new();
    let mut first_line = BTreeMap::new();
    let mut bad = false;
    for (n, line) in value.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let parsed = parse_line(line).and_then(|(name, value)| match first_line.get(&name) {
            // `set` replaces every value, so a second line could only overwrite the first.
            Some(first) => Err(format!(
                "{:?} is already set on line {first}; a header can be set once",
                name.as_str()
            )),
            None => Ok((name, value)),
        });
        match parsed {
            Ok((name, value)) => {
                first_line.insert(name.clone(), n);
                set.insert(name, value);
            }
            Err(problem) => {
                bad = true;
                warnings.push(format!(
                    "annotation {key} line {n} {line:?}: {problem}; the annotation is ignored"
                ));
            }
        }
    }
    if set.is_empty() && !bad {
        warnings.push(format!("annotation {key}: no `Name: value` line; ignored"));
    }
    (!bad && !set.is_empty()).then_some(set)
}

fn parse_line(line: &str) -> Result<(HeaderNameText, HeaderValueText), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| "is not `Name: value`".to_owned())?;
    Ok((
        header_name(name.trim())?,
        HeaderValueText::new(value.trim())?,
    ))
}

/// Comma-separated header names → `remove` edits, in the order given, without
/// repeats. `None`, with a warning per problem, when any name is bad or none is given.
pub fn parse_names(
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Option<Vec<HeaderNameText>> {
    let mut names: Vec<HeaderNameText> = Vec::new();
    let mut bad = false;
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match header_name(item) {
            Ok(name) if names.contains(&name) => {}
            Ok(name) => names.push(name),
            Err(problem) => {
                bad = true;
                warnings.push(format!(
                    "annotation {key}: {problem}; the annotation is ignored"
                ));
            }
        }
    }
    if names.is_empty() && !bad {
        warnings.push(format!("annotation {key}: names no header; ignored"));
    }
    (!bad && !names.is_empty()).then_some(names)
}

fn header_name(name: &str) -> Result<HeaderNameText, String> {
    let name = HeaderNameText::new(name)?;
    if RESERVED.contains(&name.as_str()) {
        return Err(format!(
            "{:?} is managed by the proxy and cannot be edited",
            name.as_str()
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sluice.dev/response-headers";

    fn set(value: &str) -> (Option<Vec<(String, String)>>, Vec<String>) {
        let mut warnings = Vec::new();
        let parsed = parse_set(KEY, value, &mut warnings).map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
                .collect()
        });
        (parsed, warnings)
    }

    fn names(value: &str) -> (Option<Vec<String>>, Vec<String>) {
        let mut warnings = Vec::new();
        let parsed = parse_names("sluice.dev/hide-response-headers", value, &mut warnings)
            .map(|v| v.iter().map(|n| n.as_str().to_owned()).collect());
        (parsed, warnings)
    }

    fn pairs(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn lines_become_set_edits() {
        let (parsed, w) = set(
            "X-Frame-Options: DENY\n\n  Content-Security-Policy:  default-src 'self'; img-src *  \nX-Empty:\nLink: <https://a.example/>; rel=preload\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            parsed,
            pairs(&[
                ("content-security-policy", "default-src 'self'; img-src *"),
                ("link", "<https://a.example/>; rel=preload"),
                ("x-empty", ""),
                ("x-frame-options", "DENY"),
            ])
        );
    }

    #[test]
    fn one_bad_line_ignores_the_annotation() {
        let (parsed, w) = set("X-Good: 1\nX Bad: 2\nno colon here\nX-Ctl: a\u{7}b\n");
        assert_eq!(parsed, None);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("annotation sluice.dev/response-headers line 2 \"X Bad: 2\": \"X Bad\" is not a valid header name"),
            "{w:?}"
        );
        assert!(
            w[1].contains("line 3") && w[1].contains("not `Name: value`"),
            "{w:?}"
        );
        assert!(
            w[2].contains("line 4") && w[2].contains("not a valid header value"),
            "{w:?}"
        );
        assert!(w.iter().all(|w| w.ends_with("; the annotation is ignored")));
    }

    #[test]
    fn a_header_is_set_once_case_insensitively() {
        let (parsed, w) = set("X-A: 1\nx-a: 2");
        assert_eq!(parsed, None);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/response-headers line 2 \"x-a: 2\": \"x-a\" is already set on line 1; a header can be set once; the annotation is ignored"
            ]
        );
    }

    #[test]
    fn framing_headers_are_refused() {
        for name in ["Content-Length", "Transfer-Encoding", "Connection", "TE"] {
            let (parsed, w) = set(&format!("{name}: 1"));
            assert_eq!(parsed, None, "{name}");
            assert!(w[0].contains("managed by the proxy"), "{w:?}");
            let (parsed, w) = names(name);
            assert_eq!(parsed, None, "{name}");
            assert!(w[0].contains("managed by the proxy"), "{w:?}");
        }
    }

    #[test]
    fn empty_annotations_warn() {
        let (parsed, w) = set("\n  \n");
        assert_eq!(parsed, None);
        assert_eq!(
            w,
            ["annotation sluice.dev/response-headers: no `Name: value` line; ignored"]
        );
        let (parsed, w) = names(" , ");
        assert_eq!(parsed, None);
        assert_eq!(
            w,
            ["annotation sluice.dev/hide-response-headers: names no header; ignored"]
        );
    }

    #[test]
    fn names_become_remove_edits_in_order_without_repeats() {
        let (parsed, w) = names("Server, X-Powered-By,,server , X-AspNet-Version");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            parsed,
            Some(vec![
                "server".to_owned(),
                "x-powered-by".into(),
                "x-aspnet-version".into()
            ])
        );
        let (parsed, w) = names("Server, X Powered");
        assert_eq!(parsed, None);
        assert_eq!(
            w,
            [
                "annotation sluice.dev/hide-response-headers: \"X Powered\" is not a valid header name; the annotation is ignored"
            ]
        );
    }
}
