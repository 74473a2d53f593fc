//! When the newest copy of each SOP instance put in place lately was received.
//!
//! The journal's mover files a record up to seconds after it was acknowledged. A copy of
//! the same instance re-sent meanwhile by another path (STOW-RS, the per-file C-STORE path)
//! can be in place before its row is committed, where the mover's check of the database
//! does not see it: the spool asks this register instead, under the same lock as its
//! rename, so that an older copy never replaces a newer one.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// How long an instance is remembered (ms). The database answers for copies older than
/// this: their rows were committed long since.
const WINDOW_MS: i64 = 10 * 60 * 1000;
/// Entries kept before the first pruning.
const MIN_PRUNE_AT: usize = 4096;

/// The register; `lock` it around a rename into the spool.
#[derive(Default)]
pub struct Newest(Mutex<Register>);

#[derive(Default)]
pub struct Register {
    received: HashMap<String, i64>,
    prune_at: usize,
}

impl Newest {
    pub fn lock(&self) -> MutexGuard<'_, Register> {
        // A rename that panicked left the map as it was: still right, so poison is ignored.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Register {
    /// When the copy in place of `sop_instance_uid` was received, if within the window
    /// before `now`.
    pub fn received(&self, sop_instance_uid: &str, now: i64) -> Option<i64> {
        self.received
            .get(sop_instance_uid)
            .copied()
            .filter(|t| *t >= now - WINDOW_MS)
    }

    /// The copy placed at `at` was not recorded after all (its commit failed): it no
    /// longer counts, unless another was placed since.
    pub fn forget(&mut self, sop_instance_uid: &str, at: i64) {
        if self.received.get(sop_instance_uid) == Some(&at) {
            self.received.remove(sop_instance_uid);
        }
    }

    /// A copy received at `at` is now in place; returns the time it is remembered by, moved
    /// just past the copy it replaced if the clocks disagree (a copy placed later is newer).
    pub fn placed(&mut self, sop_instance_uid: &str, at: i64, now: i64) -> i64 {
        let at = match self.received.get(sop_instance_uid).copied() {
            Some(before) if before >= at => before + 1,
            _ => at,
        };
        self.received.insert(sop_instance_uid.to_string(), at);
        if self.received.len() >= self.prune_at.max(MIN_PRUNE_AT) {
            self.received.retain(|_, t| *t >= now - WINDOW_MS);
            // Doubling keeps the pruning's cost per insert constant under a long burst.
            self.prune_at = 2 * self.received.len();
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_placement_is_newer_and_old_entries_are_pruned() {
        let newest = Newest::default();
        let mut r = newest.lock();
        assert_eq!(r.received("1.2.3", 1000), None);
        assert_eq!(r.placed("1.2.3", 1000, 1000), 1000);
        assert_eq!(r.received("1.2.3", 1000), Some(1000));
        // Placed later with an earlier clock reading: remembered as newer all the same.
        assert_eq!(r.placed("1.2.3", 990, 1000), 1001);
        // A failed commit forgets its own placement only.
        r.forget("1.2.3", 1000);
        assert_eq!(r.received("1.2.3", 1000), Some(1001));
        r.forget("1.2.3", 1001);
        assert_eq!(r.received("1.2.3", 1000), None);
        assert_eq!(r.placed("1.2.3", 5000, 5000), 5000);
        let now = 5000 + WINDOW_MS + 1;
        assert_eq!(r.received("1.2.3", now), None, "older than the window");
        for i in 0..MIN_PRUNE_AT {
            r.placed(&format!("2.{i}"), now, now);
        }
        assert!(!r.received.contains_key("1.2.3"), "pruned");
        assert_eq!(r.received("2.0", now), Some(now));
    }
}
