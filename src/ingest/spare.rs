//! Spare temp files: a background thread keeps a few empty files created in `spool/.tmp`,
//! so that an arriving instance does not wait for the filesystem to allocate an inode.
//! Creating a file is the most expensive step of spooling a small instance (ext4 scans its
//! inode bitmap, and without a journal checks each candidate inode's deletion time on
//! disk: about 1 ms per CT slice on the dev machine), and it does not depend on the data, so
//! it can happen before the C-STORE arrives. A spare file holds nothing: a crash leaves it
//! empty in `.tmp`, where the next start removes it with the partial files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Empty files kept ready: enough for a burst of parallel associations.
const SPARES: usize = 16;

/// An empty file in `.tmp`, not yet used.
pub struct Spare {
    pub file: File,
    pub path: PathBuf,
}

/// The receiving end of the spare-file thread. Dropping it stops the thread and removes
/// every spare file not taken.
pub struct SpareFiles {
    ready: Mutex<Receiver<Spare>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SpareFiles {
    /// Start the thread; files are named `spare.<pid>.<n>.part` in `tmp`.
    pub fn start(tmp: &Path) -> std::io::Result<SpareFiles> {
        let (tx, rx) = sync_channel(SPARES);
        let tmp = tmp.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spool-spares".into())
            .spawn(move || fill(&tmp, &tx, &stopped))?;
        Ok(SpareFiles {
            ready: Mutex::new(rx),
            stop,
            thread: Some(thread),
        })
    }

    /// A ready file, or `None` when the thread has fallen behind (or failed): the caller
    /// then creates its own.
    pub fn take(&self) -> Option<Spare> {
        self.ready.lock().ok()?.try_recv().ok()
    }

    /// Remove the queued files.
    fn drain(&self) {
        if let Ok(rx) = self.ready.lock() {
            while let Ok(spare) = rx.try_recv() {
                let _ = std::fs::remove_file(&spare.path);
            }
        }
    }
}

/// Create files until stopped. A creation failure (disk full, permissions) ends the thread
/// quietly: callers fall back to creating their own file, and report the error themselves.
fn fill(tmp: &Path, tx: &SyncSender<Spare>, stop: &AtomicBool) {
    let pid = std::process::id();
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let path = tmp.join(format!("spare.{pid}.{n}.part"));
        let Ok(file) = File::create(&path) else {
            return;
        };
        if stop.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&path);
            return;
        }
        // Blocks while the queue is full.
        if let Err(unsent) = tx.send(Spare { file, path }) {
            let _ = std::fs::remove_file(&unsent.0.path);
            return;
        }
    }
}

impl Drop for SpareFiles {
    /// Stop the thread, then remove what it queued. The first drain frees the queue, so a
    /// thread blocked on a full queue hands over at most one more file and then sees the
    /// flag; the join waits for that, the second drain removes it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.drain();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_empty_files_in_tmp_and_go_with_the_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let spares = SpareFiles::start(dir.path()).unwrap();
        // Waits for the thread's first file.
        let spare = spares.ready.lock().unwrap().recv().unwrap();
        assert!(spare.path.starts_with(dir.path()));
        assert_eq!(spare.file.metadata().unwrap().len(), 0);
        drop(spares);
        // Every file not taken is gone once the drop returns; the taken one is the taker's.
        let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![spare.path]);
    }
}
