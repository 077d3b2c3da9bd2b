//! `random`: power of two choices. Two weighted random draws (uniform positions
//! in the weighted schedule); the one with fewer requests in flight relative to
//! its weight wins, the later draw on a tie (as HAProxy's `random(2)`), so idle
//! endpoints are chosen in proportion to their weights. Nearly as even as
//! least-connections under load, with no scan.

use super::endpoint::{Member, PickContext};
use super::schedule::{Schedule, any_open};

pub struct Random {
    schedule: Schedule,
}

/// Draws before giving up on luck and scanning for any open endpoint.
const DRAWS: usize = 8;

impl Random {
    pub fn new(members: &[Member]) -> Self {
        Self {
            schedule: Schedule::of(members),
        }
    }

    pub fn pick(&self, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        // (member, in flight, weight)
        let mut chosen: Option<(usize, u64, u64)> = None;
        let mut found = 0;
        for _ in 0..DRAWS {
            let ix = self.schedule.at(fastrand::usize(..self.schedule.len()));
            let Some(weight) = members[ix].open(ctx) else {
                continue;
            };
            let (busy, weight) = (u64::from(members[ix].state.in_flight()), u64::from(weight));
            if chosen.is_none_or(|(_, c_busy, c_weight)| busy * c_weight <= c_busy * weight) {
                chosen = Some((ix, busy, weight));
            }
            found += 1;
            if found == 2 {
                break;
            }
        }
        chosen
            .map(|(ix, _, _)| ix)
            .or_else(|| any_open(fastrand::usize(..), members, ctx))
    }
}
