//! Route selection does not allocate: the `route_lookup` requests (exact, suffix,
//! regex, prefix, header-conditioned, unknown host), on clean host and path, are
//! selected with zero heap allocations once the regex caches are warm.
//!
//! One test per binary: dhat's profiler is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use sluice_benches::route_lookup::{probes, table};
use sluice_proxy::compile::{self, RequestFacts, normalize_host, normalize_path};
use sluice_proxy::runtime::Runtime;
use std::net::IpAddr;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn selecting_a_route_does_not_allocate() {
    let compiled = compile::compile(table(100), &Runtime::default()).unwrap();
    let http = compiled.listeners[0].kind.http().unwrap();
    let probes = probes(100);
    let client = IpAddr::from([192, 0, 2, 1]);
    let select_all = || {
        for p in &probes {
            let host = normalize_host(&p.host);
            let path = normalize_path(&p.path);
            let facts = RequestFacts {
                host: &host,
                path: &path,
                query: Some("a=1&b=2"),
                method: &Method::GET,
                headers: &p.headers,
                client,
            };
            let selected = http.select(&facts).map(|s| &*s.route.name);
            assert_eq!(selected, Some(p.expect.as_str()), "{}", p.name);
        }
    };
    // Regexes allocate their per-thread search cache on first use.
    select_all();

    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..100 {
        select_all();
    }
    let allocations = dhat::HeapStats::get().total_blocks - before;
    dhat::assert_eq!(allocations, 0);
}
