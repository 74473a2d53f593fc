//! Faults: parallel senders, kill -9 mid-stream, association limits, stalled peers and
//! graceful shutdown. Nothing acknowledged may be lost.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn eight_parallel_senders_lose_nothing_and_duplicate_nothing() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);
    let src = real("wg04/CT1_UNC.dcm");
    let mut children = Vec::new();
    let mut expected = HashSet::new();
    for s in 0..8 {
        let study = format!("1.2.826.0.1.3680043.9.7777.4.{s}");
        let files = make_instances(
            &src,
            &work.path().join(format!("in{s}")),
            15,
            &study,
            &format!("{study}.1"),
            &format!("{study}.1"),
        );
        expected.extend(files.iter().map(|(_, uid)| uid.clone()));
        // Every sender also sends one instance twice: idempotent, one row.
        let mut cmd = daemon.storescu(&format!("SENDER{s}"));
        cmd.args(files.iter().map(|(p, _)| p)).arg(&files[0].0);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let rows = daemon.store().instances().unwrap();
    let got: HashSet<_> = rows.iter().map(|r| r.sop_instance_uid.clone()).collect();
    assert_eq!(rows.len(), 120, "one row per instance");
    assert_eq!(got, expected);
    for r in &rows {
        assert!(r.path.exists(), "{} missing on disk", r.path.display());
    }
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_instance() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "2")],
    );
    let study = "1.2.826.0.1.3680043.9.7777.5";
    let (files, log, mut sender) = stream_study(&daemon, work.path(), study, 200, "CRASHSCU");
    let store = daemon.store();
    wait_until("some instances stored", Duration::from_secs(60), || {
        store.instances().unwrap().len() >= 40
    });
    daemon.kill9();
    let _ = sender.wait();
    drop(store);

    let acknowledged = acknowledged_files(&std::fs::read_to_string(&log).unwrap());
    assert!(acknowledged.len() >= 40, "only {} acks", acknowledged.len());
    assert!(
        acknowledged.len() < 200,
        "the kill came too late to test anything"
    );

    daemon.restart();
    let store = daemon.store();
    let rows = store.instances().unwrap();
    assert_recorded(&files, &acknowledged, &rows);
    // Timers survive the restart: the study is queued, covering every recorded instance.
    wait_until("job after restart", Duration::from_secs(20), || {
        !store.jobs().unwrap().is_empty()
    });
    let job = &store.jobs().unwrap()[0];
    assert_eq!(job.study_uid, study);
    assert_eq!(job.instance_count as usize, rows.len());
    assert_eq!(
        std::fs::read_dir(daemon.storage.join("spool/.tmp"))
            .unwrap()
            .count(),
        0,
        "partial files cleaned at start-up"
    );
}

/// Start storescu streaming `n` new CT instances of `study` in the background; its `-v`
/// log ("Sending file" then the response, per file) goes to the returned path.
fn stream_study(
    daemon: &Daemon,
    work: &std::path::Path,
    study: &str,
    n: usize,
    ae: &str,
) -> (Vec<(PathBuf, String)>, PathBuf, std::process::Child) {
    let series = format!("{study}.1");
    let files = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.join("in"),
        n,
        study,
        &series,
        &series,
    );
    let log = work.join("storescu.log");
    let sender = daemon
        .storescu(ae)
        .arg("-v")
        .args(files.iter().map(|(p, _)| p))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (files, log, sender)
}

/// Every acknowledged file has its row and a readable spooled file.
fn assert_recorded(
    files: &[(PathBuf, String)],
    acknowledged: &[String],
    rows: &[osteoscreen::store::InstanceRecord],
) {
    for file in acknowledged {
        let uid = &files
            .iter()
            .find(|(p, _)| p.to_string_lossy() == *file)
            .unwrap_or_else(|| panic!("unknown file {file}"))
            .1;
        let row = rows
            .iter()
            .find(|r| &r.sop_instance_uid == uid)
            .unwrap_or_else(|| panic!("acknowledged {uid} lost"));
        dicom_object::open_file(&row.path)
            .unwrap_or_else(|e| panic!("acknowledged {uid} unreadable: {e}"));
    }
}

/// Files for which storescu logged a successful C-STORE response.
fn acknowledged_files(log: &str) -> Vec<String> {
    let mut current = None;
    let mut acked = Vec::new();
    for line in log.lines() {
        if let Some(f) = line.strip_prefix("I: Sending file: ") {
            current = Some(f.trim().to_string());
        } else if line.contains("Received Store Response (Success)") {
            acked.extend(current.take());
        }
    }
    acked
}

#[test]
fn beyond_max_associations_is_a_rejection_and_stalled_peers_time_out() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS", "1"),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "3"),
        ],
    );
    // Let the harness's readiness probe (a bare connect) release its slot first.
    std::thread::sleep(Duration::from_millis(500));
    // A peer that connects and says nothing holds the only slot...
    let mut stalled = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ...so the next one is rejected at once, not left hanging.
    let start = Instant::now();
    let out = run(Command::new("echoscu")
        .args(["-to", "10", "-aec", "OSTEOSCREEN", "127.0.0.1"])
        .arg(daemon.port.to_string()));
    assert!(!out.status.success(), "{}\n{}", text(&out), daemon.logs());
    assert!(text(&out).contains("Rejected"), "{}", text(&out));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "rejection was slow"
    );
    assert!(daemon.logs().contains("max_associations reached"));

    // The stalled peer is dropped after the timeout; then the slot is free again.
    wait_until("stalled peer dropped", Duration::from_secs(10), || {
        let _ = stalled.write_all(&[]);
        let mut buf = [0u8; 1];
        stalled
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        matches!(std::io::Read::read(&mut stalled, &mut buf), Ok(0))
    });
    wait_until("slot free", Duration::from_secs(5), || {
        run(Command::new("echoscu")
            .args(["-aec", "OSTEOSCREEN", "127.0.0.1"])
            .arg(daemon.port.to_string()))
        .status
        .success()
    });
}

#[test]
fn a_peer_that_stalls_mid_data_set_is_dropped_without_blocking_others() {
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "2")]);
    let file =
        osteoscreen::deliver::dimse::OutgoingFile::inspect(&real("wg04/CT1_UNC.dcm")).unwrap();
    let data = file.data_set().unwrap();
    let mut association = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("STALLSCU")
        .called_ae_title("OSTEOSCREEN")
        .with_presentation_context(
            file.sop_class_uid.clone(),
            vec![file.transfer_syntax.clone()],
        )
        .establish_with(&format!("127.0.0.1:{}", daemon.port))
        .unwrap();
    let rq = osteoscreen::dicom::command::encode_store_rq(
        1,
        &file.sop_class_uid,
        &file.sop_instance_uid,
    );
    let pdv = |value_type, is_last, data: &[u8]| dicom_ul::Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: 1,
            value_type,
            is_last,
            data: data.to_vec(),
        }],
    };
    association
        .send(&pdv(PDataValueType::Command, true, &rq))
        .unwrap();
    association
        .send(&pdv(PDataValueType::Data, false, &data[..8000]))
        .unwrap();
    // Half a data set is in the daemon's hands; a second peer is served meanwhile.
    let out = run(daemon
        .storescu("OTHERSCU")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    // After the timeout the stalled association is gone and left nothing behind.
    wait_until(
        "stalled association dropped",
        Duration::from_secs(10),
        || {
            daemon.logs().contains("STALLSCU")
                && daemon
                    .logs()
                    .contains("association closed calling_ae=STALLSCU")
        },
    );
    let rows = daemon.store().instances().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].calling_ae, "OTHERSCU");
    let tmp = daemon.storage.join("spool/.tmp");
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        0,
        "partial file removed"
    );
}

#[test]
fn sigterm_finishes_in_flight_stores_and_exits_zero() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let study = "1.2.826.0.1.3680043.9.7777.6";
    let (files, log, mut sender) = stream_study(&daemon, work.path(), study, 60, "TERMSCU");
    let store = daemon.store();
    wait_until("stores under way", Duration::from_secs(30), || {
        !store.instances().unwrap().is_empty()
    });
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    let _ = sender.wait();
    let acked = acknowledged_files(&std::fs::read_to_string(&log).unwrap());
    assert!(!acked.is_empty());
    assert_recorded(&files, &acked, &store.instances().unwrap());
    assert!(daemon.logs().contains("shutdown complete"));
    // New connections are refused once it is down.
    assert!(TcpStream::connect(("127.0.0.1", daemon.port)).is_err());
}

#[test]
fn a_lost_database_is_rebuilt_from_the_spool_at_start_up() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1")],
    );
    let study = "1.2.826.0.1.3680043.9.7777.7";
    let files = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.path().join("in"),
        12,
        study,
        &format!("{study}.1"),
        &format!("{study}.1"),
    );
    let out = run(daemon
        .storescu("LOSTSCU")
        .args(files.iter().map(|(p, _)| p)));
    assert!(out.status.success(), "{}", text(&out));
    let before = daemon.store().instances().unwrap();
    assert_eq!(before.len(), 12);
    daemon.kill9();
    // What a power loss could do to rows committed without their own fsync, and worse.
    for name in [
        "osteoscreen.sqlite",
        "osteoscreen.sqlite-wal",
        "osteoscreen.sqlite-shm",
    ] {
        let _ = std::fs::remove_file(daemon.storage.join(name));
    }
    daemon.restart();
    let store = daemon.store();
    let after = store.instances().unwrap();
    assert_eq!(after.len(), 12, "{}", daemon.logs());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&a.sop_instance_uid, &a.study_uid, &a.series_uid, &a.path),
            (&b.sop_instance_uid, &b.study_uid, &b.series_uid, &b.path)
        );
        assert_eq!(
            (&a.modality, &a.transfer_syntax, &a.calling_ae),
            (&b.modality, &b.transfer_syntax, &b.calling_ae)
        );
    }
    assert!(daemon.logs().contains("database had lost"));
    wait_until(
        "job for the recovered study",
        Duration::from_secs(15),
        || {
            store
                .jobs()
                .unwrap()
                .iter()
                .any(|j| j.study_uid == study && j.instance_count == 12)
        },
    );
}
