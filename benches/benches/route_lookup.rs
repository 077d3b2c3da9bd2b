//! Route selection cost (`HttpListener::select`) as the table grows: 10, 1,000 and
//! 10,000 hosts × 10 paths each (3 exact, 4 prefix, 2 suffix, 1 regex), one route
//! per path, plus a header-conditioned rule per host. Each request kind lands on a
//! different stage of the lookup:
//!
//! - `exact`: the exact-path hash hit;
//! - `suffix`: after the exact miss, a `ends_with` rule;
//! - `regex`: after the suffixes, the host's regex;
//! - `prefix`: after exact, suffix and regex rules miss, the deepest prefix;
//! - `conditioned`: a route whose header condition (`contains`, case-insensitive) holds;
//! - `miss_host`: an unknown host, answered by the host-less catch-all;
//! - `full_request`: host and path normalisation plus `select`, for a prefix hit.
//!
//! Run: `cargo bench -p sluice-benches --bench route_lookup` (target: median
//! < 300 ns at 10,000 hosts).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use sluice_benches::route_lookup::{Probe, host, probes, table};
use sluice_proxy::compile::{self, CompiledTable, RequestFacts, normalize_host, normalize_path};
use sluice_proxy::runtime::Runtime;
use std::hint::black_box;
use std::net::IpAddr;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn select<'t>(table: &'t CompiledTable, p: &Probe, client: IpAddr) -> Option<&'t str> {
    let http = table.listeners[0].kind.http()?;
    let facts = RequestFacts {
        host: &p.host,
        path: &p.path,
        query: None,
        method: &Method::GET,
        headers: &p.headers,
        client,
    };
    http.select(&facts).map(|s| &*s.route.name)
}

fn bench(c: &mut Criterion) {
    let client = IpAddr::from([192, 0, 2, 1]);
    let mut group = c.benchmark_group("route_lookup");
    for hosts in SIZES {
        let compiled =
            compile::compile(table(hosts), &Runtime::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
        for p in probes(hosts) {
            assert_eq!(
                select(&compiled, &p, client),
                Some(p.expect.as_str()),
                "{}",
                p.name
            );
            group.bench_with_input(BenchmarkId::new(p.name, hosts), &p, |b, p| {
                b.iter(|| select(black_box(&compiled), black_box(p), client))
            });
        }
        // What a request pays in all: normalising its host and path, then select.
        let raw_host = format!("{}:8080", host(hosts - 1));
        let raw_path = "/api/v3/users/42/orders";
        let Some(http) = compiled.listeners[0].kind.http() else {
            panic!("the first listener is not HTTP");
        };
        let headers = HeaderMap::new();
        group.bench_function(BenchmarkId::new("full_request", hosts), |b| {
            b.iter(|| {
                let host = normalize_host(black_box(&raw_host));
                let path = normalize_path(black_box(raw_path));
                let facts = RequestFacts {
                    host: &host,
                    path: &path,
                    query: None,
                    method: &Method::GET,
                    headers: &headers,
                    client,
                };
                http.select(&facts).map(|s| s.matched_len)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
