//! Criterion micro-benchmarks of the data plane's per-request and per-reload work:
//!
//! - `lookup/*`: `HostRouter::lookup` on a compiled table of realistic size
//!   (1000 exact hosts + 100 wildcard hosts, 20 paths each, mixed Exact/Prefix);
//! - (endpoint picks: see `balance_pick`);
//! - `compile/*`: compiling that whole table, i.e. the CPU cost of one table swap.
//!
//! Run: `cargo bench -p sluice-benches --bench routing` (add `-- --quick` for a fast pass).
//!
//! `compile()` builds hyper clients (`Upstreams::get`), but building one does not
//! spawn anything, so no tokio runtime is needed here (the `check` command also
//! compiles outside a runtime).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_proxy::compile::{self, CompiledTable, ListenerKind, normalize_host};
use sluice_proxy::runtime::Runtime;
use sluice_proxy::table::{
    Backend, Endpoint, ForwardedHeaders, HttpListener, Listener, PathMatch, Route, RoutingTable,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;

const EXACT_HOSTS: usize = 1000;
const WILDCARD_HOSTS: usize = 100;
const PATHS_PER_HOST: usize = 20;
const BACKENDS: usize = 50;

fn exact_host(i: usize) -> String {
    format!("svc-{i}.team-{}.example.com", i % 37)
}

/// The suffix of wildcard host `i`; the pattern is `*.` + this.
fn wildcard_suffix(i: usize) -> String {
    format!("tenant-{i}.example.net")
}

/// 20 paths per host: every 4th is Exact, the rest are Prefixes, some nested
/// (`/api/vN` and `/api/vN/users`) so longest-prefix order matters.
fn paths() -> Vec<PathMatch> {
    (0..PATHS_PER_HOST)
        .map(|j| match j % 4 {
            0 => PathMatch::Exact(format!("/healthz/{j}")),
            1 => PathMatch::Prefix(format!("/api/v{j}")),
            2 => PathMatch::Prefix(format!("/api/v{}/users", j - 1)),
            _ => PathMatch::Prefix(format!("/static-{j}/")),
        })
        .collect()
}

fn addr(i: usize) -> SocketAddr {
    // 10.0.x.y:8080, distinct per endpoint.
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080))
}

/// One listener, one route per host (1100 routes, 22 000 path entries), 50 backends
/// with 2 endpoints each. No catch-all route, so unknown hosts miss.
fn big_table() -> RoutingTable {
    let paths = paths();
    let mut routes = Vec::with_capacity(EXACT_HOSTS + WILDCARD_HOSTS);
    let hosts = (0..EXACT_HOSTS)
        .map(exact_host)
        .chain((0..WILDCARD_HOSTS).map(|i| format!("*.{}", wildcard_suffix(i))));
    for (i, host) in hosts.enumerate() {
        routes.push(Route {
            hosts: vec![host],
            paths: paths.clone(),
            ..Route::forward(format!("route-{i}"), format!("backend-{}", i % BACKENDS))
        });
    }
    let backends: BTreeMap<_, _> = (0..BACKENDS)
        .map(|b| {
            let endpoints = (0..2).map(|e| Endpoint::new(addr(b * 2 + e), 1)).collect();
            (
                format!("backend-{b}"),
                Backend {
                    endpoints,
                    ..Default::default()
                },
            )
        })
        .collect();
    RoutingTable {
        listeners: vec![Listener::Http(HttpListener {
            name: "http".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            routes,
            default_backend: None,
            forwarded: ForwardedHeaders::Off,
            timeouts: Default::default(),
            error_pages: Default::default(),
            tls: None,
            https_redirect_port: None,
        })],
        backends,
        certificates: Default::default(),
    }
}

fn compiled(upstreams: &Runtime) -> CompiledTable {
    let compiled = match compile::compile(big_table(), upstreams) {
        Ok(c) => c,
        Err(e) => panic!("benchmark table does not compile: {e}"),
    };
    assert!(
        compiled.warnings.is_empty(),
        "benchmark table has warnings: {:?}",
        compiled.warnings
    );
    compiled
}

fn http(table: &CompiledTable) -> &compile::HttpListener {
    match &table.listeners[0].kind {
        ListenerKind::Http(h) => h,
        ListenerKind::Passthrough(_) | ListenerKind::Tcp(_) => {
            panic!("the first listener is not HTTP")
        }
    }
}

fn bench_lookup(c: &mut Criterion) {
    let upstreams = Runtime::default();
    let table = compiled(&upstreams);
    let router = &http(&table).router;
    let wild_hit = format!("www.{}", wildcard_suffix(42));
    let exact = exact_host(777);
    // (name, host, path, expected route or None)
    let cases: [(&str, &str, &str, Option<usize>); 7] = [
        ("exact-host/exact-path", &exact, "/healthz/8", Some(777)),
        ("exact-host/prefix", &exact, "/api/v1/items/42", Some(777)),
        (
            "exact-host/nested-prefix",
            &exact,
            "/api/v13/users/9",
            Some(777),
        ),
        (
            "wildcard-host/prefix",
            &wild_hit,
            "/static-19/app.js",
            Some(1042),
        ),
        ("miss/unknown-host", "nope.example.org", "/api/v1", None),
        // Known host, no path matches: scans its prefixes, then the wildcard level.
        (
            "miss/known-host-unknown-path",
            &exact,
            "/nothing/here",
            None,
        ),
        // Two labels under a wildcard suffix: a wildcard covers exactly one.
        (
            "miss/deep-wildcard",
            "a.b.tenant-7.example.net",
            "/api/v1",
            None,
        ),
    ];
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    for (name, host, path, expected) in cases {
        assert_eq!(
            router.lookup(host, path, |_| true).map(|m| m.route),
            expected,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter(|| router.lookup(black_box(host), black_box(path), |_| true))
        });
    }
    // What the request path does: normalise the Host header (port, case), then look up.
    let raw = format!("{}:8080", exact.to_ascii_uppercase());
    assert_eq!(
        router
            .lookup(&normalize_host(&raw), "/api/v1/x", |_| true)
            .map(|m| m.route),
        Some(777)
    );
    group.bench_function("normalize+lookup/uppercase-host-with-port", |b| {
        b.iter(|| {
            router.lookup(
                &normalize_host(black_box(&raw)),
                black_box("/api/v1/x"),
                |_| true,
            )
        })
    });
    let plain = format!("{exact}:8080");
    group.bench_function("normalize+lookup/host-with-port", |b| {
        b.iter(|| {
            router.lookup(
                &normalize_host(black_box(&plain)),
                black_box("/api/v1/x"),
                |_| true,
            )
        })
    });
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    // A table swap: the Upstreams registry outlives tables, so its clients already
    // exist. The table clone is setup and the dropped result is not timed.
    let upstreams = Runtime::default();
    drop(compiled(&upstreams));
    let table = big_table();
    group.bench_function("1100-routes-22k-paths/warm-upstreams", |b| {
        b.iter_batched(
            || table.clone(),
            |t| compile::compile(t, &upstreams),
            BatchSize::LargeInput,
        )
    });
    // First table at start-up: the registry creates its hyper client too.
    group.bench_function("1100-routes-22k-paths/cold-upstreams", |b| {
        b.iter_batched(
            || (table.clone(), Runtime::default()),
            |(t, u)| (compile::compile(t, &u), u),
            BatchSize::LargeInput,
        )
    });
    // For scale: building the input table (what the YAML loader produces).
    group.bench_function("build-input-table", |b| b.iter(big_table));
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_compile);
criterion_main!(benches);
