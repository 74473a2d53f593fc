//! Faults injected into the running daemon's system calls with `strace -e inject` (the
//! kernel's own error codes, no test hook in the product): a directory fsync that fails
//! during the commit, a database write that fails, a listening socket that breaks. Each
//! asserts what the peer was told, what is on disk after a restart, and that the daemon
//! either carries on or stops so that systemd restarts it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::scu::RawAssociation;
use common::*;
use osteoscreen::deliver::dimse::OutgoingFile;
use osteoscreen::dicom::DimseStatus;

const STUDY: &str = "1.2.826.0.1.3680043.10.543.71";
const SERIES: &str = "1.2.826.0.1.3680043.10.543.71.1";

/// strace attached to every thread of the daemon, injecting `inject` into the calls
/// `trace` names (only those touching `path`, when given); detaches when dropped.
struct Injector {
    child: Child,
}

impl Injector {
    fn attach(daemon: &Daemon, work: &Path, trace: &str, inject: &str, paths: &[&Path]) -> Self {
        let said = work.join(format!("strace-{}.txt", std::process::id()));
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-o", "/dev/null", "-e"])
            .arg(format!("trace={trace}"))
            .arg("-e")
            .arg(format!("inject={inject}"));
        for p in paths {
            cmd.arg("-P").arg(p);
        }
        let child = cmd
            .arg("-p")
            .arg(daemon.pid().to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&said).unwrap())
            .spawn()
            .expect("strace");
        // strace says "Process N attached with M threads" once it has stopped them all.
        wait_until("strace attached", Duration::from_secs(30), || {
            std::fs::read_to_string(&said)
                .unwrap_or_default()
                .contains(" attached")
        });
        Injector { child }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // SIGTERM: strace detaches and leaves the daemon running.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Two CT instances of one study and series (`a.*`, `b.*`) under `work/send`.
fn two_instances(work: &Path) -> (PathBuf, PathBuf) {
    let made = make_instances(
        &real("pydicom/CT_small.dcm"),
        &work.join("send"),
        2,
        STUDY,
        SERIES,
        "1.2.826.0.1.3680043.10.543.71.1.9",
    );
    (made[0].0.clone(), made[1].0.clone())
}

fn store_one(daemon: &Daemon, path: &Path) -> (DimseStatus, Option<String>) {
    let file = OutgoingFile::inspect(path).unwrap();
    let mut association = RawAssociation::for_file(daemon.port, "FAULTSCU", &file);
    let answer = association.store(path);
    association.release();
    answer
}

fn spooled(daemon: &Daemon, sop: &str) -> PathBuf {
    daemon
        .storage
        .join("spool")
        .join(STUDY)
        .join(SERIES)
        .join(format!("{sop}.dcm"))
}

fn sop_of(path: &Path) -> String {
    OutgoingFile::inspect(path).unwrap().sop_instance_uid
}

/// Store `bad` while `(trace, inject, path)` fails its calls: the peer hears 0xA700 and the
/// daemon stays up. The fault ends before this returns.
fn refused_under_fault(
    daemon: &mut Daemon,
    work: &Path,
    bad: &Path,
    (trace, inject, path): (&str, &str, &Path),
) {
    let injector = Injector::attach(daemon, work, trace, inject, &[path]);
    let (status, comment) = store_one(daemon, bad);
    drop(injector);
    assert_eq!(status, DimseStatus::OUT_OF_RESOURCES, "{comment:?}");
    assert!(daemon.is_running(), "{}", daemon.logs());
}

/// After a refused store and a good one: the refused file is gone, and a restart (whose
/// recovery records every spool file no row points to) records only the good one.
fn assert_only_the_good_instance_survives(daemon: &mut Daemon, bad: &Path, good: &Path) {
    let (bad_sop, good_sop) = (sop_of(bad), sop_of(good));
    assert!(
        !spooled(daemon, &bad_sop).exists(),
        "the refused instance's file stayed in the spool"
    );
    let (status, comment) = store_one(daemon, good);
    assert_eq!(
        status,
        DimseStatus::SUCCESS,
        "{comment:?}\n{}",
        daemon.logs()
    );
    assert!(daemon.is_running());
    assert!(daemon.terminate().success(), "{}", daemon.logs());
    daemon.restart();
    let recorded: Vec<String> = daemon
        .store()
        .instances()
        .unwrap()
        .into_iter()
        .map(|r| r.sop_instance_uid)
        .collect();
    assert_eq!(recorded, vec![good_sop], "{}", daemon.logs());
}

#[test]
fn a_failed_directory_fsync_refuses_the_store_and_leaves_no_file_behind() {
    let work = tempfile::tempdir().unwrap();
    // The per-file path: the directory fsync and the commit come before the answer.
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0")],
    );
    let (bad, good) = two_instances(work.path());
    // The series folder exists before the store, so its only fsync is the commit's.
    let series_dir = daemon.storage.join("spool").join(STUDY).join(SERIES);
    std::fs::create_dir_all(&series_dir).unwrap();
    refused_under_fault(
        &mut daemon,
        work.path(),
        &bad,
        ("fsync", "fsync:error=EIO", &series_dir),
    );
    assert_only_the_good_instance_survives(&mut daemon, &bad, &good);
}

#[test]
fn a_failed_database_commit_refuses_the_store_and_leaves_no_file_behind() {
    let work = tempfile::tempdir().unwrap();
    // The per-file path: the directory fsync and the commit come before the answer.
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0")],
    );
    let (bad, good) = two_instances(work.path());
    let wal = PathBuf::from(format!(
        "{}-wal",
        osteoscreen::store::Store::path_in(&daemon.storage).display()
    ));
    assert!(wal.exists(), "{} missing", wal.display());
    refused_under_fault(
        &mut daemon,
        work.path(),
        &bad,
        ("pwrite64,write", "pwrite64,write:error=EIO", &wal),
    );
    assert!(
        daemon.logs().contains("could not record instance"),
        "{}",
        daemon.logs()
    );
    assert_only_the_good_instance_survives(&mut daemon, &bad, &good);
}

#[test]
fn a_failed_journal_flush_refuses_the_store_and_it_is_not_replayed() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "64")],
    );
    let (bad, good) = two_instances(work.path());
    // The two spare segments, zero-filled and named: the store goes into one of them.
    let journal = daemon.storage.join("spool/.journal");
    let segments = [journal.join("seg-0"), journal.join("seg-1")];
    wait_until("journal segments ready", Duration::from_secs(60), || {
        segments.iter().all(|p| p.exists())
    });
    let injector = Injector::attach(
        &daemon,
        work.path(),
        "fdatasync",
        "fdatasync:error=EIO",
        &[&segments[0], &segments[1]],
    );
    let (status, comment) = store_one(&daemon, &bad);
    drop(injector);
    assert_eq!(status, DimseStatus::OUT_OF_RESOURCES, "{comment:?}");
    assert!(
        comment.unwrap_or_default().contains("journal write failed"),
        "{}",
        daemon.logs()
    );
    assert!(daemon.is_running(), "{}", daemon.logs());
    // The refused record must not come back at the restart; the good one must.
    assert_only_the_good_instance_survives(&mut daemon, &bad, &good);
}

#[test]
fn a_broken_listening_socket_stops_the_daemon_with_a_failure_for_systemd_to_restart() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let _injector = Injector::attach(&daemon, work.path(), "accept4", "accept4:error=EBADF", &[]);
    // Any connection wakes the accept loop, which then meets the broken socket.
    let _ = std::net::TcpStream::connect(("127.0.0.1", daemon.port));
    let status = daemon.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{status:?}\n{}", daemon.logs());
    let logs = daemon.logs();
    assert!(logs.contains("the listening socket is broken"), "{logs}");
    assert!(
        logs.contains("a core part of the daemon stopped") && logs.contains("DICOM listener"),
        "{logs}"
    );
}
