//! Operations: how administrators see and steer the daemon (logs, systemd integration).

pub mod logging;
pub mod systemd;
