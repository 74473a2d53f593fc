//! Supervision of the daemon's core tasks. A listener, assembler or worker pool that ends
//! (or panics) while no shutdown was asked for, or a database writer thread that died,
//! is reported here; `serve` then shuts down and exits non-zero so that systemd restarts
//! the daemon, instead of a process that looks alive and stores nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::shutdown::Shutdown;

/// Collects the deaths of supervised tasks.
pub struct Supervisor {
    tx: mpsc::UnboundedSender<String>,
    rx: mpsc::UnboundedReceiver<String>,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor { tx, rx }
    }

    /// Spawn `task` (named `name` in the report); its end before `shutdown` is a death.
    pub fn spawn<F>(&self, name: &'static str, shutdown: Shutdown, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = handle.await;
            if shutdown.is_shutdown() {
                return;
            }
            let how = match outcome {
                Ok(()) => "ended",
                Err(e) if e.is_panic() => "panicked",
                Err(_) => "was cancelled",
            };
            let _ = tx.send(format!("{name} {how}"));
        });
    }

    /// Report `name` dead when `alive` turns false (polled once a second): for parts that
    /// run on their own threads.
    pub fn watch(
        &self,
        name: &'static str,
        shutdown: Shutdown,
        alive: impl Fn() -> bool + Send + 'static,
    ) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if shutdown.is_shutdown() {
                    return;
                }
                if !alive() {
                    let _ = tx.send(format!("{name} stopped"));
                    return;
                }
            }
        });
    }

    /// The first death reported.
    pub async fn death(&mut self) -> String {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| "supervisor closed".into())
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::ShutdownTrigger;

    #[tokio::test]
    async fn a_task_that_ends_or_panics_before_shutdown_is_reported() {
        let trigger = ShutdownTrigger::new();
        let mut supervisor = Supervisor::new();
        supervisor.spawn("ender", trigger.subscribe(), async {});
        assert_eq!(supervisor.death().await, "ender ended");
        supervisor.spawn("panicker", trigger.subscribe(), async { panic!("boom") });
        assert_eq!(supervisor.death().await, "panicker panicked");
        supervisor.watch("thread", trigger.subscribe(), || false);
        assert_eq!(supervisor.death().await, "thread stopped");
    }

    #[tokio::test]
    async fn a_task_that_ends_after_shutdown_is_not_a_death() {
        let trigger = ShutdownTrigger::new();
        let mut supervisor = Supervisor::new();
        let mut stop = trigger.subscribe();
        supervisor.spawn(
            "listener",
            trigger.subscribe(),
            async move { stop.recv().await },
        );
        trigger.trigger();
        let quiet = tokio::time::timeout(Duration::from_millis(300), supervisor.death()).await;
        assert!(quiet.is_err(), "reported {quiet:?}");
    }
}
