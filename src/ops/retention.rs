//! Retention: finished studies older than a cutoff are removed, files first, then rows
//! (see `store::purge` for why that order). Used by `osteoscreen queue purge` and, with
//! `[storage] retention_days`, by the daemon once an hour.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::shutdown::{Done, Shutdown};
use crate::store::{now_ms, Store, StoreError};

/// What a purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub studies: usize,
    pub files: usize,
    pub bytes: u64,
}

/// File times come from a coarse kernel clock, and some filesystems keep whole seconds:
/// a file changed just after a check may carry a time before it. The files purged are
/// days old, so the margin costs nothing.
const CTIME_SLACK: Duration = Duration::from_secs(1);

/// Remove studies whose jobs all ended more than `days` days ago; `outbox` is the
/// daemon's outbox folder (per-study folders there are removed when empty). Waits while
/// another purge of the storage dir runs.
pub fn purge(store: &Store, outbox: &Path, days: f64) -> Result<Purged, StoreError> {
    let _held = purge_lock(store, true)?;
    purge_locked(store, outbox, days)
}

/// `purge`, or None at once while another purge of the storage dir runs (the daemon's
/// hourly one must not hold up its stop behind `osteoscreen queue purge`).
pub fn purge_unless_busy(
    store: &Store,
    outbox: &Path,
    days: f64,
) -> Result<Option<Purged>, StoreError> {
    match purge_lock(store, false)? {
        Some(_held) => purge_locked(store, outbox, days).map(Some),
        None => Ok(None),
    }
}

/// One purge at a time over a storage dir (the daemon's and `osteoscreen queue purge` are
/// two processes): another's put-back of a file moved aside would make this one's removal
/// fail, and the rows would go while the file stays.
fn purge_lock(store: &Store, wait: bool) -> Result<Option<std::fs::File>, StoreError> {
    let path = store.storage_dir().join("purge.lock");
    crate::fsutil::lock_file(&path, wait).map_err(|source| StoreError::Lock { path, source })
}

fn purge_locked(store: &Store, outbox: &Path, days: f64) -> Result<Purged, StoreError> {
    let cutoff = now_ms() - (days * 86_400_000.0) as i64;
    let mut purged = Purged::default();
    for study in store.purgeable_studies(cutoff)? {
        // Checked again now: the list is stale once files are being removed.
        let checked = SystemTime::now();
        let Some(plan) = store.purge_plan(&study, cutoff)? else {
            continue;
        };
        let mut kept = 0;
        for file in &plan.files {
            recover_aside(file);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            // Written or renamed into place since the check (an instance re-sent under
            // the same path): new work, not the finished study's; its row stays too (see
            // forget_study). The ctime, which a write and a rename both set (a rename
            // keeps the mtime).
            let changed = std::time::UNIX_EPOCH
                + Duration::new(
                    meta.ctime().max(0) as u64,
                    meta.ctime_nsec().clamp(0, 999_999_999) as u32,
                );
            let fresh = changed + CTIME_SLACK >= checked;
            if fresh {
                kept += 1;
                continue;
            }
            match remove_unless_replaced(file, &meta) {
                Ok(Removal::Removed) => {
                    purged.files += 1;
                    purged.bytes += meta.len();
                    remove_empty_parents(file, 3);
                }
                Ok(Removal::Replaced) => kept += 1,
                Err(e) => {
                    // Not known to be gone: the rows stay, so a later purge finds it.
                    kept += 1;
                    tracing::warn!(path = %file.display(), error = %e, "cannot remove");
                }
            }
        }
        if kept == 0 && store.forget_study(&study, &plan)? {
            // What the deliveries did not list (an object never recorded), once the
            // study is gone: a newer version of it would write here too.
            let _ = std::fs::remove_dir_all(outbox.join(&study));
            purged.studies += 1;
        }
    }
    Ok(purged)
}

/// What [`remove_unless_replaced`] did.
#[derive(Debug, PartialEq, Eq)]
enum Removal {
    Removed,
    /// Another file took the path after it was checked: it is in place again.
    Replaced,
}

/// Remove `file`, the one `checked` describes. A file renamed onto the path between the
/// check and the removal (an instance re-sent in that instant) would be lost by a plain
/// unlink, so the path is first moved aside (atomic), and what was moved is compared
/// with what was checked: another inode is put back, unless the path got a newer file
/// still (a link never replaces).
fn remove_unless_replaced(file: &Path, checked: &std::fs::Metadata) -> std::io::Result<Removal> {
    let aside = aside_of(file);
    std::fs::rename(file, &aside)?;
    let moved = std::fs::metadata(&aside)?;
    let same = moved.dev() == checked.dev() && moved.ino() == checked.ino();
    let result = if same {
        Removal::Removed
    } else {
        match std::fs::hard_link(&aside, file) {
            Ok(()) => Removal::Replaced,
            // A newer one again: the one moved aside is superseded.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Removal::Removed,
            Err(e) => {
                // Neither linked back nor gone: leave it under the aside name rather
                // than lose an instance that may be new.
                tracing::warn!(path = %aside.display(), error = %e, "cannot put back a re-sent file");
                return Ok(Removal::Replaced);
            }
        }
    };
    std::fs::remove_file(&aside)?;
    Ok(result)
}

/// The aside name [`remove_unless_replaced`] moves `file` to.
fn aside_of(file: &Path) -> std::path::PathBuf {
    let mut aside = file.as_os_str().to_owned();
    aside.push(".purging");
    aside.into()
}

/// After a crash in [`remove_unless_replaced`], `file` may sit under its aside name, and
/// whether it was the finished study's or a re-sent one is no longer known: it goes back
/// to its path (the study stays listed, so the next purge removes it when it is due);
/// where the path holds a file again, the aside is the superseded one and goes.
fn recover_aside(file: &Path) {
    let aside = aside_of(file);
    if std::fs::symlink_metadata(&aside).is_err() {
        return;
    }
    // A link never replaces: a file at the path keeps it.
    let done = match std::fs::hard_link(&aside, file) {
        Ok(()) => std::fs::remove_file(&aside),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::remove_file(&aside),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        tracing::warn!(path = %aside.display(), error = %e, "cannot recover a file left aside by an interrupted purge");
    }
}

/// Remove up to `levels` now-empty folders above `file` (series, study folders).
fn remove_empty_parents(file: &Path, levels: usize) {
    let mut dir = file.parent();
    for _ in 0..levels {
        match dir {
            Some(d) if std::fs::remove_dir(d).is_ok() => dir = d.parent(),
            _ => return,
        }
    }
}

/// Purge every hour while the daemon runs (`days` > 0).
pub async fn run(
    store: Arc<Store>,
    outbox: std::path::PathBuf,
    days: f64,
    mut shutdown: Shutdown,
    _done: Done,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.recv() => return,
        }
        let (store, outbox) = (store.clone(), outbox.clone());
        match tokio::task::spawn_blocking(move || purge_unless_busy(&store, &outbox, days)).await {
            Ok(Ok(None)) => tracing::info!(
                "another purge of the storage dir is running; this hour's is skipped"
            ),
            Ok(Ok(Some(p))) if p.studies > 0 => tracing::info!(
                studies = p.studies,
                files = p.files,
                bytes = p.bytes,
                retention_days = days,
                "purged finished studies"
            ),
            Ok(Ok(Some(_))) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "purge failed"),
            Err(e) => tracing::error!(error = %e, "purge task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_checked_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.dcm");
        std::fs::write(&file, b"old").unwrap();
        let checked = std::fs::metadata(&file).unwrap();
        assert_eq!(
            remove_unless_replaced(&file, &checked).unwrap(),
            Removal::Removed
        );
        assert!(!file.exists());
        assert!(!aside_of(&file).exists());
    }

    #[test]
    fn a_file_renamed_onto_the_path_after_the_check_stays() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.dcm");
        std::fs::write(&file, b"old").unwrap();
        let checked = std::fs::metadata(&file).unwrap();
        // The instance re-sent between the check and the removal.
        let incoming = dir.path().join("incoming.tmp");
        std::fs::write(&incoming, b"new").unwrap();
        std::fs::rename(&incoming, &file).unwrap();
        assert_eq!(
            remove_unless_replaced(&file, &checked).unwrap(),
            Removal::Replaced
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert!(!aside_of(&file).exists());
    }

    #[test]
    fn a_file_left_aside_by_a_crash_goes_back_unless_the_path_has_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.dcm");
        std::fs::write(aside_of(&file), b"old").unwrap();
        recover_aside(&file);
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert!(!aside_of(&file).exists());
        // The path holds a file again: the aside is the superseded one.
        std::fs::write(aside_of(&file), b"older").unwrap();
        recover_aside(&file);
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert!(!aside_of(&file).exists());
        // Nothing aside: nothing happens.
        recover_aside(&file);
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
    }

    /// Two purges of one storage dir (the daemon's and `queue purge`) take turns; the
    /// daemon's hourly one skips the hour rather than wait.
    #[test]
    fn a_purge_waits_for_another_to_finish_and_the_hourly_one_skips() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&Store::path_in(dir.path())).unwrap());
        let held = crate::fsutil::lock_file(&dir.path().join("purge.lock"), true)
            .unwrap()
            .unwrap();
        let outbox = dir.path().join("outbox");
        // The daemon's hourly purge does not wait.
        assert_eq!(purge_unless_busy(&store, &outbox, 1.0).unwrap(), None);
        let (tx, rx) = std::sync::mpsc::channel();
        let purging = {
            let store = store.clone();
            std::thread::spawn(move || {
                let done = purge(&store, &outbox, 1.0);
                tx.send(()).unwrap();
                done
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "ran while another held the lock"
        );
        drop(held);
        rx.recv_timeout(Duration::from_secs(20))
            .expect("ran once it was free");
        assert_eq!(purging.join().unwrap().unwrap(), Purged::default());
        assert_eq!(
            purge_unless_busy(&store, &dir.path().join("outbox"), 1.0).unwrap(),
            Some(Purged::default())
        );
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.dcm");
        std::fs::write(&file, b"old").unwrap();
        let checked = std::fs::metadata(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let e = remove_unless_replaced(&file, &checked).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
