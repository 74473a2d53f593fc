//! Folder delivery: each object copied into `<path>/<StudyInstanceUID>/<file name>`,
//! written to a temporary name, fsynced and renamed, so a reader never sees half a file
//! and a re-delivery replaces the same file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::dicom::uid::is_safe_uid;
use crate::fsutil::sync_dir;

/// Copy `object` into `root/<study_uid>/`; returns the path written.
pub fn deliver(root: &Path, study_uid: &str, object: &Path) -> io::Result<PathBuf> {
    if !is_safe_uid(study_uid) {
        return Err(io::Error::other(format!(
            "study UID {study_uid:?} cannot name a folder"
        )));
    }
    let name = object
        .file_name()
        .ok_or_else(|| io::Error::other("object path has no file name"))?;
    let dir = root.join(study_uid);
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::copy(object, &tmp)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    sync_dir(&dir)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_into_a_study_folder_and_refuses_unsafe_uids() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("sr-1.2.3.dcm");
        std::fs::write(&object, b"DICM").unwrap();
        let out = dir.path().join("out");
        let written = deliver(&out, "1.2.840.1", &object).unwrap();
        assert_eq!(written, out.join("1.2.840.1").join("sr-1.2.3.dcm"));
        assert_eq!(std::fs::read(&written).unwrap(), b"DICM");
        // Again: replaced, no temporary left behind.
        deliver(&out, "1.2.840.1", &object).unwrap();
        let names: Vec<_> = std::fs::read_dir(out.join("1.2.840.1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(deliver(&out, "../etc", &object).is_err());
    }
}
