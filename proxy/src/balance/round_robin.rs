//! `roundrobin`: smooth weighted round robin whose weights may change at run time
//! (slow start, endpoints going down and up). Earliest deadline first: each
//! endpoint's next turn is due 1/weight after its last, with the weight read at
//! each turn, so a ramping endpoint's share grows as it warms up. A heap makes a
//! pick O(log n). Deadlines are kept in the endpoints' runtime state, so a new
//! table resumes the turn rather than restarting it.

use super::endpoint::{Member, PickContext};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::sync::Mutex;
use std::sync::atomic;

pub struct RoundRobin {
    heap: Mutex<BinaryHeap<Turn>>,
}

impl RoundRobin {
    pub fn new(members: &[Member]) -> Self {
        let saved = |m: &Member| {
            let bits = m.state.rr_deadline.load(atomic::Ordering::Relaxed);
            (bits != 0).then(|| f64::from_bits(bits))
        };
        // Endpoints new to this backend start at the current turn, not at 0,
        // which would give them every request until they caught up.
        let now = members
            .iter()
            .filter_map(saved)
            .fold(f64::INFINITY, f64::min);
        let now = if now.is_finite() { now } else { 0.0 };
        let heap = members
            .iter()
            .enumerate()
            .map(|(ix, m)| Turn {
                due: saved(m).unwrap_or(now + step(m.weight) / 2.0),
                ix: ix as u32,
            })
            .collect();
        Self {
            heap: Mutex::new(heap),
        }
    }

    pub fn pick(&self, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        // Endpoints that cannot take this request are set aside until an open
        // one is found, so each is looked at once per pick.
        let mut aside = Vec::new();
        let mut picked = None;
        while let Some(mut turn) = heap.peek_mut() {
            let member = &members[turn.ix as usize];
            if let Some(weight) = member.open(ctx) {
                turn.due += step(weight);
                member
                    .state
                    .rr_deadline
                    .store(turn.due.to_bits(), atomic::Ordering::Relaxed);
                picked = Some(turn.ix as usize);
                break;
            }
            let mut turn = PeekMut::pop(turn);
            if !member.available(ctx) {
                // Down, drained or avoided: it loses this turn rather than
                // saving up turns for a burst when it returns. A full endpoint
                // keeps its turn and is served first once a slot frees.
                turn.due += step(member.weight);
                member
                    .state
                    .rr_deadline
                    .store(turn.due.to_bits(), atomic::Ordering::Relaxed);
            }
            aside.push(turn);
        }
        heap.extend(aside);
        picked
    }
}

fn step(weight: u32) -> f64 {
    1.0 / f64::from(weight.max(1))
}

/// A turn due at `due`; the heap pops the earliest, ties by position.
struct Turn {
    due: f64,
    ix: u32,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest.
        other
            .due
            .total_cmp(&self.due)
            .then_with(|| other.ix.cmp(&self.ix))
    }
}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
