//! `random`: power of two choices. Two weighted random draws (uniform positions
//! in the weighted schedule); the one with fewer requests in flight relative to
//! its weight wins. Nearly as even as least-connections, with no shared scan.

use super::endpoint::{Member, PickContext, less_loaded};
use super::schedule::{Schedule, any_open};

pub struct Random {
    schedule: Schedule,
}

/// Draws before giving up on luck and scanning for any open endpoint.
const DRAWS: usize = 8;

impl Random {
    pub fn new(members: &[Member]) -> Self {
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        Self {
            schedule: Schedule::new(&weights),
        }
    }

    pub fn pick(&self, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let mut chosen: Option<(usize, (u64, u64))> = None;
        let mut found = 0;
        for _ in 0..DRAWS {
            let ix = self.schedule.at(fastrand::usize(..self.schedule.len()));
            let Some(weight) = members[ix].open(ctx) else {
                continue;
            };
            let load = members[ix].load(weight);
            if chosen.is_none_or(|(_, c)| less_loaded(load, c)) {
                chosen = Some((ix, load));
            }
            found += 1;
            if found == 2 {
                break;
            }
        }
        chosen
            .map(|(ix, _)| ix)
            .or_else(|| any_open(fastrand::usize(..), members, ctx))
    }
}
