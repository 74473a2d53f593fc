//! The journal's mover: acknowledged records go from their segment into the spool tree
//! (`<study>/<series>/<sop>.dcm`) and the database, on a thread of their own, in batches
//! gathered until the burst of arrivals pauses (QUIET, MAX_DEFER): each record is copied
//! into a spool file and renamed into place and its row committed at once (no fsync: the
//! journal still holds it); every CHECKPOINT one filesystem sync
//! makes what was filed durable. Only then are the records let go, and a segment with
//! none left is invalidated and reused (a crash before that: the next start finds the
//! records again and skips those whose spool file holds their bytes). A record that cannot be moved
//! (disk full, database gone) is kept, with its segment, and tried again every few
//! seconds; at a stop, the next start replays it.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::active::ActiveStudies;
use super::journal::Record;
use super::spool::{Placement, Spool, SpoolError};
use crate::store::{InstanceRecord, InstanceWriter, Store};

/// Records moved per database transaction at a start-up replay, at most.
const MAX_BATCH: usize = 64;
/// A pause in arriving records this long ends a burst: the mover starts on it.
const QUIET: Duration = Duration::from_millis(200);
/// A burst is moved after this long at the latest, however busy the listener stays.
const MAX_DEFER: Duration = Duration::from_secs(3);
/// How often the filed records are made durable (one filesystem sync) and their segments
/// let go: a sync per batch would flush the disk's cache under every acknowledgement.
const CHECKPOINT: Duration = Duration::from_millis(500);
/// Filed records held for the next checkpoint, at most.
const MAX_HELD: usize = 1024;
/// How often records that could not be moved (a full disk, a blocked directory) are
/// tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Handle to the mover thread; dropping it moves what is queued, then stops the thread.
pub struct Mover {
    tx: Mutex<Option<Sender<Record>>>,
    thread: Option<JoinHandle<()>>,
    /// Records that could not be handed to the thread: kept for the next start.
    stranded: Mutex<Vec<Record>>,
}

impl Mover {
    /// Each record sent must have entered its study in `active` (held back from the
    /// assembler until its row exists); the mover leaves it once the row is committed.
    pub fn start(
        spool: Arc<Spool>,
        store: Arc<Store>,
        writer: InstanceWriter,
        active: ActiveStudies,
    ) -> std::io::Result<Mover> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("journal-mover".into())
            .spawn(move || {
                let to = Filing {
                    spool: &spool,
                    store: &store,
                    writer: &writer,
                };
                run(&rx, &to, &active)
            })?;
        Ok(Mover {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
            stranded: Mutex::new(Vec::new()),
        })
    }

    /// Queue an acknowledged record.
    pub fn send(&self, record: Record) {
        // The `journal_backlog` gauge counts records queued or kept, not yet moved. Only
        // added to here and taken from by the mover: a set from each thread could land
        // out of order and read 0 with a record pending.
        let backlog = &crate::ops::metrics::metrics().journal_backlog;
        backlog.inc();
        let unsent = match self.tx.lock().ok().as_ref().and_then(|tx| tx.as_ref()) {
            Some(tx) => tx.send(record).err().map(|e| e.0),
            None => Some(record),
        };
        if let Some(record) = unsent {
            backlog.dec();
            tracing::error!(
                "journal mover has stopped; the instance stays in the journal until the next start"
            );
            if let Ok(mut kept) = self.stranded.lock() {
                kept.push(record);
            }
        }
    }

    /// Whether the thread is still running.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Mover {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Never moved, never let go: their segments are replayed at the next start.
        if let Ok(mut kept) = self.stranded.lock() {
            std::mem::forget(std::mem::take(&mut *kept));
        }
    }
}

/// Where records are filed.
struct Filing<'a> {
    spool: &'a Spool,
    store: &'a Store,
    writer: &'a InstanceWriter,
}

fn run(rx: &Receiver<Record>, to: &Filing, active: &ActiveStudies) {
    // Filed and recorded, not yet synced: let go at the next checkpoint.
    let mut held: Vec<Record> = Vec::new();
    // Records that failed to move: tried again every RETRY while the daemon runs.
    let mut kept: Vec<Record> = Vec::new();
    let mut last_sync = Instant::now();
    let mut last_retry = Instant::now();
    let mut open = true;
    while open || !held.is_empty() {
        // Wake for the next checkpoint of filed records, or the next retry of kept ones.
        let checkpoint = (!held.is_empty()).then(|| CHECKPOINT.saturating_sub(last_sync.elapsed()));
        let retry = (!kept.is_empty()).then(|| RETRY.saturating_sub(last_retry.elapsed()));
        let wait = match (checkpoint, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut batch = Vec::new();
        let first = match wait {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(w) => rx.recv_timeout(w),
        };
        match first {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        // While a sender waits on each answer, the move's copy, commit and sync would
        // share the CPUs and the disk with the flushes it waits on: gather the burst and
        // move it once the associations fall quiet (or it is long or old enough).
        let began = Instant::now();
        while open && !batch.is_empty() && batch.len() < MAX_HELD && began.elapsed() < MAX_DEFER {
            match rx.recv_timeout(QUIET) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if !kept.is_empty() && last_retry.elapsed() >= RETRY {
            batch.append(&mut kept);
            last_retry = Instant::now();
        }
        if !batch.is_empty() {
            let (moved, failed) = move_batch(to, batch);
            for record in &moved {
                // Its row is committed: the assembler may count it.
                active.leave(&record.meta.study_uid);
            }
            crate::ops::metrics::metrics()
                .journal_backlog
                .sub(i64::try_from(moved.len()).unwrap_or(i64::MAX));
            held.extend(moved);
            kept.extend(failed);
        }
        let due = last_sync.elapsed() >= CHECKPOINT || held.len() >= MAX_HELD || !open;
        if !held.is_empty() && due {
            match crate::fsutil::sync_filesystem(to.spool.root()) {
                // Durable in the spool tree: their segments may be reused.
                Ok(()) => held.clear(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sync the spool; journal records kept")
                }
            }
            last_sync = Instant::now();
            if !open && !held.is_empty() {
                break;
            }
        }
    }
    kept.append(&mut held);
    if !kept.is_empty() {
        tracing::error!(
            records = kept.len(),
            "journal records still not moved at shutdown; the next start moves them"
        );
    }
    // Their segments must not be reused: the next start moves them again.
    std::mem::forget(kept);
}

/// File and record `batch` (no sync: the caller's checkpoint makes it durable); returns
/// the records moved (or superseded: the database or the spool holds a copy received
/// later, by another path, while this one waited) and those that could not be (logged).
fn move_batch(to: &Filing, batch: Vec<Record>) -> (Vec<Record>, Vec<Record>) {
    let mut copied = Vec::with_capacity(batch.len());
    let mut failed = Vec::new();
    let mut moved = Vec::with_capacity(batch.len());
    for record in batch {
        if received_later(to.store, &record) {
            moved.push(record);
            continue;
        }
        match copy_into_spool(to.spool, &record) {
            Ok(Some(row)) => copied.push((record, row)),
            // A copy received later was put in place meanwhile. Kept until its row is
            // committed (then superseded, above), or its commit failed and the spool
            // forgot it (then filed).
            Ok(None) => {
                tracing::debug!("a newer copy of a journal record's instance is in place; kept until its row is committed");
                failed.push(record);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot move a journal record into the spool; kept");
                failed.push(record);
            }
        }
    }
    // Each record with the time its copy was placed by (to forget it if the row fails).
    let (records, rows): (Vec<(Record, i64)>, Vec<InstanceRecord>) = copied
        .into_iter()
        .map(|(record, row)| ((record, row.received_at_ms), row))
        .unzip();
    let results = to.writer.record_all_blocking(rows);
    for ((record, at), result) in records.into_iter().zip(results) {
        match result {
            Ok(()) => moved.push(record),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a journal instance; kept");
                // Its placement no longer counts, or its own retry would yield to it.
                to.spool.forget(&record.meta.sop_instance_uid, at);
                failed.push(record);
            }
        }
    }
    (moved, failed)
}

/// Copy a record's data set into a spool file (not synced) and put it in place, unless a
/// copy received later is there (None).
fn copy_into_spool(spool: &Spool, record: &Record) -> Result<Option<InstanceRecord>, SpoolError> {
    let meta = &record.meta;
    let mut incoming = spool.begin_raw(&meta.sop_instance_uid)?;
    incoming
        .copy_from(&mut record.window())
        .map_err(|source| SpoolError::Io {
            path: PathBuf::from(incoming.path()),
            source,
        })?;
    let at = Placement {
        study_uid: &meta.study_uid,
        series_uid: &meta.series_uid,
        sop_instance_uid: &meta.sop_instance_uid,
    };
    let Some(spooled) = spool.place_received(incoming.close()?, &at, meta.received_at_ms)? else {
        return Ok(None);
    };
    let row = InstanceRecord {
        sop_instance_uid: meta.sop_instance_uid.clone(),
        sop_class_uid: meta.sop_class_uid.clone(),
        study_uid: meta.study_uid.clone(),
        series_uid: meta.series_uid.clone(),
        modality: meta.modality.clone(),
        transfer_syntax: meta.transfer_syntax.clone(),
        path: spooled.path,
        size: spooled.size,
        calling_ae: meta.calling_ae.clone(),
        received_at_ms: spooled.received_at_ms,
    };
    Ok(Some(row))
}

/// At start-up, before the listener opens: move again the records a stop (or a crash)
/// left in the journal, skipping those already in place: the spool file holds exactly
/// their bytes, or the database holds a copy received later (the instance was re-sent
/// since). Returns (moved, skipped); records not
/// moved are kept for the next start.
pub fn replay(
    records: Vec<Record>,
    spool: &Spool,
    store: &Store,
    writer: &InstanceWriter,
) -> (usize, usize) {
    let mut todo = Vec::new();
    // In place is not yet durable: a crash may have left the spool file in the page cache
    // only. These are let go with the moved ones, after the sync below.
    let mut moved = Vec::new();
    for record in records {
        if is_in_place(&record, spool, store) {
            moved.push(record);
        } else {
            todo.push(record);
        }
    }
    let skipped = moved.len();
    let mut kept = Vec::new();
    let to = Filing {
        spool,
        store,
        writer,
    };
    while !todo.is_empty() {
        let rest = todo.split_off(todo.len().min(MAX_BATCH));
        let (done, failed) = move_batch(&to, std::mem::replace(&mut todo, rest));
        moved.extend(done);
        kept.extend(failed);
    }
    let count = moved.len() - skipped;
    match crate::fsutil::sync_filesystem(spool.root()) {
        Ok(()) => drop(moved),
        Err(e) => {
            tracing::error!(error = %e, "cannot sync the spool after the journal replay");
            kept.extend(moved);
        }
    }
    std::mem::forget(kept);
    (count, skipped)
}

/// The database holds a copy of the record's instance received after it (re-sent since).
fn received_later(store: &Store, record: &Record) -> bool {
    store
        .instance_received_at(&record.meta.sop_instance_uid)
        .ok()
        .flatten()
        .is_some_and(|at| at > record.meta.received_at_ms)
}

fn is_in_place(record: &Record, spool: &Spool, store: &Store) -> bool {
    let meta = &record.meta;
    if received_later(store, record) {
        return true;
    }
    let path = spool.path_of(&Placement {
        study_uid: &meta.study_uid,
        series_uid: &meta.series_uid,
        sop_instance_uid: &meta.sop_instance_uid,
    });
    let Ok(file) = std::fs::File::open(&path) else {
        return false;
    };
    let same_size = file.metadata().is_ok_and(|m| m.len() == record.len);
    same_size && super::journal::crc_of(&file, 0, record.len) == Some(record.crc)
}
