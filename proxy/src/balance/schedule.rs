//! A weighted, interleaved order of endpoints: endpoint `i` appears `w_i / g`
//! times in a cycle (g the weights' greatest common divisor), spread evenly
//! (earliest deadline first: the k-th turn of `i` is due at (k - ½) / w_i, the
//! half step keeping a heavy endpoint's turns from bunching at the start). Static
//! round robin walks it; map-based hashing indexes it; random draws from it.

use super::endpoint::{Member, PickContext};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{self, AtomicUsize};

pub struct Schedule {
    order: Box<[u32]>,
}

impl Schedule {
    pub fn new(weights: &[u32]) -> Self {
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        if g == 0 {
            return Self {
                order: Box::new([]),
            };
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w / g)).sum();
        let mut heap: BinaryHeap<Turn> = weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .map(|(ix, &w)| Turn {
                due: 1,
                weight: u64::from(w / g),
                ix: ix as u32,
            })
            .collect();
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let Some(mut turn) = heap.peek_mut() else {
                break;
            };
            order.push(turn.ix);
            turn.due += 2;
        }
        Self {
            order: order.into_boxed_slice(),
        }
    }

    /// The schedule of `members` by their table weights.
    pub fn of(members: &[Member]) -> Self {
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        Self::new(&weights)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The member at position `at` (any number; wraps).
    #[inline]
    pub fn at(&self, at: usize) -> usize {
        self.order[at % self.order.len()] as usize
    }

    /// The first open member from position `at` on, else any open member.
    pub fn open_from(&self, at: usize, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
        if self.order.is_empty() {
            return None;
        }
        // Bounded: a cycle can be 256 × n long when every endpoint is closed.
        let limit = self.order.len().min(2 * members.len() + 8);
        for k in 0..limit {
            let ix = self.at(at.wrapping_add(k));
            if members[ix].open(ctx).is_some() {
                return Some(ix);
            }
        }
        any_open(at, members, ctx)
    }

    /// The next member in turn that is open (static round robin).
    pub fn next_open(
        &self,
        cursor: &AtomicUsize,
        members: &[Member],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        let at = cursor.fetch_add(1, atomic::Ordering::Relaxed);
        self.open_from(at, members, ctx)
    }
}

/// A linear search from a rotating start, when the schedule gives nothing.
pub fn any_open(at: usize, members: &[Member], ctx: &PickContext<'_>) -> Option<usize> {
    let n = members.len();
    (0..n)
        .map(|k| (at.wrapping_add(k)) % n)
        .find(|&ix| members[ix].open(ctx).is_some())
}

pub(super) fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A turn due at `due / (2 × weight)`; the heap pops the earliest, ties by position.
struct Turn {
    due: u64,
    weight: u64,
    ix: u32,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest.
        (other.due * self.weight)
            .cmp(&(self.due * other.weight))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn order(weights: &[u32]) -> Vec<u32> {
        Schedule::new(weights).order.into_vec()
    }

    #[test]
    fn shares_follow_weights_and_interleave() {
        assert_eq!(order(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(order(&[2, 2, 2]), vec![0, 1, 2]);
        let o = order(&[5, 1, 1]);
        assert_eq!(o.len(), 7);
        assert_eq!(o.iter().filter(|&&i| i == 0).count(), 5);
        // No run of more than two of the heavy endpoint's turns... interleaved.
        assert_ne!(o, vec![0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn zero_weights_are_left_out() {
        assert_eq!(order(&[0, 4, 0]), vec![1]);
        assert!(order(&[0, 0]).is_empty());
        assert!(order(&[]).is_empty());
    }
}
