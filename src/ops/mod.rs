//! Operations: how administrators see and steer the daemon (logs, systemd integration,
//! health of the long-running parts, metrics, and the HTTP listener that serves them).

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod retention;
pub mod systemd;

/// Cap glibc's malloc arenas for the daemon (unless MALLOC_ARENA_MAX is set): with one
/// arena per thread (async workers, blocking pool, rayon) freed memory stays scattered
/// over many arenas and the resident size climbs with the thread count, not the load.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; called before threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
