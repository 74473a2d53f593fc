//! The spool: received instances as DICOM Part 10 files under
//! `<storage dir>/spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`.
//! A file is written under `spool/.tmp` (one of the spare files created ahead, see
//! `spare`) while it arrives, fsynced, then renamed into place
//! once its data set has been checked, so a reader (or a crash) only ever sees complete
//! files. The rename's directory fsync is left to the group-commit writer, which does it
//! once per batch.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_object::FileMetaTableBuilder;

use super::newest::Newest;
use super::spare::SpareFiles;
use crate::dicom::uid::{is_safe_uid, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
use crate::fsutil::sync_dir;

/// Why an instance could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("UID {0:?} is not a valid UID (digits and dots, at most 64 characters)")]
    UnsafeUid(String),
    #[error("cannot build file meta information: {0}")]
    Meta(String),
    #[error("writing {path} failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the meta group of a spooled file says: known from the C-STORE request and the
/// presentation context before the first data byte arrives.
pub struct FileHeader<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax: &'a str,
    pub calling_ae: &'a str,
}

/// Where an instance belongs in the tree, known once its data set has been parsed.
pub struct Placement<'a> {
    pub study_uid: &'a str,
    pub series_uid: &'a str,
    pub sop_instance_uid: &'a str,
}

/// Where a spooled file ended up.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    /// The directory the rename happened in; must be fsynced before acknowledging.
    pub dir: PathBuf,
    pub size: u64,
    /// When this copy counts as received (ms since the epoch): copies of one instance put
    /// in place later are newer.
    pub received_at_ms: i64,
}

/// The spool directory tree.
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
    spares: SpareFiles,
    newest: Newest,
}

/// Start kernel writeback every this many bytes, so the final fsync has little left to do.
const WRITEBACK_CHUNK: u64 = 128 << 10;

/// An instance being received: data-set bytes go to a temp file as the P-DATA fragments
/// arrive, with writeback started early, so the data is mostly on disk by the time the
/// last fragment lands. Dropped without `finish`, the temp file is removed.
pub struct Incoming {
    file: Option<File>,
    tmp_path: PathBuf,
    size: u64,
    writeback_from: u64,
    error: Option<std::io::Error>,
}

/// A complete, fsynced temp file waiting to be placed.
pub struct Written {
    tmp_path: PathBuf,
    size: u64,
}

impl Spool {
    /// Create `<storage_dir>/spool` if needed and remove partial files a crash left behind.
    pub fn open(storage_dir: &Path) -> std::io::Result<Spool> {
        let root = storage_dir.join("spool");
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            // Nothing in .tmp was ever acknowledged.
            let _ = std::fs::remove_file(entry?.path());
        }
        let spares = SpareFiles::start(&tmp)?;
        Ok(Spool {
            root,
            tmp,
            counter: AtomicU64::new(0),
            spares,
            newest: Newest::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Open a temp file and write preamble and meta group.
    pub fn begin(&self, header: &FileHeader) -> Result<Incoming, SpoolError> {
        let head = part10_head(header)?;
        let mut incoming = self.begin_raw(header.sop_instance_uid)?;
        incoming.append(&head);
        Ok(incoming)
    }

    /// Open an empty temp file for a whole Part 10 stream (preamble and meta included).
    pub fn begin_raw(&self, sop_instance_uid: &str) -> Result<Incoming, SpoolError> {
        if !is_safe_uid(sop_instance_uid) {
            return Err(SpoolError::UnsafeUid(sop_instance_uid.to_string()));
        }
        let (file, tmp_path) = match self.spares.take() {
            Some(spare) => (spare.file, spare.path),
            None => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let tmp_path = self.tmp.join(format!(
                    "{}.{}.{n}.part",
                    sop_instance_uid,
                    std::process::id()
                ));
                let file = File::create(&tmp_path).map_err(|source| SpoolError::Io {
                    path: tmp_path.clone(),
                    source,
                })?;
                (file, tmp_path)
            }
        };
        Ok(Incoming {
            file: Some(file),
            tmp_path,
            size: 0,
            writeback_from: 0,
            error: None,
        })
    }

    /// Move a finished file to `<study>/<series>/<sop>.dcm`, received now; the caller
    /// fsyncs `dir`.
    pub fn place(&self, written: Written, at: &Placement) -> Result<Spooled, SpoolError> {
        self.put(written, at, None)
            .map(|spooled| spooled.expect("a copy received now is the newest"))
    }

    /// Move a copy received at `received_at_ms` into place, unless a copy of the instance
    /// received later is there already (None: the file is removed).
    pub fn place_received(
        &self,
        written: Written,
        at: &Placement,
        received_at_ms: i64,
    ) -> Result<Option<Spooled>, SpoolError> {
        self.put(written, at, Some(received_at_ms))
    }

    fn put(
        &self,
        written: Written,
        at: &Placement,
        received_at_ms: Option<i64>,
    ) -> Result<Option<Spooled>, SpoolError> {
        let Written { tmp_path, size } = written;
        let result = (|| {
            for uid in [at.study_uid, at.series_uid, at.sop_instance_uid] {
                if !is_safe_uid(uid) {
                    return Err(SpoolError::UnsafeUid(uid.to_string()));
                }
            }
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| SpoolError::Io { path, source }
            };
            let study_dir = self.root.join(at.study_uid);
            let series_dir = study_dir.join(at.series_uid);
            create_dir_durably(&study_dir, &self.root).map_err(io(&study_dir))?;
            create_dir_durably(&series_dir, &study_dir).map_err(io(&series_dir))?;
            let path = series_dir.join(format!("{}.dcm", at.sop_instance_uid));
            // The check and the rename are one step: a newer copy cannot slip in between.
            let mut newest = self.newest.lock();
            let now = crate::store::now_ms();
            if let Some(older) = received_at_ms {
                if newest.received(at.sop_instance_uid, now) > Some(older) {
                    return Ok(None);
                }
            }
            // rename(2) replaces a duplicate atomically: the old copy stays until the new
            // one is complete, so a duplicate never leaves the instance missing.
            std::fs::rename(&tmp_path, &path).map_err(io(&path))?;
            let received_at_ms =
                newest.placed(at.sop_instance_uid, received_at_ms.unwrap_or(now), now);
            Ok(Some(Spooled {
                path,
                dir: series_dir,
                size,
                received_at_ms,
            }))
        })();
        if !matches!(result, Ok(Some(_))) {
            let _ = std::fs::remove_file(&tmp_path);
        }
        result
    }

    /// The copy of `sop_instance_uid` placed as received at `at` was not recorded (its
    /// commit failed): an older copy may take its place again.
    pub fn forget(&self, sop_instance_uid: &str, at: i64) {
        self.newest.lock().forget(sop_instance_uid, at);
    }

    /// Where `place` puts an instance (the UIDs are not checked here).
    pub fn path_of(&self, at: &Placement) -> PathBuf {
        self.root
            .join(at.study_uid)
            .join(at.series_uid)
            .join(format!("{}.dcm", at.sop_instance_uid))
    }

    /// Write a whole instance at once (begin, append, finish, place).
    pub fn write(
        &self,
        header: &FileHeader,
        at: &Placement,
        data_set: &[u8],
    ) -> Result<Spooled, SpoolError> {
        let mut incoming = self.begin(header)?;
        incoming.append(data_set);
        self.place(incoming.finish()?, at)
    }
}

impl Incoming {
    /// The temp file. Written bytes are in the page cache at once, so a checker can parse
    /// the file while `finish` fsyncs it.
    pub fn path(&self) -> &Path {
        &self.tmp_path
    }

    /// Append bytes. A failure is remembered and reported by `finish`, so the caller can
    /// keep reading the peer's fragments and answer with a status afterwards.
    pub fn append(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(bytes) {
            self.error = Some(e);
            return;
        }
        self.size += bytes.len() as u64;
        if self.size - self.writeback_from >= WRITEBACK_CHUNK {
            crate::fsutil::start_writeback(
                file,
                self.writeback_from,
                self.size - self.writeback_from,
            );
            self.writeback_from = self.size;
        }
    }

    /// Append everything `reader` yields (a journal record's bytes).
    pub fn copy_from(&mut self, reader: &mut impl std::io::Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(()),
                n => self.append(&buf[..n]),
            }
        }
    }

    /// Close the file without fsync: for a copy whose durability the caller provides
    /// otherwise (the journal mover syncs the filesystem once per batch).
    pub fn close(mut self) -> Result<Written, SpoolError> {
        self.file.take();
        match self.error.take() {
            Some(source) => Err(SpoolError::Io {
                path: self.tmp_path.clone(),
                source,
            }),
            None => Ok(Written {
                tmp_path: std::mem::take(&mut self.tmp_path),
                size: self.size,
            }),
        }
    }

    /// fsync (data) the file; it is complete and durable, not yet in place.
    pub fn finish(mut self) -> Result<Written, SpoolError> {
        let file = self.file.take().expect("finish is called once");
        let result = match self.error.take() {
            Some(e) => Err(e),
            None => file.sync_data(),
        };
        match result {
            Ok(()) => Ok(Written {
                tmp_path: std::mem::take(&mut self.tmp_path),
                size: self.size,
            }),
            Err(source) => Err(SpoolError::Io {
                path: self.tmp_path.clone(),
                source,
            }),
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

impl Written {
    /// Remove the temp file of an instance that was refused after all.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp_path);
    }
}

/// The preamble and meta group our spooled files start with.
pub fn part10_head(header: &FileHeader) -> Result<Vec<u8>, SpoolError> {
    if !is_safe_uid(header.sop_instance_uid) {
        return Err(SpoolError::UnsafeUid(header.sop_instance_uid.to_string()));
    }
    let mut meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(header.sop_class_uid)
        .media_storage_sop_instance_uid(header.sop_instance_uid)
        .transfer_syntax(header.transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    if !header.calling_ae.is_empty() {
        meta = meta.source_application_entity_title(header.calling_ae);
    }
    let meta = meta.build().map_err(|e| SpoolError::Meta(e.to_string()))?;
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(&[0u8; 128]);
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes)
        .map_err(|e| SpoolError::Meta(e.to_string()))?;
    Ok(bytes)
}

/// Create `dir` if missing; a new directory's entry in `parent` is fsynced at once.
fn create_dir_durably(dir: &Path, parent: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_part10_and_refuses_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let header = FileHeader {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7",
            sop_instance_uid: "1.2.3.4",
            transfer_syntax: "1.2.840.10008.1.2.1",
            calling_ae: "SCU",
        };
        let mut at = Placement {
            study_uid: "1.2",
            series_uid: "1.2.3",
            sop_instance_uid: "1.2.3.4",
        };
        let out = spool
            .write(&header, &at, b"\x08\x00\x16\x00UI\x02\x001\0")
            .unwrap();
        assert!(out.path.ends_with("spool/1.2/1.2.3/1.2.3.4.dcm"));
        let bytes = std::fs::read(&out.path).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        assert_eq!(bytes.len() as u64, out.size);
        let tmp = dir.path().join("spool/.tmp");
        // What `.tmp` holds besides empty spare files: nothing, once an instance is placed.
        let partial = || {
            std::fs::read_dir(&tmp)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() > 0)
                .count()
        };
        assert_eq!(partial(), 0);

        at.series_uid = "..";
        assert!(matches!(
            spool.write(&header, &at, b""),
            Err(SpoolError::UnsafeUid(_))
        ));
        assert_eq!(partial(), 0, "refused: removed");
        // Dropping an unfinished instance removes its temp file too.
        let incoming = spool.begin(&header).unwrap();
        assert_eq!(partial(), 1);
        drop(incoming);
        assert_eq!(partial(), 0);
    }
}
