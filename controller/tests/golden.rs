// Test support code: a malformed golden file should panic with its name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Golden translation tests: `tests/golden/NAME.in.yaml` (Kubernetes objects, plus
//! an optional `kind: Options` document) → `NAME.out.yaml` (the routing table and
//! per-Ingress statuses). Regenerate with `SLUICE_BLESS=1 cargo test -p
//! sluice-controller --test golden` and review the diff.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_controller::snapshot::{ObjectKey, Snapshot, key_of};
use sluice_controller::sources::to_v1;
use sluice_controller::translate::{Options, translate};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn parse<T: DeserializeOwned>(doc: Value, file: &Path) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn load(file: &Path) -> (Snapshot, Options) {
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut snapshot = Snapshot::default();
    let mut options = Options::default();
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
            ("Ingress", _) => {
                let i: Ingress = parse(doc, file);
                snapshot.ingresses.insert(key_of(&i.metadata).unwrap(), i);
            }
            ("IngressClass", _) => {
                let c: IngressClass = parse(doc, file);
                snapshot
                    .ingress_classes
                    .insert(c.metadata.name.clone().unwrap(), c);
            }
            ("Service", _) => {
                let s: Service = parse(doc, file);
                snapshot.services.insert(key_of(&s.metadata).unwrap(), s);
            }
            ("EndpointSlice", "discovery.k8s.io/v1beta1") => {
                let o: DynamicObject = parse(doc, file);
                let s = to_v1(o).expect("a readable v1beta1 EndpointSlice");
                snapshot
                    .endpoint_slices
                    .insert(key_of(&s.metadata).unwrap(), s);
            }
            ("EndpointSlice", _) => {
                let s: EndpointSlice = parse(doc, file);
                snapshot
                    .endpoint_slices
                    .insert(key_of(&s.metadata).unwrap(), s);
            }
            ("Secret", _) => {
                let mut s: Secret = parse(doc, file);
                // As the API server does: stringData lands in data.
                for (k, v) in s.string_data.take().unwrap_or_default() {
                    s.data
                        .get_or_insert_default()
                        .insert(k, ByteString(v.into_bytes()));
                }
                // The sources only watch TLS Secrets.
                if s.type_.as_deref() == Some("kubernetes.io/tls") {
                    snapshot.secrets.insert(key_of(&s.metadata).unwrap(), s);
                }
            }
            other => panic!("{}: unsupported object {other:?}", file.display()),
        }
    }
    (snapshot, options)
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
        let (snapshot, options) = load(input);
        let translation = translate(&snapshot, &options);
        let rendered = serde_saphyr::to_string(&translation).unwrap();
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
        // The proxy must accept every translated table.
        let compiled =
            sluice_proxy::compile::compile(translation.table.clone(), &Default::default());
        if let Err(e) = compiled {
            failures.push(format!(
                "{}: the proxy rejects the table: {e}",
                input.display()
            ));
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
