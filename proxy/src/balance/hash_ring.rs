//! Consistent hashing (`hash-type consistent`): every endpoint owns points on a
//! ring, in proportion to its weight, placed by hashing its address, so the ring
//! is the same in every process and table version, and adding or removing one
//! of N endpoints moves about 1/N of the keys. A key goes to the owner of the
//! first point at or after its hash; when that endpoint cannot take it, to the
//! next owner along the ring.
//!
//! With a bounded load (Mirrokni et al., "Consistent Hashing with Bounded
//! Loads"; HAProxy's `hash-balance-factor`) an endpoint already carrying more
//! than `factor`% of its weighted share of the requests in flight is passed
//! over too.

use super::endpoint::{Member, PickContext};
use super::schedule::gcd;
use xxhash_rust::xxh3::xxh3_64_with_seed;

pub struct Ring {
    /// (point, member), sorted by point.
    points: Box<[(u64, u32)]>,
    total_weight: u64,
    bounded_load: Option<u32>,
}

/// Points per unit of (gcd-reduced) weight: enough that shares stay within a
/// few percent of the weights.
const POINTS_PER_WEIGHT: u64 = 160;
/// Keeps 1,000 endpoints of unequal weights within a few MiB.
const MAX_POINTS: u64 = 400_000;

impl Ring {
    pub fn new(members: &[Member], bounded_load: Option<u32>) -> Self {
        let g = members
            .iter()
            .map(|m| m.weight)
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let total_weight: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
        let mut points = Vec::new();
        // Weight units after dividing by the gcd (none when every weight is 0).
        let units = |w: u32| u64::from(w.checked_div(g).unwrap_or(0));
        let total_units: u64 = members.iter().map(|m| units(m.weight)).sum();
        if let Some(per_unit) = MAX_POINTS.checked_div(total_units) {
            let per_unit = POINTS_PER_WEIGHT.min(per_unit.max(1));
            for (ix, member) in members.iter().enumerate() {
                let count = units(member.weight) * per_unit;
                let key = member.state.address.to_string();
                // Point k of an endpoint is the same whatever its count, so a
                // weight change only adds or removes points.
                points
                    .extend((0..count).map(|k| (xxh3_64_with_seed(key.as_bytes(), k), ix as u32)));
            }
        }
        points.sort_unstable();
        Self {
            points: points.into_boxed_slice(),
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
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let n = self.points.len();
        let walk = (start..n)
            .chain(0..start)
            .map(|i| self.points[i].1 as usize);
        if let Some(factor) = self.bounded_load {
            let capacity = |m: &Member| {
                // Share of (in flight + this request), scaled by the factor:
                // in_flight_m < factor/100 × (total + 1) × w_m / W.
                u64::from(m.state.in_flight()) * 100 * self.total_weight
                    < u64::from(factor) * (u64::from(in_flight) + 1) * u64::from(m.weight)
            };
            let bounded = walk
                .clone()
                .find(|&ix| members[ix].open(ctx).is_some() && capacity(&members[ix]));
            if bounded.is_some() {
                return bounded;
            }
        }
        let mut walk = walk;
        walk.find(|&ix| members[ix].open(ctx).is_some())
    }
}
