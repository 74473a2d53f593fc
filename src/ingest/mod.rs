//! Ingest: DICOM associations in (C-ECHO, C-STORE) and STOW-RS requests, durable instances
//! out. A C-STORE is answered with success, a STOW-RS request with 200, only after the
//! files are fsynced in the spool and their rows committed in the store (see `spool` and
//! `store::InstanceWriter`).

pub mod access;
pub mod active;
pub mod association;
pub mod c_store;
pub mod instance;
pub mod listener;
pub mod recover;
pub mod settings;
pub mod spool;
pub mod stow;

use std::path::PathBuf;

use crate::store::InstanceWriter;
use active::ActiveStudies;
use settings::{CallerRule, DicomSettings};

/// Everything an association handler needs, shared by all of them.
pub struct Ingest {
    pub settings: DicomSettings,
    pub callers: Vec<CallerRule>,
    pub spool: spool::Spool,
    pub writer: InstanceWriter,
    pub active: ActiveStudies,
    pub storage_dir: PathBuf,
    pub health: crate::ops::health::Health,
}

impl Ingest {
    /// Free space below which associations and stores are refused.
    pub fn min_free_bytes(&self) -> u64 {
        self.settings.min_free_disk_mb.saturating_mul(1024 * 1024)
    }

    /// Whether the spool's filesystem has room for `incoming` more bytes.
    pub fn has_room_for(&self, incoming: u64) -> Result<(), String> {
        let free = crate::fsutil::free_bytes(&self.storage_dir)
            .map_err(|e| format!("cannot read free disk space: {e}"))?;
        if free < self.min_free_bytes().saturating_add(incoming) {
            return Err(format!(
                "disk space low: {} MiB free, watermark {} MiB",
                free / (1024 * 1024),
                self.settings.min_free_disk_mb
            ));
        }
        Ok(())
    }
}
