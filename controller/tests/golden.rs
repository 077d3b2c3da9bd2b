// Test support code: a malformed golden file should panic with its name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Golden translation tests: `tests/golden/NAME.in.yaml` (Kubernetes objects, plus
//! an optional `kind: Options` document) → `NAME.out.yaml` (the routing table and
//! per-Ingress statuses). Regenerate with `SLUICE_BLESS=1 cargo test -p
//! sluice-controller --test golden` and review the diff.
//!
//! Every table must pass the proxy's file check (`table::check`, and a YAML round
//! trip through the proxy's loader): the controller never emits a table that the
//! standalone proxy would refuse. The table is also compiled by the proxy. Its
//! warnings, if any, follow as `proxy_warnings:`. An optional `kind: Requests`
//! document lists requests as `[CLIENT-IP ]HOST/PATH[?QUERY]` (client 203.0.113.7
//! unless given); each is looked up in the compiled table, as the proxy would, and
//! printed under `requests:` with the route and what it does: the backend (or 403,
//! 404, 503), or a redirect's status and `Location`.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_controller::snapshot::{CA_TYPE, ObjectKey, SESSION_KEY_TYPE, Snapshot, key_of};
use sluice_controller::sources::to_v1;
use sluice_controller::translate::{Options, translate};
use sluice_proxy::compile::{
    CompiledAction, CompiledTable, RedirectInput, RequestFacts, canonical_client, normalize_host,
    normalize_path,
};
use sluice_proxy::table::{self, Backend, BackendId, RoutingTable, Scheme, Stickiness};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn parse<T: DeserializeOwned>(doc: Value, file: &Path) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

struct Case {
    snapshot: Snapshot,
    options: Options,
    requests: Vec<String>,
}

fn load(file: &Path) -> Case {
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut snapshot = Snapshot::default();
    let mut options = Options::default();
    let mut requests = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        match (kind.as_str(), api_version.as_str()) {
            ("Options", _) => {
                let mut doc = doc;
                if let Some(map) = doc.as_object_mut() {
                    map.remove("kind");
                }
                options = parse(doc, file);
            }
            ("Requests", _) => {
                #[derive(serde::Deserialize)]
                struct Requests {
                    requests: Vec<String>,
                }
                let mut doc = doc;
                if let Some(map) = doc.as_object_mut() {
                    map.remove("kind");
                }
                requests = parse::<Requests>(doc, file).requests;
            }
            ("Ingress", _) => {
                let i: Ingress = parse(doc, file);
                snapshot
                    .ingresses
                    .insert(key_of(&i.metadata).unwrap(), Arc::new(i));
            }
            ("IngressClass", _) => {
                let c: IngressClass = parse(doc, file);
                snapshot
                    .ingress_classes
                    .insert(c.metadata.name.clone().unwrap(), Arc::new(c));
            }
            ("Service", _) => {
                let s: Service = parse(doc, file);
                snapshot
                    .services
                    .insert(key_of(&s.metadata).unwrap(), Arc::new(s));
            }
            ("EndpointSlice", "discovery.k8s.io/v1beta1") => {
                let o: DynamicObject = parse(doc, file);
                let s = to_v1(o).expect("a readable v1beta1 EndpointSlice");
                snapshot
                    .endpoint_slices
                    .insert(key_of(&s.metadata).unwrap(), Arc::new(s));
            }
            ("EndpointSlice", _) => {
                let s: EndpointSlice = parse(doc, file);
                snapshot
                    .endpoint_slices
                    .insert(key_of(&s.metadata).unwrap(), Arc::new(s));
            }
            ("Secret", _) => {
                let mut s: Secret = parse(doc, file);
                // As the API server does: stringData lands in data.
                for (k, v) in s.string_data.take().unwrap_or_default() {
                    s.data
                        .get_or_insert_default()
                        .insert(k, ByteString(v.into_bytes()));
                }
                // The sources only watch TLS, session-key and CA-bundle Secrets.
                let key = key_of(&s.metadata).unwrap();
                match s.type_.as_deref() {
                    Some("kubernetes.io/tls") => {
                        snapshot.secrets.insert(key, Arc::new(s));
                    }
                    Some(SESSION_KEY_TYPE) => {
                        snapshot.session_key_secrets.insert(key, Arc::new(s));
                    }
                    Some(CA_TYPE) => {
                        snapshot.ca_secrets.insert(key, Arc::new(s));
                    }
                    _ => {}
                }
            }
            other => panic!("{}: unsupported object {other:?}", file.display()),
        }
    }
    Case {
        snapshot,
        options,
        requests,
    }
}

/// Where each request goes in the compiled table's first listener.
fn route_requests(table: &CompiledTable, requests: &[String]) -> Vec<String> {
    let Some(http) = table.listeners[0].kind.http() else {
        panic!("the first listener is not HTTP");
    };
    requests
        .iter()
        .map(|request| {
            let (client, target) = match request.split_once(' ') {
                Some((ip, target)) => (ip.parse::<IpAddr>().unwrap(), target),
                None => (IpAddr::from([203, 0, 113, 7]), request.as_str()),
            };
            let (raw_host, path) = target
                .find('/')
                .map_or((target, "/"), |at| target.split_at(at));
            let (path, query) = match path.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (path, None),
            };
            let host = normalize_host(raw_host);
            let path = normalize_path(path);
            let client = canonical_client(client);
            let headers = http::HeaderMap::new();
            let facts = RequestFacts {
                host: &host,
                path: &path,
                query,
                method: &http::Method::GET,
                headers: &headers,
                client,
            };
            let Some(selected) = http.select(&facts) else {
                return format!("{request} → 404");
            };
            let route = selected.route;
            let name = if selected.is_default {
                "(default backend)"
            } else {
                &route.name
            };
            let outcome = if !route.access.admits(client) {
                "403".to_owned()
            } else {
                match &route.action {
                    CompiledAction::Forward(ix) => {
                        let backend = &table.backends[*ix];
                        if backend.balancer.members().next().is_none() {
                            format!("{} (no endpoints: 503)", backend.id)
                        } else {
                            backend.id.to_string()
                        }
                    }
                    CompiledAction::MissingBackend(id) => format!("503 (no backend {id})"),
                    CompiledAction::Redirect(r) => {
                        let input = RedirectInput {
                            scheme: Scheme::Http,
                            host: raw_host,
                            path: &path,
                            matched_len: selected.matched_len,
                            query,
                        };
                        match r.location(&input) {
                            Some(location) => format!("{} Location: {location}", r.code.as_u16()),
                            None => "400 (the redirect needs a host)".to_owned(),
                        }
                    }
                    other => other.describe(),
                }
            };
            format!("{request} → {name} → {outcome}")
        })
        .collect()
}

/// What the standalone proxy requires of a table file: the whole-table check, and
/// that the table survives being written and read back (each field's own rules).
fn file_check(table: &RoutingTable) -> Result<(), String> {
    table::check(table).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        errors.join("; ")
    })?;
    let yaml = table::to_yaml(table);
    let reread = table::from_yaml_bytes(yaml.as_bytes(), Path::new("<translated>"))
        .map_err(|e| e.to_string())?;
    // Certificates and session keys are left out: they are written redacted, by
    // design.
    if reread.listeners != table.listeners
        || without_keys(&reread.backends) != without_keys(&table.backends)
    {
        return Err("the table reads back differently from YAML".into());
    }
    Ok(())
}

/// Backends with their sticky cookies' keys removed.
fn without_keys(backends: &BTreeMap<BackendId, Backend>) -> BTreeMap<BackendId, Backend> {
    let mut backends = backends.clone();
    for backend in backends.values_mut() {
        if let Some(Stickiness::Cookie(cookie)) = &mut backend.sticky {
            cookie.keys.clear();
        }
    }
    backends
}

/// What the golden file shows after the translation.
#[derive(serde::Serialize)]
struct Checks {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    proxy_warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    requests: Vec<String>,
}

#[test]
fn golden_translations() {
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no golden inputs in {}",
        golden_dir().display()
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let case = load(input);
        let translation = translate(&case.snapshot, &case.options);
        let mut rendered = serde_saphyr::to_string(&translation).unwrap();
        if let Err(problem) = file_check(&translation.table) {
            failures.push(format!(
                "{}: the proxy's file check refuses the table: {problem}",
                input.display()
            ));
        }
        // The proxy must accept every translated table.
        match sluice_proxy::compile::compile(translation.table.clone(), &Default::default()) {
            Ok(compiled) => {
                let checks = Checks {
                    requests: route_requests(&compiled, &case.requests),
                    proxy_warnings: compiled.warnings,
                };
                if !checks.proxy_warnings.is_empty() || !checks.requests.is_empty() {
                    rendered.push_str(&serde_saphyr::to_string(&checks).unwrap());
                }
            }
            Err(e) => failures.push(format!(
                "{}: the proxy rejects the table: {e}",
                input.display()
            )),
        }
        let expected_path = PathBuf::from(input.to_string_lossy().replace(".in.yaml", ".out.yaml"));
        if bless {
            std::fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == rendered => {}
            Ok(expected) => failures.push(format!(
                "{}: translation differs from {}\n--- expected\n{expected}\n--- got\n{rendered}",
                input.display(),
                expected_path.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run with SLUICE_BLESS=1)",
                input.display(),
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn object_keys_parse() {
    assert_eq!(
        "ns/name".parse::<ObjectKey>().unwrap(),
        ObjectKey::new("ns", "name")
    );
    assert!("name".parse::<ObjectKey>().is_err());
    assert!("a/b/c".parse::<ObjectKey>().is_err());
}
