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
mod hash_ring;
mod least_conn;
mod random;
mod round_robin;
mod schedule;
mod state;
mod static_rr;

pub use endpoint::{EndpointState, Member, PickContext};
pub use hash_key::{HashKey, hash_client};
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
    slow_start_ms: u64,
    max_queue: Option<u32>,
    queue_timeout: Duration,
}

struct Group {
    members: Vec<Member>,
    algorithm: Algorithm,
}

enum Algorithm {
    RoundRobin(round_robin::RoundRobin),
    StaticRr(static_rr::StaticRoundRobin),
    LeastConn,
    First,
    Random(random::Random),
    MapHash(hash_map::MapHash),
    /// The map's schedule serves requests without a key, round robin.
    Ring(hash_ring::Ring, hash_map::MapHash),
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
}

/// The outcome of one look at the endpoints, without waiting.
pub enum Attempt {
    Leased(Lease),
    /// Some endpoint is available but every available one is at `max_conn`.
    Full,
    Unavailable,
}

impl Balancer {
    /// `members` in table order, with their backup flags.
    pub fn new(
        state: Arc<BackendState>,
        backend: &table::Backend,
        members: Vec<(Member, bool)>,
    ) -> Self {
        let (backups, primaries): (Vec<_>, Vec<_>) = members.into_iter().partition(|(_, b)| *b);
        let strip = |v: Vec<(Member, bool)>| v.into_iter().map(|(m, _)| m).collect::<Vec<_>>();
        let primary = Group::new(strip(primaries), &backend.balance);
        let backup = (!backups.is_empty()).then(|| {
            let members = strip(backups);
            if backend.all_backups {
                Group::new(members, &backend.balance)
            } else {
                Group {
                    members,
                    algorithm: Algorithm::First,
                }
            }
        });
        Self {
            state,
            primary,
            backup,
            key: HashKey::of(&backend.balance),
            slow_start_ms: backend.slow_start.map_or(0, |d| d.as_millis()),
            max_queue: backend.max_queue,
            queue_timeout: backend.timeouts.queue.to_std(),
        }
    }

    /// The request's hash key, for hash-based algorithms (`None`: round robin).
    pub fn hash(&self, facts: &RequestFacts<'_>) -> Option<u64> {
        self.key.as_ref()?.hash(facts)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        let backups = self.backup.iter().flat_map(|g| g.members.iter());
        self.primary.members.iter().chain(backups)
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
        let ctx = PickContext {
            now_ms: (self.slow_start_ms > 0).then(|| self.state.now_ms()),
            slow_start_ms: self.slow_start_ms,
            exclude: avoid,
        };
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
    fn new(members: Vec<Member>, balance: &Balance) -> Self {
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
                    HashMethod::Consistent => {
                        Algorithm::Ring(hash_ring::Ring::new(&members, options.bounded_load), map)
                    }
                }
            }
        };
        Self { members, algorithm }
    }

    fn pick(
        &self,
        state: &BackendState,
        hash: Option<u64>,
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        let members = &self.members;
        match (&self.algorithm, hash) {
            (Algorithm::RoundRobin(rr), _) => rr.pick(members, ctx),
            (Algorithm::StaticRr(s), _) => s.pick(&state.cursor, members, ctx),
            (Algorithm::LeastConn, _) => least_conn::pick(&state.cursor, members, ctx),
            (Algorithm::First, _) => first::pick(members, ctx),
            (Algorithm::Random(r), _) => r.pick(members, ctx),
            (Algorithm::MapHash(map), Some(h)) => map.pick(h, members, ctx),
            (Algorithm::Ring(ring, _), Some(h)) => ring.pick(h, state.in_flight(), members, ctx),
            (Algorithm::MapHash(map) | Algorithm::Ring(_, map), None) => {
                map.schedule().next_open(&state.cursor, members, ctx)
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
