//! Property tests of the load balancer (`sluice_proxy::balance`), one group per
//! acceptance criterion of the balancing issue. Backends are built in code as
//! `table::Backend`s and compiled with `compile::compile`, so the balancer is the
//! one the data plane uses. A pick is `Balancer::try_lease`; a lease held is a
//! request in flight, a lease dropped at once a request that is done.
//!
//! Shares are checked in absolute terms: each endpoint's share of the picks
//! within 2 percentage points of `weight / total weight`.
//!
//! Run: `cargo test -p sluice-proxy --test balance_props`.

use proptest::prelude::*;
use proptest::sample::select;
use sluice_proxy::balance::{Attempt, Balancer, EndpointState, Lease};
use sluice_proxy::compile::{self, CompiledTable, RequestFacts};
use sluice_proxy::runtime::Runtime;
use sluice_proxy::table::{
    Backend, Balance, Endpoint, EndpointAddress, HashMethod, HashOptions, HeaderHash,
    HeaderNameText, RoutingTable, UriHash,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Building balancers

/// Endpoint `i` of an address block chosen by `base`, so the slot tables
/// (which hash the addresses) differ from case to case.
fn address(base: u32, i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 + base * 64 + i as u32);
    SocketAddr::new(ip.into(), 8080)
}

fn endpoints(base: u32, weights: &[u32]) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Endpoint::new(address(base, i), w))
        .collect()
}

fn backend(balance: Balance, endpoints: Vec<Endpoint>) -> Backend {
    Backend {
        endpoints,
        balance: Some(balance),
        ..Backend::default()
    }
}

/// What one look at the endpoints gave: the endpoint's position in the table,
/// or why none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    At(usize),
    Full,
    Unavailable,
}

/// A table with the one backend `b`, compiled.
struct Compiled {
    table: CompiledTable,
    /// Endpoint address → position in the table's endpoint list.
    index: HashMap<SocketAddr, usize>,
    /// Endpoint states in table order.
    states: Vec<Arc<EndpointState>>,
}

fn ip_of(address: &EndpointAddress) -> SocketAddr {
    match address {
        EndpointAddress::Ip(a) => *a,
        other => panic!("test endpoints have IP addresses, not {other}"),
    }
}

fn compile_on(runtime: &Runtime, backend: Backend) -> Compiled {
    let index: HashMap<_, _> = backend
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| (ip_of(&ep.address), i))
        .collect();
    let table = RoutingTable {
        backends: BTreeMap::from([("b".to_owned(), backend)]),
        ..RoutingTable::default()
    };
    let table = compile::compile(table, runtime).unwrap_or_else(|e| panic!("{e}"));
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);
    let mut states: Vec<_> = table.backends[0]
        .balancer
        .members()
        .map(|m| m.state.clone())
        .collect();
    states.sort_by_key(|s| index[&ip_of(&s.address)]);
    Compiled {
        table,
        index,
        states,
    }
}

fn compile_fresh(backend: Backend) -> Compiled {
    compile_on(&Runtime::default(), backend)
}

impl Compiled {
    fn balancer(&self) -> &Balancer {
        &self.table.backends[0].balancer
    }

    fn position(&self, lease: &Lease) -> usize {
        self.index[&ip_of(&lease.endpoint().address)]
    }

    /// One look, keeping the lease (the request stays in flight).
    fn lease(&self, hash: Option<u64>) -> (Got, Option<Lease>) {
        self.lease_avoiding(hash, &[])
    }

    fn lease_avoiding(
        &self,
        hash: Option<u64>,
        avoid: &[Arc<EndpointState>],
    ) -> (Got, Option<Lease>) {
        match self.balancer().try_lease(hash, avoid) {
            Attempt::Leased(lease) => (Got::At(self.position(&lease)), Some(lease)),
            Attempt::Full => (Got::Full, None),
            Attempt::Unavailable => (Got::Unavailable, None),
        }
    }

    /// One look, the request done at once (the lease dropped).
    fn pick(&self, hash: Option<u64>) -> Got {
        self.lease(hash).0
    }

    /// The address picked for `hash`, the request done at once.
    fn pick_address(&self, hash: Option<u64>) -> SocketAddr {
        match self.balancer().try_lease(hash, &[]) {
            Attempt::Leased(lease) => ip_of(&lease.endpoint().address),
            Attempt::Full => panic!("full without max_conn"),
            Attempt::Unavailable => panic!("unavailable with every endpoint up"),
        }
    }

    /// Requests in flight per endpoint, in table order.
    fn in_flight(&self) -> Vec<u32> {
        self.states.iter().map(|s| s.in_flight()).collect()
    }
}

// ---------------------------------------------------------------------------
// Algorithms and strategies

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algo {
    RoundRobin,
    StaticRr,
    LeastConn,
    First,
    Random,
    /// `source` with map-based hashing (every hash algorithm picks the same way
    /// from a given hash; the key only decides the hash).
    Map,
    /// `source` with consistent hashing.
    Consistent,
    /// Consistent hashing with `bounded_load: 125`.
    BoundedConsistent,
}

const ALL: [Algo; 8] = [
    Algo::RoundRobin,
    Algo::StaticRr,
    Algo::LeastConn,
    Algo::First,
    Algo::Random,
    Algo::Map,
    Algo::Consistent,
    Algo::BoundedConsistent,
];

impl Algo {
    fn balance(self) -> Balance {
        let source = |hash, bounded_load| Balance::Source(HashOptions { hash, bounded_load });
        match self {
            Algo::RoundRobin => Balance::RoundRobin,
            Algo::StaticRr => Balance::StaticRr,
            Algo::LeastConn => Balance::LeastConn,
            Algo::First => Balance::First,
            Algo::Random => Balance::Random,
            Algo::Map => source(HashMethod::Map, None),
            Algo::Consistent => source(HashMethod::Consistent, None),
            Algo::BoundedConsistent => source(HashMethod::Consistent, Some(125)),
        }
    }

    fn hashed(self) -> bool {
        matches!(self, Algo::Map | Algo::Consistent | Algo::BoundedConsistent)
    }

    /// A uniformly random key for hash algorithms, none for the others.
    fn key(self, rng: &mut fastrand::Rng) -> Option<u64> {
        self.hashed().then(|| rng.u64(..))
    }
}

/// Cases per property, and no regression files (failures print their input).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn weights(max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(1u32..=256, 1..=max_len)
}

/// Each count's share of all picks within 2 percentage points of `weight / total`.
fn check_shares(counts: &[usize], weights: &[u32]) -> Result<(), TestCaseError> {
    let picks: usize = counts.iter().sum();
    let total: u32 = weights.iter().sum();
    for (i, (&n, &w)) in counts.iter().zip(weights).enumerate() {
        let observed = n as f64 / picks as f64;
        let expected = f64::from(w) / f64::from(total);
        prop_assert!(
            (observed - expected).abs() <= 0.02,
            "endpoint {i} (weight {w} of {total}): share {observed:.4}, expected {expected:.4}; \
             counts {counts:?}"
        );
    }
    Ok(())
}

const PICKS: usize = 100_000;

/// Picks with every lease dropped at once, counted per endpoint.
fn count_picks(c: &Compiled, algo: Algo, picks: usize, seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = vec![0; c.states.len()];
    for _ in 0..picks {
        match c.pick(algo.key(&mut rng)) {
            Got::At(i) => counts[i] += 1,
            other => panic!("{algo:?}: {other:?} with every endpoint up"),
        }
    }
    counts
}

fn spread(counts: &[u32]) -> u32 {
    let max = counts.iter().copied().max().unwrap_or(0);
    let min = counts.iter().copied().min().unwrap_or(0);
    max - min
}

// ---------------------------------------------------------------------------
// 1. Picks follow weights (100,000 picks; leases dropped at once)

proptest! {
    #![proptest_config(cases(6))]

    /// round_robin, static_rr and map-based hashing over uniformly random keys.
    #[test]
    fn picks_follow_weights(
        algo in select(vec![Algo::RoundRobin, Algo::StaticRr, Algo::Map]),
        weights in weights(50),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let c = compile_fresh(backend(algo.balance(), endpoints(base, &weights)));
        let counts = count_picks(&c, algo, PICKS, seed);
        check_shares(&counts, &weights)?;
    }

    /// Consistent hashing over uniformly random keys, random weights: every slot
    /// of the table is a weighted draw, so shares follow the weights.
    #[test]
    fn consistent_picks_follow_weights(
        weights in weights(50),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let c = compile_fresh(backend(Algo::Consistent.balance(), endpoints(base, &weights)));
        let counts = count_picks(&c, Algo::Consistent, PICKS, seed);
        check_shares(&counts, &weights)?;
    }

    /// random (power of two choices) with equal weights: the two draws tie on
    /// load, and the first draw (weighted) wins.
    #[test]
    fn random_picks_follow_equal_weights(
        n in 1usize..=50,
        weight in 1u32..=256,
        base in 0u32..100_000,
    ) {
        let weights = vec![weight; n];
        let c = compile_fresh(backend(Algo::Random.balance(), endpoints(base, &weights)));
        let counts = count_picks(&c, Algo::Random, PICKS, 0);
        check_shares(&counts, &weights)?;
    }
}

proptest! {
    #![proptest_config(cases(6))]

    /// Consistent hashing with equal weights and a few endpoints, where a hash
    /// ring with a hundred or so points per endpoint strays by several points.
    #[test]
    fn consistent_picks_follow_equal_weights(
        n in 2usize..=5,
        weight in 1u32..=256,
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let weights = vec![weight; n];
        let c = compile_fresh(backend(Algo::Consistent.balance(), endpoints(base, &weights)));
        let counts = count_picks(&c, Algo::Consistent, PICKS, seed);
        check_shares(&counts, &weights)?;
    }

    /// random with unequal weights and requests that do not overlap: both draws
    /// are idle, the later one wins the tie (as HAProxy), so picks follow the
    /// weights of the draws.
    #[test]
    fn random_picks_follow_weights(
        weights in weights(50),
        base in 0u32..100_000,
    ) {
        let c = compile_fresh(backend(Algo::Random.balance(), endpoints(base, &weights)));
        let counts = count_picks(&c, Algo::Random, PICKS, 0);
        check_shares(&counts, &weights)?;
    }
}

// ---------------------------------------------------------------------------
// 2. Down, drained and avoided endpoints; backups

/// One endpoint of the availability test.
#[derive(Debug, Clone)]
struct Spec {
    /// 0: drained.
    weight: u32,
    up: bool,
    backup: bool,
    /// Passed in `avoid` (a retry's earlier endpoint).
    avoided: bool,
}

impl Spec {
    fn available(&self) -> bool {
        self.weight > 0 && self.up && !self.avoided
    }
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    let weight = prop_oneof![1 => Just(0u32), 4 => 1u32..=256];
    let flag = prop::bool::weighted;
    let spec =
        (weight, flag(0.7), flag(0.25), flag(0.1)).prop_map(|(weight, up, backup, avoided)| Spec {
            weight,
            up,
            backup,
            avoided,
        });
    proptest::collection::vec(spec, 1..=20)
}

/// Where a pick may go: `None` means it must be `Unavailable`.
fn allowed(specs: &[Spec], all_backups: bool) -> Option<Vec<usize>> {
    let available = |backup: bool| -> Vec<usize> {
        (0..specs.len())
            .filter(|&i| specs[i].backup == backup && specs[i].available())
            .collect()
    };
    let primaries = available(false);
    if !primaries.is_empty() {
        return Some(primaries);
    }
    let mut backups = available(true);
    if backups.is_empty() {
        return None;
    }
    if !all_backups {
        backups.truncate(1);
    }
    Some(backups)
}

/// Picks with some endpoints down, drained (weight 0) or avoided, after
/// `warm_up` picks with all of them up; half the leases are held.
fn check_availability(
    algo: Algo,
    specs: &[Spec],
    all_backups: bool,
    warm_up: usize,
    base: u32,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut endpoints = endpoints(base, &specs.iter().map(|s| s.weight).collect::<Vec<_>>());
    for (ep, spec) in endpoints.iter_mut().zip(specs) {
        ep.backup = spec.backup;
    }
    let mut b = backend(algo.balance(), endpoints);
    b.all_backups = all_backups;
    let c = compile_fresh(b);
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..warm_up {
        c.pick(algo.key(&mut rng));
    }
    for (state, spec) in c.states.iter().zip(specs) {
        state.set_up(spec.up);
    }
    let avoid: Vec<_> = c
        .states
        .iter()
        .zip(specs)
        .filter(|(_, s)| s.avoided)
        .map(|(state, _)| state.clone())
        .collect();
    let allowed = allowed(specs, all_backups);
    let mut held = Vec::new();
    for pick in 0..200 {
        let (got, lease) = c.lease_avoiding(algo.key(&mut rng), &avoid);
        match &allowed {
            None => prop_assert_eq!(got, Got::Unavailable, "pick {}", pick),
            Some(allowed) => prop_assert!(
                matches!(got, Got::At(i) if allowed.contains(&i)),
                "pick {pick}: {got:?}, allowed {allowed:?}"
            ),
        }
        if rng.bool() {
            held.extend(lease);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(64))]

    /// Every algorithm: picks go to available primaries; backups only when no
    /// primary is available, and then only the first available one unless
    /// `all_backups`; `Unavailable` when nothing is.
    #[test]
    fn unavailable_endpoints_are_never_picked(
        algo in select(ALL.to_vec()),
        specs in specs(),
        all_backups in any::<bool>(),
        warm_up in select(vec![0usize, 50]),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        check_availability(algo, &specs, all_backups, warm_up, base, seed)?;
    }
}

/// Picks with every primary down and `all_backups: true`, counted per endpoint.
fn backup_picks(
    algo: Algo,
    primaries: &[u32],
    backups: &[u32],
    base: u32,
    seed: u64,
) -> Vec<usize> {
    let weights: Vec<u32> = primaries.iter().chain(backups).copied().collect();
    let mut endpoints = endpoints(base, &weights);
    for ep in &mut endpoints[primaries.len()..] {
        ep.backup = true;
    }
    let mut b = backend(algo.balance(), endpoints);
    b.all_backups = true;
    let c = compile_fresh(b);
    for state in &c.states[..primaries.len()] {
        state.set_up(false);
    }
    // Enough picks that the lightest backup's share (at least 1/2560) shows
    // up, for the deterministic algorithms and by far for the random ones.
    count_picks(&c, algo, 20_000, seed)
}

proptest! {
    #![proptest_config(cases(48))]

    /// With `all_backups: true` and every primary down, the backups are
    /// balanced like primaries: each available backup takes requests.
    #[test]
    fn all_backups_share_the_load(
        algo in select(vec![Algo::RoundRobin, Algo::Map]),
        primaries in weights(5),
        backups in weights(10),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let counts = backup_picks(algo, &primaries, &backups, base, seed);
        let (p, b) = counts.split_at(primaries.len());
        prop_assert!(p.iter().all(|&n| n == 0) && b.iter().all(|&n| n > 0), "{:?}", counts);
    }

    /// The same for static_rr and least_conn, with backups of equal weight
    /// (least_conn: each request is done before the next, so the loads tie and
    /// its round-robin tie-break decides).
    #[test]
    fn all_backups_share_the_load_cursor(
        algo in select(vec![Algo::StaticRr, Algo::LeastConn]),
        primaries in proptest::collection::vec(1u32..=256, 0..=5),
        backups in 2usize..=10,
        weight in 1u32..=256,
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let counts = backup_picks(algo, &primaries, &vec![weight; backups], base, seed);
        let (p, b) = counts.split_at(primaries.len());
        prop_assert!(p.iter().all(|&n| n == 0) && b.iter().all(|&n| n > 0), "{:?}", counts);
    }
}

// ---------------------------------------------------------------------------
// 3. Consistent hashing moves few keys when an endpoint comes or goes

const KEYS: usize = 10_000;

/// Picks for `keys` on a table with `weights`, by address.
fn consistent_picks(
    weights: &[(usize, u32)],
    base: u32,
    keys: &[u64],
    bounded_load: Option<u32>,
) -> Vec<SocketAddr> {
    let endpoints = weights
        .iter()
        .map(|&(i, w)| Endpoint::new(address(base, i), w))
        .collect();
    let balance = Balance::Source(HashOptions {
        hash: HashMethod::Consistent,
        bounded_load,
    });
    let c = compile_fresh(backend(balance, endpoints));
    keys.iter().map(|&k| c.pick_address(Some(k))).collect()
}

fn random_keys(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| rng.u64(..)).collect()
}

/// Keys whose endpoint differs between `with` (all endpoints) and `without`
/// (all but `x`): all of them, and those that moved between two endpoints
/// other than `x` (none: a slot changes owner only when its owner leaves or a
/// newcomer outscores it).
fn moved_keys(with: &[SocketAddr], without: &[SocketAddr], x: SocketAddr) -> (usize, usize) {
    let moved = with.iter().zip(without).filter(|(a, b)| a != b);
    let between = moved.clone().filter(|(a, _)| **a != x).count();
    (moved.count(), between)
}

proptest! {
    #![proptest_config(cases(24))]

    /// Equal weights: adding or removing one of N endpoints moves at most 2/N
    /// of the keys.
    #[test]
    fn consistent_moves_few_keys_equal_weights(
        n in 2usize..=50,
        weight in 1u32..=256,
        x in any::<prop::sample::Index>(),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let keys = random_keys(seed, KEYS);
        let all: Vec<(usize, u32)> = (0..n).map(|i| (i, weight)).collect();
        let x = x.index(n);
        let mut others = all.clone();
        others.remove(x);
        let with = consistent_picks(&all, base, &keys, None);
        let without = consistent_picks(&others, base, &keys, None);
        let (moved, between) = moved_keys(&with, &without, address(base, x));
        prop_assert_eq!(between, 0, "keys moved between endpoints that stayed");
        let fraction = moved as f64 / KEYS as f64;
        prop_assert!(fraction <= 2.0 / n as f64, "{moved} of {KEYS} keys moved, N = {n}");
    }
}

proptest! {
    #![proptest_config(cases(24))]

    /// Unequal weights: adding or removing one endpoint moves at most twice its
    /// share of the keys (plus 1 percentage point for sampling). The weights
    /// of the others share a factor the endpoint's weight lacks (4, 4, 4, 4 and
    /// 1, say), as the general case rarely draws.
    #[test]
    fn consistent_moves_few_keys_unequal_weights(
        factor in 2u32..=16,
        units in proptest::collection::vec(1u32..=16, 2..=20),
        extra in 1u32..=256,
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        prop_assume!(extra % factor != 0);
        let keys = random_keys(seed, KEYS);
        let mut weights: Vec<u32> = units.iter().map(|u| u * factor).collect();
        weights.push(extra);
        let all: Vec<(usize, u32)> = weights.iter().copied().enumerate().collect();
        let x = weights.len() - 1;
        let with = consistent_picks(&all, base, &keys, None);
        let without = consistent_picks(&all[..x], base, &keys, None);
        let (moved, between) = moved_keys(&with, &without, address(base, x));
        prop_assert_eq!(between, 0, "keys moved between endpoints that stayed");
        let share = f64::from(extra) / f64::from(weights.iter().sum::<u32>());
        let fraction = moved as f64 / KEYS as f64;
        prop_assert!(
            fraction <= 2.0 * share + 0.01,
            "{moved} of {KEYS} keys moved; the endpoint's share is {share:.4}; weights {weights:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. `first` fills endpoints in order

proptest! {
    #![proptest_config(cases(64))]

    /// With `max_conn: m` everywhere and leases held, lease k goes to endpoint
    /// k / m; when all are full the answer is Full; a freed slot is refilled
    /// lowest endpoint first.
    #[test]
    fn first_fills_in_order(
        weights in weights(20),
        m in 1u32..=10,
        releases in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        base in 0u32..100_000,
    ) {
        let mut endpoints = endpoints(base, &weights);
        for ep in &mut endpoints {
            ep.max_conn = Some(m);
        }
        let c = compile_fresh(backend(Balance::First, endpoints));
        let total = weights.len() * m as usize;
        let mut held: Vec<Option<Lease>> = Vec::new();
        for k in 0..total {
            let (got, lease) = c.lease(None);
            prop_assert_eq!(got, Got::At(k / m as usize), "lease {}", k);
            held.push(lease);
        }
        prop_assert_eq!(c.lease(None).0, Got::Full);
        // Slot k is on endpoint k / m: free some, and the lowest endpoint with
        // a free slot takes the next request, until all are full again.
        for r in &releases {
            held[r.index(total)] = None;
        }
        while let Some(k) = held.iter().position(Option::is_none) {
            let (got, lease) = c.lease(None);
            prop_assert_eq!(got, Got::At(k / m as usize), "refilling slot {}", k);
            held[k] = lease;
        }
        prop_assert_eq!(c.lease(None).0, Got::Full);
    }
}

// ---------------------------------------------------------------------------
// 5. least_conn keeps in-flight counts even

proptest! {
    #![proptest_config(cases(64))]

    /// Random acquire/release interleavings. Every lease goes to an endpoint
    /// with the least load, (in flight + 1) / weight; with equal weights, an
    /// acquire never widens the max − min spread beyond 1, and while only
    /// acquiring (from empty) the spread stays within 1.
    #[test]
    fn least_conn_keeps_counts_even(
        equal in any::<bool>(),
        weights in weights(50),
        ops in proptest::collection::vec((prop::bool::weighted(0.6), any::<prop::sample::Index>()), 1..400),
        base in 0u32..100_000,
    ) {
        let weights = if equal { vec![weights[0]; weights.len()] } else { weights };
        let c = compile_fresh(backend(Balance::LeastConn, endpoints(base, &weights)));
        let mut held: Vec<Lease> = Vec::new();
        let mut only_acquired = true;
        for (acquire, which) in ops {
            if !acquire && !held.is_empty() {
                held.swap_remove(which.index(held.len()));
                only_acquired = false;
                continue;
            }
            let before = c.in_flight();
            let (got, lease) = c.lease(None);
            let Got::At(i) = got else {
                return Err(TestCaseError::fail(format!("{got:?}")));
            };
            held.extend(lease);
            let load = |j: usize| (u64::from(before[j]) + 1, u64::from(weights[j]));
            let (ni, wi) = load(i);
            for j in 0..weights.len() {
                let (nj, wj) = load(j);
                prop_assert!(
                    ni * wj <= nj * wi,
                    "picked {i} ({} in flight, weight {wi}) over {j} ({} in flight, weight {wj})",
                    before[i], before[j]
                );
            }
            if equal {
                let after = c.in_flight();
                prop_assert!(spread(&after) <= spread(&before).max(1), "{:?} → {:?}", before, after);
                if only_acquired {
                    prop_assert!(spread(&after) <= 1, "{:?}", after);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Hash keys give the same endpoint across table swaps

#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Source,
    Uri,
    Header,
}

fn keyed(kind: KeyKind, hash: HashMethod) -> Balance {
    match kind {
        KeyKind::Source => Balance::Source(HashOptions {
            hash,
            bounded_load: None,
        }),
        KeyKind::Uri => Balance::Uri(UriHash {
            hash,
            ..UriHash::default()
        }),
        KeyKind::Header => Balance::Header(HeaderHash {
            name: HeaderNameText::new("x-user").unwrap_or_else(|e| panic!("{e}")),
            hash,
            bounded_load: None,
        }),
    }
}

/// Requests that differ in client, path and `X-User`, derived from `seed`.
struct Requests {
    clients: Vec<IpAddr>,
    paths: Vec<String>,
    headers: Vec<http::HeaderMap>,
}

impl Requests {
    fn new(seed: u64, n: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut requests = Requests {
            clients: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
        };
        for _ in 0..n {
            let key = rng.u64(..);
            requests.clients.push(if key.is_multiple_of(2) {
                IpAddr::from(Ipv4Addr::from(key as u32))
            } else {
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(key) << 64))
            });
            requests.paths.push(format!("/items/{key:x}"));
            let mut headers = http::HeaderMap::new();
            headers.insert("x-user", http::HeaderValue::from(key));
            requests.headers.push(headers);
        }
        requests
    }

    /// The hash key of request `i` as the balancer computes it.
    fn hash(&self, b: &Balancer, i: usize) -> Option<u64> {
        let facts = RequestFacts {
            host: "example.com",
            path: &self.paths[i],
            query: None,
            method: &http::Method::GET,
            headers: &self.headers[i],
            client: self.clients[i],
        };
        b.hash(&facts)
    }

    /// The address each request goes to.
    fn picks(&self, c: &Compiled) -> Vec<SocketAddr> {
        (0..self.paths.len())
            .map(|i| {
                let hash = self.hash(c.balancer(), i);
                assert!(hash.is_some(), "every request has the key");
                c.pick_address(hash)
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(cases(24))]

    /// source, uri and header hashing, map-based and consistent: the same table
    /// compiled again on the same runtime (a swap) or on a fresh one (a restart,
    /// another replica) sends every request to the same endpoint; consistent
    /// hashing also when the endpoints are listed in another order.
    #[test]
    fn hash_picks_survive_table_swaps(
        kind in select(vec![KeyKind::Source, KeyKind::Uri, KeyKind::Header]),
        hash in select(vec![HashMethod::Map, HashMethod::Consistent]),
        weights in weights(30),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let requests = Requests::new(seed, 500);
        let b = backend(keyed(kind, hash), endpoints(base, &weights));
        let runtime = Runtime::default();
        let first = compile_on(&runtime, b.clone());
        let picks = requests.picks(&first);
        let swapped = compile_on(&runtime, b.clone());
        drop(first);
        prop_assert_eq!(&requests.picks(&swapped), &picks, "after a swap");
        prop_assert_eq!(&requests.picks(&compile_fresh(b.clone())), &picks, "fresh runtime");
        if hash == HashMethod::Consistent {
            let mut reordered = b;
            reordered.endpoints.reverse();
            prop_assert_eq!(&requests.picks(&compile_fresh(reordered)), &picks, "reordered");
        }
    }

    /// Consistent hashing, equal weights: after a swap to a table with one
    /// more endpoint, at most 2/N of the keys move.
    #[test]
    fn consistent_keeps_keys_when_an_endpoint_is_added(
        kind in select(vec![KeyKind::Source, KeyKind::Uri, KeyKind::Header]),
        n in 1usize..=30,
        weight in 1u32..=256,
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let requests = Requests::new(seed, 2_000);
        let runtime = Runtime::default();
        let weights = vec![weight; n];
        let before = compile_on(&runtime, backend(keyed(kind, HashMethod::Consistent), endpoints(base, &weights)));
        let picks = requests.picks(&before);
        let grown = vec![weight; n + 1];
        let after = compile_on(&runtime, backend(keyed(kind, HashMethod::Consistent), endpoints(base, &grown)));
        drop(before);
        let (moved, between) = moved_keys(&requests.picks(&after), &picks, address(base, n));
        prop_assert_eq!(between, 0, "keys moved between endpoints that stayed");
        let fraction = moved as f64 / 2_000.0;
        prop_assert!(fraction <= 2.0 / (n + 1) as f64, "{moved} of 2000 moved, N = {}", n + 1);
    }
}

// ---------------------------------------------------------------------------
// 7. Bounded load

proptest! {
    #![proptest_config(cases(32))]

    /// `bounded_load: 125`, leases held: no endpoint carries more than
    /// ceil(1.25 × its weighted share of the requests in flight) + 1 (with
    /// equal weights: ceil(1.25 × average) + 1). With releases in between, the
    /// endpoint just picked is within that bound.
    #[test]
    fn bounded_load_caps_each_endpoint(
        equal in any::<bool>(),
        weights in weights(50),
        ops in proptest::collection::vec((prop::bool::weighted(0.8), any::<prop::sample::Index>()), 1..400),
        releases in any::<bool>(),
        base in 0u32..100_000,
        seed in any::<u64>(),
    ) {
        let weights = if equal { vec![weights[0]; weights.len()] } else { weights };
        let total_weight = f64::from(weights.iter().sum::<u32>());
        let cap = |in_flight: u32, w: u32| {
            (1.25 * f64::from(in_flight) * f64::from(w) / total_weight).ceil() as u32 + 1
        };
        let c = compile_fresh(backend(Algo::BoundedConsistent.balance(), endpoints(base, &weights)));
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut held: Vec<Lease> = Vec::new();
        for (acquire, which) in ops {
            if releases && !acquire && !held.is_empty() {
                held.swap_remove(which.index(held.len()));
                continue;
            }
            let (got, lease) = c.lease(Some(rng.u64(..)));
            let Got::At(i) = got else {
                return Err(TestCaseError::fail(format!("{got:?}")));
            };
            held.extend(lease);
            let counts = c.in_flight();
            let total: u32 = counts.iter().sum();
            prop_assert!(counts[i] <= cap(total, weights[i]), "picked {}: {:?}", i, counts);
            if !releases {
                for (j, &n) in counts.iter().enumerate() {
                    prop_assert!(n <= cap(total, weights[j]), "endpoint {}: {:?}", j, counts);
                }
            }
        }
    }
}
