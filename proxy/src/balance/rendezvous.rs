//! Consistent hashing (`hash-type consistent`): a table of a fixed 65,537 slots,
//! each owned by the endpoint with the highest weighted rendezvous score for it
//! (highest random weight, Thaler & Ravishankar; weighted as Schindelhauer &
//! Schomaker: score = w / −ln(u), u a hash of slot and endpoint in (0, 1)).
//! A key's hash picks a slot, so a lookup is one index.
//!
//! Why this shape:
//! - a slot changes owner only when its owner leaves or a newcomer outscores it,
//!   so adding or removing one of N endpoints moves 1/N of the keys and none
//!   between endpoints that stay (Maglev re-deals some; a ring has to re-scale
//!   its points when weights change);
//! - every slot is an independent weighted draw, so shares follow the weights
//!   closely (a ring needs thousands of points per endpoint for that);
//! - it depends only on the endpoints' addresses and weights, so every process
//!   and table version builds the same table, whatever the listing order.
//!
//! Building costs one score per slot and endpoint (about 15 ms for 100 endpoints
//! of equal weight, when only the hash values are compared; a few times more
//! with unequal weights, which need a logarithm each), so the table is kept in
//! the backend's runtime state and reused by every table version whose
//! endpoints and weights are the same.
//!
//! When a key's endpoint cannot take the request, the endpoints of the next
//! slots do, in turn. With a bounded load (Mirrokni et al., "Consistent Hashing
//! with Bounded Loads"; HAProxy's `hash-balance-factor`) an endpoint already
//! carrying more than `factor`% of its weighted share of the requests in flight
//! is passed over too.

use super::endpoint::{Member, PickContext};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64;

pub struct Rendezvous {
    /// Per slot, a position in the candidates sorted by address hash; empty
    /// when no endpoint has weight.
    slots: Arc<[u32]>,
    /// Member index of each sorted candidate (this table's order).
    members: Box<[u32]>,
    total_weight: u64,
    bounded_load: Option<u32>,
}

/// The last table built for a backend, with the (address hash, weight) list it
/// was built from.
pub type SlotCache = Mutex<Option<(Vec<(u64, u32)>, Arc<[u32]>)>>;

/// Fixed, so that a key's slot never depends on the endpoints; prime, so that
/// `hash % SLOTS` uses every bit of the hash.
const SLOTS: u64 = 65_537;

impl Rendezvous {
    pub fn new(members: &[Member], bounded_load: Option<u32>, cache: &SlotCache) -> Self {
        let total_weight: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
        let mut sorted: Vec<(u64, u32, u32)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.weight > 0)
            .map(|(ix, m)| {
                let id = xxh3_64(m.state.address.to_string().as_bytes());
                (id, m.weight, ix as u32)
            })
            .collect();
        sorted.sort_unstable();
        let key: Vec<(u64, u32)> = sorted.iter().map(|&(id, w, _)| (id, w)).collect();
        let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
        let slots = match &*cached {
            Some((built_for, slots)) if *built_for == key => slots.clone(),
            _ => {
                let slots: Arc<[u32]> = populate(&key).into();
                *cached = Some((key, slots.clone()));
                slots
            }
        };
        Self {
            slots,
            members: sorted.iter().map(|&(_, _, ix)| ix).collect(),
            total_weight,
            bounded_load,
        }
    }

    pub fn pick(
        &self,
        hash: u64,
        in_flight: u32,
        members: &[Member],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        let m = self.slots.len();
        if m == 0 {
            return None;
        }
        let start = (hash % m as u64) as usize;
        let walk = (0..m).map(|k| self.members[self.slots[(start + k) % m] as usize] as usize);
        if let Some(factor) = self.bounded_load {
            // in_flight_m < factor/100 × (total + 1) × w_m / W, i.e. the member's
            // weighted share of the requests in flight with this one, scaled.
            let under_bound = |member: &Member| {
                u64::from(member.state.in_flight()) * 100 * self.total_weight
                    < u64::from(factor) * (u64::from(in_flight) + 1) * u64::from(member.weight)
            };
            let bounded = walk
                .clone()
                .find(|&ix| members[ix].open(ctx).is_some() && under_bound(&members[ix]));
            if bounded.is_some() {
                return bounded;
            }
        }
        let mut walk = walk;
        walk.find(|&ix| members[ix].open(ctx).is_some())
    }
}

/// Each slot to the position of its highest-scoring candidate (address hash,
/// weight).
fn populate(candidates: &[(u64, u32)]) -> Box<[u32]> {
    if candidates.is_empty() {
        return Box::new([]);
    }
    let equal = candidates.windows(2).all(|w| w[0].1 == w[1].1);
    (0..SLOTS)
        .map(|slot| {
            let slot_id = mix(slot.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut best = (f64::NEG_INFINITY, 0u64, 0u32);
            for (&(id, weight), ix) in candidates.iter().zip(0u32..) {
                let h = mix(id ^ slot_id);
                // Equal weights: the largest hash wins; no logarithm needed.
                // Ties (astronomically rare) go to the larger address hash.
                let score = if equal {
                    h as f64
                } else {
                    // u in (0, 1): 53 random bits, never 0.
                    let u = ((h >> 11) | 1) as f64 / (1u64 << 53) as f64;
                    f64::from(weight) / -u.ln()
                };
                if (score, id) > (best.0, best.1) {
                    best = (score, id, ix);
                }
            }
            best.2
        })
        .collect()
}

/// SplitMix64's finaliser: a fast bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(weights: &[u32]) -> Box<[u32]> {
        let candidates: Vec<(u64, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let address = format!("10.0.{}.{}:80", i / 250, i % 250);
                (xxh3_64(address.as_bytes()), w)
            })
            .collect();
        populate(&candidates)
    }

    fn shares(slots: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for &s in slots {
            counts[s as usize] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / slots.len() as f64)
            .collect()
    }

    #[test]
    fn slots_follow_weights() {
        let s = shares(&table(&[1, 1]), 2);
        assert!((s[0] - 0.5).abs() < 0.01, "{s:?}");
        let s = shares(&table(&[3, 1, 4]), 3);
        for (got, want) in s.iter().zip([3.0 / 8.0, 1.0 / 8.0, 4.0 / 8.0]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
    }

    #[test]
    fn removing_one_endpoint_moves_only_its_slots() {
        for n in [3usize, 10, 200] {
            let before = table(&vec![1; n]);
            let after = table(&vec![1; n - 1]);
            let last = (n - 1) as u32;
            for (b, a) in before.iter().zip(after.iter()) {
                assert!(b == a || *b == last, "n={n}: a slot moved from {b} to {a}");
            }
            let moved = before.iter().filter(|&&b| b == last).count() as f64 / SLOTS as f64;
            assert!(
                (moved - 1.0 / n as f64).abs() < 0.3 / n as f64,
                "n={n}: {moved}"
            );
        }
    }
}
