//! The ingest journal on its own: records survive a crash (a journal dropped without
//! moving them) and come back in acknowledgement order, a torn record ends its segment's
//! chain, a segment whose records were all moved comes back empty, and replay puts the
//! records into the spool and the database once (a second replay finds them in place).
//! The running mover holds a study back from the assembler until its rows are committed,
//! and never replaces a copy of an instance received after its record, whether its row
//! is committed or not yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use osteoscreen::ingest::active::ActiveStudies;

use osteoscreen::ingest::journal::{Journal, Lane, Record, RecordMeta, HEADER};
use osteoscreen::ingest::mover;
use osteoscreen::ingest::spool::{Placement, Spool};
use osteoscreen::store::Store;

const SEGMENT: u64 = 1 << 20;

fn meta(sop: &str) -> RecordMeta {
    RecordMeta {
        seq: 0,
        received_at_ms: osteoscreen::store::now_ms(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        sop_instance_uid: sop.into(),
        study_uid: "1.2.826.0.1.3680043.9.7777.70".into(),
        series_uid: "1.2.826.0.1.3680043.9.7777.70.1".into(),
        modality: "CT".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        calling_ae: "JOURNALSCU".into(),
    }
}

fn open_ready(dir: &std::path::Path) -> (Journal, Vec<Record>) {
    let (journal, found) = Journal::open(dir, SEGMENT, 1).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while journal.ready() == 0 {
        assert!(Instant::now() < until, "no segment prepared");
        std::thread::sleep(Duration::from_millis(5));
    }
    (journal, found)
}

/// Append `bytes` (in pieces, as fragments arrive) and commit.
fn write(journal: &Journal, lane: &mut Lane, sop: &str, bytes: &[u8]) -> Record {
    let mut entry = lane.begin(journal).expect("a segment is ready");
    for piece in bytes.chunks(1000) {
        entry.append(piece).expect("fits");
    }
    let record = entry.commit(journal, meta(sop)).unwrap();
    lane.advance(&record);
    record
}

/// The segment file whose chain starts with a record (the pool may hold a second one).
fn segment_with_records(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("seg-")
                && std::fs::read(p).unwrap().starts_with(b"OSJRNL01")
        })
        .expect("a segment with records")
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn records_come_back_after_a_crash_in_order_and_a_torn_one_ends_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, found) = open_ready(dir.path());
    assert!(found.is_empty());
    let mut lane = Lane::default();
    let a = write(&journal, &mut lane, "1.2.3.1", &payload(5000, 1));
    let b = write(&journal, &mut lane, "1.2.3.2", &payload(70_000, 2));
    let c = write(&journal, &mut lane, "1.2.3.3", &payload(3000, 3));
    assert!(a.meta.seq < b.meta.seq && b.meta.seq < c.meta.seq);
    assert!(b.at >= a.at + HEADER + a.len && c.at > b.at);
    // Tear the third record's data after its header was written.
    let segment_file = segment_with_records(dir.path());
    let torn_at = c.at + HEADER + 10;
    // A crash: nothing is moved, nothing let go.
    std::mem::forget((a, b, c, lane));
    drop(journal);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment_file)
            .unwrap();
        file.write_all_at(b"torn", torn_at).unwrap();
    }

    let (journal, found) = Journal::open(dir.path(), SEGMENT, 1).unwrap();
    let sops: Vec<&str> = found
        .iter()
        .map(|r| r.meta.sop_instance_uid.as_str())
        .collect();
    assert_eq!(
        sops,
        ["1.2.3.1", "1.2.3.2"],
        "the torn record ends the chain"
    );
    assert_eq!(found[1].meta, {
        let mut m = meta("1.2.3.2");
        m.seq = found[1].meta.seq;
        m.received_at_ms = found[1].meta.received_at_ms;
        m
    });
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut found[1].window(), &mut bytes).unwrap();
    assert_eq!(bytes, payload(70_000, 2), "the data set comes back whole");
    // New records are numbered after the ones found.
    let max_found = found.iter().map(|r| r.meta.seq).max().unwrap();
    drop(found);
    let until = Instant::now() + Duration::from_secs(30);
    while journal.ready() < 1 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut lane = Lane::default();
    let d = write(&journal, &mut lane, "1.2.3.4", &payload(100, 4));
    assert!(d.meta.seq > max_found);
}

#[test]
fn a_segment_whose_records_were_moved_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open_ready(dir.path());
    let mut lane = Lane::default();
    let a = write(&journal, &mut lane, "1.2.3.1", &payload(5000, 1));
    // Moved and let go: the segment is invalidated (at the latest when the journal stops).
    drop((a, lane));
    drop(journal);
    let (_journal, found) = Journal::open(dir.path(), SEGMENT, 1).unwrap();
    assert!(
        found.is_empty(),
        "{} records of a reused segment",
        found.len()
    );
}

#[test]
fn an_instance_larger_than_what_is_left_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open_ready(dir.path());
    let mut lane = Lane::default();
    let mut entry = lane.begin(&journal).unwrap();
    let big = payload(SEGMENT as usize, 9);
    assert!(
        entry.append(&big).is_err(),
        "a segment's worth plus a header"
    );
}

#[test]
fn replay_moves_records_into_the_spool_and_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::path_in(dir.path())).unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let writer = store.instance_writer().unwrap();
    let journal_dir = spool.root().join(".journal");
    let (journal, _) = open_ready(&journal_dir);
    let mut lane = Lane::default();
    let records = vec![
        write(&journal, &mut lane, "1.2.3.1", &payload(5000, 1)),
        write(&journal, &mut lane, "1.2.3.2", &payload(9000, 2)),
    ];
    std::mem::forget((records, lane));
    drop(journal);

    // The segment as a crash before its reuse would leave it.
    let segment = segment_with_records(&journal_dir);
    let before_reuse = std::fs::read(&segment).unwrap();

    let (journal, found) = Journal::open(&journal_dir, SEGMENT, 1).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(mover::replay(found, &spool, &store, &writer), (2, 0));
    let rows = store.instances().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, seed, n) in [("1.2.3.1", 1, 5000), ("1.2.3.2", 2, 9000)] {
        let row = rows.iter().find(|r| r.sop_instance_uid == row).unwrap();
        assert!(row.path.starts_with(spool.root()));
        assert_eq!(std::fs::read(&row.path).unwrap(), payload(n, seed));
        assert_eq!(row.size, n as u64);
        assert_eq!(row.calling_ae, "JOURNALSCU");
    }
    // Once moved, the segment is invalidated: nothing comes back.
    drop(journal);
    let (journal, found) = Journal::open(&journal_dir, SEGMENT, 1).unwrap();
    assert!(found.is_empty());
    drop(journal);
    // A crash before the invalidation: the same records again, found already in place.
    std::fs::write(&segment, &before_reuse).unwrap();
    let (_journal, found) = Journal::open(&journal_dir, SEGMENT, 1).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(mover::replay(found, &spool, &store, &writer), (0, 2));
    assert_eq!(store.instances().unwrap().len(), 2);
}

/// A running mover over fresh storage, and the study its records belong to.
fn running_mover(
    dir: &std::path::Path,
) -> (Journal, mover::Mover, Arc<Store>, ActiveStudies, String) {
    let store = Arc::new(Store::open(&Store::path_in(dir)).unwrap());
    let spool = Arc::new(Spool::open(dir).unwrap());
    let writer = store.instance_writer().unwrap();
    let (journal, _) = open_ready(&spool.root().join(".journal"));
    let active = ActiveStudies::default();
    let mover = mover::Mover::start(spool, store.clone(), writer, active.clone()).unwrap();
    (journal, mover, store, active, meta("").study_uid)
}

fn wait_released(active: &ActiveStudies, study: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while active.is_active(study) {
        assert!(Instant::now() < until, "the mover never let the study go");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_mover_holds_a_study_back_until_its_rows_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mover, store, active, study) = running_mover(dir.path());
    let mut lane = Lane::default();
    // As journal_finish does: enter the study, then hand the record over.
    for (i, sop) in ["1.2.3.11", "1.2.3.12"].into_iter().enumerate() {
        let record = write(&journal, &mut lane, sop, &payload(3000, i as u8));
        active.enter(&study);
        mover.send(record);
    }
    // The mover waits for the burst to end: the rows are not there yet, and the study is
    // held back meanwhile (an association that closed would no longer hold it).
    assert!(active.is_active(&study));
    assert!(store.instances().unwrap().len() < 2);
    wait_released(&active, &study);
    assert_eq!(
        store.instances().unwrap().len(),
        2,
        "rows before the release"
    );
    drop(mover);
}

#[test]
fn the_mover_leaves_a_copy_received_later_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mover, store, active, study) = running_mover(dir.path());
    let mut lane = Lane::default();
    let record = write(&journal, &mut lane, "1.2.3.21", &payload(4000, 7));
    // The same instance re-sent by another path (STOW-RS, or the per-file path) while the
    // record waited for the mover: its row is newer.
    let newer = dir.path().join("newer.dcm");
    std::fs::write(&newer, payload(100, 9)).unwrap();
    let row = osteoscreen::store::InstanceRecord {
        sop_instance_uid: "1.2.3.21".into(),
        sop_class_uid: record.meta.sop_class_uid.clone(),
        study_uid: study.clone(),
        series_uid: record.meta.series_uid.clone(),
        modality: "CT".into(),
        transfer_syntax: record.meta.transfer_syntax.clone(),
        path: newer.clone(),
        size: 100,
        calling_ae: "LATERSCU".into(),
        received_at_ms: record.meta.received_at_ms + 1000,
    };
    let writer = store.instance_writer().unwrap();
    assert!(writer.record_all_blocking(vec![row.clone()])[0].is_ok());
    let before = store.instances().unwrap();
    active.enter(&study);
    mover.send(record);
    wait_released(&active, &study);
    let rows = store.instances().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].path, before[0].path);
    assert_eq!(rows[0].calling_ae, "LATERSCU");
    assert_eq!(rows[0].received_at_ms, row.received_at_ms);
    assert_eq!(std::fs::read(&newer).unwrap(), payload(100, 9));
    drop(mover);
}

/// A copy of the instance put in place by another path (STOW-RS) while the record waited.
fn place_directly(
    spool: &Spool,
    meta: &RecordMeta,
    bytes: &[u8],
) -> osteoscreen::ingest::spool::Spooled {
    let at = Placement {
        study_uid: &meta.study_uid,
        series_uid: &meta.series_uid,
        sop_instance_uid: &meta.sop_instance_uid,
    };
    let mut incoming = spool.begin_raw(&meta.sop_instance_uid).unwrap();
    incoming.append(bytes);
    spool.place(incoming.finish().unwrap(), &at).unwrap()
}

#[test]
fn the_mover_does_not_replace_a_newer_copy_whose_row_is_not_committed_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&Store::path_in(dir.path())).unwrap());
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let writer = store.instance_writer().unwrap();
    let (journal, _) = open_ready(&spool.root().join(".journal"));
    let active = ActiveStudies::default();
    let mover =
        mover::Mover::start(spool.clone(), store.clone(), writer.clone(), active.clone()).unwrap();
    let mut lane = Lane::default();
    let record = write(&journal, &mut lane, "1.2.3.31", &payload(4000, 7));
    let m = record.meta.clone();
    // Put in place, its row not yet committed: the database cannot tell the mover.
    std::thread::sleep(Duration::from_millis(5));
    let newer = place_directly(&spool, &m, &payload(100, 9));
    assert!(newer.received_at_ms > m.received_at_ms);
    active.enter(&m.study_uid);
    mover.send(record);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read(&newer.path).unwrap(),
        payload(100, 9),
        "the newer copy stays in place"
    );
    assert!(
        store.instances().unwrap().is_empty(),
        "no row of the older copy"
    );
    assert!(
        active.is_active(&m.study_uid),
        "held back until a row is there"
    );
    // The newer copy's row is committed: the record is superseded and let go.
    let row = osteoscreen::store::InstanceRecord {
        sop_instance_uid: m.sop_instance_uid.clone(),
        sop_class_uid: m.sop_class_uid.clone(),
        study_uid: m.study_uid.clone(),
        series_uid: m.series_uid.clone(),
        modality: m.modality.clone(),
        transfer_syntax: m.transfer_syntax.clone(),
        path: newer.path.clone(),
        size: newer.size,
        calling_ae: "STOWRS".into(),
        received_at_ms: newer.received_at_ms,
    };
    assert!(writer.record_all_blocking(vec![row.clone()])[0].is_ok());
    wait_released(&active, &m.study_uid);
    assert_eq!(store.instances().unwrap(), vec![row]);
    assert_eq!(std::fs::read(&newer.path).unwrap(), payload(100, 9));

    // A newer copy whose commit failed is forgotten (as `Ingest::record` does): the
    // acknowledged record is filed after all.
    let record = write(&journal, &mut lane, "1.2.3.32", &payload(2000, 3));
    let m = record.meta.clone();
    std::thread::sleep(Duration::from_millis(5));
    let failed = place_directly(&spool, &m, &payload(50, 1));
    spool.forget(&m.sop_instance_uid, failed.received_at_ms);
    active.enter(&m.study_uid);
    mover.send(record);
    wait_released(&active, &m.study_uid);
    assert_eq!(std::fs::read(&failed.path).unwrap(), payload(2000, 3));
    assert!(store
        .instances()
        .unwrap()
        .iter()
        .any(|r| r.sop_instance_uid == "1.2.3.32" && r.size == 2000));

    // A copy acknowledged after the one in place is filed over it.
    let later = write(&journal, &mut lane, "1.2.3.31", &payload(3000, 5));
    assert!(later.meta.received_at_ms >= newer.received_at_ms);
    active.enter(&m.study_uid);
    mover.send(later);
    wait_released(&active, &m.study_uid);
    assert_eq!(std::fs::read(&newer.path).unwrap(), payload(3000, 5));
    assert_eq!(store.instances().unwrap().len(), 2);
    drop(mover);
}

/// A 64 MiB filesystem of its own for `dir` (unmounted when dropped); the tests run as root.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Take segments for `n` lanes (each waits for the pool to have one ready), then let them
/// all go; returns how many segment files there were at the busiest.
fn burst(journal: &Journal, dir: &std::path::Path, n: usize) -> usize {
    let mut lanes = Vec::new();
    for _ in 0..n {
        let until = Instant::now() + Duration::from_secs(5);
        while journal.ready() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut lane = Lane::default();
        if let Some(entry) = lane.begin(journal) {
            drop(entry);
            lanes.push(lane);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let busiest = segments(dir);
    drop(lanes);
    busiest
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("seg-") && !name.ends_with(".tmp")
        })
        .count()
}

#[test]
fn segments_beyond_the_spares_are_kept_while_the_disk_has_room_and_given_back_near_the_watermark() {
    let size = 8 << 20;
    // Plenty of room: after a burst of four lanes, the extra segments stay ready.
    let roomy = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open_with_floor(roomy.path(), size, 1, 0).unwrap();
    let busiest = burst(&journal, roomy.path(), 4);
    assert!(busiest >= 4, "{busiest} segments for four lanes");
    std::thread::sleep(Duration::from_millis(500));
    let after = segments(roomy.path());
    assert!(
        after >= busiest,
        "{after} of {busiest} kept for the next burst"
    );
    drop(journal);

    // 64 MiB with a 24 MiB watermark: a new segment needs 34 MiB free. The burst takes
    // the disk below that, so segments beyond the one spare are removed until it has
    // room for one again.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("journal");
    let _disk = Tmpfs::mount(&dir);
    let (journal, _) = Journal::open_with_floor(&dir, size, 1, 24 << 20).unwrap();
    let busiest = burst(&journal, &dir, 4);
    assert_eq!(busiest, 4, "segments at the busiest");
    let room = (24 << 20) + size + size / 4;
    let free = || osteoscreen::fsutil::free_bytes(&dir).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while free() < room {
        assert!(
            Instant::now() < until,
            "{} segments left, {} MiB free",
            segments(&dir),
            free() >> 20
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = segments(&dir);
    assert!((1..busiest).contains(&left), "{left} segments left");
    assert!(journal.ready() >= 1, "the spare stays");
}
