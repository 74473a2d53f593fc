//! Under systemd (Type=notify, WatchdogSec=): the daemon reports READY=1 once it listens,
//! pings WATCHDOG=1 while it is healthy and says STOPPING=1 on SIGTERM. The test plays
//! systemd: it binds the notify socket and starts the daemon with NOTIFY_SOCKET,
//! WATCHDOG_USEC and WATCHDOG_PID (the daemon's own PID).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// Notify messages received on `socket` until one contains `wanted` (`timeout` is only a
/// guard against a hang); every message seen on the way is appended to `seen`.
fn wait_for_message(
    socket: &UnixDatagram,
    wanted: &str,
    seen: &mut Vec<String>,
    timeout: Duration,
) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .unwrap_or_else(|| panic!("no {wanted:?} within {timeout:?}; got {seen:?}"));
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).to_string();
                let found = message.lines().any(|l| l == wanted);
                seen.push(message);
                if found {
                    return;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn notify_ready_watchdog_and_stopping_reach_systemd() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let notify_socket = path.to_str().unwrap().to_string();
    let mut daemon = Daemon::start_as_service(
        work.path(),
        &[
            ("NOTIFY_SOCKET", notify_socket.as_str()),
            // Pings every 0.5 s (half the interval).
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut seen = Vec::new();
    wait_for_message(&socket, "READY=1", &mut seen, Duration::from_secs(30));
    // More than one ping: the watchdog keeps going while the daemon is healthy.
    for _ in 0..3 {
        wait_for_message(&socket, "WATCHDOG=1", &mut seen, Duration::from_secs(30));
    }
    assert_eq!(
        seen.iter()
            .filter(|m| m.lines().any(|l| l == "READY=1"))
            .count(),
        1,
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|m| m.contains("STOPPING=1")),
        "STOPPING before SIGTERM: {seen:?}"
    );
    daemon.sigterm();
    wait_for_message(&socket, "STOPPING=1", &mut seen, Duration::from_secs(30));
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.logs());
}

#[test]
fn the_unit_is_sandboxed_to_an_exposure_of_two_or_less() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/osteoscreen.service");
    let out = run(std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let said = text(&out);
    let exposure: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for osteoscreen.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{said}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{said}");
}
