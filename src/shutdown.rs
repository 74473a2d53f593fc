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
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Poll `f` once, without a runtime: whether it has finished by now.
    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(f.poll(&mut cx), Poll::Ready(_))
    }

    #[test]
    fn wait_blocks_until_every_done_guard_is_dropped() {
        let trigger = ShutdownTrigger::new();
        let first = trigger.done_guard();
        let second = trigger.done_guard();
        let clone_of_second = second.clone();
        let mut shutdown = trigger.subscribe();
        assert!(!shutdown.is_shutdown());
        let mut notified = std::pin::pin!(shutdown.recv());
        assert!(!ready(notified.as_mut()), "recv before trigger");

        trigger.trigger();
        assert!(ready(notified.as_mut()), "recv after trigger");
        assert!(trigger.subscribe().is_shutdown());
        let mut wait = std::pin::pin!(trigger.wait());
        assert!(
            !ready(wait.as_mut()),
            "wait() returned with three guards held"
        );
        drop(first);
        assert!(
            !ready(wait.as_mut()),
            "wait() returned with two guards held"
        );
        drop(second);
        assert!(
            !ready(wait.as_mut()),
            "wait() returned with a cloned guard held"
        );
        drop(clone_of_second);
        assert!(
            ready(wait.as_mut()),
            "wait() still blocked with no guard left"
        );
    }

    #[tokio::test]
    async fn a_task_holding_a_guard_finishes_before_wait_returns() {
        let trigger = ShutdownTrigger::new();
        let mut shutdown = trigger.subscribe();
        let guard = trigger.done_guard();
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        let task = tokio::spawn(async move {
            shutdown.recv().await;
            // Some last work after the signal, then "done".
            tokio::task::yield_now().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(guard);
        });
        trigger.trigger();
        trigger.wait().await;
        assert!(
            finished.load(std::sync::atomic::Ordering::SeqCst),
            "wait() returned before the task dropped its guard"
        );
        task.await.unwrap();
    }
}
