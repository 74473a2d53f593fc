//! The ingest journal on its own: records survive a crash (a journal dropped without
//! moving them) and come back in acknowledgement order, a torn record ends its segment's
//! chain, a segment whose records were all moved comes back empty, and replay puts the
//! records into the spool and the database once (a second replay finds them in place).

use std::time::{Duration, Instant};

use osteoscreen::ingest::journal::{Journal, Lane, Record, RecordMeta, HEADER};
use osteoscreen::ingest::mover;
use osteoscreen::ingest::spool::Spool;
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
