//! Group commit for the ingest hot path. Concurrent associations hand their instance rows
//! (and the spool directories their renames touched) to one thread, which fsyncs each
//! directory once and commits every waiting row in one transaction, instead of one of
//! each per instance. Callers get their answer only after both.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{InstanceRecord, PathBase, StoreError};

/// Rows committed in one transaction at most; bounds the latency of the first waiter.
const MAX_BATCH: usize = 512;

struct Request {
    record: InstanceRecord,
    /// `None`: the caller makes the rename durable itself (the journal mover, which
    /// syncs the filesystem before letting its records go).
    sync_dir: Option<PathBuf>,
    reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// Cloneable handle to the group-commit thread; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct InstanceWriter {
    tx: mpsc::Sender<Request>,
    /// Cleared when the thread ends (every handle gone, or a panic).
    alive: Arc<AtomicBool>,
}

impl InstanceWriter {
    pub(super) fn start(
        mut conn: Connection,
        base: PathBase,
    ) -> Result<InstanceWriter, StoreError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || {
                // Cleared however the thread ends, panics included.
                struct Clear(Arc<AtomicBool>);
                impl Drop for Clear {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
                let _clear = Clear(flag);
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let result = commit(&mut conn, &base, &batch).map_err(Arc::new);
                    for r in batch {
                        let _ = r.reply.send(result.clone());
                    }
                }
            })
            .map_err(StoreError::Spawn)?;
        Ok(InstanceWriter { tx, alive })
    }

    /// Whether the group-commit thread is still running.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Make the rename into `sync_dir` durable and record the instance; returns once both
    /// are on disk.
    pub async fn record(
        &self,
        record: InstanceRecord,
        sync_dir: PathBuf,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                record,
                sync_dir: Some(sync_dir),
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        rx.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Batch)
    }
}

impl InstanceWriter {
    /// `record` for a batch, from a plain thread (not an async task), without the
    /// directory fsyncs (the caller syncs the filesystem itself): every row is handed over
    /// before the first answer is awaited, so they share commits.
    pub fn record_all_blocking(&self, rows: Vec<InstanceRecord>) -> Vec<Result<(), StoreError>> {
        let waiting: Vec<_> = rows
            .into_iter()
            .map(|record| {
                let (reply, rx) = oneshot::channel();
                self.tx
                    .send(Request {
                        record,
                        sync_dir: None,
                        reply,
                    })
                    .map(|()| rx)
                    .map_err(|_| StoreError::WriterGone)
            })
            .collect();
        waiting
            .into_iter()
            .map(|rx| {
                rx?.blocking_recv()
                    .map_err(|_| StoreError::WriterGone)?
                    .map_err(StoreError::Batch)
            })
            .collect()
    }
}

fn commit(conn: &mut Connection, base: &PathBase, batch: &[Request]) -> Result<(), StoreError> {
    let records = || batch.iter().map(|r| &r.record);
    let dirs: BTreeSet<&PathBuf> = batch.iter().filter_map(|r| r.sync_dir.as_ref()).collect();
    for dir in dirs {
        // A rename whose directory entry may not be on disk is not acknowledged: its file
        // goes too, or the next start would record what the peer was told had failed.
        if let Err(source) = crate::fsutil::sync_dir(dir) {
            remove_unrecorded(conn, base, records());
            return Err(StoreError::SyncDir {
                path: dir.clone(),
                source,
            });
        }
    }
    // The journal mover's rows (no directory to sync) yield to newer ones.
    let rows = batch.iter().map(|r| (&r.record, r.sync_dir.is_none()));
    match super::record_rows(conn, base, rows) {
        Ok(replaced) => {
            super::remove_replaced(&replaced);
            Ok(())
        }
        Err(e) => {
            remove_unrecorded(conn, base, records());
            Err(e)
        }
    }
}

/// After a failed commit, the placed files no row points to were never acknowledged:
/// remove them, or the next start would record them. A file an older row points to (the
/// same instance received before) stays. If the database cannot even say, nothing is
/// removed.
fn remove_unrecorded<'a>(
    conn: &Connection,
    base: &PathBase,
    records: impl Iterator<Item = &'a InstanceRecord>,
) {
    let Ok(mut known) = conn.prepare_cached("SELECT 1 FROM instances WHERE path = ?1") else {
        return;
    };
    let orphans: Vec<PathBuf> = records
        .filter(|r| matches!(known.exists([base.stored(&r.path)]), Ok(false)))
        .map(|r| r.path.clone())
        .collect();
    super::remove_replaced(&orphans);
}
