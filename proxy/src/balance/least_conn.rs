//! `leastconn`: the endpoint with the fewest requests in flight relative to its
//! (slow-start) weight, counting the new request: (in flight + 1) / weight, as
//! HAProxy. The scan starts one further each time, and only a strictly less
//! loaded endpoint replaces the first found, so ties go round robin.

use super::endpoint::{Member, PickContext, less_loaded};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn pick(cursor: &AtomicUsize, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed) % n;
    let (tail, head) = members.split_at(start);
    if ctx.exclude.is_empty() && ctx.now_ms.is_none() {
        // The common case, kept to the loads and compares a request needs.
        let best = scan_plain(head, start, None);
        return scan_plain(tail, 0, best).map(|(ix, _)| ix);
    }
    let mut best: Option<(usize, (u64, u64))> = None;
    for (ix, member) in (start..n).zip(head).chain((0..start).zip(tail)) {
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

/// The least loaded open member of `members` (numbered from `first`), or `best`
/// if none is strictly less loaded.
#[inline]
fn scan_plain(
    members: &[Member],
    first: usize,
    mut best: Option<(usize, (u64, u64))>,
) -> Option<(usize, (u64, u64))> {
    for (i, member) in members.iter().enumerate() {
        if member.weight == 0 || !member.state.is_up() {
            continue;
        }
        let busy = member.state.in_flight();
        if member.max_conn != 0 && busy >= member.max_conn {
            continue;
        }
        let load = (u64::from(busy) + 1, u64::from(member.weight));
        if best.is_none_or(|(_, b)| less_loaded(load, b)) {
            best = Some((first + i, load));
        }
    }
    best
}
