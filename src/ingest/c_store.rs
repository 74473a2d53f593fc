//! One C-STORE, from its request command to its response status. The data set is written
//! to the association's journal segment (or, on the per-file path, to a spool file) while
//! its fragments arrive (never held in memory: only a few bytes are kept to see whether
//! encapsulated pixel data was closed); when the last one lands, it is checked and
//! flushed (per file: the fsync and the header check run side by side, then the file is
//! put in place and recorded). The status tells the truth: success only once the
//! instance is durable. An instance over `max_instance_mb`, or one that would take the
//! disk below its watermark, is refused while it arrives and its partial file removed.

use std::time::Instant;

use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};

use super::active::Entered;
use super::instance::{inspect, inspect_file, Announced, PixelDataEnd, ReceivedInstance, Refusal};
use super::journal::{Entry, Lane, RecordMeta};
use super::spool::{part10_head, FileHeader, Incoming, Written};
use super::Ingest;
use crate::dicom::command::field;
use crate::dicom::sop;
use crate::dicom::text::unpad;
use crate::dicom::{Command, DimseStatus};
use crate::ops::metrics::metrics;

/// Unrecognized operation (PS3.7 C.4.3): a command this SCP does not implement.
pub const UNRECOGNIZED_OPERATION: DimseStatus = DimseStatus(0x0211);

/// While an instance is written, the free disk space is checked again every this many bytes.
pub(super) const FREE_SPACE_CHECK_BYTES: u64 = 64 << 20;

/// Counters for the end-of-association log line.
#[derive(Default)]
pub struct Tally {
    pub stored: usize,
    pub refused: usize,
    pub bytes: u64,
}

/// Where an arriving data set is written: a record in the association's journal segment
/// (the usual way), or a spool file of its own (no segment ready, a deflated syntax, or an
/// instance too large for what was left of the segment).
enum Sink {
    Journal(Entry),
    File(Incoming),
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
    file: Option<Sink>,
    /// When the request command arrived (for the receive-time figure in the debug log).
    begun: Instant,
}

impl PendingStore {
    /// Check what can be checked from the command alone and open the spool file.
    pub fn begin(
        ingest: &Ingest,
        lane: &mut Lane,
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
        match pending.open(ingest, lane, contexts, calling_ae) {
            Ok(file) => pending.file = Some(file),
            Err(r) => pending.early = Some(r),
        }
        pending
    }

    fn open(
        &mut self,
        ingest: &Ingest,
        lane: &mut Lane,
        contexts: &[PresentationContextNegotiated],
        calling_ae: &str,
    ) -> Result<Sink, Refusal> {
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
        let header = FileHeader {
            sop_class_uid: &command.sop_class_uid,
            sop_instance_uid: &command.sop_instance_uid,
            transfer_syntax: &self.transfer_syntax,
            calling_ae,
        };
        ingest.check_admission(&header)?;
        let journal = ingest
            .journal
            .as_ref()
            .filter(|_| !is_deflated(&self.transfer_syntax));
        if let Some(mut entry) = journal.and_then(|j| lane.begin(j)) {
            let head = part10_head(&header)
                .map_err(|e| Refusal::out_of_resources("spool write failed", e))?;
            if entry.append(&head).is_ok() {
                return Ok(Sink::Journal(entry));
            }
            lane.retire();
        }
        tokio::task::block_in_place(|| ingest.spool.begin(&header))
            .map(Sink::File)
            .map_err(|e| Refusal::out_of_resources("spool write failed", e))
    }

    /// A data fragment arrived. The write usually lands in the page cache in tens of
    /// microseconds, but may block on writeback: it runs in `block_in_place`, so the
    /// worker's other tasks move elsewhere meanwhile. Past the size cap or the
    /// disk watermark the store is refused at once: the file goes, later bytes are dropped.
    pub fn append(&mut self, ingest: &Ingest, lane: &mut Lane, bytes: &[u8]) {
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
        let full = match self.file.as_mut() {
            Some(Sink::File(file)) => {
                tokio::task::block_in_place(|| file.append(bytes));
                false
            }
            Some(Sink::Journal(entry)) => {
                tokio::task::block_in_place(|| entry.append(bytes)).is_err()
            }
            None => false,
        };
        if full {
            lane.retire();
            if let Err(e) = self.move_to_file(ingest, bytes) {
                self.refuse_early(Refusal::out_of_resources("spool write failed", e));
            }
        }
    }

    /// The instance outgrew what was left of the journal segment: what it wrote there so
    /// far goes to a spool file of its own (from the page cache), and so does the rest.
    fn move_to_file(&mut self, ingest: &Ingest, bytes: &[u8]) -> std::io::Result<()> {
        let Some(Sink::Journal(mut entry)) = self.file.take() else {
            return Ok(());
        };
        // Bytes a failed write lost cannot be copied: refuse rather than leave a gap.
        if let Some(e) = entry.take_error() {
            return Err(e);
        }
        tokio::task::block_in_place(|| {
            let mut file = ingest
                .spool
                .begin_raw(&self.command.sop_instance_uid)
                .map_err(std::io::Error::other)?;
            file.copy_from(&mut entry.window())?;
            file.append(bytes);
            self.file = Some(Sink::File(file));
            Ok(())
        })
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
        lane: &mut Lane,
        calling_ae: &str,
        tally: &mut Tally,
        studies: &mut Entered,
    ) -> (DimseStatus, Option<String>) {
        let sop_instance_uid = self.command.sop_instance_uid.clone();
        match self.finish(ingest, lane, calling_ae, studies).await {
            Ok(size) => {
                tally.stored += 1;
                tally.bytes += size;
                metrics().count_instance(calling_ae, "stored");
                (DimseStatus::SUCCESS, None)
            }
            Err(r) => {
                tally.refused += 1;
                metrics().count_instance(calling_ae, "refused");
                tracing::warn!(
                    calling_ae,
                    // Debug: quoted and escaped, as the peer chose it.
                    sop_instance_uid = ?sop_instance_uid,
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
        lane: &mut Lane,
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
        let file = match self.file {
            Some(Sink::File(file)) => file,
            Some(Sink::Journal(entry)) => {
                let modalities = &ingest.settings.accepted_modalities;
                let announced = Announced::by_command(&self.command);
                let transfer_syntax = self.transfer_syntax;
                let (begun, sop) = (self.begun, self.command.sop_instance_uid.clone());
                return journal_finish(
                    ingest,
                    lane,
                    entry,
                    &announced,
                    modalities,
                    transfer_syntax,
                    calling_ae,
                    studies,
                )
                .inspect(|size| {
                    tracing::debug!(
                        calling_ae,
                        sop_instance_uid = %sop,
                        bytes = size,
                        total_ms = begun.elapsed().as_secs_f64() * 1e3,
                        "instance journalled"
                    );
                });
            }
            None => return Err(Refusal::out_of_resources("spool", "no file was opened")),
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

/// Check a journal entry's data set, then write its header and flush it: once that
/// returns, the instance is durable and may be acknowledged; the mover takes it from
/// there. A refused entry leaves nothing: its space is the lane's next record's.
#[allow(clippy::too_many_arguments)]
fn journal_finish(
    ingest: &Ingest,
    lane: &mut Lane,
    mut entry: Entry,
    announced: &Announced,
    modalities: &[String],
    transfer_syntax: String,
    calling_ae: &str,
    studies: &mut Entered,
) -> Result<u64, Refusal> {
    let (Some(journal), Some(mover)) = (ingest.journal.as_ref(), ingest.mover.as_ref()) else {
        return Err(Refusal::out_of_resources("journal", "not open"));
    };
    let instance = tokio::task::block_in_place(|| {
        entry.start_writeback();
        inspect(
            || {
                let window = entry.window();
                let len = window.len();
                Ok((window, len))
            },
            announced,
            modalities,
        )
    })?;
    studies.enter(&instance.study_uid);
    let meta = RecordMeta {
        seq: 0,
        received_at_ms: crate::store::now_ms(),
        sop_class_uid: instance.sop_class_uid,
        sop_instance_uid: instance.sop_instance_uid,
        study_uid: instance.study_uid,
        series_uid: instance.series_uid,
        modality: instance.modality,
        transfer_syntax,
        calling_ae: calling_ae.to_string(),
    };
    let record = tokio::task::block_in_place(|| entry.commit(journal, meta)).map_err(|e| {
        lane.retire();
        Refusal::out_of_resources("journal write failed", e)
    })?;
    lane.advance(&record);
    let size = record.len;
    // Held back from the assembler until the mover has committed its row (it leaves
    // then), or the study could become a job without it once the association closes.
    ingest.active.enter(&record.meta.study_uid);
    mover.send(record);
    Ok(size)
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

/// Deflated data sets are parsed whole from a file, so they skip the journal.
fn is_deflated(transfer_syntax: &str) -> bool {
    use dicom_encoding::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(transfer_syntax)
        .is_some_and(|ts| {
            matches!(
                ts.codec(),
                dicom_encoding::transfer_syntax::Codec::Dataset(_)
            )
        })
}

fn is_encapsulated(transfer_syntax: &str) -> bool {
    use dicom_encoding::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(transfer_syntax)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data())
}
