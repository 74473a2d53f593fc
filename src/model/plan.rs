//! Which way the plain pass runs a batch of at least one image per core. Each core can take
//! its share of the images through every layer alone, or every layer can be spread over
//! the cores a few images at a time. Which is faster depends on the machine: on the tenth
//! session's Intel Xeon the shares were (batch 8 at 1.07x PyTorch, against 0.78x), on the
//! thirteenth's AMD EPYC the spread layers were (1.28-1.39x, against 0.95-1.08x; two vCPUs
//! that may share a core's caches). So the first batches try both, and the faster is kept,
//! as FFTW plans do.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// How a batch runs through the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Each core its share of the images, layer after layer on its own.
    Shares,
    /// Each layer over all the cores, a few images at a time.
    Spread,
}

/// Batches timed each way before one is kept: the fastest of two rides over one slow
/// call on a shared machine.
const TRIALS: usize = 2;

/// The choice, learnt from the first `2 * TRIALS` batches (alternating ways).
pub struct BatchPlan {
    calls: AtomicUsize,
    /// Per way, the fastest trial's nanoseconds per image.
    best_ns: [AtomicU64; 2],
}

impl Default for BatchPlan {
    fn default() -> BatchPlan {
        BatchPlan {
            calls: AtomicUsize::new(0),
            best_ns: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
        }
    }
}

impl BatchPlan {
    /// Run `pass` on a batch of `images` the way the plan says, timing it while trying.
    pub fn run<T>(&self, images: usize, pass: impl FnOnce(Way) -> T) -> T {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if call >= 2 * TRIALS {
            return pass(self.chosen());
        }
        let way = if call % 2 == 0 {
            Way::Shares
        } else {
            Way::Spread
        };
        let start = Instant::now();
        let out = pass(way);
        let per_image = start.elapsed().as_nanos() as u64 / images.max(1) as u64;
        self.best_ns[way as usize].fetch_min(per_image, Ordering::Relaxed);
        out
    }

    /// The faster way so far (the shares until both were timed).
    pub fn chosen(&self) -> Way {
        let [shares, spread] = [0, 1].map(|i| self.best_ns[i].load(Ordering::Relaxed));
        if spread < shares {
            Way::Spread
        } else {
            Way::Shares
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The ways alternate while trying, then the faster one is kept for good.
    #[test]
    fn the_plan_tries_both_ways_then_keeps_the_faster() {
        let plan = BatchPlan::default();
        let pass = |way: Way| {
            if way == Way::Shares {
                std::thread::sleep(Duration::from_millis(20));
            }
            way
        };
        let tried: Vec<Way> = (0..2 * TRIALS).map(|_| plan.run(8, pass)).collect();
        assert_eq!(tried, [Way::Shares, Way::Spread, Way::Shares, Way::Spread]);
        assert_eq!(plan.chosen(), Way::Spread);
        assert!((0..5).all(|_| plan.run(8, pass) == Way::Spread));
    }
}
