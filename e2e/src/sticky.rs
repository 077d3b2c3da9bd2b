//! Shared by the sticky-session tests (`tests/sticky.rs`): `Set-Cookie` parsing, a
//! one-cookie jar per simulated client, tables with `sticky` backends, session key
//! files, and the admin's sticky counters and endpoint cookie ids.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::balancing::listener;
use crate::client::{HttpClient, Reply, request, send};
use crate::util::TempDir;
use crate::{Options, ProxyProcess};
use anyhow::Result;
use http::Method;
use http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Length of a cookie value naming an endpoint (9 MAC bytes in URL-safe base64).
pub const ID_LEN: usize = 12;
/// Length of a value that also carries signed timestamps (`max_idle`, `max_life`).
pub const TIMESTAMPED_LEN: usize = 36;

/// Only URL-safe base64 characters (`[A-Za-z0-9_-]`), at least one.
pub fn is_url_safe_base64(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A plain endpoint id: 12 URL-safe base64 characters.
pub fn is_endpoint_id(value: &str) -> bool {
    value.len() == ID_LEN && is_url_safe_base64(value)
}

/// One `Set-Cookie` header, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Everything after the first `;`, trimmed, in order (`Path=/`, `HttpOnly`).
    pub attributes: Vec<String>,
}

impl SetCookie {
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        Some(Self {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attributes: parts
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The attributes with lower-cased names (`path=/app`, `httponly`), sorted, so
    /// tests can compare them regardless of order and spelling of the names.
    pub fn normalized_attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .attributes
            .iter()
            .map(|a| match a.split_once('=') {
                Some((n, v)) => format!("{}={}", n.trim().to_ascii_lowercase(), v.trim()),
                None => a.to_ascii_lowercase(),
            })
            .collect();
        out.sort();
        out
    }
}

/// Every `Set-Cookie` of `reply` for cookie `name`, in order.
pub fn set_cookies(reply: &Reply, name: &str) -> Vec<SetCookie> {
    reply
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(SetCookie::parse)
        .filter(|c| c.name == name)
        .collect()
}

/// The `Set-Cookie` of `reply` for `name`, if any; more than one fails the test.
pub fn set_cookie(reply: &Reply, name: &str) -> Option<SetCookie> {
    let mut all = set_cookies(reply, name);
    assert!(
        all.len() <= 1,
        "{name} set more than once in one response: {all:?}"
    );
    all.pop()
}

/// The value of the one `Set-Cookie` for `name`, if any.
pub fn set_value(reply: &Reply, name: &str) -> Option<String> {
    set_cookie(reply, name).map(|c| c.value)
}

/// A client's cookie jar for one cookie, kept as a browser keeps it: a
/// `Set-Cookie` for the name replaces the value.
#[derive(Debug, Clone)]
pub struct Jar {
    name: String,
    value: Option<String>,
}

impl Jar {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }

    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// `NAME=VALUE` for a `Cookie` header, once something was set.
    pub fn header(&self) -> Option<String> {
        self.value.as_ref().map(|v| format!("{}={v}", self.name))
    }

    /// Takes the reply's `Set-Cookie` for the name; returns the value it set.
    pub fn update(&mut self, reply: &Reply) -> Option<String> {
        let set = set_value(reply, &self.name)?;
        self.value = Some(set.clone());
        Some(set)
    }
}

/// GET `path` on `proxy`, with `Cookie: <cookie>` when given.
pub async fn get_with_cookie(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> Result<Reply> {
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
    send(
        client,
        request(Method::GET, proxy, None, path, &headers, ""),
    )
    .await
}

/// Percent-encodes everything but unreserved characters, for a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The backend query parameter making it send `Set-Cookie: <header>`.
pub fn set_cookie_param(header: &str) -> String {
    format!("set_cookie={}", percent_encode(header))
}

/// `[{address: a}, {address: b}, ...]`.
pub fn endpoints(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("{{address: {a}}}")).collect();
    format!("[{}]", list.join(", "))
}

/// The endpoints list of in-process test backends.
pub fn endpoints_of(backends: &[crate::Backend]) -> String {
    endpoints(&backends.iter().map(|b| b.addr).collect::<Vec<_>>())
}

/// Test backends by name and address (for `ids_by_name`).
pub fn named(backends: &[crate::Backend]) -> Vec<(&str, SocketAddr)> {
    backends.iter().map(|b| (b.name(), b.addr)).collect()
}

/// One entry of `backends:`: `endpoints` (a YAML flow list) and `settings`, one
/// `key: value` line each (`sticky: {cookie: {name: SRV}}`, `balance: first`).
pub fn backend_yaml(id: &str, endpoints: &str, settings: &[&str]) -> String {
    let mut out = format!("  {id}:\n    endpoints: {endpoints}\n");
    for line in settings {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

/// A listener on `listen` with a route `/<id>` per backend, and the backends
/// (each made by [`backend_yaml`]).
pub fn table(listen: SocketAddr, backends: &[(&str, String)]) -> String {
    let ids: Vec<&str> = backends.iter().map(|(id, _)| *id).collect();
    let mut out = listener(listen, &ids);
    out.push_str("backends:\n");
    for (_, yaml) in backends {
        out.push_str(yaml);
    }
    out
}

/// A session key file (`--session-key-file`), removed with the value.
pub struct KeyFile {
    path: PathBuf,
    _dir: TempDir,
}

impl KeyFile {
    /// One key per line, the first signs.
    pub fn new(keys: &[&str]) -> Self {
        let dir = TempDir::new("keys").unwrap();
        let path = dir.path().join("session-keys");
        std::fs::write(&path, format!("{}\n", keys.join("\n"))).unwrap();
        Self { path, _dir: dir }
    }

    /// `run` options passing this file.
    pub fn options(&self) -> Options {
        Options {
            extra_args: vec!["--session-key-file".into(), self.path.display().to_string()],
            ..Options::default()
        }
    }
}

/// The `/debug/backends` entry of backend `id`.
pub async fn backend_status(proxy: &ProxyProcess, id: &str) -> Value {
    let (status, body) = proxy.admin_get("/debug/backends").await.unwrap();
    assert_eq!(status, 200, "/debug/backends: {body}");
    let all: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/debug/backends is not JSON ({e}): {body}"));
    all.as_array()
        .and_then(|backends| backends.iter().find(|b| b["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no backend {id} in /debug/backends: {body}"))
}

/// A backend's sticky counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Went to the endpoint their valid cookie named.
    pub kept: u64,
    /// Came without our cookie.
    pub new: u64,
    /// Valid cookie, endpoint unavailable: balanced again.
    pub moved: u64,
    /// Cookie present but tampered, expired or unknown.
    pub rejected: u64,
}

/// The `sticky` counters of backend `id` (which must be sticky by cookie `name`).
pub async fn counters(proxy: &ProxyProcess, id: &str) -> Counters {
    let backend = backend_status(proxy, id).await;
    let sticky = &backend["sticky"];
    assert!(
        sticky.is_object(),
        "backend {id} has no sticky status: {backend}"
    );
    let count = |field: &str| {
        sticky[field]
            .as_u64()
            .unwrap_or_else(|| panic!("backend {id}: sticky.{field} is not a count: {sticky}"))
    };
    Counters {
        kept: count("kept"),
        new: count("new"),
        moved: count("moved"),
        rejected: count("rejected"),
    }
}

/// Endpoint address → `cookie_id` of backend `id` (every one must have an id).
pub async fn cookie_ids(proxy: &ProxyProcess, id: &str) -> BTreeMap<String, String> {
    let backend = backend_status(proxy, id).await;
    backend["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let address = e["address"].as_str().unwrap().to_owned();
            let cookie_id = e["cookie_id"]
                .as_str()
                .unwrap_or_else(|| panic!("backend {id}: endpoint without cookie_id: {e}"))
                .to_owned();
            (address, cookie_id)
        })
        .collect()
}

/// The cookie id of each named test backend: `names[i]` listens on `addrs[i]`.
pub async fn ids_by_name(
    proxy: &ProxyProcess,
    id: &str,
    names: &[(&str, SocketAddr)],
) -> BTreeMap<String, String> {
    let by_address = cookie_ids(proxy, id).await;
    names
        .iter()
        .map(|(name, addr)| {
            let cookie_id = by_address
                .get(&addr.to_string())
                .unwrap_or_else(|| panic!("backend {id}: no endpoint {addr}: {by_address:?}"));
            ((*name).to_owned(), cookie_id.clone())
        })
        .collect()
}

/// The `name=value` pairs of every `Cookie` header the backend received (from an
/// `?echo` body), in order.
pub fn echoed_cookie_pairs(reply: &Reply) -> Vec<String> {
    reply
        .echoed("cookie")
        .iter()
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The plainest sticky backend setting.
pub const SRV: &str = "sticky: {cookie: {name: SRV}}";
/// A session key shared by the proxies of a test.
pub const KEY: &str = "sluice-e2e-shared-session-key-0123456789";

/// A one-off GET with an optional `Cookie` header; the reply must be complete.
pub async fn get(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> Reply {
    get_with_cookie(client, proxy, path, cookie).await.unwrap()
}

/// The test backend that answered a 200; anything else fails the test.
pub fn served_by(reply: &Reply, what: &str) -> String {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    reply
        .backend()
        .unwrap_or_else(|| panic!("{what}: a 200 without x-backend: {reply:?}"))
        .to_owned()
}
