//! Endpoint pick cost (`Balancer::try_lease` plus dropping the lease, which is
//! what a request pays: the pick, the in-flight counters up and down) per
//! algorithm, with 3, 100 and 1,000 endpoints, all up, weight 1 unless noted:
//!
//! - `round_robin`, `round_robin_weighted` (weights 1–256), `static_rr`,
//!   `least_conn`, `first`, `random`;
//! - `source_map`, `uri_map`, `header_map`, `source_consistent`,
//!   `uri_consistent`, `header_consistent`, `consistent_bounded` (header,
//!   `bounded_load: 125`): the request's hash is computed beforehand (1,024
//!   distinct requests, cycled), so only the pick is timed; the key kind changes
//!   the hashes, not the pick;
//! - `hash/*`: `Balancer::hash(&facts)` alone on a typical request (`uri`:
//!   the path; `header`: a 36-byte `X-User`; `source`: an IPv4 client).
//!
//! Single thread, nothing else in flight. Group names: `pick/<algorithm>/<endpoints>`.
//!
//! Run: `cargo bench -p sluice-benches --bench balance_pick` (target: median
//! < 100 ns at 100 endpoints for `round_robin`, `least_conn` and the hashes).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use sluice_proxy::balance::{Attempt, Balancer};
use sluice_proxy::compile::{self, CompiledTable, RequestFacts};
use sluice_proxy::runtime::Runtime;
use sluice_proxy::table::{
    Backend, Balance, Endpoint, HashMethod, HashOptions, HeaderHash, HeaderNameText, RoutingTable,
    UriHash,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const SIZES: [usize; 3] = [3, 100, 1_000];
/// Distinct requests cycled through by the hash picks (a power of two).
const KEYS: usize = 1_024;

#[derive(Clone, Copy)]
enum Key {
    Source,
    Uri,
    Header,
}

fn hashed(key: Key, hash: HashMethod, bounded_load: Option<u32>) -> Balance {
    match key {
        Key::Source => Balance::Source(HashOptions { hash, bounded_load }),
        Key::Uri => Balance::Uri(UriHash {
            hash,
            bounded_load,
            ..UriHash::default()
        }),
        Key::Header => Balance::Header(HeaderHash {
            name: HeaderNameText::new("x-user").unwrap_or_else(|e| panic!("{e}")),
            hash,
            bounded_load,
        }),
    }
}

/// (name, algorithm, key kind for hashing, weighted endpoints)
fn cases() -> Vec<(&'static str, Balance, Option<Key>, bool)> {
    let map = HashMethod::Map;
    let consistent = HashMethod::Consistent;
    vec![
        ("round_robin", Balance::RoundRobin, None, false),
        ("round_robin_weighted", Balance::RoundRobin, None, true),
        ("static_rr", Balance::StaticRr, None, false),
        ("least_conn", Balance::LeastConn, None, false),
        ("first", Balance::First, None, false),
        ("random", Balance::Random, None, false),
        (
            "source_map",
            hashed(Key::Source, map, None),
            Some(Key::Source),
            false,
        ),
        (
            "uri_map",
            hashed(Key::Uri, map, None),
            Some(Key::Uri),
            false,
        ),
        (
            "header_map",
            hashed(Key::Header, map, None),
            Some(Key::Header),
            false,
        ),
        (
            "source_consistent",
            hashed(Key::Source, consistent, None),
            Some(Key::Source),
            false,
        ),
        (
            "uri_consistent",
            hashed(Key::Uri, consistent, None),
            Some(Key::Uri),
            false,
        ),
        (
            "header_consistent",
            hashed(Key::Header, consistent, None),
            Some(Key::Header),
            false,
        ),
        (
            "consistent_bounded",
            hashed(Key::Header, consistent, Some(125)),
            Some(Key::Header),
            false,
        ),
    ]
}

fn table(balance: Balance, endpoints: usize, weighted: bool) -> CompiledTable {
    let endpoints = (0..endpoints)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i as u32);
            let weight = if weighted {
                (i as u32 * 37) % 256 + 1
            } else {
                1
            };
            Endpoint::new(SocketAddr::new(ip.into(), 8080), weight)
        })
        .collect();
    let backend = Backend {
        endpoints,
        balance: Some(balance),
        ..Backend::default()
    };
    let table = RoutingTable {
        backends: BTreeMap::from([("b".to_owned(), backend)]),
        ..RoutingTable::default()
    };
    let compiled = compile::compile(table, &Runtime::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    compiled
}

/// Request `i`'s parts: a client address, a path and an `X-User` value.
struct Request {
    client: IpAddr,
    path: String,
    headers: HeaderMap,
}

fn request(i: usize) -> Request {
    let mut headers = HeaderMap::new();
    let user = format!("5f0c6a2e-8d1b-4c3a-9e7f-{i:012x}");
    let value = HeaderValue::from_str(&user).unwrap_or_else(|e| panic!("{e}"));
    headers.insert("x-user", value);
    headers.insert("accept", HeaderValue::from_static("application/json"));
    Request {
        client: IpAddr::from([198, 51, (i >> 8) as u8, i as u8]),
        path: format!("/api/v1/users/{i}/orders"),
        headers,
    }
}

fn facts(r: &Request) -> RequestFacts<'_> {
    RequestFacts {
        host: "shop.example.com",
        path: &r.path,
        query: None,
        method: &Method::GET,
        headers: &r.headers,
        client: r.client,
    }
}

/// A pick as a request makes it: lease, then release.
fn pick(balancer: &Balancer, hash: Option<u64>) -> bool {
    let attempt = balancer.try_lease(hash, &[]);
    matches!(attempt, Attempt::Leased(_))
}

fn bench(c: &mut Criterion) {
    let requests: Vec<Request> = (0..KEYS).map(request).collect();
    let mut group = c.benchmark_group("pick");
    for (name, balance, key, weighted) in cases() {
        for n in SIZES {
            let compiled = table(balance.clone(), n, weighted);
            let balancer = &compiled.backends[0].balancer;
            let hashes: Vec<Option<u64>> =
                requests.iter().map(|r| balancer.hash(&facts(r))).collect();
            assert!(
                hashes.iter().all(|h| h.is_some() == key.is_some()),
                "{name}: every request has the key"
            );
            assert!(hashes.iter().all(|&h| pick(balancer, h)), "{name}: picks");
            group.bench_function(BenchmarkId::new(name, n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % KEYS;
                    pick(black_box(balancer), hashes[i])
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("hash");
    let typical = request(42);
    for (name, key) in [
        ("uri", Key::Uri),
        ("header", Key::Header),
        ("source", Key::Source),
    ] {
        let compiled = table(hashed(key, HashMethod::Map, None), 3, false);
        let balancer = &compiled.backends[0].balancer;
        assert!(balancer.hash(&facts(&typical)).is_some(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| balancer.hash(&facts(black_box(&typical))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
