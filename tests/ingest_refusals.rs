//! Refusals: a caller not allowed, an unsupported SOP class, broken files, path-traversal
//! UIDs. Each gets a clear answer, nothing bad is stored, and the daemon keeps serving.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use osteoscreen::deliver::dimse::{store_data_set, OutgoingFile};
use osteoscreen::dicom::DimseStatus as Status;

fn echo(daemon: &Daemon, calling_ae: &str) -> bool {
    run(Command::new("echoscu")
        .args(["-aet", calling_ae, "-aec", "OSTEOSCREEN", "127.0.0.1"])
        .arg(daemon.port.to_string()))
    .status
    .success()
}

#[test]
fn callers_not_in_allowed_callers_are_rejected_and_logged() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[(
            "OSTEOSCREEN__DICOM__ALLOWED_CALLERS",
            "GOODSCU,LOCALPACS@127.0.0.1,REMOTEPACS@10.9.9.9",
        )],
    );
    assert!(echo(&daemon, "GOODSCU"));
    assert!(echo(&daemon, "LOCALPACS"));
    assert!(!echo(&daemon, "EVILSCU"), "unknown AE must be rejected");
    assert!(
        !echo(&daemon, "REMOTEPACS"),
        "right AE from the wrong address"
    );
    let out = run(daemon.storescu("EVILSCU").arg(real("pydicom/CT_small.dcm")));
    assert!(!out.status.success());
    assert!(daemon.store().instances().unwrap().is_empty());
    let logs = daemon.logs();
    assert!(
        logs.contains("EVILSCU") && logs.contains("allowed_callers"),
        "rejection not logged with its reason:\n{logs}"
    );
    // Still serving the allowed ones.
    let out = run(daemon.storescu("GOODSCU").arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daemon.rows(1).len(), 1);
}

/// Announce a file's data set as `sop_class` and send it byte for byte, as a faulty
/// modality would. Files without usable meta information are sent whole.
fn send_raw(daemon: &Daemon, path: &Path, sop_class: &str) -> (Status, Option<String>) {
    let (instance, ts, data) = match OutgoingFile::inspect(path) {
        Ok(f) => {
            let data = f
                .data_set()
                .unwrap_or_else(|_| std::fs::read(path).unwrap());
            let instance = if f.sop_instance_uid.is_empty() {
                "1.2.826.0.1.3680043.9.7777.3.1".to_string()
            } else {
                f.sop_instance_uid
            };
            let ts = if f.transfer_syntax.is_empty() {
                "1.2.840.10008.1.2".to_string()
            } else {
                f.transfer_syntax
            };
            (instance, ts, data)
        }
        Err(_) => (
            "1.2.826.0.1.3680043.9.7777.3.2".to_string(),
            "1.2.840.10008.1.2".to_string(),
            std::fs::read(path).unwrap(),
        ),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store_data_set(
        &daemon.peer("FAULTYSCU"),
        sop_class,
        &instance,
        &ts,
        &data,
    ))
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

#[test]
fn broken_and_mismatched_data_sets_are_refused_and_the_daemon_carries_on() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);

    // Unsupported SOP class: DCMTK finds no accepted presentation context.
    let out = run(daemon.storescu("STORESCU").arg(real("pydicom/rtplan.dcm")));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("No presentation context"),
        "{}",
        text(&out)
    );

    // Each broken file, announced as a CT image, must get a failure status with a reason.
    let cases = [
        (
            "broken/ct-empty-uids.dcm",
            0xC000,
            "SOP Instance UID is missing",
        ),
        (
            "pydicom/MR_truncated.dcm",
            0xC000,
            "data set refused: element (7FE0,0010) declares 8192 bytes",
        ),
        ("pydicom/no_meta.dcm", 0xC000, "data set refused: element"),
        (
            "pydicom/meta_missing_tsyntax.dcm",
            0xC000,
            "data set refused: element",
        ),
        (
            "pydicom/emri_small_jpeg_2k_lossless_too_short.dcm",
            0xC000,
            "truncated: encapsulated pixel data has no end delimiter",
        ),
        // (Error Comment is an LO: at most 64 characters.)
        (
            "pydicom/badVR.dcm",
            0xA900,
            "SOP Class in data set (RT Dose Storage) differs from C-STORE req",
        ),
        (
            "pydicom/MR_small.dcm",
            0xA900,
            "SOP Class in data set (MR Image Storage) differs from C-STORE re",
        ),
    ];
    for (file, status, words) in cases {
        let (got, comment) = send_raw(&daemon, &real(file), CT_IMAGE);
        let comment = comment.unwrap_or_default();
        assert_eq!(
            got.0 & 0xFF00,
            status & 0xFF00,
            "{file}: got {got} ({comment})"
        );
        assert!(comment.contains(words), "{file}: comment {comment:?}");
    }
    // A CT whose SOP Instance UID in the command differs from the data set's.
    let f = OutgoingFile::inspect(&real("pydicom/CT_small.dcm")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (got, comment) = rt
        .block_on(store_data_set(
            &daemon.peer("FAULTYSCU"),
            CT_IMAGE,
            "1.2.3.4.5",
            &f.transfer_syntax,
            &f.data_set().unwrap(),
        ))
        .unwrap();
    assert_eq!(got, Status::DATA_SET_MISMATCH);
    assert_eq!(
        comment.as_deref(),
        Some("SOP Instance UID in data set differs from C-STORE request")
    );
    // A modality outside accepted_modalities (Secondary Capture of modality OT).
    let out = run(daemon
        .storescu("STORESCU")
        .arg("-v")
        .arg(real("pydicom/SC_rgb.dcm")));
    assert!(
        text(&out).contains("Received Store Response (Error: CannotUnderstand)"),
        "{}",
        text(&out)
    );
    assert!(daemon.logs().contains("Modality OT not accepted"));

    assert!(
        daemon.store().instances().unwrap().is_empty(),
        "nothing bad stored"
    );
    assert_eq!(daemon.partial_files(), vec![], "no leftovers");

    // Later good instances are stored.
    let out = run(daemon
        .storescu("STORESCU")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daemon.rows(1).len(), 1);
    assert!(echo(&daemon, "STORESCU"));
}

#[test]
fn path_traversal_uids_never_touch_the_filesystem() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);
    let cases = [
        ("study", "(0020,000d)=../../../../tmp/osteoscreen-escape"),
        ("series", "(0020,000e)=.."),
        ("sop", "(0008,0018)=1.2/../../x"),
        (
            "long",
            "(0020,000d)=1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25",
        ),
    ];
    for (name, modification) in cases {
        let path = work.path().join(format!("{name}.dcm"));
        std::fs::copy(real("pydicom/CT_small.dcm"), &path).unwrap();
        let out = run(Command::new("dcmodify")
            .args(["-nb", "-m", modification])
            .arg(&path));
        assert!(out.status.success(), "dcmodify: {}", text(&out));
        let out = run(daemon.storescu("STORESCU").arg("-v").arg(&path));
        assert!(
            text(&out).contains("Received Store Response (Error: CannotUnderstand)"),
            "{name}: {}",
            text(&out)
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(daemon.store().instances().unwrap().is_empty());
    assert!(!Path::new("/tmp/osteoscreen-escape").exists());
    // Only the daemon's own folders (`.tmp`, `.journal`): no study directory was made.
    let spool_entries: Vec<_> = std::fs::read_dir(daemon.storage.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(spool_entries, Vec::<std::ffi::OsString>::new());
    let out = run(daemon
        .storescu("STORESCU")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn write_failures_and_low_disk_answer_out_of_resources() {
    let work = tempfile::tempdir().unwrap();
    // Without the journal, a spool write happens before the answer (through the journal
    // the instance is durable before it is placed, and its move is retried).
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0")],
    );
    // Block the study's spool directory with a plain file: the write must fail cleanly.
    let study = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"; // CT_small's study
    let blocker = daemon.storage.join("spool").join(study);
    std::fs::write(&blocker, b"in the way").unwrap();
    let out = run(daemon
        .storescu("STORESCU")
        .arg("-v")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(
        text(&out).contains("Received Store Response (Refused: OutOfResources)"),
        "{}",
        text(&out)
    );
    assert!(daemon.store().instances().unwrap().is_empty());
    assert!(daemon.logs().contains("spool write failed"));
    // Once the fault is gone the same instance is accepted on the same daemon.
    std::fs::remove_file(&blocker).unwrap();
    let out = run(daemon
        .storescu("STORESCU")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daemon.rows(1).len(), 1);

    // Below the free-space watermark new associations are rejected, with the reason logged.
    let work = tempfile::tempdir().unwrap();
    let full = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__MIN_FREE_DISK_MB", "1000000000")],
    );
    let out = run(full.storescu("STORESCU").arg(real("pydicom/CT_small.dcm")));
    assert!(!out.status.success());
    assert!(text(&out).contains("Rejected Transient"), "{}", text(&out));
    assert!(full.logs().contains("disk space low"), "{}", full.logs());
}

#[test]
fn a_refused_instance_is_followed_by_a_stored_one_on_the_same_association() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);
    // One storescu association: a Secondary Capture of modality OT (not accepted), then a
    // CT, then the refused one again.
    let out = run(daemon
        .storescu("STORESCU")
        .args(["-v", "--no-halt"])
        .arg(real("pydicom/SC_rgb.dcm"))
        .arg(real("pydicom/CT_small.dcm"))
        .arg(real("pydicom/SC_rgb.dcm")));
    let said = text(&out);
    assert_eq!(said.matches("Association Accepted").count(), 1, "{said}");
    let responses: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split_once("Received Store Response ").map(|(_, r)| r))
        .collect();
    assert_eq!(
        responses,
        [
            "(Error: CannotUnderstand)",
            "(Success)",
            "(Error: CannotUnderstand)"
        ],
        "{said}"
    );
    assert!(said.contains("Releasing Association"), "{said}");
    let rows = daemon.rows(1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sop_class_uid, CT_IMAGE);
    assert_eq!(rows[0].calling_ae, "STORESCU");
    // The daemon saw one association, with one instance stored and two refused.
    let logs = daemon.logs();
    let closed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("association closed"))
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(
        closed[0].contains("stored=1 refused=2") && closed[0].contains("end=released"),
        "{}",
        closed[0]
    );
}

/// A tmpfs of `size_mib` mounted at `dir` (the tests run as root), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m"))
            .arg("tmpfs")
            .arg(dir));
        assert!(out.status.success(), "mount tmpfs: {}", text(&out));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn low_disk_in_the_middle_of_an_association_answers_out_of_resources() {
    // Storage on a 64 MiB filesystem of its own, watermark 46 MiB: the association starts
    // with ~64 MiB free; each 7.2 MiB radiograph it stores takes free space down (56.8,
    // 49.6, 42.4 MiB), so the fourth request finds the disk below the watermark. Without
    // the journal, whose segments take space ahead of time and whose copies into the
    // spool wait for the burst to end: the same check, but not this arithmetic.
    let work = tempfile::tempdir().unwrap();
    let _disk = Tmpfs::mount(&work.path().join("var"), 64);
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MIN_FREE_DISK_MB", "46"),
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0"),
        ],
    );
    let study = "1.2.826.0.1.3680043.9.7777.10";
    let files = make_instances(
        &real("wg04/RG2_UNC.dcm"),
        &work.path().join("in"),
        5,
        study,
        &format!("{study}.1"),
        &format!("{study}.1"),
    );
    let out = run(daemon
        .storescu("BIGSCU")
        .args(["-v", "--no-halt"])
        .args(files.iter().map(|(p, _)| p)));
    let said = text(&out);
    assert_eq!(said.matches("Association Accepted").count(), 1, "{said}");
    let responses: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split_once("Received Store Response ").map(|(_, r)| r))
        .collect();
    assert_eq!(
        responses,
        [
            "(Success)",
            "(Success)",
            "(Success)",
            "(Refused: OutOfResources)",
            "(Refused: OutOfResources)"
        ],
        "{said}\n{}",
        daemon.logs()
    );
    let rows = daemon.store().instances().unwrap();
    let stored: Vec<&str> = rows.iter().map(|r| r.sop_instance_uid.as_str()).collect();
    let first_three: Vec<&str> = files[..3].iter().map(|(_, uid)| uid.as_str()).collect();
    assert_eq!(stored, first_three);
    for r in &rows {
        assert!(r.path.exists());
    }
    assert_eq!(daemon.partial_files(), vec![], "nothing left in spool/.tmp");
    let logs = daemon.logs();
    assert!(
        logs.contains("disk space low") && logs.contains("watermark 46 MiB"),
        "{logs}"
    );
    assert!(logs.contains("stored=3 refused=2"), "{logs}");
}
