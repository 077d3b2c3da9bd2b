//! The route tester: which route a request would get and why, for
//! `sluice-proxy route` and `/debug/route`. The decision is the data plane's own
//! (`HttpListener::select`); the per-route verdicts re-test each route's parts
//! with the same compiled matchers to say why the others did not answer.

use super::{
    CompiledAction, CompiledTable, HttpListener, ListenerKind, RequestFacts, canonical_client,
    normalize_host, normalize_path,
};
use crate::table;
use http::{HeaderMap, Method};
use serde::Serialize;
use std::net::IpAddr;

/// A request to explain, as given on the command line or in a query string.
pub struct Probe {
    pub listener: Option<String>,
    pub host: String,
    pub path_and_query: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub client: IpAddr,
}

impl Probe {
    /// A GET of `/` for `host` from 127.0.0.1 on the first HTTP listener.
    pub fn new(host: impl Into<String>) -> Self {
        Probe {
            listener: None,
            host: host.into(),
            path_and_query: "/".into(),
            method: Method::GET,
            headers: HeaderMap::new(),
            client: IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// Adds a `Name: value` (or `Name:value`) header.
    pub fn header(&mut self, line: &str) -> Result<(), String> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header {line:?} is not `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("{:?} is not a valid header value", value.trim()))?;
        self.headers.append(name, value);
        Ok(())
    }

    pub fn method(&mut self, method: &str) -> Result<(), String> {
        self.method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method:?} is not a valid HTTP method"))?;
        Ok(())
    }

    pub fn client(&mut self, ip: &str) -> Result<(), String> {
        self.client = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        Ok(())
    }

    /// From a query string: `host` (required), `path` (default `/`, may carry
    /// `?query`), `method`, `header` (repeatable, `Name: value`), `src`, `listener`.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let one = |name: &str| {
            super::query_values(query, name)
                .next()
                .map(|v| v.into_owned())
        };
        let host = one("host").ok_or("give `host=`")?;
        let mut probe = Probe::new(host);
        if let Some(path) = one("path") {
            probe.path_and_query = path;
        }
        if let Some(m) = one("method") {
            probe.method(&m)?;
        }
        if let Some(ip) = one("src") {
            probe.client(&ip)?;
        }
        probe.listener = one("listener");
        for line in super::query_values(query, "header") {
            probe.header(&line)?;
        }
        Ok(probe)
    }
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub listener: String,
    pub host: String,
    /// The path as routed (normalised).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub method: String,
    pub client: String,
    /// What the proxy does with the request, in words.
    pub outcome: String,
    /// The route that answers, if any (`default` for the default backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every route of the listener, in the order written, with why it did or did
    /// not answer.
    pub routes: Vec<RouteVerdict>,
}

#[derive(Debug, Serialize)]
pub struct RouteVerdict {
    pub name: String,
    pub priority: i32,
    pub verdict: String,
    pub conditions: Vec<ConditionVerdict>,
}

#[derive(Debug, Serialize)]
pub struct ConditionVerdict {
    pub condition: String,
    pub holds: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("the table has no HTTP listener named `{0}`")]
    NoSuchListener(String),
    #[error("the table has no HTTP listener")]
    NoListener,
    #[error("{0:?} is not a path (it must start with `/`)")]
    BadPath(String),
}

pub fn explain(table: &CompiledTable, probe: &Probe) -> Result<Explanation, ExplainError> {
    let (compiled, source) = find_listener(table, probe.listener.as_deref())?;
    let (raw_path, query) = match probe.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (probe.path_and_query.as_str(), None),
    };
    if !raw_path.starts_with('/') {
        return Err(ExplainError::BadPath(raw_path.to_owned()));
    }
    let host = normalize_host(&probe.host);
    let path = normalize_path(raw_path);
    let client = canonical_client(probe.client);
    let facts = RequestFacts {
        host: &host,
        path: &path,
        query,
        method: &probe.method,
        headers: &probe.headers,
        client,
    };
    let selected = compiled.select(&facts);

    let routes = compiled
        .routes
        .iter()
        .map(|route| {
            let written = route.declared.and_then(|d| source.routes.get(d));
            let conditions: Vec<ConditionVerdict> = route
                .conditions
                .iter()
                .enumerate()
                .map(|(ci, c)| ConditionVerdict {
                    condition: written
                        .and_then(|w| w.conditions.get(ci))
                        .map(describe_condition)
                        .unwrap_or_default(),
                    holds: c.holds(&facts),
                })
                .collect();
            let host_ok = route.hosts.is_empty() || route.hosts.matches(&host);
            let path_ok = route.paths.matches(&path).is_some();
            let failed = conditions.iter().position(|c| !c.holds);
            let answers = selected
                .as_ref()
                .is_some_and(|s| std::ptr::eq(s.route, route));
            let verdict = if answers {
                "answers".to_owned()
            } else if !host_ok {
                format!("host {host:?} is not one of its hosts")
            } else if !path_ok {
                format!("path {:?} matches none of its paths", &*path)
            } else if let Some(ci) = failed {
                format!("condition {} does not hold", ci + 1)
            } else {
                match &selected {
                    Some(s) => format!(
                        "matches, but route `{}` comes first (priority, host, path kind and length, then order)",
                        s.route.name
                    ),
                    None => "matches".to_owned(),
                }
            };
            RouteVerdict {
                name: route.name.to_string(),
                priority: route.priority,
                verdict,
                conditions,
            }
        })
        .collect();

    let outcome = match &selected {
        None => "404: no route matches, and the listener has no default backend".to_owned(),
        Some(s) if !s.route.access.admits(client) => {
            format!(
                "403: route `{}` does not admit client {client}",
                s.route.name
            )
        }
        Some(s) => match &s.route.action {
            CompiledAction::Forward(b) => {
                let id = table
                    .backends
                    .get(*b)
                    .map(|b| b.id.to_string())
                    .unwrap_or_default();
                let upstream = match &s.route.rewrite {
                    Some(rw) => rw.apply(&path, s.matched_len),
                    None => std::borrow::Cow::Borrowed(&*path),
                };
                if upstream != raw_path {
                    format!("forward to backend `{id}` as {upstream}")
                } else {
                    format!("forward to backend `{id}`")
                }
            }
            CompiledAction::MissingBackend(id) => format!("503: backend `{id}` is not defined"),
            CompiledAction::Redirect(r) => {
                let input = super::RedirectInput {
                    scheme: table::Scheme::Http,
                    host: &probe.host,
                    path: &path,
                    matched_len: s.matched_len,
                    query,
                };
                match r.location(&input) {
                    Some(loc) => format!("{} redirect to {loc}", r.code.as_u16()),
                    None => "400: the redirect needs a Host header".to_owned(),
                }
            }
            CompiledAction::Deny(r) => format!("{} denied", r.status.as_u16()),
            CompiledAction::Respond(r) => format!(
                "{} fixed response ({} bytes)",
                r.status.as_u16(),
                r.body.len()
            ),
        },
    };

    Ok(Explanation {
        listener: source.name.clone(),
        host: host.into_owned(),
        path: path.into_owned(),
        query: query.map(str::to_owned),
        method: probe.method.to_string(),
        client: client.to_string(),
        outcome,
        route: selected.as_ref().map(|s| s.route.name.to_string()),
        source: selected
            .as_ref()
            .and_then(|s| s.route.source.as_ref())
            .map(ToString::to_string),
        routes,
    })
}

fn find_listener<'t>(
    table: &'t CompiledTable,
    name: Option<&str>,
) -> Result<(&'t HttpListener, &'t table::HttpListener), ExplainError> {
    let pairs = table.listeners.iter().zip(&table.source.listeners);
    for (compiled, source) in pairs {
        // Only HTTP listeners have requests to explain.
        let (ListenerKind::Http(c), Some(s)) = (&compiled.kind, source.http()) else {
            continue;
        };
        if name.is_none_or(|n| n == s.name) {
            return Ok((c, s));
        }
    }
    Err(match name {
        Some(n) => ExplainError::NoSuchListener(n.to_owned()),
        None => ExplainError::NoListener,
    })
}

/// One line of YAML-like flow text, as the condition was written.
fn describe_condition(condition: &table::Condition) -> String {
    serde_json::to_string(condition).unwrap_or_default()
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "request: {} {}{}{} host {:?} from {} on listener `{}`",
            self.method,
            self.path,
            if self.query.is_some() { "?" } else { "" },
            self.query.as_deref().unwrap_or(""),
            self.host,
            self.client,
            self.listener
        )?;
        match (&self.route, &self.source) {
            (Some(r), Some(src)) => writeln!(f, "route:   `{r}` ({src})")?,
            (Some(r), None) => writeln!(f, "route:   `{r}`")?,
            (None, _) => writeln!(f, "route:   none")?,
        }
        writeln!(f, "outcome: {}", self.outcome)?;
        if !self.routes.is_empty() {
            writeln!(f, "\nroutes, in the order written:")?;
        }
        for r in &self.routes {
            let mark = if r.verdict == "answers" { "=>" } else { "  " };
            let priority = if r.priority != 0 {
                format!(" [priority {}]", r.priority)
            } else {
                String::new()
            };
            writeln!(f, "{mark} {}{priority}: {}", r.name, r.verdict)?;
            for c in &r.conditions {
                let state = if c.holds { "holds" } else { "fails" };
                writeln!(f, "     - {state}: {}", c.condition)?;
            }
        }
        Ok(())
    }
}
