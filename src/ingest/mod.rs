//! Ingest: DICOM associations in (C-ECHO, C-STORE) and STOW-RS requests, durable instances
//! out. A C-STORE is answered with success, a STOW-RS request with 200, only after the
//! files are fsynced in the spool and their rows committed in the store (see `spool` and
//! `store::InstanceWriter`).

pub mod access;
pub mod active;
pub mod association;
pub mod c_store;
pub mod instance;
pub mod journal;
pub mod listener;
pub mod mover;
mod newest;
pub mod recover;
pub mod settings;
pub mod slots;
pub mod spare;
pub mod spool;
pub mod stow;
pub mod wire;

use std::path::PathBuf;

use crate::dicom::sop;
use crate::dicom::uid::is_safe_uid;
use crate::dicom::DimseStatus;
use crate::store::{InstanceRecord, InstanceWriter, StoreError};
use active::ActiveStudies;
use instance::{ReceivedInstance, Refusal};
use settings::{CallerRule, DicomSettings};
use spool::{FileHeader, Incoming, Placement, Written};

/// Everything an association handler needs, shared by all of them.
pub struct Ingest {
    pub settings: DicomSettings,
    pub callers: Vec<CallerRule>,
    pub spool: std::sync::Arc<spool::Spool>,
    pub writer: InstanceWriter,
    /// Moves journal records into the spool tree and the database. Declared (so dropped)
    /// before the journal: its last records are filed and let go while the journal's
    /// thread is still there to invalidate their segments.
    pub mover: Option<mover::Mover>,
    /// Where C-STOREs are acknowledged from (`None`: `[dicom] journal_segment_mb = 0`).
    pub journal: Option<journal::Journal>,
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

    /// What both transports check before keeping a byte of an instance: its SOP class is
    /// accepted, its SOP Instance UID can name a file, the disk is above the watermark.
    /// Then its spool file opens.
    pub fn admit(&self, announced: &FileHeader) -> Result<Incoming, Refusal> {
        self.check_admission(announced)?;
        // File creation may wait on the filesystem: off the async workers.
        tokio::task::block_in_place(|| self.spool.begin(announced))
            .map_err(|e| Refusal::out_of_resources("spool write failed", e))
    }

    /// `admit`'s checks alone.
    pub fn check_admission(&self, announced: &FileHeader) -> Result<(), Refusal> {
        if !sop::is_accepted_storage_class(announced.sop_class_uid) {
            return Err(Refusal::new(
                DimseStatus::SOP_CLASS_NOT_SUPPORTED,
                format!(
                    "{} not accepted",
                    sop::sop_class_name(announced.sop_class_uid)
                ),
            ));
        }
        if !is_safe_uid(announced.sop_instance_uid) {
            return Err(Refusal::cannot_understand(
                "SOP Instance UID is not a valid UID",
            ));
        }
        self.has_room_for(0)
            .map_err(|reason| Refusal::new(DimseStatus::OUT_OF_RESOURCES, reason))
    }

    /// A checked instance into its place in the spool; returns its row and the directory
    /// the writer must fsync before the row is committed.
    pub fn place(
        &self,
        written: Written,
        instance: ReceivedInstance,
        transfer_syntax: String,
        calling_ae: &str,
    ) -> Result<(InstanceRecord, PathBuf), Refusal> {
        let at = Placement {
            study_uid: &instance.study_uid,
            series_uid: &instance.series_uid,
            sop_instance_uid: &instance.sop_instance_uid,
        };
        let spooled = tokio::task::block_in_place(|| self.spool.place(written, &at))
            .map_err(|e| Refusal::out_of_resources("spool write failed", e))?;
        let record = InstanceRecord {
            sop_instance_uid: instance.sop_instance_uid,
            sop_class_uid: instance.sop_class_uid,
            study_uid: instance.study_uid,
            series_uid: instance.series_uid,
            modality: instance.modality,
            transfer_syntax,
            path: spooled.path,
            size: spooled.size,
            calling_ae: calling_ae.to_string(),
            received_at_ms: spooled.received_at_ms,
        };
        Ok((record, spooled.dir))
    }

    /// Commit the row of an instance `place` put in place (the writer fsyncs `dir` first).
    /// A failed commit removed the file, so the spool forgets the copy: an older one the
    /// journal's mover still holds goes in its place.
    pub async fn record(&self, record: InstanceRecord, dir: PathBuf) -> Result<(), StoreError> {
        let (sop, at) = (record.sop_instance_uid.clone(), record.received_at_ms);
        let recorded = self.writer.record(record, dir).await;
        if recorded.is_err() {
            self.spool.forget(&sop, at);
        }
        recorded
    }
}
