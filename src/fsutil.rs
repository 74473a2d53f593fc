//! Small filesystem helpers for durability, disk-space checks and path identity.

use std::path::Path;

/// Whether two paths name one existing file (through links and `..`); false when either
/// is missing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// fsync a directory so that renames and creations inside it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Flush everything written to the filesystem holding `path` (data, inodes, directory
/// entries) in one go: cheaper than an fsync per file for a batch of new files.
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
}

/// Ask the kernel to start writing `len` bytes at `offset` of `file` to disk now, without
/// waiting. Only a hint: the caller still fsyncs.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a file descriptor we own and plain integers; no
    // memory is shared with the kernel. Errors only mean no early writeback.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The exclusive lock one `serve` holds on its storage directory.
pub struct DirLock {
    _file: std::fs::File,
}

/// Lock `<dir>/osteoscreen.lock` (flock, released by the kernel when the process ends,
/// however it ends) and write our PID into it. Fails when another process holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, String> {
    use std::io::{Seek, Write};
    let path = dir.join("osteoscreen.lock");
    let mut file = match lock_file(&path, false) {
        Ok(Some(file)) => file,
        Ok(None) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "storage dir {} is in use by another osteoscreen (pid {}); two daemons must \
                 not share one spool and database: stop it, or give this one another \
                 [storage] dir",
                dir.display(),
                holder.trim()
            ));
        }
        Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
    };
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(DirLock { _file: file })
}

/// Hold `path` locked (flock, exclusive) until the returned file is dropped; created if
/// missing. For work two processes must not do at once. `wait`: for another holder to let
/// go; else None while it holds it.
pub fn lock_file(path: &Path, wait: bool) -> std::io::Result<Option<std::fs::File>> {
    use rustix::fs::FlockOperation;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let how = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(&file, how) {
        Ok(()) => Ok(Some(file)),
        Err(e) if !wait && e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}
