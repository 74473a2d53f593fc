//! Spare temp files: a background thread keeps a few empty files created in `spool/.tmp`,
//! so that an arriving instance does not wait for the filesystem to allocate an inode.
//! Creating a file is the most expensive step of spooling a small instance (ext4 scans its
//! inode bitmap, and without a journal checks each candidate inode's deletion time on
//! disk: about 1 ms per CT slice on the dev machine), and it does not depend on the data, so
//! it can happen before the C-STORE arrives. A spare file holds nothing: a crash leaves it
//! empty in `.tmp`, where the next start removes it with the partial files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Empty files kept ready: enough for a burst of parallel associations.
const SPARES: usize = 16;

/// An empty file in `.tmp`, not yet used.
pub struct Spare {
    pub file: File,
    pub path: PathBuf,
}

/// The receiving end of the spare-file thread. The thread ends when this is dropped (its
/// next hand-over fails) and removes the file it was holding.
pub struct SpareFiles {
    ready: Mutex<Receiver<Spare>>,
}

impl SpareFiles {
    /// Start the thread; files are named `spare.<pid>.<n>.part` in `tmp`.
    pub fn start(tmp: &Path) -> std::io::Result<SpareFiles> {
        let (tx, rx) = sync_channel(SPARES);
        let tmp = tmp.to_path_buf();
        std::thread::Builder::new()
            .name("spool-spares".into())
            .spawn(move || fill(&tmp, &tx))?;
        Ok(SpareFiles {
            ready: Mutex::new(rx),
        })
    }

    /// A ready file, or `None` when the thread has fallen behind (or failed): the caller
    /// then creates its own.
    pub fn take(&self) -> Option<Spare> {
        self.ready.lock().ok()?.try_recv().ok()
    }
}

/// Create files until the receiver is gone. A creation failure (disk full, permissions)
/// ends the thread quietly: callers fall back to creating their own file, and report the
/// error themselves.
fn fill(tmp: &Path, tx: &SyncSender<Spare>) {
    let pid = std::process::id();
    for n in 0u64.. {
        let path = tmp.join(format!("spare.{pid}.{n}.part"));
        let Ok(file) = File::create(&path) else {
            return;
        };
        // Blocks while the queue is full; fails once the receiver is gone.
        if let Err(unsent) = tx.send(Spare { file, path }) {
            let _ = std::fs::remove_file(&unsent.0.path);
            return;
        }
    }
}

impl Drop for SpareFiles {
    /// The queued files go too (the thread removes the one it holds).
    fn drop(&mut self) {
        if let Ok(rx) = self.ready.lock() {
            while let Ok(spare) = rx.try_recv() {
                let _ = std::fs::remove_file(&spare.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_empty_files_in_tmp_and_go_with_the_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let spares = SpareFiles::start(dir.path()).unwrap();
        let start = std::time::Instant::now();
        let spare = loop {
            if let Some(s) = spares.take() {
                break s;
            }
            assert!(start.elapsed().as_secs() < 10, "no spare file came");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(spare.path.starts_with(dir.path()));
        assert_eq!(spare.file.metadata().unwrap().len(), 0);
        drop(spares);
        // What was queued is removed at once; the file the thread held when its hand-over
        // failed, by the thread.
        let others = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path() != spare.path)
                .count()
        };
        let start = std::time::Instant::now();
        while others() > 0 {
            assert!(start.elapsed().as_secs() < 10, "spare files left behind");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(spare.path.exists(), "a file taken is the taker's");
    }
}
