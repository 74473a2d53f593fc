//! Graceful shutdown as one small named piece, passed to every long-lived task.
//!
//! `Shutdown` is the listening side: a task checks `is_shutdown()` or awaits `recv()`.
//! Each task also holds a `Done` guard; when the last guard drops, `ShutdownTrigger::wait`
//! returns, so the daemon exits only after in-flight work has finished.

use tokio::sync::{mpsc, watch};

/// The controlling side, owned by `serve`.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Held by a task until it has finished; dropping it is the task's "I am done".
#[derive(Clone)]
pub struct Done {
    _tx: mpsc::Sender<()>,
}

impl ShutdownTrigger {
    pub fn new() -> ShutdownTrigger {
        let (tx, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownTrigger {
            tx,
            done_tx: Some(done_tx),
            done_rx,
        }
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }

    pub fn done_guard(&self) -> Done {
        Done {
            _tx: self
                .done_tx
                .clone()
                .expect("done guards are handed out before wait()"),
        }
    }

    /// Tell every task to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Wait until every `Done` guard has been dropped.
    pub async fn wait(mut self) {
        self.done_tx.take();
        let _ = self.done_rx.recv().await;
    }
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been triggered (at once if it already was).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_guards_drop() {
        let trigger = ShutdownTrigger::new();
        let mut shutdown = trigger.subscribe();
        let guard = trigger.done_guard();
        let task = tokio::spawn(async move {
            shutdown.recv().await;
            drop(guard);
        });
        assert!(!trigger.subscribe().is_shutdown());
        trigger.trigger();
        trigger.wait().await;
        task.await.unwrap();
    }
}
