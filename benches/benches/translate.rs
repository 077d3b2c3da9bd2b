//! Criterion benchmark of the controller's translation (`translate/*`): a Snapshot
//! of 10 000 Ingresses (2 distinct hosts × 5 paths each, i.e. 100 000 routes), the
//! 10 000 Services they reference and 11 000 EndpointSlices holding 50 000 ready
//! endpoints → one routing table. This is the CPU cost of one controller reload.
//!
//! Run: `cargo bench -p sluice-benches --bench translate`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use sluice_controller::snapshot::{ObjectKey, Snapshot};
use sluice_controller::translate::{Options, translate};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

const INGRESSES: usize = 10_000;
const NAMESPACES: usize = 100;
const ENDPOINTS_PER_SERVICE: usize = 5;
/// Every this-many-th Service has its endpoints split over two slices (3 + 2).
const SPLIT_EVERY: usize = 10;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

fn namespace(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn service_backend(service: &str, port: ServiceBackendPort) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(port),
        }),
        resource: None,
    }
}

fn by_number(n: i32) -> ServiceBackendPort {
    ServiceBackendPort {
        number: Some(n),
        name: None,
    }
}

fn by_name(n: &str) -> ServiceBackendPort {
    ServiceBackendPort {
        name: Some(n.to_owned()),
        number: None,
    }
}

/// Ingress `i`: class `sluice`, hosts `app-i.example.com` and `*.app-i.example.net`,
/// five paths each (Exact, nested Prefixes, ImplementationSpecific) to Service
/// `svc-i` by port number and by port name.
fn ingress(i: usize) -> Ingress {
    let svc = format!("svc-{i}");
    let paths = vec![
        ("/healthz", "Exact", by_number(80)),
        ("/api", "Prefix", by_name("http")),
        ("/api/v2", "Prefix", by_name("grpc")),
        ("/static/", "Prefix", by_name("http")),
        ("/", "ImplementationSpecific", by_number(80)),
    ];
    let http = HTTPIngressRuleValue {
        paths: paths
            .into_iter()
            .map(|(path, path_type, port)| HTTPIngressPath {
                path: Some(path.to_owned()),
                path_type: path_type.to_owned(),
                backend: service_backend(&svc, port),
            })
            .collect(),
    };
    let hosts = [
        format!("app-{i}.example.com"),
        format!("*.app-{i}.example.net"),
    ];
    let created = Timestamp::from_second(1_700_000_000 + i as i64).unwrap_or(Timestamp::UNIX_EPOCH);
    Ingress {
        metadata: ObjectMeta {
            creation_timestamp: Some(Time(created)),
            ..meta(&namespace(i), &format!("app-{i}"))
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some("sluice".to_owned()),
            rules: Some(
                hosts
                    .into_iter()
                    .map(|host| IngressRule {
                        host: Some(host),
                        http: Some(http.clone()),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn service(i: usize) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        ..Default::default()
    };
    Service {
        metadata: meta(&namespace(i), &format!("svc-{i}")),
        spec: Some(ServiceSpec {
            ports: Some(vec![port("http", 80), port("grpc", 81)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The slices of Service `i`: ports `http` → 8080 and `grpc` → 9090, five ready
/// endpoints with distinct addresses, split 3 + 2 over two slices for every 10th.
fn slices(i: usize) -> Vec<EndpointSlice> {
    let addresses: Vec<String> = (0..ENDPOINTS_PER_SERVICE)
        .map(|e| {
            let n = u32::try_from(i * ENDPOINTS_PER_SERVICE + e).unwrap_or(u32::MAX);
            Ipv4Addr::from(0x0a00_0000 | n).to_string()
        })
        .collect();
    let groups: Vec<&[String]> = if i.is_multiple_of(SPLIT_EVERY) {
        vec![&addresses[..3], &addresses[3..]]
    } else {
        vec![&addresses[..]]
    };
    let port = |name: &str, port: i32| EndpointPort {
        name: Some(name.to_owned()),
        port: Some(port),
        ..Default::default()
    };
    groups
        .into_iter()
        .enumerate()
        .map(|(g, addresses)| EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/service-name".to_owned(),
                    format!("svc-{i}"),
                )])),
                ..meta(&namespace(i), &format!("svc-{i}-{g}"))
            },
            address_type: "IPv4".to_owned(),
            endpoints: addresses
                .iter()
                .map(|a| Endpoint {
                    addresses: vec![a.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![port("http", 8080), port("grpc", 9090)]),
        })
        .collect()
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    let key = |ns: String, name: String| ObjectKey::new(ns, name);
    for i in 0..INGRESSES {
        s.ingresses
            .insert(key(namespace(i), format!("app-{i}")), Arc::new(ingress(i)));
        s.services
            .insert(key(namespace(i), format!("svc-{i}")), Arc::new(service(i)));
        for (g, slice) in slices(i).into_iter().enumerate() {
            s.endpoint_slices
                .insert(key(namespace(i), format!("svc-{i}-{g}")), Arc::new(slice));
        }
    }
    s
}

fn bench_translate(c: &mut Criterion) {
    let snapshot = snapshot();
    let endpoints: usize = snapshot
        .endpoint_slices
        .values()
        .map(|s| s.endpoints.len())
        .sum();
    assert_eq!(endpoints, INGRESSES * ENDPOINTS_PER_SERVICE);
    let options = Options::default();

    // The input must translate cleanly, or the benchmark measures warning paths.
    let t = translate(&snapshot, &options);
    assert_eq!(t.statuses.len(), INGRESSES);
    assert!(
        t.statuses.iter().all(|s| s.served && s.warnings.is_empty()),
        "{:?}",
        t.statuses.iter().find(|s| !s.warnings.is_empty())
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let routes = t.table.listeners[0].http().map_or(0, |h| h.routes.len());
    assert_eq!(routes, INGRESSES * 2 * 5);
    // Three backends per Service (`:80`, `:http`, `:grpc`), five endpoints each.
    assert_eq!(t.table.backends.len(), INGRESSES * 3);
    assert!(
        t.table
            .backends
            .values()
            .all(|b| b.endpoints.len() == ENDPOINTS_PER_SERVICE)
    );
    drop(t);

    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    // The result is dropped outside the timed region.
    group.bench_function("10k-ingresses-50k-endpoints", |b| {
        b.iter_batched(
            || (),
            |()| translate(black_box(&snapshot), black_box(&options)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_translate);
criterion_main!(benches);
