//! systemd integration (Type=notify): READY=1 once listening, STOPPING=1 on shutdown,
//! WATCHDOG=1 pings while the database answers and no part has stalled. Outside systemd
//! (no NOTIFY_SOCKET) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::health::Health;
use crate::shutdown::Shutdown;
use crate::store::Store;

pub fn ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Ping the watchdog at half its interval, as long as the database answers and no
/// long-running part (listener, workers, deliveries) has stalled.
pub async fn watchdog(store: Arc<Store>, health: Health, mut shutdown: Shutdown) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.recv() => return,
        }
        let store = store.clone();
        let alive = tokio::task::spawn_blocking(move || store.ping().is_ok())
            .await
            .unwrap_or(false);
        let stalled = health.stalled();
        if alive && stalled.is_empty() {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        } else if !alive {
            tracing::error!("database not answering: withholding watchdog ping");
        } else {
            let parts: Vec<String> = stalled.iter().map(|(p, _)| p.clone()).collect();
            tracing::error!(stalled = %parts.join(", "), "withholding watchdog ping");
        }
    }
}
