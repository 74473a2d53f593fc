//! The SCP against DCMTK: every real test file in every transfer syntax is stored as sent,
//! jobs appear after the stability window and not before, and refusals are clean.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The storescu option that proposes (first) a file's own transfer syntax.
fn storescu_flag(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.1" => "-xe",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        other => panic!("no storescu option for transfer syntax {other}"),
    }
}

/// (0002,0010) and (0008,0018) as DCMTK reads them.
fn ts_and_sop_uid(path: &Path) -> (String, String) {
    let out = run(Command::new("dcmdump")
        .args(["-q", "-s", "-Un", "+P", "0002,0010", "+P", "0008,0018"])
        .arg(path));
    let values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let start = l.find('[')?;
            let end = l.find(']')?;
            Some(l[start + 1..end].to_string())
        })
        .collect();
    assert_eq!(values.len(), 2, "{}: {}", path.display(), text(&out));
    (values[0].clone(), values[1].clone())
}

#[test]
fn every_real_file_in_every_transfer_syntax_is_stored_as_sent() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__ACCEPTED_MODALITIES", "CR,DX,CT,OT,NM"),
            ("OSTEOSCREEN__LOG__FORMAT", "json"),
        ],
    );
    let echo = run(Command::new("echoscu")
        .args(["-aec", "OSTEOSCREEN", "127.0.0.1"])
        .arg(daemon.port.to_string()));
    assert!(echo.status.success(), "echoscu: {}", text(&echo));

    let files = acceptable_files(work.path(), true);
    let mut by_ts: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for f in &files {
        let (ts, sop) = ts_and_sop_uid(f);
        by_ts.entry(ts).or_default().push((f.clone(), sop));
    }
    assert!(
        by_ts.len() >= 12,
        "transfer syntaxes covered: {:?}",
        by_ts.keys()
    );
    // DCMTK's storescp in bit-preserving mode keeps exactly what storescu put on the
    // wire (storescu drops a file's trailing padding, for one): the reference for
    // "stored byte for byte as received".
    let wire = work.path().join("wire");
    std::fs::create_dir_all(&wire).unwrap();
    let reference = Storescp::start(&wire, &["+B"]);
    for (ts, group) in &by_ts {
        for port in [daemon.port, reference.port] {
            let out = run(Command::new("storescu")
                .args(["-aet", "STORESCU", "-aec", "OSTEOSCREEN", "127.0.0.1"])
                .arg(port.to_string())
                .args(["-R", storescu_flag(ts)])
                .args(group.iter().map(|(p, _)| p)));
            assert!(
                out.status.success(),
                "storescu {ts} to {port}: {}",
                text(&out)
            );
        }
    }
    drop(reference);
    // storescp names its files <modality prefix>.<SOP Instance UID>.
    let as_received = |sop: &str| -> PathBuf {
        std::fs::read_dir(&wire)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split_once('.'))
                    .is_some_and(|(_, uid)| uid == sop)
            })
            .unwrap_or_else(|| panic!("storescp did not receive {sop}"))
    };

    let store = daemon.store();
    daemon.settled();
    let rows = store.instances().unwrap();
    let missing: Vec<_> = by_ts
        .values()
        .flatten()
        .filter(|(_, sop)| !rows.iter().any(|r| &r.sop_instance_uid == sop))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "not stored: {missing:?}\n{}",
        daemon.logs()
    );
    assert_eq!(
        rows.len(),
        files.len(),
        "one row per instance, no duplicates"
    );
    for (ts, group) in &by_ts {
        for (path, sop) in group {
            let row = rows
                .iter()
                .find(|r| &r.sop_instance_uid == sop)
                .unwrap_or_else(|| panic!("{} ({sop}) not recorded", path.display()));
            assert_eq!(
                &row.transfer_syntax,
                ts,
                "{} stored as received",
                path.display()
            );
            assert_eq!(row.calling_ae, "STORESCU");
            assert!(row.path.starts_with(daemon.storage.join("spool")));
            assert_same_data_set(&row.path, path);
            // Byte for byte as received: the spooled data set is what was on the wire.
            assert_same_bytes(
                &data_set_bytes(&row.path),
                &data_set_bytes(&as_received(sop)),
                &path.display().to_string(),
            );
        }
    }

    // Logs (debug level, JSON) are one JSON object per line and carry no PHI.
    let logs = daemon.logs();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(logs.contains("\"stored\":"), "association summary missing");
    let mut phi_checked = 0;
    for f in &files {
        let obj = dicom_object::open_file(f).unwrap();
        for tag in [
            dicom_dictionary_std::tags::PATIENT_NAME,
            dicom_dictionary_std::tags::PATIENT_ID,
            dicom_dictionary_std::tags::PATIENT_BIRTH_DATE,
        ] {
            let value = obj
                .get(tag)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            // Short all-digit IDs ("0010") also occur inside UIDs and counts: skip those.
            let distinctive =
                value.len() >= 4 && value.chars().any(|c| c.is_alphabetic()) || value.len() >= 8;
            if distinctive {
                phi_checked += 1;
                assert!(!logs.contains(&value), "log carries PHI {value:?}");
            }
        }
    }
    assert!(
        phi_checked > 20,
        "too few PHI values to check ({phi_checked})"
    );
}

/// The last `received_at_ms` the database holds for `study`.
fn last_received_ms(daemon: &Daemon, study: &str) -> i64 {
    daemon.settled();
    daemon
        .store()
        .instances()
        .unwrap()
        .iter()
        .filter(|r| r.study_uid == study)
        .map(|r| r.received_at_ms)
        .max()
        .unwrap_or_else(|| panic!("no instance of {study} recorded"))
}

#[test]
fn a_job_appears_after_the_stability_window_and_not_before() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "3")],
    );
    let study = "1.2.826.0.1.3680043.9.7777.2";
    let first = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.path().join("a"),
        3,
        study,
        &format!("{study}.1"),
        &format!("{study}.1"),
    );
    let out = run(daemon
        .storescu("MODALITY")
        .args(first.iter().map(|(p, _)| p)));
    assert!(out.status.success(), "{}", text(&out));
    let store = daemon.store();
    // 60 s is only a guard against a hang.
    wait_until("job", Duration::from_secs(60), || {
        !store.jobs().unwrap().is_empty()
    });
    // The quiet window is measured from the database's own times: the job was created
    // no sooner than 3 s after the study's last instance was recorded.
    let last = last_received_ms(&daemon, study);
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(
        jobs[0].created_ms - last >= 3000,
        "queued {} ms after the last instance, window 3000 ms",
        jobs[0].created_ms - last
    );
    assert_eq!(
        (
            jobs[0].study_uid.as_str(),
            jobs[0].version,
            jobs[0].instance_count
        ),
        (study, 1, 3)
    );
    assert_eq!(jobs[0].state, "queued");

    // A late instance re-opens the study as a new job version; nothing is lost.
    let late = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.path().join("b"),
        1,
        study,
        &format!("{study}.1"),
        &format!("{study}.2"),
    );
    let out = run(daemon.storescu("MODALITY").arg(&late[0].0));
    assert!(out.status.success(), "{}", text(&out));
    wait_until("second job version", Duration::from_secs(60), || {
        store.jobs().unwrap().len() == 2
    });
    let last = last_received_ms(&daemon, study);
    let jobs = store.jobs().unwrap();
    assert_eq!((jobs[1].version, jobs[1].instance_count), (2, 4));
    assert!(
        jobs[1].created_ms - last >= 3000,
        "version 2 queued {} ms after the late instance",
        jobs[1].created_ms - last
    );
    assert!(
        jobs[0].created_ms < last,
        "version 1 came before the late instance"
    );
    assert_eq!(jobs[0].state, "superseded");
    assert_eq!(jobs[1].state, "queued");

    // What an administrator sees.
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("queue")
        .env("OSTEOSCREEN__STORAGE__DIR", &daemon.storage));
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    assert!(
        listing.contains("superseded") && listing.contains("queued"),
        "{listing}"
    );
    assert!(
        listing.contains(study) && listing.contains("2 jobs"),
        "{listing}"
    );
}

#[test]
fn an_open_association_holds_its_study_back_from_becoming_a_job() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "120"),
        ],
    );
    let (held, other) = (
        "1.2.826.0.1.3680043.9.7777.8",
        "1.2.826.0.1.3680043.9.7777.9",
    );
    let instance = |study: &str, dir: &str| {
        let series = format!("{study}.1");
        make_instances(
            &real("wg04/CT1_UNC.dcm"),
            &work.path().join(dir),
            1,
            study,
            &series,
            &series,
        )
        .remove(0)
        .0
    };
    let (held_file, other_file) = (instance(held, "held"), instance(other, "other"));
    // An instance of `held` is stored on an association that then stays open...
    let file = osteoscreen::deliver::dimse::OutgoingFile::inspect(&held_file).unwrap();
    let mut open = common::scu::RawAssociation::for_file(daemon.port, "OPENSCU", &file);
    assert_eq!(
        open.store(&held_file),
        (osteoscreen::dicom::DimseStatus::SUCCESS, None)
    );
    // ...and after it, another study arrives on an association of its own and closes.
    let out = run(daemon.storescu("OTHERSCU").arg(&other_file));
    assert!(out.status.success(), "{}", text(&out));
    assert!(last_received_ms(&daemon, held) <= last_received_ms(&daemon, other));
    // The other study becomes a job. `held` was quiet for longer, so only its open
    // association can have kept it back (60 s is only a guard).
    let store = daemon.store();
    let job_of = |study: &str| {
        store
            .jobs()
            .unwrap()
            .into_iter()
            .find(|j| j.study_uid == study)
    };
    wait_until("job for the closed study", Duration::from_secs(60), || {
        job_of(other).is_some()
    });
    assert!(
        job_of(held).is_none(),
        "queued while its association is open: {:?}",
        store.jobs().unwrap()
    );
    // Released, the study follows.
    open.release();
    wait_until(
        "job for the released study",
        Duration::from_secs(60),
        || job_of(held).is_some(),
    );
    let job = job_of(held).unwrap();
    assert_eq!((job.version, job.instance_count), (1, 1));
    assert!(job.created_ms > job_of(other).unwrap().created_ms);
}

#[test]
fn dx_for_processing_is_accepted_and_stored_byte_for_byte() {
    const FOR_PROCESSING: &str = "1.2.840.10008.5.1.4.1.1.1.1.1";
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let file = work.path().join("for-processing.dcm");
    std::fs::copy(study.join("dx_ap.dcm"), &file).unwrap();
    // dcmodify also updates the meta group's Media Storage SOP Class UID.
    let out = run(Command::new("dcmodify")
        .args(["-nb", "-m"])
        .arg(format!("(0008,0016)={FOR_PROCESSING}"))
        .args(["-m", "(0008,0068)=FOR PROCESSING"])
        .arg(&file));
    assert!(out.status.success(), "dcmodify: {}", text(&out));
    let sent = osteoscreen::deliver::dimse::OutgoingFile::inspect(&file).unwrap();
    assert_eq!(sent.sop_class_uid, FOR_PROCESSING);

    let work_d = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work_d.path(), &[]);
    let out = run(daemon.storescu("DXSCU").arg("-v").arg(&file));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Received Store Response (Success)"),
        "{}",
        text(&out)
    );
    let rows = daemon.rows(1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sop_instance_uid, sent.sop_instance_uid);
    assert_eq!(rows[0].sop_class_uid, FOR_PROCESSING);
    assert_eq!(rows[0].modality, "DX");
    assert_same_bytes(
        &data_set_bytes(&rows[0].path),
        &data_set_bytes(&file),
        "DX For Processing",
    );
}

#[test]
fn an_instance_larger_than_its_journal_segment_is_moved_to_a_file_of_its_own_and_stored_whole() {
    let work = tempfile::tempdir().unwrap();
    // 1 MiB segments: the 7 MB radiograph outgrows its segment while it arrives.
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "1"),
            ("OSTEOSCREEN__DICOM__JOURNAL_SPARE_SEGMENTS", "1"),
        ],
    );
    let segment = daemon.storage_dir().join("spool/.journal/seg-0");
    wait_until("journal segment ready", Duration::from_secs(60), || {
        segment.exists()
    });
    // Sent byte for byte in its own transfer syntax (storescu may transcode).
    let sent = real("wg04/RG2_UNC.dcm");
    let file = osteoscreen::deliver::dimse::OutgoingFile::inspect(&sent).unwrap();
    let mut association = common::scu::RawAssociation::for_file(daemon.port, "BIGSCU", &file);
    let (status, comment) = association.store(&sent);
    association.release();
    assert!(
        status.is_success(),
        "{status} {comment:?}\n{}",
        daemon.logs()
    );
    let rows = daemon.rows(1);
    assert_eq!(rows.len(), 1);
    assert_same_bytes(
        &data_set_bytes(&rows[0].path),
        &file.data_set().unwrap(),
        "radiograph larger than a segment",
    );
    // A small instance after it goes through the journal again.
    let out = run(daemon.storescu("BIGSCU").arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daemon.rows(2).len(), 2);
}
