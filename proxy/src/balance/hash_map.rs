//! Map-based hashing (`hash-type map-based`): the hash indexes the weighted
//! schedule, so keys spread by weight. When the chosen endpoint cannot take the
//! request, the following positions are tried, so only that endpoint's keys
//! move. Most keys move when the endpoint set changes; use consistent hashing
//! when that matters.

use super::endpoint::{Member, PickContext};
use super::schedule::Schedule;

pub struct MapHash {
    schedule: Schedule,
}

impl MapHash {
    pub fn new(members: &[Member]) -> Self {
        Self {
            schedule: Schedule::of(members),
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn pick(&self, hash: u64, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
        let len = self.schedule.len() as u64;
        if len == 0 {
            return None;
        }
        self.schedule.open_from((hash % len) as usize, members, ctx)
    }
}
