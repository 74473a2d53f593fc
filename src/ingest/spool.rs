//! The spool: received instances as DICOM Part 10 files under
//! `<storage dir>/spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`.
//! A file is written under `spool/.tmp`, fsynced, then renamed into place, so a reader
//! (or a crash) only ever sees complete files. The rename's directory fsync is left to
//! the group-commit writer, which does it once per batch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_object::FileMetaTableBuilder;

use crate::dimse::sop::is_safe_uid;
use crate::fsutil::sync_dir;

/// Implementation Class UID written into the meta group of every file we store or create.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.113485528769194166527137794403905953792";
/// Implementation Version Name (SH, ≤ 16 chars).
pub const IMPLEMENTATION_VERSION_NAME: &str =
    concat!("OSTEOSCREEN_", env!("CARGO_PKG_VERSION_MINOR"));

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

/// Identifies one received instance for the spool.
pub struct SpoolEntry<'a> {
    pub study_uid: &'a str,
    pub series_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub sop_class_uid: &'a str,
    pub transfer_syntax: &'a str,
    pub calling_ae: &'a str,
}

/// Where a spooled file ended up.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    /// The directory the rename happened in; must be fsynced before acknowledging.
    pub dir: PathBuf,
    pub size: u64,
}

/// The spool directory tree.
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
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
        Ok(Spool {
            root,
            tmp,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write meta group + `data_set` (as received, untouched) durably into place.
    /// Blocking: call from a blocking thread.
    pub fn write(&self, entry: &SpoolEntry, data_set: &[u8]) -> Result<Spooled, SpoolError> {
        for uid in [entry.study_uid, entry.series_uid, entry.sop_instance_uid] {
            if !is_safe_uid(uid) {
                return Err(SpoolError::UnsafeUid(uid.to_string()));
            }
        }
        let mut meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(entry.sop_class_uid)
            .media_storage_sop_instance_uid(entry.sop_instance_uid)
            .transfer_syntax(entry.transfer_syntax)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if !entry.calling_ae.is_empty() {
            meta = meta.source_application_entity_title(entry.calling_ae);
        }
        let meta = meta.build().map_err(|e| SpoolError::Meta(e.to_string()))?;

        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp.join(format!(
            "{}.{}.{n}.part",
            entry.sop_instance_uid,
            std::process::id()
        ));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        let result = (|| {
            let mut file = std::fs::File::create(&tmp_path)?;
            let mut header = Vec::with_capacity(512);
            header.extend_from_slice(&[0u8; 128]);
            header.extend_from_slice(b"DICM");
            meta.write(&mut header).map_err(std::io::Error::other)?;
            file.write_all(&header)?;
            file.write_all(data_set)?;
            file.sync_all()?;
            Ok((header.len() + data_set.len()) as u64)
        })();
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(io(&tmp_path)(e));
            }
        };

        let study_dir = self.root.join(entry.study_uid);
        let series_dir = study_dir.join(entry.series_uid);
        create_dir_durably(&study_dir, &self.root).map_err(io(&study_dir))?;
        create_dir_durably(&series_dir, &study_dir).map_err(io(&series_dir))?;
        let path = series_dir.join(format!("{}.dcm", entry.sop_instance_uid));
        // rename(2) replaces a duplicate atomically: the old copy stays until the new one
        // is complete, so a duplicate never leaves the instance missing.
        if let Err(e) = std::fs::rename(&tmp_path, &path) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(io(&path)(e));
        }
        Ok(Spooled {
            path,
            dir: series_dir,
            size,
        })
    }
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
        let mut entry = SpoolEntry {
            study_uid: "1.2",
            series_uid: "1.2.3",
            sop_instance_uid: "1.2.3.4",
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7",
            transfer_syntax: "1.2.840.10008.1.2.1",
            calling_ae: "SCU",
        };
        let out = spool
            .write(&entry, b"\x08\x00\x16\x00UI\x02\x001\0")
            .unwrap();
        assert!(out.path.ends_with("spool/1.2/1.2.3/1.2.3.4.dcm"));
        let bytes = std::fs::read(&out.path).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        assert_eq!(bytes.len() as u64, out.size);
        assert!(std::fs::read_dir(dir.path().join("spool/.tmp"))
            .unwrap()
            .next()
            .is_none());

        entry.series_uid = "..";
        assert!(matches!(
            spool.write(&entry, b""),
            Err(SpoolError::UnsafeUid(_))
        ));
    }
}
