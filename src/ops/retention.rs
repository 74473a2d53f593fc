//! Retention: finished studies older than a cutoff are removed, files first, then rows
//! (see `store::purge` for why that order). Used by `osteoscreen queue purge` and, with
//! `[storage] retention_days`, by the daemon once an hour.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::{Done, Shutdown};
use crate::store::{now_ms, Store, StoreError};

/// What a purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub studies: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Remove studies whose jobs all ended more than `days` days ago; `outbox` is the
/// daemon's outbox folder (per-study folders there are removed when empty).
pub fn purge(store: &Store, outbox: &Path, days: f64) -> Result<Purged, StoreError> {
    let cutoff = now_ms() - (days * 86_400_000.0) as i64;
    let mut purged = Purged::default();
    for study in store.purgeable_studies(cutoff)? {
        for file in store.study_owned_files(&study)? {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&file) {
                Ok(()) => {
                    purged.files += 1;
                    purged.bytes += size;
                    remove_empty_parents(&file, 3);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %file.display(), error = %e, "cannot remove"),
            }
        }
        let _ = std::fs::remove_dir_all(outbox.join(&study));
        if store.forget_study(&study)? {
            purged.studies += 1;
        }
    }
    Ok(purged)
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
        match tokio::task::spawn_blocking(move || purge(&store, &outbox, days)).await {
            Ok(Ok(p)) if p.studies > 0 => tracing::info!(
                studies = p.studies,
                files = p.files,
                bytes = p.bytes,
                retention_days = days,
                "purged finished studies"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "purge failed"),
            Err(e) => tracing::error!(error = %e, "purge task failed"),
        }
    }
}
