//! Consistent hashing (`hash-type consistent`) with Maglev (Eisenbud et al.,
//! NSDI 2016): a lookup table of M slots (M prime, about 100 per endpoint or
//! more) that every endpoint fills in turn, each following its own permutation
//! of the slots derived from its address. Lookups are one index; shares follow
//! the weights to within a slot (a ring needs thousands of points per endpoint
//! for that); adding or removing one of N endpoints moves about 1/N of the keys
//! (a little more: some slots change hands between endpoints that stay). The
//! table depends only on the endpoints' addresses and weights, not on their
//! order, so every process and table version agrees.
//!
//! A key goes to its slot's endpoint; when that endpoint cannot take the
//! request, to the next slots' endpoints in turn. With a bounded load (Mirrokni
//! et al., "Consistent Hashing with Bounded Loads"; HAProxy's
//! `hash-balance-factor`) an endpoint already carrying more than `factor`% of its
//! weighted share of the requests in flight is passed over too.

use super::endpoint::{Member, PickContext};
use xxhash_rust::xxh3::xxh3_64_with_seed;

pub struct Maglev {
    /// Member index per slot; empty when no endpoint has weight.
    slots: Box<[u32]>,
    total_weight: u64,
    bounded_load: Option<u32>,
}

/// Slots per endpoint at least; more endpoints take the next size up. The sizes
/// are fixed so that the table changes only where endpoints do.
const SLOTS_PER_ENDPOINT: u64 = 100;
const SIZES: [u64; 3] = [65_537, 655_373, 6_553_621];

impl Maglev {
    pub fn new(members: &[Member], bounded_load: Option<u32>) -> Self {
        let total_weight: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
        let mut weighted: Vec<(String, u32, u32)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.weight > 0)
            .map(|(ix, m)| (m.state.address.to_string(), m.weight, ix as u32))
            .collect();
        // Fill order by address, so the table does not depend on listing order.
        weighted.sort_unstable();
        Self {
            slots: populate(&weighted),
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
        // Past the first few slots, the rest of the walk is a linear search:
        // when every endpoint is closed there is nothing better to find.
        let walk = (0..m).map(|k| self.slots[(start + k) % m] as usize);
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

/// Fills the table: in rounds, every endpoint takes its next preferred free
/// slot, a heavier endpoint more often (credit of its weight per round against
/// the heaviest weight), until all slots are taken.
fn populate(weighted: &[(String, u32, u32)]) -> Box<[u32]> {
    let Some(max_weight) = weighted.iter().map(|(_, w, _)| *w).max() else {
        return Box::new([]);
    };
    let wanted = weighted.len() as u64 * SLOTS_PER_ENDPOINT;
    let m = SIZES
        .iter()
        .copied()
        .find(|&s| s >= wanted)
        .unwrap_or(SIZES[SIZES.len() - 1]);
    // Each endpoint's permutation: slot(j) = (offset + j × skip) mod m; m is
    // prime, so any skip in 1..m visits every slot once.
    let mut walkers: Vec<(u64, u64, u64, u64)> = weighted
        .iter()
        .map(|(address, _, _)| {
            let offset = xxh3_64_with_seed(address.as_bytes(), 0x6d61_676c) % m;
            let skip = xxh3_64_with_seed(address.as_bytes(), 0x6576_6f6c) % (m - 1) + 1;
            (offset, skip, 0, 0)
        })
        .collect();
    const FREE: u32 = u32::MAX;
    let mut slots = vec![FREE; m as usize];
    let mut filled = 0u64;
    while filled < m {
        for (walker, (_, weight, ix)) in walkers.iter_mut().zip(weighted) {
            let (offset, skip, next, credit) = walker;
            *credit += u64::from(*weight);
            if *credit < u64::from(max_weight) {
                continue;
            }
            *credit -= u64::from(max_weight);
            let mut slot = (*offset + *next * *skip) % m;
            while slots[slot as usize] != FREE {
                *next += 1;
                slot = (*offset + *next * *skip) % m;
            }
            slots[slot as usize] = *ix;
            *next += 1;
            filled += 1;
            if filled == m {
                break;
            }
        }
    }
    slots.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(weights: &[u32]) -> Box<[u32]> {
        let weighted: Vec<(String, u32, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("10.0.0.{i}:80"), w, i as u32))
            .collect();
        populate(&weighted)
    }

    fn shares(slots: &[u32], n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| slots.iter().filter(|&&s| s as usize == i).count() as f64 / slots.len() as f64)
            .collect()
    }

    #[test]
    fn slots_follow_weights() {
        let s = shares(&table(&[1, 1]), 2);
        assert!((s[0] - 0.5).abs() < 0.001, "{s:?}");
        let s = shares(&table(&[3, 1, 4]), 3);
        for (got, want) in s.iter().zip([3.0 / 8.0, 1.0 / 8.0, 4.0 / 8.0]) {
            assert!((got - want).abs() < 0.001, "{s:?}");
        }
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth() {
        let before = table(&[1; 10]);
        // The same endpoints but the last (addresses are by position).
        let after = table(&[1; 9]);
        let moved = before
            .iter()
            .zip(after.iter())
            .filter(|(b, a)| b != a)
            .count() as f64
            / before.len() as f64;
        assert!((0.1..0.15).contains(&moved), "{moved}");
    }
}
