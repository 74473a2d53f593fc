//! Operations: how administrators see and steer the daemon (logs, systemd integration,
//! health of the long-running parts, metrics).

pub mod health;
pub mod logging;
pub mod metrics;
pub mod retention;
pub mod systemd;
