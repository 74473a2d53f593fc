//! Start-up reconciliation of the spool with the database. The fsynced spool file is the
//! durable record of an acknowledged instance; the database commit that follows it is not
//! fsynced on its own (see `store`), so after a power loss — or a lost database — every
//! spool file without a row gets one again, and its study is queued as usual.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::dicom::open;

use crate::dicom::text::unpad;
use crate::store::{InstanceRecord, Store, StoreError};

/// What reconciliation found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub recovered: usize,
    /// Files in the spool that are not readable DICOM; left in place and logged.
    pub unreadable: Vec<PathBuf>,
    /// Older copies of instances recorded elsewhere (re-sent under another study or
    /// series, the old copy's removal cut short by a crash): removed.
    pub stale: usize,
}

/// Record every spool file the database does not know.
pub fn reconcile(spool_root: &Path, store: &Store) -> Result<Recovery, StoreError> {
    let known = store.instance_paths()?;
    let mut missing = Vec::new();
    collect_unknown(spool_root, &known, &mut missing);
    let mut recovery = Recovery::default();
    let mut batch = Vec::new();
    for path in missing {
        let Some(record) = read_record(&path) else {
            recovery.unreadable.push(path);
            continue;
        };
        // The same instance recorded at another path: the newer file wins, so that
        // restarts do not move the row back and forth.
        if let Some(known) = store.instance_path(&record.sop_instance_uid)? {
            if known != path && is_newer(&known, &path) {
                crate::store::remove_replaced(std::slice::from_ref(&path));
                recovery.stale += 1;
                continue;
            }
        }
        batch.push(record);
    }
    recovery.recovered = batch.len();
    for chunk in batch.chunks(500) {
        store.record(chunk)?;
    }
    Ok(recovery)
}

/// Whether `a` exists and was written no earlier than `b`.
fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(a), modified(b)) {
        (Some(a), Some(b)) => a >= b,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `<root>/<study>/<series>/<sop>.dcm` files not in `known` (`.tmp` and `.journal` are skipped).
fn collect_unknown(root: &Path, known: &HashSet<PathBuf>, out: &mut Vec<PathBuf>) {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for study in dirs(root) {
        if !study.is_dir()
            || study
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        for series in dirs(&study).into_iter().filter(|p| p.is_dir()) {
            for file in dirs(&series) {
                if file.extension().is_some_and(|e| e == "dcm") && !known.contains(&file) {
                    out.push(file);
                }
            }
        }
    }
}

/// Rebuild an instance row from the file's meta group and header (pixel data not read).
fn read_record(path: &Path) -> Option<InstanceRecord> {
    let obj = open::open_header(path, &open::Limits::default()).ok()?;
    let id = super::instance::ReceivedInstance::read_from(&obj);
    let meta = obj.meta();
    let file = std::fs::metadata(path).ok()?;
    let received_at_ms = file
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(crate::store::now_ms);
    let record = InstanceRecord {
        sop_instance_uid: id.sop_instance_uid,
        sop_class_uid: id.sop_class_uid,
        study_uid: id.study_uid,
        series_uid: id.series_uid,
        modality: id.modality,
        transfer_syntax: unpad(meta.transfer_syntax()).to_string(),
        path: path.to_path_buf(),
        size: file.len(),
        calling_ae: meta
            .source_application_entity_title()
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        received_at_ms,
    };
    (!record.sop_instance_uid.is_empty() && !record.study_uid.is_empty()).then_some(record)
}
