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
use http::{HeaderMap, HeaderValue, Method};
use sluice_proxy::compile::{
    self, CompiledTable, ListenerKind, RequestFacts, normalize_host, normalize_path,
};
use sluice_proxy::table::{
    Backend, Condition, Endpoint, HeaderMatch, HeaderNameText, HttpListener, Listener,
    MatchPattern, PathMatch, Route, RoutingTable, ValueTest,
};
use sluice_proxy::upstream::Upstreams;
use std::hint::black_box;
use std::net::IpAddr;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn host(i: usize) -> String {
    format!("shop-{i}.team-{}.example.com", i % 97)
}

fn routes_for(i: usize) -> Vec<Route> {
    let h = host(i);
    let backend = format!("b{}", i % 50);
    let route = |kind: &str, paths: Vec<PathMatch>| Route {
        hosts: vec![h.clone()],
        paths,
        ..Route::forward(format!("{h}-{kind}"), backend.clone())
    };
    let mut routes = vec![Route {
        conditions: vec![Condition::Header(HeaderMatch {
            name: HeaderNameText::new("user-agent").unwrap_or_else(|e| panic!("{e}")),
            test: ValueTest::Contains("iphone".into()),
            ignore_case: true,
        })],
        ..route("mobile", vec![PathMatch::Prefix("/m".into())])
    }];
    for j in 0..3 {
        routes.push(route(
            &format!("exact{j}"),
            vec![PathMatch::Exact(format!("/healthz/{j}"))],
        ));
    }
    for j in 0..4 {
        routes.push(route(
            &format!("prefix{j}"),
            vec![PathMatch::Prefix(format!("/api/v{j}/users"))],
        ));
    }
    for ext in [".css", ".js"] {
        routes.push(route(ext, vec![PathMatch::EndsWith(ext.into())]));
    }
    let pattern =
        MatchPattern::new(&format!("/item-{i}/[0-9]+/detail")).unwrap_or_else(|e| panic!("{e}"));
    routes.push(route("regex", vec![PathMatch::Regex(pattern)]));
    routes
}

fn table(hosts: usize) -> RoutingTable {
    let mut routes: Vec<Route> = (0..hosts).flat_map(routes_for).collect();
    routes.push(Route::forward("catch-all", "b0"));
    RoutingTable {
        listeners: vec![Listener::Http(HttpListener {
            name: "web".into(),
            bind: "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
            routes,
            default_backend: None,
            forwarded: Default::default(),
            timeouts: Default::default(),
            error_pages: Default::default(),
        })],
        backends: (0..50)
            .map(|b| {
                let endpoint = Endpoint {
                    address: std::net::SocketAddr::from(([10, 0, 0, b + 1], 8080)).into(),
                    weight: 1,
                };
                let backend = Backend {
                    endpoints: vec![endpoint],
                    ..Backend::default()
                };
                (format!("b{b}"), backend)
            })
            .collect(),
        certificates: Default::default(),
    }
}

struct Probe {
    name: &'static str,
    host: String,
    path: String,
    headers: HeaderMap,
    /// The route expected to answer, so a broken table cannot bench a miss.
    expect: String,
}

fn probes(hosts: usize) -> Vec<Probe> {
    // The last host, so a linear structure would show its worst case.
    let i = hosts - 1;
    let h = host(i);
    let mut mobile = HeaderMap::new();
    mobile.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
    );
    let probe = |name, path: String, headers: HeaderMap, expect: String| Probe {
        name,
        host: h.clone(),
        path,
        headers,
        expect,
    };
    vec![
        probe(
            "exact",
            "/healthz/2".into(),
            HeaderMap::new(),
            format!("{h}-exact2"),
        ),
        probe(
            "suffix",
            "/assets/app.js".into(),
            HeaderMap::new(),
            format!("{h}-.js"),
        ),
        probe(
            "regex",
            format!("/item-{i}/12345/detail"),
            HeaderMap::new(),
            format!("{h}-regex"),
        ),
        probe(
            "prefix",
            "/api/v3/users/42/orders".into(),
            HeaderMap::new(),
            format!("{h}-prefix3"),
        ),
        probe(
            "conditioned",
            "/m/home".into(),
            mobile,
            format!("{h}-mobile"),
        ),
        Probe {
            name: "miss_host",
            host: "unknown.example.org".into(),
            path: "/api/v3/users".into(),
            headers: HeaderMap::new(),
            expect: "catch-all".into(),
        },
    ]
}

fn select<'t>(table: &'t CompiledTable, p: &Probe, client: IpAddr) -> Option<&'t str> {
    let ListenerKind::Http(http) = &table.listeners[0].kind;
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
            compile::compile(table(hosts), &Upstreams::default()).unwrap_or_else(|e| panic!("{e}"));
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
        let ListenerKind::Http(http) = &compiled.listeners[0].kind;
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
