//! A wake-up call between tasks that is never lost: a task that was busy when it was
//! woken sees the call the next time it waits (a `Notify` would drop it, leaving the
//! task to its poll interval). Each task keeps its own clone.

use tokio::sync::watch;

/// One side may `wake`; every clone's `wait` returns once per round of wake-ups it has
/// not seen yet.
#[derive(Clone)]
pub struct Wake {
    tx: std::sync::Arc<watch::Sender<u64>>,
    rx: watch::Receiver<u64>,
}

impl Default for Wake {
    fn default() -> Self {
        let (tx, rx) = watch::channel(0);
        Wake {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }
}

impl Wake {
    /// Wake every task waiting now, and every other one at its next wait.
    pub fn wake(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wait for a wake-up this clone has not seen yet.
    pub async fn wait(&mut self) {
        // The sender lives as long as any clone: `changed` cannot fail while we wait.
        let _ = self.rx.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_while_busy_is_not_lost() {
        let waker = Wake::default();
        let mut task = waker.clone();
        // Woken while "busy" (not waiting): the next wait returns at once.
        waker.wake();
        tokio::time::timeout(Duration::from_secs(5), task.wait())
            .await
            .expect("seen");
        // Nothing new: the wait blocks.
        assert!(tokio::time::timeout(Duration::from_millis(50), task.wait())
            .await
            .is_err());
    }
}
