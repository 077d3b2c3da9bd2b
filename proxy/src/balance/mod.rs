//! Load balancing: which endpoint of a backend takes a request, as HAProxy's
//! `balance`, server weights, `backup`, `maxconn`/`maxqueue`/`timeout queue` and
//! `slowstart`. One file per algorithm; runtime state (requests in flight,
//! health, positions, the queue) lives in `state.rs` beside the table and
//! survives swaps.
//!
//! A pick looks at the primary endpoints first; backups are used only when no
//! primary is available (down or drained). An endpoint at its `max_conn` is
//! available but full: when every available endpoint is full the request waits
//! in the backend's queue, and the next freed slot goes to the oldest waiter.

mod endpoint;
mod first;
mod hash_key;
mod hash_map;
mod least_conn;
mod pinned;
mod random;
mod rendezvous;
mod round_robin;
mod schedule;
mod state;
mod static_rr;

pub use endpoint::{EndpointState, Member, PickContext};
pub use hash_key::{HashKey, hash_client};
pub use pinned::{Pin, PinnedLease};
pub use state::{BackendState, Lease, Registry};

use crate::compile::RequestFacts;
use crate::table::{self, Balance, HashMethod};
use std::sync::Arc;
use std::time::Duration;

/// The balancing part of a compiled backend.
pub struct Balancer {
    pub state: Arc<BackendState>,
    primary: Group,
    /// Backups, balanced like the primaries (`all_backups`) or first-available.
    backup: Option<Group>,
    key: Option<HashKey>,
    algorithm: &'static str,
    slow_start_ms: u64,
    max_queue: Option<u32>,
    queue_timeout: Duration,
}

struct Group {
    members: Vec<Member>,
    algorithm: Algorithm,
    /// Which of the backend's cursors this group turns (0 primaries, 1 backups).
    cursor: usize,
}

enum Algorithm {
    RoundRobin(round_robin::RoundRobin),
    StaticRr(static_rr::StaticRoundRobin),
    LeastConn,
    First,
    Random(random::Random),
    MapHash(hash_map::MapHash),
    /// The map's schedule serves requests without a key, round robin.
    Consistent(rendezvous::Rendezvous, hash_map::MapHash),
}

#[derive(Debug, serde::Serialize)]
pub struct BackendStatus {
    pub id: String,
    pub algorithm: &'static str,
    pub in_flight: u32,
    pub queued: usize,
    /// Session persistence and how its cookies were met; null without.
    pub sticky: Option<crate::sticky::StickyStatus>,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, serde::Serialize)]
pub struct EndpointStatus {
    pub address: String,
    pub up: bool,
    pub weight: u32,
    /// The weight during slow start.
    pub effective_weight: u32,
    pub backup: bool,
    pub max_conn: Option<u32>,
    pub in_flight: u32,
    /// Requests sent to it so far.
    pub requests: u64,
    /// The active check's latest results; null when unchecked.
    pub check: Option<crate::health::CheckStatus>,
    /// Passive checks took it out for a while.
    pub ejected: bool,
    pub ejections: u64,
    /// The sticky cookie value (or prefix) naming this endpoint.
    pub cookie_id: Option<String>,
}

/// Why no endpoint was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoEndpoint {
    #[error("no endpoint is available")]
    Unavailable,
    #[error("every endpoint is at its connection limit and the queue is full")]
    QueueFull,
    #[error("no endpoint slot freed up within the queue timeout ({0:?})")]
    QueueTimeout(Duration),
    #[error("the endpoint this session is pinned to is unavailable")]
    PinnedUnavailable,
}

/// The outcome of one look at the endpoints, without waiting.
pub enum Attempt {
    Leased(Lease),
    /// Some endpoint is available but every available one is at `max_conn`.
    Full,
    Unavailable,
}

impl Balancer {
    /// `members` in table order, with their backup flags; `balance` is the
    /// algorithm in force (see [`table::Backend::balance_for`]).
    pub fn new(
        state: Arc<BackendState>,
        backend: &table::Backend,
        balance: &table::Balance,
        members: Vec<(Member, bool)>,
    ) -> Self {
        let (backups, primaries): (Vec<_>, Vec<_>) = members.into_iter().partition(|(_, b)| *b);
        let strip = |v: Vec<(Member, bool)>| v.into_iter().map(|(m, _)| m).collect::<Vec<_>>();
        let primary = Group::new(strip(primaries), balance, &state, 0);
        let backup = (!backups.is_empty()).then(|| {
            let members = strip(backups);
            if backend.all_backups {
                Group::new(members, balance, &state, 1)
            } else {
                Group {
                    members,
                    algorithm: Algorithm::First,
                    cursor: 1,
                }
            }
        });
        Self {
            state,
            primary,
            backup,
            key: HashKey::of(balance),
            algorithm: balance.name(),
            slow_start_ms: backend.slow_start.map_or(0, |d| d.as_millis()),
            max_queue: backend.max_queue,
            queue_timeout: backend.timeouts.queue.to_std(),
        }
    }

    /// The request's hash key, for hash-based algorithms (`None`: round robin).
    pub fn hash(&self, facts: &RequestFacts<'_>) -> Option<u64> {
        self.key.as_ref()?.hash(facts)
    }

    /// Primaries and backups.
    pub fn len(&self) -> usize {
        self.primary.members.len() + self.backup.as_ref().map_or(0, |g| g.members.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        let backups = self.backup.iter().flat_map(|g| g.members.iter());
        self.primary.members.iter().chain(backups)
    }

    /// The clock (read only when slow start needs it) and the endpoints to avoid.
    fn context<'a>(&self, avoid: &'a [Arc<EndpointState>]) -> PickContext<'a> {
        PickContext {
            now_ms: (self.slow_start_ms > 0).then(|| self.state.now_ms()),
            slow_start_ms: self.slow_start_ms,
            exclude: avoid,
        }
    }

    /// What the balancer sees now, for the admin endpoint.
    pub fn status(&self) -> BackendStatus {
        let endpoints = |group: &Group, backup: bool| {
            group
                .members
                .iter()
                .map(|m| EndpointStatus {
                    address: m.state.address.to_string(),
                    up: m.state.is_up(),
                    weight: m.weight,
                    effective_weight: m.effective_weight(&self.context(&[])),
                    backup,
                    max_conn: (m.max_conn > 0).then_some(m.max_conn),
                    in_flight: m.state.in_flight(),
                    requests: m.state.requests(),
                    check: m
                        .state
                        .health
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .status(),
                    ejected: m.state.is_ejected(),
                    ejections: m.state.ejections.load(std::sync::atomic::Ordering::Relaxed),
                    cookie_id: None,
                })
                .collect::<Vec<_>>()
        };
        let mut all = endpoints(&self.primary, false);
        if let Some(backup) = &self.backup {
            all.extend(endpoints(backup, true));
        }
        BackendStatus {
            id: self.state.id.to_string(),
            algorithm: self.algorithm,
            in_flight: self.state.in_flight(),
            queued: self.state.queued(),
            sticky: None,
            endpoints: all,
        }
    }

    /// A slot on an endpoint, waiting in the queue when every available one is
    /// full. `avoid` lists endpoints a retry should not go back to, when others
    /// are available.
    pub async fn lease(
        &self,
        hash: Option<u64>,
        avoid: &[Arc<EndpointState>],
    ) -> Result<Lease, NoEndpoint> {
        let attempt = match self.try_lease(hash, avoid) {
            Attempt::Unavailable if !avoid.is_empty() => self.try_lease(hash, &[]),
            other => other,
        };
        match attempt {
            Attempt::Leased(lease) => Ok(lease),
            Attempt::Unavailable => Err(NoEndpoint::Unavailable),
            Attempt::Full => self.wait_in_queue(hash, avoid).await,
        }
    }

    async fn wait_in_queue(
        &self,
        hash: Option<u64>,
        avoid: &[Arc<EndpointState>],
    ) -> Result<Lease, NoEndpoint> {
        let Some(slot) = self.state.enqueue(self.max_queue) else {
            return Err(NoEndpoint::QueueFull);
        };
        // A slot freed between the first look and joining the queue was not
        // handed to this request: look once more. Leaving drops `slot`, and a
        // later release skips the closed entry.
        if let Attempt::Leased(lease) = self.try_lease(hash, avoid) {
            return Ok(lease);
        }
        match tokio::time::timeout(self.queue_timeout, slot).await {
            Ok(Ok(lease)) => Ok(lease),
            _ => Err(NoEndpoint::QueueTimeout(self.queue_timeout)),
        }
    }

    /// One look at the endpoints: primaries, then backups when no primary is
    /// available.
    pub fn try_lease(&self, hash: Option<u64>, avoid: &[Arc<EndpointState>]) -> Attempt {
        let ctx = self.context(avoid);
        for group in std::iter::once(&self.primary).chain(&self.backup) {
            match group.try_lease(&self.state, hash, &ctx) {
                Attempt::Unavailable => continue,
                other => return other,
            }
        }
        Attempt::Unavailable
    }
}

/// Another request may take the picked slot first; try a few picks before
/// calling the group full.
const RACES: usize = 4;

impl Group {
    fn new(members: Vec<Member>, balance: &Balance, state: &BackendState, cursor: usize) -> Self {
        let algorithm = match balance {
            Balance::RoundRobin => Algorithm::RoundRobin(round_robin::RoundRobin::new(&members)),
            Balance::StaticRr => Algorithm::StaticRr(static_rr::StaticRoundRobin::new(&members)),
            Balance::LeastConn => Algorithm::LeastConn,
            Balance::First => Algorithm::First,
            Balance::Random => Algorithm::Random(random::Random::new(&members)),
            hashed => {
                let options = hashed.hash_options().unwrap_or_default();
                let map = hash_map::MapHash::new(&members);
                match options.hash {
                    HashMethod::Map => Algorithm::MapHash(map),
                    HashMethod::Consistent => Algorithm::Consistent(
                        rendezvous::Rendezvous::new(
                            &members,
                            options.bounded_load,
                            &state.slot_caches[cursor],
                        ),
                        map,
                    ),
                }
            }
        };
        Self {
            members,
            algorithm,
            cursor,
        }
    }

    fn pick(
        &self,
        state: &BackendState,
        hash: Option<u64>,
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        let members = &self.members;
        let cursor = &state.cursors[self.cursor];
        match (&self.algorithm, hash) {
            (Algorithm::RoundRobin(rr), _) => rr.pick(members, ctx),
            (Algorithm::StaticRr(s), _) => s.pick(cursor, members, ctx),
            (Algorithm::LeastConn, _) => least_conn::pick(cursor, members, ctx),
            (Algorithm::First, _) => first::pick(members, ctx),
            (Algorithm::Random(r), _) => r.pick(members, ctx),
            (Algorithm::MapHash(map), Some(h)) => map.pick(h, members, ctx),
            (Algorithm::Consistent(table, _), Some(h)) => {
                table.pick(h, state.in_flight(), members, ctx)
            }
            (Algorithm::MapHash(map) | Algorithm::Consistent(_, map), None) => {
                map.schedule().next_open(cursor, members, ctx)
            }
        }
    }

    fn try_lease(
        &self,
        state: &Arc<BackendState>,
        hash: Option<u64>,
        ctx: &PickContext<'_>,
    ) -> Attempt {
        for _ in 0..RACES {
            let Some(ix) = self.pick(state, hash, ctx) else {
                break;
            };
            let member = &self.members[ix];
            if let Some(lease) = state.try_lease(&member.state, member.max_conn) {
                return Attempt::Leased(lease);
            }
        }
        if self.members.iter().any(|m| m.available(ctx)) {
            Attempt::Full
        } else {
            Attempt::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;
    use crate::table::from_yaml_str;

    fn balancer(runtime: &Runtime, yaml: &str) -> crate::compile::CompiledTable {
        let table = from_yaml_str(&format!("backends:\n  b:\n{yaml}")).unwrap();
        crate::compile::compile(table, runtime).unwrap()
    }

    const ONE_SLOT: &str = "    timeouts: {queue: 2s}
    endpoints: [{address: 127.0.0.1:1, max_conn: 1}]
";

    #[tokio::test(start_paused = true)]
    async fn a_full_endpoint_queues_and_the_freed_slot_goes_to_the_oldest_waiter() {
        let runtime = Runtime::default();
        let t = balancer(&runtime, ONE_SLOT);
        let b = &t.backends[0].balancer;
        let first = b.lease(None, &[]).await.unwrap();
        let (second, third) = (b.lease(None, &[]), b.lease(None, &[]));
        tokio::pin!(second, third);
        // Both wait (polled in order, so the second queues first).
        assert!(futures_poll(&mut second).await.is_none());
        assert!(futures_poll(&mut third).await.is_none());
        assert_eq!(b.state.queued(), 2);
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(
            b.state.in_flight(),
            1,
            "the slot was handed over, not freed"
        );
        assert!(futures_poll(&mut third).await.is_none());
        drop(second);
        let _third = third.await.unwrap();
        assert_eq!(b.state.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_longer_than_the_queue_timeout_fails_and_a_full_queue_fails_at_once() {
        let runtime = Runtime::default();
        let t = balancer(&runtime, &format!("{ONE_SLOT}    max_queue: 1\n"));
        let b = &t.backends[0].balancer;
        let _held = b.lease(None, &[]).await.unwrap();
        let waiting = b.lease(None, &[]);
        tokio::pin!(waiting);
        assert!(futures_poll(&mut waiting).await.is_none());
        assert_eq!(b.lease(None, &[]).await.unwrap_err(), NoEndpoint::QueueFull);
        let started = tokio::time::Instant::now();
        assert!(matches!(waiting.await, Err(NoEndpoint::QueueTimeout(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // The timed-out waiter left no trace: a release frees the slot.
        drop(_held);
        assert_eq!(b.state.in_flight(), 0);
    }

    #[tokio::test]
    async fn in_flight_counts_and_queues_survive_a_table_swap() {
        let runtime = Runtime::default();
        let old = balancer(&runtime, ONE_SLOT);
        let held = old.backends[0].balancer.lease(None, &[]).await.unwrap();
        let new = balancer(&runtime, ONE_SLOT);
        let b = &new.backends[0].balancer;
        assert!(matches!(b.try_lease(None, &[]), Attempt::Full));
        drop(old);
        drop(held);
        assert!(matches!(b.try_lease(None, &[]), Attempt::Leased(_)));
    }

    #[test]
    fn backups_serve_only_when_no_primary_is_available() {
        let runtime = Runtime::default();
        let t = balancer(
            &runtime,
            "    endpoints:
      - {address: 127.0.0.1:1}
      - {address: 127.0.0.1:2, backup: true}
      - {address: 127.0.0.1:3, backup: true}
",
        );
        let b = &t.backends[0].balancer;
        let pick = || match b.try_lease(None, &[]) {
            Attempt::Leased(l) => l.endpoint().address.to_string(),
            _ => "none".into(),
        };
        assert_eq!(pick(), "127.0.0.1:1");
        let primary = b.members().next().unwrap().state.clone();
        primary.set_up(false);
        assert_eq!(pick(), "127.0.0.1:2");
        assert_eq!(
            pick(),
            "127.0.0.1:2",
            "only the first backup without all_backups"
        );
        primary.set_up(true);
        assert_eq!(pick(), "127.0.0.1:1");
    }

    #[test]
    fn a_heavy_endpoint_that_is_down_or_avoided_never_blocks_the_others() {
        let runtime = Runtime::default();
        let t = balancer(
            &runtime,
            "    endpoints: [{address: 127.0.0.1:1, weight: 10}, {address: 127.0.0.1:2, weight: 1}]\n",
        );
        let b = &t.backends[0].balancer;
        let heavy = b.members().next().unwrap().state.clone();
        let picks = |avoid: &[Arc<EndpointState>]| {
            (0..50)
                .map(|_| match b.try_lease(None, avoid) {
                    Attempt::Leased(l) => l.endpoint().address.to_string(),
                    _ => "none".into(),
                })
                .filter(|a| a != "127.0.0.1:2")
                .count()
        };
        assert_eq!(picks(std::slice::from_ref(&heavy)), 0, "avoided");
        heavy.set_up(false);
        assert_eq!(picks(&[]), 0, "down");
        heavy.set_up(true);
        assert!(picks(&[]) > 40, "back");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_a_returning_endpoint() {
        let runtime = Runtime::default();
        let t = balancer(
            &runtime,
            "    slow_start: 10s
    endpoints: [{address: 127.0.0.1:1, weight: 100}, {address: 127.0.0.1:2, weight: 100}]
",
        );
        let b = &t.backends[0].balancer;
        let returning = b.members().nth(1).unwrap();
        returning.state.start_ramp(b.state.now_ms());
        let share = || {
            let hits = (0..1000)
                .filter(|_| match b.try_lease(None, &[]) {
                    Attempt::Leased(l) => l.endpoint().address.to_string() == "127.0.0.1:2",
                    _ => false,
                })
                .count();
            hits as f64 / 1000.0
        };
        assert!(share() < 0.05, "just back: weight ~1 of 100");
        tokio::time::advance(Duration::from_secs(5)).await;
        let half = share();
        assert!(
            (0.28..0.38).contains(&half),
            "half-way: 50 vs 100, got {half}"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let full = share();
        assert!(
            (0.45..0.55).contains(&full),
            "warm: equal shares, got {full}"
        );
    }

    /// Polls a future once: `Some` if it completed.
    async fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
