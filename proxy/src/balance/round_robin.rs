//! Smooth weighted round robin (as in nginx): with weights 5,1,1 it yields
//! a a b a c a a rather than a a a a a b c, so no endpoint sees bursts.

use std::sync::Mutex;

pub struct SmoothWeighted {
    weights: Box<[i64]>,
    total: i64,
    current: Mutex<Box<[i64]>>,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> Self {
        let weights: Box<[i64]> = weights.iter().map(|&w| i64::from(w)).collect();
        let total = weights.iter().sum();
        Self {
            current: Mutex::new(vec![0; weights.len()].into_boxed_slice()),
            weights,
            total,
        }
    }

    /// The index of the next endpoint, or `None` when every weight is 0.
    pub fn pick(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        // A poisoned lock only means another thread panicked mid-pick; the counters
        // are still usable numbers.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<(usize, i64)> = None;
        for (i, (&w, cur)) in self.weights.iter().zip(current.iter_mut()).enumerate() {
            if w == 0 {
                continue;
            }
            *cur += w;
            if best.is_none_or(|(_, value)| *cur > value) {
                best = Some((i, *cur));
            }
        }
        let (b, _) = best?;
        current[b] -= self.total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u32], n: usize) -> Vec<usize> {
        let b = SmoothWeighted::new(weights);
        (0..n).map(|_| b.pick().unwrap()).collect()
    }

    #[test]
    fn smooth_order() {
        assert_eq!(sequence(&[5, 1, 1], 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_shares_over_a_cycle() {
        let picks = sequence(&[3, 1, 0, 2], 600);
        let count = |i| picks.iter().filter(|&&p| p == i).count();
        assert_eq!((count(0), count(1), count(2), count(3)), (300, 100, 0, 200));
    }

    #[test]
    fn all_zero_or_empty_picks_nothing() {
        assert_eq!(SmoothWeighted::new(&[0, 0]).pick(), None);
        assert_eq!(SmoothWeighted::new(&[]).pick(), None);
    }
}
