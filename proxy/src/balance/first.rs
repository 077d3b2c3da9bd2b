//! `first`: the first endpoint in order that has a free slot, so traffic fills
//! endpoints one after another up to their `max_conn` (and idle ones can be
//! scaled away). Without `max_conn` the first available endpoint takes all.

use super::endpoint::{Member, PickContext};

pub fn pick(members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
    members.iter().position(|m| m.open(ctx).is_some())
}
