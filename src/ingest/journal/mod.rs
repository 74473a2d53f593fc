//! The ingest journal: what makes a C-STORE acknowledgement cheap and still durable.
//! Each association appends its instances, as the Part 10 bytes of their future spool
//! file, to a segment file of its own under `spool/.journal`: a file written full of
//! zeros and fsynced before it is handed out, so that overwriting it changes no metadata
//! and its `fdatasync` is a flush of the new data alone (no inode to create, no
//! directory to fsync, no database commit before the answer). A record is a 512-byte
//! header (what the instance is, its length, CRCs) and the bytes; the header is written
//! last, after the data set passed its checks, and the fdatasync that follows is the
//! acknowledgement's durability. `mover` then puts each record into the spool tree and
//! the database, off the acknowledgement's path. A segment whose records are all moved
//! (and durable there) is invalidated and used again; at start-up, the records of
//! segments not yet invalidated are moved again (see `mover::replay`).
//!
//! Records of one segment form a chain from offset 0, each at the next 4 KiB boundary
//! after the previous one, all carrying the segment's generation (new each time it is
//! handed out): a torn or stale record ends the chain.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::fsutil::sync_dir;

mod record;
pub use record::{crc_of, RecordMeta, Window};
use record::{encode, read_chain};

/// Bytes of a record's header; its data set follows.
pub const HEADER: u64 = 512;
/// Records start on page boundaries, so a header write never shares a page with data.
const ALIGN: u64 = 4096;
pub(crate) const MAGIC: [u8; 8] = *b"OSJRNL01";
/// Segments created beyond the spares kept ready, at most: past this, instances take the
/// per-file path until the mover frees some.
const EXTRA_SEGMENTS: usize = 16;
/// How often the segment thread looks at the free space when nothing else wakes it.
const DISK_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// An acknowledged instance in its segment, waiting for the mover. Holding it keeps the
/// segment from being used again.
pub struct Record {
    pub segment: Arc<Segment>,
    /// Offset of the header; the data set is at `at + HEADER`.
    pub at: u64,
    pub len: u64,
    /// CRC32 of the data set.
    pub crc: u32,
    pub meta: RecordMeta,
}

impl Record {
    /// The record's data set, as a reader.
    pub fn window(&self) -> Window<'_> {
        Window::new(&self.segment.file, self.at + HEADER, self.len)
    }
}

/// A segment file handed out to an association (or found at start-up). When the last
/// holder lets go, it goes back to the pool, which invalidates it before reuse.
pub struct Segment {
    file: File,
    path: PathBuf,
    size: u64,
    generation: u64,
    pool: Arc<Pool>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Ok(file) = self.file.try_clone() {
            self.pool.recycle(SegmentFile {
                file,
                path: std::mem::take(&mut self.path),
                size: self.size,
            });
        }
    }
}

/// A segment file at rest in the pool.
struct SegmentFile {
    file: File,
    path: PathBuf,
    size: u64,
}

/// Segments ready to use, segments to invalidate, and the thread that prepares both.
struct Pool {
    state: Mutex<PoolState>,
    changed: Condvar,
}

struct PoolState {
    spares: Vec<SegmentFile>,
    used: Vec<SegmentFile>,
    /// Segment files that exist (spare, in use, or waiting to be invalidated).
    total: usize,
    next_name: u64,
    stop: bool,
}

impl Pool {
    fn recycle(&self, segment: SegmentFile) {
        if let Ok(mut state) = self.state.lock() {
            state.used.push(segment);
            self.changed.notify_all();
        }
    }
}

/// The journal: its pool of segments and the counters records are stamped with.
pub struct Journal {
    pool: Arc<Pool>,
    seq: AtomicU64,
    generation: AtomicU64,
    preparer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Open `dir` (created if needed): every segment found there is returned with the
    /// records its chain holds, in acknowledgement order, for the caller to move again;
    /// the segments return to the pool once those records are dropped. A thread keeps
    /// `spares` zero-filled segments of `segment_size` bytes ready.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        spares: usize,
    ) -> std::io::Result<(Journal, Vec<Record>)> {
        Journal::open_with_floor(dir, segment_size, spares, 0)
    }

    /// `open`, creating segments only while the filesystem keeps `min_free` bytes free
    /// after the new one (the `[dicom] min_free_disk_mb` watermark): below it, instances
    /// take the per-file path, which refuses them as the watermark says.
    pub fn open_with_floor(
        dir: &Path,
        segment_size: u64,
        spares: usize,
        min_free: u64,
    ) -> std::io::Result<(Journal, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let pool = Arc::new(Pool {
            state: Mutex::new(PoolState {
                spares: Vec::new(),
                used: Vec::new(),
                total: 0,
                next_name: 0,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let mut found = Vec::new();
        let mut max_seq = 0;
        let mut next_name = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(number) = name.strip_prefix("seg-") else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                // A segment whose creation a crash cut short ("seg-N.tmp").
                let _ = std::fs::remove_file(&path);
                continue;
            };
            next_name = next_name.max(number + 1);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let size = file.metadata()?.len();
            let (generation, records) = read_chain(&file, size);
            pool.state.lock().expect("fresh lock").total += 1;
            let segment = Arc::new(Segment {
                file,
                path,
                size,
                generation,
                pool: pool.clone(),
            });
            for (at, len, crc, meta) in records {
                max_seq = max_seq.max(meta.seq);
                found.push(Record {
                    segment: segment.clone(),
                    at,
                    len,
                    crc,
                    meta,
                });
            }
        }
        found.sort_by_key(|r| r.meta.seq);
        pool.state.lock().expect("fresh lock").next_name = next_name;
        let preparer = {
            let (pool, dir) = (pool.clone(), dir.to_path_buf());
            std::thread::Builder::new()
                .name("journal-segments".into())
                .spawn(move || prepare(&pool, &dir, segment_size, spares, min_free))?
        };
        // Generations only need to differ from any a segment on disk may still carry.
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let journal = Journal {
            pool,
            seq: AtomicU64::new(max_seq + 1),
            generation: AtomicU64::new(now_ns),
            preparer: Some(preparer),
        };
        Ok((journal, found))
    }

    /// A ready segment, or `None` when none is (the caller uses the per-file path).
    fn take(&self) -> Option<Arc<Segment>> {
        let mut state = self.pool.state.lock().ok()?;
        let SegmentFile { file, path, size } = state.spares.pop()?;
        self.pool.changed.notify_all();
        Some(Arc::new(Segment {
            file,
            path,
            size,
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
            pool: self.pool.clone(),
        }))
    }

    /// Segments ready now (for the benchmark and tests to wait on).
    pub fn ready(&self) -> usize {
        self.pool.state.lock().map(|s| s.spares.len()).unwrap_or(0)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pool.state.lock() {
            state.stop = true;
            self.pool.changed.notify_all();
        }
        if let Some(thread) = self.preparer.take() {
            let _ = thread.join();
        }
    }
}

/// The preparing thread: invalidate used segments, create new ones while fewer than
/// `spares` are ready. A creation failure (disk full) stops creating; instances then take
/// the per-file path, which reports the error itself.
fn prepare(pool: &Pool, dir: &Path, size: u64, spares: usize, min_free: u64) {
    let mut can_create = true;
    let Ok(mut state) = pool.state.lock() else {
        return;
    };
    loop {
        // Used segments first, even when stopping: their records are all moved.
        if let Some(used) = state.used.pop() {
            drop(state);
            let ok = invalidate(&used.file);
            state = match pool.state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            if ok {
                state.spares.push(used);
            } else {
                // Left on disk: its records are moved again at the next start.
                state.total -= 1;
            }
            continue;
        }
        if state.stop {
            return;
        }
        let room = || {
            crate::fsutil::free_bytes(dir)
                .is_ok_and(|free| free >= min_free.saturating_add(size).saturating_add(size / 4))
        };
        // Segments beyond the spares wanted stay ready for the next burst while the disk
        // could make them again; once it nears the watermark, their space is given back.
        if state.spares.len() > spares && !room() {
            if let Some(extra) = state.spares.pop() {
                state.total -= 1;
                drop(state);
                drop(extra.file);
                if let Err(e) = std::fs::remove_file(&extra.path) {
                    tracing::warn!(error = %e, "cannot remove a spare journal segment");
                }
                state = match pool.state.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                continue;
            }
        }
        if can_create
            && state.spares.len() < spares
            && state.total < spares + EXTRA_SEGMENTS
            && room()
        {
            let name = state.next_name;
            state.next_name += 1;
            state.total += 1;
            drop(state);
            let created = create_segment(dir, name, size);
            state = match pool.state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            match created {
                Ok(segment) => state.spares.push(segment),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a journal segment; instances are fsynced one file each");
                    state.total -= 1;
                    can_create = false;
                }
            }
            continue;
        }
        // Woken by a change, or now and then to look at the disk again.
        state = match pool.changed.wait_timeout(state, DISK_CHECK) {
            Ok((s, _)) => s,
            Err(_) => return,
        };
    }
}

/// A zero-filled, fsynced segment, named `seg-<name>` once complete.
fn create_segment(dir: &Path, name: u64, size: u64) -> std::io::Result<SegmentFile> {
    let tmp = dir.join(format!("seg-{name}.tmp"));
    let path = dir.join(format!("seg-{name}"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        written += n as u64;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(SegmentFile { file, path, size })
}

/// Make a segment's chain empty: zero its first header, durably.
fn invalidate(file: &File) -> bool {
    file.write_all_at(&[0u8; HEADER as usize], 0).is_ok() && file.sync_data().is_ok()
}

pub(crate) fn align(offset: u64) -> u64 {
    offset.div_ceil(ALIGN) * ALIGN
}

/// An association's place in the journal: its current segment and where its next
/// record goes. Dropped with the association, which lets the segment go.
#[derive(Default)]
pub struct Lane {
    segment: Option<Arc<Segment>>,
    next: u64,
}

impl Lane {
    /// Start a record for the next instance: in this lane's segment while it has room for
    /// more than a header, else in a fresh one; `None` when the pool has none ready.
    pub fn begin(&mut self, journal: &Journal) -> Option<Entry> {
        let full = |lane: &Lane, s: &Segment| lane.next + HEADER + ALIGN > s.size;
        if self.segment.as_ref().is_none_or(|s| full(self, s)) {
            self.segment = journal.take();
            self.next = 0;
        }
        let segment = self.segment.clone()?;
        Some(Entry {
            segment,
            at: self.next,
            len: 0,
            crc: crc32fast::Hasher::new(),
            writeback_from: 0,
            error: None,
        })
    }

    /// The record was acknowledged: the next one goes after it.
    pub fn advance(&mut self, record: &Record) {
        self.next = align(record.at + HEADER + record.len);
    }

    /// Stop using the current segment (an instance did not fit in what was left).
    pub fn retire(&mut self) {
        self.segment = None;
    }
}

/// Start kernel writeback every this many bytes, so the final flush has little left.
const WRITEBACK_CHUNK: u64 = 128 << 10;

/// An instance being written into a segment.
pub struct Entry {
    segment: Arc<Segment>,
    at: u64,
    len: u64,
    crc: crc32fast::Hasher,
    writeback_from: u64,
    error: Option<std::io::Error>,
}

/// The instance does not fit in what is left of the segment.
#[derive(Debug)]
pub struct Full;

impl Entry {
    /// Append data-set bytes. A write failure is remembered and reported by `commit`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let start = self.at + HEADER + self.len;
        if start + bytes.len() as u64 > self.segment.size {
            return Err(Full);
        }
        if self.error.is_some() {
            return Ok(());
        }
        if let Err(e) = self.segment.file.write_all_at(bytes, start) {
            self.error = Some(e);
            return Ok(());
        }
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        if self.len - self.writeback_from >= WRITEBACK_CHUNK {
            let from = self.at + HEADER + self.writeback_from;
            crate::fsutil::start_writeback(
                &self.segment.file,
                from,
                self.len - self.writeback_from,
            );
            self.writeback_from = self.len;
        }
        Ok(())
    }

    /// The write error that stopped this entry, if any: its bytes after that were lost.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    /// The bytes so far, as a reader (for the checks, and to move them elsewhere).
    pub fn window(&self) -> Window<'_> {
        Window::new(&self.segment.file, self.at + HEADER, self.len)
    }

    /// Start writing what is left to disk while the caller checks the data set.
    pub fn start_writeback(&mut self) {
        let from = self.at + HEADER + self.writeback_from;
        crate::fsutil::start_writeback(&self.segment.file, from, self.len - self.writeback_from);
        self.writeback_from = self.len;
    }

    /// Write the header and make the record durable: the instance is acknowledged-safe.
    /// On failure the lane should `retire` its segment.
    pub fn commit(self, journal: &Journal, meta: RecordMeta) -> std::io::Result<Record> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let meta = RecordMeta {
            seq: journal.seq.fetch_add(1, Ordering::Relaxed),
            ..meta
        };
        let crc = self.crc.clone().finalize();
        let header = encode(self.segment.generation, self.len, crc, &meta)
            .ok_or_else(|| std::io::Error::other("record header too long"))?;
        let written = self
            .segment
            .file
            .write_all_at(&header, self.at)
            .and_then(|()| self.segment.file.sync_data());
        if let Err(e) = written {
            // Refused, so it must not be replayed: end the chain before it (best effort;
            // should that fail too, a replay records an instance its sender re-sends).
            let _ = self
                .segment
                .file
                .write_all_at(&[0u8; HEADER as usize], self.at);
            let _ = self.segment.file.sync_data();
            return Err(e);
        }
        Ok(Record {
            segment: self.segment,
            at: self.at,
            len: self.len,
            crc,
            meta,
        })
    }
}
