//! `leastconn`: the endpoint with the fewest requests in flight relative to its
//! (slow-start) weight. The scan starts one further each time, and only a
//! strictly less loaded endpoint replaces the first found, so ties go round
//! robin.

use super::endpoint::{Member, PickContext, less_loaded};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn pick(cursor: &AtomicUsize, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed) % n;
    let mut best: Option<(usize, (u64, u64))> = None;
    let order = (start..n).chain(0..start);
    for ix in order {
        let member = &members[ix];
        let Some(weight) = member.open(ctx) else {
            continue;
        };
        let load = member.load(weight);
        if best.is_none_or(|(_, b)| less_loaded(load, b)) {
            best = Some((ix, load));
        }
    }
    best.map(|(ix, _)| ix)
}
