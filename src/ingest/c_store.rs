//! One C-STORE, from its request command to its response status. The data set is written
//! to the spool while its fragments arrive (never held in memory: only a few bytes are
//! kept to see whether encapsulated pixel data was closed); when the last one lands, the
//! fsync and the header check of the spooled file run side by side, then the file is put
//! in place and recorded. The status tells the truth: success only once the instance is
//! durable and committed. An instance over `max_instance_mb`, or one that would take the
//! disk below its watermark, is refused while it arrives and its partial file removed.

use std::time::Instant;

use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};

use super::active::Entered;
use super::instance::{inspect_file, Announced, PixelDataEnd, ReceivedInstance, Refusal};
use super::spool::{FileHeader, Incoming, Written};
use super::Ingest;
use crate::dicom::command::field;
use crate::dicom::sop;
use crate::dicom::text::unpad;
use crate::dicom::{Command, DimseStatus};
use crate::ops::metrics::metrics;

/// Unrecognized operation (PS3.7 C.4.3): a command this SCP does not implement.
pub const UNRECOGNIZED_OPERATION: DimseStatus = DimseStatus(0x0211);

/// While an instance is written, the free disk space is checked again every this many bytes.
const FREE_SPACE_CHECK_BYTES: u64 = 64 << 20;

/// Counters for the end-of-association log line.
#[derive(Default)]
pub struct Tally {
    pub stored: usize,
    pub refused: usize,
    pub bytes: u64,
}

/// A request whose data set is arriving.
pub struct PendingStore {
    pub pc_id: u8,
    pub command: Command,
    transfer_syntax: String,
    /// Data-set bytes received so far.
    received: u64,
    /// Where the next free-space check is due.
    next_space_check: u64,
    /// Only for encapsulated syntaxes (decided once the context is known): scanning every
    /// byte of native pixel data for a delimiter would be wasted work per fragment.
    end: Option<PixelDataEnd>,
    /// Set when the request is refused before its data is complete (bad context, spool
    /// failure); the data is still read to the end so the association stays usable.
    early: Option<Refusal>,
    file: Option<Incoming>,
    /// When the request command arrived (for the receive-time figure in the debug log).
    begun: Instant,
}

impl PendingStore {
    /// Check what can be checked from the command alone and open the spool file.
    pub fn begin(
        ingest: &Ingest,
        contexts: &[PresentationContextNegotiated],
        calling_ae: &str,
        pc_id: u8,
        command: Command,
    ) -> PendingStore {
        let mut pending = PendingStore {
            pc_id,
            command,
            transfer_syntax: String::new(),
            received: 0,
            next_space_check: FREE_SPACE_CHECK_BYTES,
            end: None,
            early: None,
            file: None,
            begun: Instant::now(),
        };
        match pending.open(ingest, contexts, calling_ae) {
            Ok(file) => pending.file = Some(file),
            Err(r) => pending.early = Some(r),
        }
        pending
    }

    fn open(
        &mut self,
        ingest: &Ingest,
        contexts: &[PresentationContextNegotiated],
        calling_ae: &str,
    ) -> Result<Incoming, Refusal> {
        let command = &self.command;
        if command.field != field::C_STORE_RQ {
            return Err(Refusal::new(
                UNRECOGNIZED_OPERATION,
                "operation not supported",
            ));
        }
        let context = contexts
            .iter()
            .find(|pc| {
                pc.id == self.pc_id && pc.reason == PresentationContextResultReason::Acceptance
            })
            .ok_or_else(|| {
                Refusal::cannot_understand(format!(
                    "presentation context {} was not accepted",
                    self.pc_id
                ))
            })?;
        if unpad(&context.abstract_syntax) != command.sop_class_uid {
            return Err(Refusal::new(
                DimseStatus::SOP_CLASS_NOT_SUPPORTED,
                format!(
                    "{} not accepted on this context",
                    sop::sop_class_name(&command.sop_class_uid)
                ),
            ));
        }
        self.transfer_syntax = unpad(&context.transfer_syntax).to_string();
        self.end = is_encapsulated(&self.transfer_syntax).then(PixelDataEnd::default);
        ingest.admit(&FileHeader {
            sop_class_uid: &command.sop_class_uid,
            sop_instance_uid: &command.sop_instance_uid,
            transfer_syntax: &self.transfer_syntax,
            calling_ae,
        })
    }

    /// A data fragment arrived. The write usually lands in the page cache in tens of
    /// microseconds, but may block on writeback: it runs in `block_in_place`, so the
    /// worker's other tasks move elsewhere meanwhile. Past the size cap or the
    /// disk watermark the store is refused at once: the file goes, later bytes are dropped.
    pub fn append(&mut self, ingest: &Ingest, bytes: &[u8]) {
        if self.file.is_none() {
            return;
        }
        self.received += bytes.len() as u64;
        let cap = ingest.settings.max_instance_mb.saturating_mul(1 << 20);
        if self.received > cap {
            self.refuse_early(Refusal::new(
                DimseStatus::OUT_OF_RESOURCES,
                format!(
                    "instance larger than max_instance_mb ({} MiB)",
                    ingest.settings.max_instance_mb
                ),
            ));
            return;
        }
        if self.received >= self.next_space_check {
            self.next_space_check = self.received + FREE_SPACE_CHECK_BYTES;
            if let Err(reason) = ingest.has_room_for(FREE_SPACE_CHECK_BYTES) {
                self.refuse_early(Refusal::new(DimseStatus::OUT_OF_RESOURCES, reason));
                return;
            }
        }
        if let Some(end) = self.end.as_mut() {
            end.feed(bytes);
        }
        if let Some(file) = self.file.as_mut() {
            tokio::task::block_in_place(|| file.append(bytes));
        }
    }

    /// Refuse now: dropping the incoming file removes it.
    fn refuse_early(&mut self, refusal: Refusal) {
        self.file = None;
        self.early = Some(refusal);
    }

    /// The data set is complete: check, make durable, place, record. Returns the status
    /// and the Error Comment for the response.
    pub async fn complete(
        self,
        ingest: &Ingest,
        calling_ae: &str,
        tally: &mut Tally,
        studies: &mut Entered,
    ) -> (DimseStatus, Option<String>) {
        let sop_instance_uid = self.command.sop_instance_uid.clone();
        match self.finish(ingest, calling_ae, studies).await {
            Ok(size) => {
                tally.stored += 1;
                tally.bytes += size;
                metrics()
                    .instances
                    .with_label_values(&[calling_ae, "stored"])
                    .inc();
                (DimseStatus::SUCCESS, None)
            }
            Err(r) => {
                tally.refused += 1;
                metrics()
                    .instances
                    .with_label_values(&[calling_ae, "refused"])
                    .inc();
                tracing::warn!(
                    calling_ae,
                    sop_instance_uid = %sop_instance_uid,
                    status = %r.status,
                    reason = %r.reason,
                    "C-STORE refused"
                );
                (r.status, Some(r.reason))
            }
        }
    }

    async fn finish(
        self,
        ingest: &Ingest,
        calling_ae: &str,
        studies: &mut Entered,
    ) -> Result<u64, Refusal> {
        if let Some(r) = self.early {
            return Err(r);
        }
        // Dropping the file on a refusal removes it.
        if let Some(end) = &self.end {
            end.check()?;
        }
        let Some(file) = self.file else {
            return Err(Refusal::out_of_resources("spool", "no file was opened"));
        };
        let started = Instant::now();
        let (written, instance) =
            sync_and_inspect(file, &self.command, &ingest.settings.accepted_modalities).await?;
        studies.enter(&instance.study_uid);
        let (record, dir) = ingest.place(written, instance, self.transfer_syntax, calling_ae)?;
        let spooled_at = Instant::now();
        let size = record.size;
        let (sop, study) = (record.sop_instance_uid.clone(), record.study_uid.clone());
        ingest
            .writer
            .record(record, dir)
            .await
            .map_err(|e| Refusal::out_of_resources("could not record instance", e))?;
        tracing::debug!(
            calling_ae,
            sop_instance_uid = %sop,
            study_uid = %study,
            bytes = size,
            receive_ms = (started - self.begun).as_secs_f64() * 1e3,
            spool_ms = (spooled_at - started).as_secs_f64() * 1e3,
            commit_ms = spooled_at.elapsed().as_secs_f64() * 1e3,
            "instance stored"
        );
        Ok(size)
    }
}

/// fsync the spooled file (on a pooled blocking thread) while its header is read back
/// (from the page cache) and checked here, off the async pool: the two are independent.
/// A refused data set's file is discarded.
async fn sync_and_inspect(
    file: Incoming,
    command: &Command,
    modalities: &[String],
) -> Result<(Written, ReceivedInstance), Refusal> {
    let path = file.path().to_path_buf();
    let fsync = tokio::task::spawn_blocking(move || file.finish());
    let checked = tokio::task::block_in_place(|| {
        inspect_file(&path, &Announced::by_command(command), modalities)
    });
    let written = fsync
        .await
        .map_err(|e| Refusal::out_of_resources("spool write failed", e))?
        .map_err(|e| Refusal::out_of_resources("spool write failed", e))?;
    match checked {
        Ok(instance) => Ok((written, instance)),
        Err(r) => {
            written.discard();
            Err(r)
        }
    }
}

fn is_encapsulated(transfer_syntax: &str) -> bool {
    use dicom_encoding::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(transfer_syntax)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data())
}
