//! `static-rr`: weighted round robin over a schedule fixed when the table is
//! compiled. Weights do not follow slow start; the position is kept in the
//! backend's runtime state, so a swap continues the turn.

use super::endpoint::{Member, PickContext};
use super::schedule::Schedule;
use std::sync::atomic::AtomicUsize;

pub struct StaticRoundRobin {
    schedule: Schedule,
}

impl StaticRoundRobin {
    pub fn new(members: &[Member]) -> Self {
        Self {
            schedule: Schedule::of(members),
        }
    }

    pub fn pick(
        &self,
        cursor: &AtomicUsize,
        members: &[Member],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        self.schedule.next_open(cursor, members, ctx)
    }
}
