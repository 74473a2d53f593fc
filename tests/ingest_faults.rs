//! Faults: parallel senders, kill -9 mid-stream, association limits, stalled peers and
//! graceful shutdown. Nothing acknowledged may be lost.

mod common;

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::scu::RawAssociation;
use common::*;
use osteoscreen::deliver::dimse::OutgoingFile;
use osteoscreen::dicom::DimseStatus as Status;

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
    let rows = daemon.rows(120);
    let got: HashSet<_> = rows.iter().map(|r| r.sop_instance_uid.clone()).collect();
    assert_eq!(rows.len(), 120, "one row per instance");
    assert_eq!(got, expected);
    for r in &rows {
        assert!(r.path.exists(), "{} missing on disk", r.path.display());
    }
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_instance() {
    kill_9_mid_stream("0");
}

#[test]
fn kill_9_mid_stream_through_the_journal_loses_no_acknowledged_instance() {
    kill_9_mid_stream("64");
}

/// With `journal_segment_mb` = `journal`.
fn kill_9_mid_stream(journal: &str) {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "2"),
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", journal),
        ],
    );
    let study = "1.2.826.0.1.3680043.9.7777.5";
    let (files, log, mut sender) = stream_study(&daemon, work.path(), study, 200, "CRASHSCU");
    // Acknowledged, not recorded: through the journal the rows follow the burst.
    wait_until(
        "some instances acknowledged",
        Duration::from_secs(60),
        || acknowledged_files(&std::fs::read_to_string(&log).unwrap_or_default()).len() >= 40,
    );
    daemon.kill9();
    let _ = sender.wait();

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
        daemon.partial_files(),
        vec![],
        "partial files cleaned at start-up"
    );
}

#[test]
fn kill_9_under_hostile_load_loses_no_acknowledged_instance() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "5")]);
    // Beside a real sender: a peer sending length bombs in a loop, and one trickling a
    // data set that never ends. They end with the daemon (their panics are ignored).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = daemon.port;
    let bomber = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let uid = "1.2.826.0.1.3680043.9.7777.99";
            let mut bomb = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T'];
            bomb.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
            bomb.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            // Bombs answered 0xC000 before the kill ends the link (the panics of the
            // association helper after the kill end the thread; its count is returned).
            let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counted = answered.clone();
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut a = RawAssociation::open(port, "BOMBER", CT_IMAGE, EXPLICIT_LE)
                        .expect("bomber association");
                    for _ in 0..20 {
                        a.send_store_rq(CT_IMAGE, uid);
                        a.send_data(&bomb, true);
                        assert_eq!(a.response().0, Status::CANNOT_UNDERSTAND);
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    a.release();
                }
            }));
            drop(run);
            answered.load(std::sync::atomic::Ordering::Relaxed)
        })
    };
    let mut trickler = RawAssociation::open(port, "TRICKLER", CT_IMAGE, EXPLICIT_LE).unwrap();
    trickler.send_store_rq(CT_IMAGE, "1.2.826.0.1.3680043.9.7777.98");
    trickler.send_data(
        &[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T'],
        false,
    );

    let study = "1.2.826.0.1.3680043.9.7777.6";
    let (files, log, mut sender) = stream_study(&daemon, work.path(), study, 200, "GOODSCU");
    // Acknowledged, not recorded: through the journal the rows follow the burst.
    wait_until(
        "some instances acknowledged",
        Duration::from_secs(60),
        || acknowledged_files(&std::fs::read_to_string(&log).unwrap_or_default()).len() >= 40,
    );
    daemon.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sender.wait();
    let bombs = bomber.join().expect("bomber thread");
    assert!(bombs > 0, "no bomb was answered before the kill");
    drop(trickler);

    let acknowledged = acknowledged_files(&std::fs::read_to_string(&log).unwrap());
    assert!(acknowledged.len() >= 40, "only {} acks", acknowledged.len());
    assert!(acknowledged.len() < 200, "the kill came too late");
    daemon.restart();
    let rows = daemon.store().instances().unwrap();
    assert_recorded(&files, &acknowledged, &rows);
    assert!(
        rows.iter().all(|r| r.study_uid == study),
        "only the good sender's instances are recorded"
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

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn echoscu(port: u16) -> std::process::Output {
    // -ta: give up after 30 s without an answer, so a daemon that leaves the request
    // hanging fails the test with a timeout message instead of hanging it.
    run(Command::new("echoscu")
        .args(["-ta", "30", "-aec", "OSTEOSCREEN", "127.0.0.1"])
        .arg(port.to_string()))
}

#[test]
fn beyond_max_associations_is_an_immediate_rejection() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS", "1"),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "120"),
        ],
    );
    // An established, idle association holds the only slot...
    let holder = RawAssociation::open(daemon.port, "HOLDER", CT_IMAGE, EXPLICIT_LE).unwrap();
    daemon.wait_for_log("calling_ae=HOLDER", Duration::from_secs(20));
    // ...so the next one gets an A-ASSOCIATE-RJ (transient, local limit), not silence.
    let out = echoscu(daemon.port);
    let said = text(&out);
    assert!(!out.status.success(), "{said}\n{}", daemon.logs());
    assert!(
        said.contains("Rejected Transient") && said.contains("Local Limit Exceeded"),
        "{said}"
    );
    assert!(daemon.logs().contains("max_associations (1) reached"));
    // Released, the slot serves the next caller (the retries cover the moment between
    // the release response and the slot's return).
    holder.release();
    wait_until("slot free", Duration::from_secs(20), || {
        echoscu(daemon.port).status.success()
    });
}

#[test]
fn peers_that_stall_in_negotiation_are_dropped_after_the_timeout() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS", "1"),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "2"),
        ],
    );
    // A peer that connects and says nothing is disconnected by the daemon once the
    // timeout passes, before any negotiation (a request sent later would otherwise be
    // negotiated without the slot check): the read sees the end of the stream (60 s is
    // only a guard).
    let mut stalled = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 1];
    let read = std::io::Read::read(&mut stalled, &mut buf);
    assert!(
        matches!(read, Ok(0)),
        "expected the daemon to close: {read:?}"
    );
    daemon.wait_for_log("no association request within", Duration::from_secs(20));
    // The slot it held is free again.
    wait_until("slot free", Duration::from_secs(20), || {
        echoscu(daemon.port).status.success()
    });
}

/// The CT test instance, split for sending: the file, its data set, and where to cut it.
fn ct_instance() -> (OutgoingFile, Vec<u8>) {
    let file = OutgoingFile::inspect(&real("wg04/CT1_UNC.dcm")).unwrap();
    let data = file.data_set().unwrap();
    (file, data)
}

/// Send the command and the first 8000 bytes of the data set, then wait until the daemon
/// has them in a partial file in `spool/.tmp`: a store is in flight.
fn start_store(daemon: &Daemon, ae: &str) -> (RawAssociation, OutgoingFile, Vec<u8>) {
    let (file, data) = ct_instance();
    let mut association = RawAssociation::for_file(daemon.port, ae, &file);
    association.send_store_command(&file);
    association.send_data(&data[..8000], false);
    wait_until(
        "partial file in spool/.tmp",
        Duration::from_secs(30),
        || {
            daemon
                .partial_files()
                .iter()
                .any(|(_, size)| *size >= 8000 + 132)
        },
    );
    (association, file, data)
}

#[test]
fn a_stalled_association_does_not_block_a_concurrent_store() {
    let work = tempfile::tempdir().unwrap();
    // Without the journal: the slow store's partial file shows it is in flight.
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "120"),
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0"),
        ],
    );
    // Half a data set is in the daemon's hands and the sender pauses...
    let (mut slow, file, data) = start_store(&daemon, "SLOWSCU");
    // ...while a second peer stores an instance from start to finish. Served one at a
    // time, storescu would get no association until SLOWSCU's ends (which it does only
    // after storescu returns): DCMTK's 30 s ACSE timeout fails it instead of hanging.
    let out = run(daemon
        .storescu("OTHERSCU")
        .args(["-ta", "30", "-td", "30"])
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}\n{}", text(&out), daemon.logs());
    let rows = daemon.rows(1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].calling_ae, "OTHERSCU");
    // SLOWSCU's store is still open: its partial file is there, its association not closed.
    assert_eq!(
        daemon.partial_files().len(),
        1,
        "the slow store is in flight"
    );
    assert!(!daemon
        .logs()
        .contains("association closed calling_ae=SLOWSCU"));
    // It completes after all.
    slow.send_data(&data[8000..], true);
    assert_eq!(slow.response(), (Status::SUCCESS, None));
    slow.release();
    let rows = daemon.rows(2);
    let row = rows
        .iter()
        .find(|r| r.sop_instance_uid == file.sop_instance_uid)
        .expect("the slow store recorded");
    assert_eq!(row.calling_ae, "SLOWSCU");
    assert_same_bytes(&data_set_bytes(&row.path), &data, "slow store");
}

#[test]
fn a_peer_that_stalls_mid_data_set_is_dropped_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    // Without the journal: the stalled store's partial file shows it is in flight.
    let daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "2"),
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0"),
        ],
    );
    let (_stalled, _, _) = start_store(&daemon, "STALLSCU");
    // The daemon gives up on it after the timeout (30 s is only a guard)...
    daemon.wait_for_log(
        "association closed calling_ae=STALLSCU",
        Duration::from_secs(30),
    );
    // ...and leaves neither a row nor a partial file.
    assert!(daemon.store().instances().unwrap().is_empty());
    assert_eq!(daemon.partial_files(), vec![], "partial file removed");
    // It still serves others.
    let out = run(daemon
        .storescu("OTHERSCU")
        .arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daemon.rows(1).len(), 1);
}

#[test]
fn sigterm_finishes_the_store_in_flight_then_exits_zero() {
    let work = tempfile::tempdir().unwrap();
    // Without the journal: the store's partial file shows it is in flight.
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0")],
    );
    // A store is in flight: its command and part of its data set are in the daemon.
    let (mut sender, file, data) = start_store(&daemon, "TERMSCU");
    daemon.sigterm();
    daemon.wait_for_log("shutdown requested", Duration::from_secs(30));
    // New associations are no longer accepted...
    // (The listener closes just after it logs that; 30 s is only a guard.)
    daemon.wait_for_log("DICOM listener stopped accepting", Duration::from_secs(30));
    wait_until("listener closed", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", daemon.port)).is_err()
    });
    // ...but the daemon waits for the store it is in: still running, partial file kept.
    assert!(daemon.is_running(), "exited with a store in flight");
    assert_eq!(daemon.partial_files().len(), 1);
    // The rest of the data set arrives and the store is acknowledged.
    sender.send_data(&data[8000..], true);
    assert_eq!(sender.response(), (Status::SUCCESS, None));
    // Then the daemon ends the association and exits 0 (30 s is only a guard).
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        daemon.logs()
    );
    assert!(daemon.logs().contains("shutdown complete"));
    drop(sender);
    // The acknowledged instance is in the spool and in the database, as sent.
    let rows = daemon.store().instances().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sop_instance_uid, file.sop_instance_uid);
    assert_eq!(rows[0].calling_ae, "TERMSCU");
    assert_same_bytes(&data_set_bytes(&rows[0].path), &data, "store in flight");
    assert_eq!(daemon.partial_files(), vec![]);
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
    let before = daemon.rows(12);
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
