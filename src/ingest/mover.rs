//! The journal's mover: acknowledged records go from their segment into the spool tree
//! (`<study>/<series>/<sop>.dcm`) and the database, on a thread of their own, in batches:
//! each record is copied into a spool file and renamed into place, then one filesystem
//! sync makes the whole batch durable, then its rows are committed (the group-commit
//! writer fsyncs the directories, already clean). Only then are the records let go, and
//! a segment with none left is invalidated and reused. A record that cannot be moved
//! (disk full, database gone) is kept, with its segment, and tried again every few
//! seconds; at a stop, the next start replays it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::journal::Record;
use super::spool::{Placement, Spool, SpoolError};
use crate::store::{InstanceRecord, InstanceWriter, Store};

/// Records moved per filesystem sync, at most.
const MAX_BATCH: usize = 64;
/// How often records that could not be moved (a full disk, a blocked directory) are
/// tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Handle to the mover thread; dropping it moves what is queued, then stops the thread.
pub struct Mover {
    tx: Mutex<Option<Sender<Record>>>,
    thread: Option<JoinHandle<()>>,
    /// Records queued and not yet moved (the metrics' backlog, and for tests to wait on).
    backlog: Arc<AtomicUsize>,
    /// Records that could not be handed to the thread: kept for the next start.
    stranded: Mutex<Vec<Record>>,
}

impl Mover {
    pub fn start(spool: Arc<Spool>, writer: InstanceWriter) -> std::io::Result<Mover> {
        let (tx, rx) = channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let left = backlog.clone();
        let thread = std::thread::Builder::new()
            .name("journal-mover".into())
            .spawn(move || run(&rx, &spool, &writer, &left))?;
        Ok(Mover {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
            backlog,
            stranded: Mutex::new(Vec::new()),
        })
    }

    /// Queue an acknowledged record.
    pub fn send(&self, record: Record) {
        let now = self.backlog.fetch_add(1, Ordering::SeqCst) + 1;
        crate::ops::metrics::metrics()
            .journal_backlog
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        let unsent = match self.tx.lock().ok().as_ref().and_then(|tx| tx.as_ref()) {
            Some(tx) => tx.send(record).err().map(|e| e.0),
            None => Some(record),
        };
        if let Some(record) = unsent {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(
                "journal mover has stopped; the instance stays in the journal until the next start"
            );
            if let Ok(mut kept) = self.stranded.lock() {
                kept.push(record);
            }
        }
    }

    /// Records acknowledged and not yet in the spool tree and the database.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
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

fn run(rx: &Receiver<Record>, spool: &Spool, writer: &InstanceWriter, backlog: &AtomicUsize) {
    // Records that failed to move: tried again every RETRY while the daemon runs.
    let mut kept: Vec<Record> = Vec::new();
    loop {
        let first = if kept.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RETRY)
        };
        let mut batch = match first {
            Ok(r) => vec![r],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let fresh = batch.len();
        if batch.is_empty() || fresh < MAX_BATCH {
            batch.append(&mut kept);
        }
        let failed = move_batch(spool, writer, batch);
        let now = backlog.fetch_sub(fresh, Ordering::SeqCst) - fresh;
        kept.extend(failed);
        crate::ops::metrics::metrics()
            .journal_backlog
            .set(i64::try_from(now + kept.len()).unwrap_or(i64::MAX));
    }
    if !kept.is_empty() {
        tracing::error!(
            records = kept.len(),
            "journal records still not moved at shutdown; the next start moves them"
        );
    }
    // Their segments must not be reused: the next start moves them again.
    std::mem::forget(kept);
}

/// Move `batch`; returns the records that could not be moved (logged).
fn move_batch(spool: &Spool, writer: &InstanceWriter, batch: Vec<Record>) -> Vec<Record> {
    let mut copied = Vec::with_capacity(batch.len());
    let mut failed = Vec::new();
    for record in batch {
        match copy_into_spool(spool, &record) {
            Ok(row) => copied.push((record, row)),
            Err(e) => {
                tracing::error!(error = %e, "cannot move a journal record into the spool; kept for the next start");
                failed.push(record);
            }
        }
    }
    if copied.is_empty() {
        return failed;
    }
    if let Err(e) = crate::fsutil::sync_filesystem(spool.root()) {
        tracing::error!(error = %e, "cannot sync the spool; journal records kept for the next start");
        failed.extend(copied.into_iter().map(|(r, _)| r));
        return failed;
    }
    let rows = copied.iter().map(|(_, row)| row.clone()).collect();
    for ((record, _), result) in copied.into_iter().zip(writer.record_all_blocking(rows)) {
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record a journal instance; kept for the next start");
            failed.push(record);
        }
    }
    failed
}

/// Copy a record's data set into a spool file (not synced) and put it in place.
fn copy_into_spool(
    spool: &Spool,
    record: &Record,
) -> Result<(InstanceRecord, PathBuf), SpoolError> {
    let meta = &record.meta;
    let mut incoming = spool.begin_raw(&meta.sop_instance_uid)?;
    let mut window = record.window();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        let n = window.read(&mut buf).map_err(|source| SpoolError::Io {
            path: PathBuf::from(incoming.path()),
            source,
        })?;
        if n == 0 {
            break;
        }
        incoming.append(&buf[..n]);
    }
    let at = Placement {
        study_uid: &meta.study_uid,
        series_uid: &meta.series_uid,
        sop_instance_uid: &meta.sop_instance_uid,
    };
    let spooled = spool.place(incoming.close()?, &at)?;
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
        received_at_ms: meta.received_at_ms,
    };
    Ok((row, spooled.dir))
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
    let mut skipped = 0;
    for record in records {
        if is_in_place(&record, spool, store) {
            skipped += 1;
        } else {
            todo.push(record);
        }
    }
    let mut moved = 0;
    let mut kept = Vec::new();
    while !todo.is_empty() {
        let rest = todo.split_off(todo.len().min(MAX_BATCH));
        let n = todo.len();
        let failed = move_batch(spool, writer, std::mem::replace(&mut todo, rest));
        moved += n - failed.len();
        kept.extend(failed);
    }
    std::mem::forget(kept);
    (moved, skipped)
}

fn is_in_place(record: &Record, spool: &Spool, store: &Store) -> bool {
    let meta = &record.meta;
    if store
        .instance_received_at(&meta.sop_instance_uid)
        .ok()
        .flatten()
        .is_some_and(|at| at > meta.received_at_ms)
    {
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
