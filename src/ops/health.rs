//! Liveness of the daemon's long-running parts, for `/readyz` and the systemd watchdog:
//! each part beats (`beat`) while it works; a part that has not beaten within its limit
//! is reported as stalled. Parts that are not running (no model configured) are simply
//! not registered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared record of the last heartbeat of each named part.
#[derive(Clone, Default)]
pub struct Health {
    parts: Arc<Mutex<BTreeMap<String, (Instant, Duration)>>>,
}

impl Health {
    fn parts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Instant, Duration)>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A part that must beat at least every `limit` (a beat now counts as the first).
    pub fn register(&self, part: &str, limit: Duration) {
        self.parts()
            .insert(part.to_string(), (Instant::now(), limit));
    }

    /// The part is alive now.
    pub fn beat(&self, part: &str) {
        if let Some(entry) = self.parts().get_mut(part) {
            entry.0 = Instant::now();
        }
    }

    /// A part that ended (cleanly) is no longer expected to beat.
    pub fn retire(&self, part: &str) {
        self.parts().remove(part);
    }

    /// The parts that have not beaten within their limit, with how long ago they did.
    pub fn stalled(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        self.parts()
            .iter()
            .filter_map(|(name, (at, limit))| {
                let since = now.duration_since(*at);
                (since > *limit).then(|| (name.clone(), since))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_that_stops_beating_is_stalled() {
        let h = Health::default();
        h.register("worker-1", Duration::from_millis(30));
        h.register("writer", Duration::from_secs(60));
        assert!(h.stalled().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        let stalled = h.stalled();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].0, "worker-1");
        h.beat("worker-1");
        assert!(h.stalled().is_empty());
        h.retire("worker-1");
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.stalled().is_empty());
    }
}
