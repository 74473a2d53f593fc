//! Store unit tests: recording, job versions, interruptions, the purge, deliveries.

use super::*;

fn record(sop: &str, study: &str, at: i64) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        study_uid: study.into(),
        series_uid: "1.2.3".into(),
        modality: "CT".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        path: PathBuf::from("/x"),
        size: 10,
        calling_ae: "SCU".into(),
        received_at_ms: at,
    }
}

/// The readiness probe's write (check_writable, on the shared connection) while the
/// ingest writer records on its own: a deferred transaction that read before the other
/// committed cannot upgrade to a write and fails at once ("database is locked", no busy
/// wait), which the peer saw as 0xA700. Every write transaction takes the lock first.
#[test]
fn a_concurrent_writer_never_makes_recording_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(&dir.path().join("db.sqlite")).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.check_writable().unwrap();
            }
        })
    };
    let mut conn = connect(&store.path).unwrap();
    let result = (0..3000).try_for_each(|i| {
        record_instances(
            &mut conn,
            &store.base,
            &[record(&format!("1.{i}"), &format!("9.{}", i % 7), i)],
        )
        .map(|_| ())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    prober.join().unwrap();
    result.unwrap();
}

#[test]
fn quiet_study_becomes_job_and_reopens_as_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let mut conn = connect(&store.path).unwrap();
    record_instances(
        &mut conn,
        &store.base,
        &[record("1.1", "9.9", 1000), record("1.2", "9.9", 2000)],
    )
    .unwrap();
    // Duplicate: still two instances.
    record_instances(&mut conn, &store.base, &[record("1.2", "9.9", 2500)]).unwrap();
    assert_eq!(store.instances().unwrap().len(), 2);

    assert!(store.studies_due(2000).unwrap().is_empty(), "not quiet yet");
    assert_eq!(store.studies_due(2500).unwrap(), vec!["9.9".to_string()]);
    let job = store.queue_job("9.9", 2500, 0).unwrap().unwrap();
    assert_eq!((job.version, job.instance_count), (1, 2));
    assert!(
        store.queue_job("9.9", 2500, 0).unwrap().is_none(),
        "no double queue"
    );

    record_instances(&mut conn, &store.base, &[record("1.3", "9.9", 5000)]).unwrap();
    assert!(
        store.queue_job("9.9", 4000, 0).unwrap().is_none(),
        "arrived after cutoff"
    );
    let job2 = store.queue_job("9.9", 5000, 0).unwrap().unwrap();
    assert_eq!((job2.version, job2.instance_count), (2, 3));
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs[0].state, JobState::Superseded);
    assert_eq!(jobs[1].state, JobState::Queued);
}

#[test]
fn interrupted_jobs_become_suspects_run_alone_and_die_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let mut conn = connect(&store.path).unwrap();
    for (sop, study) in [("1.1", "9.1"), ("1.2", "9.2")] {
        record_instances(&mut conn, &store.base, &[record(sop, study, 1000)]).unwrap();
        store.queue_job(study, 1000, 0).unwrap().unwrap();
    }
    // Both in flight when the daemon died: both suspects, no attempt used.
    assert_eq!(store.claim_job().unwrap().unwrap().study_uid, "9.1");
    assert_eq!(store.claim_job().unwrap().unwrap().study_uid, "9.2");
    assert_eq!(store.resume_interrupted(2).unwrap(), (2, 0));
    // Suspects run one at a time.
    let first = store.claim_job().unwrap().unwrap();
    assert_eq!((first.study_uid.as_str(), first.attempts), ("9.1", 1));
    assert!(
        store.claim_job().unwrap().is_none(),
        "one suspect at a time"
    );
    // 9.1, alone, brings the daemon down twice more: dead; 9.2 was never in flight.
    assert_eq!(store.resume_interrupted(2).unwrap(), (1, 0));
    assert_eq!(store.claim_job().unwrap().unwrap().study_uid, "9.1");
    assert_eq!(store.resume_interrupted(2).unwrap(), (0, 1));
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs[0].state, JobState::Dead);
    assert!(jobs[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(jobs[1].state, JobState::Queued);
    assert_eq!(store.claim_job().unwrap().unwrap().study_uid, "9.2");
}

#[test]
fn a_study_that_received_something_since_its_purge_plan_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let mut conn = connect(&store.path).unwrap();
    record_instances(&mut conn, &store.base, &[record("1.1", "9.9", 1000)]).unwrap();
    let job = store.queue_job("9.9", 1000, 0).unwrap().unwrap();
    store.job_failed(job.id, "x", None).unwrap();
    let cutoff = now_ms() + 1000;
    assert_eq!(store.purgeable_studies(cutoff).unwrap(), vec!["9.9"]);
    let plan = store.purge_plan("9.9", cutoff).unwrap().unwrap();
    assert_eq!(plan.files, vec![PathBuf::from("/x")]);
    // An instance arrives and its study is queued again before the rows go.
    record_instances(&mut conn, &store.base, &[record("1.2", "9.9", 2000)]).unwrap();
    store.queue_job("9.9", 2000, 0).unwrap().unwrap();
    assert!(!store.forget_study("9.9", &plan).unwrap());
    assert_eq!(store.instances().unwrap().len(), 2);
    assert!(
        store.purge_plan("9.9", cutoff).unwrap().is_none(),
        "a job is queued"
    );
    // Unchanged since its plan: removed.
    let job = store.jobs().unwrap().pop().unwrap();
    store.job_failed(job.id, "x", None).unwrap();
    let plan = store.purge_plan("9.9", now_ms() + 1000).unwrap().unwrap();
    assert!(store.forget_study("9.9", &plan).unwrap());
    assert!(store.instances().unwrap().is_empty());
}

#[test]
fn deliveries_to_a_destination_no_longer_configured_end_dead() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let mut conn = connect(&store.path).unwrap();
    record_instances(&mut conn, &store.base, &[record("1.1", "9.9", 1000)]).unwrap();
    store.queue_job("9.9", 1000, 0).unwrap().unwrap();
    let job = store.claim_job().unwrap().unwrap();
    let to = |destination: &str| NewDelivery {
        destination: destination.into(),
        kind: "sr".into(),
        sop_instance_uid: "1.2.3".into(),
        path: PathBuf::from("/o/sr.dcm"),
    };
    let state = store
        .job_delivering(job.id, &[to("pacs"), to("old")], JobState::Done, None, "{}")
        .unwrap();
    assert_eq!(state, JobState::Delivering);
    assert_eq!(
        store
            .abandon_unrouted(&["pacs".into(), "old".into()])
            .unwrap(),
        0
    );
    assert_eq!(store.abandon_unrouted(&["pacs".into()]).unwrap(), 1);
    let dead: Vec<_> = store
        .deliveries_of("9.9")
        .unwrap()
        .into_iter()
        .filter(|d| d.state == DeliveryState::Dead)
        .collect();
    assert_eq!(dead.len(), 1);
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("no longer configured"));
    // The job ends once its other delivery does.
    let pacs = store.deliveries_of("9.9").unwrap()[0].id;
    assert_eq!(
        store.delivery_done(pacs).unwrap(),
        Some((job.id, JobState::Dead))
    );
}

/// The journal's mover can commit an older copy's row after a newer copy's (re-sent by
/// another path while its record waited): the newer row stays, and the older copy's file,
/// if it lies elsewhere, is the one to remove. Rows put in place as they are recorded
/// replace it whatever their clock said.
#[test]
fn an_older_copy_filed_after_a_newer_one_leaves_the_newer_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let mut conn = connect(&store.path).unwrap();
    let mut filed = |r: &InstanceRecord| record_rows(&mut conn, &store.base, [(r, true)]);
    let newer = InstanceRecord {
        calling_ae: "LATER".into(),
        size: 20,
        ..record("1.1", "9.9", 2000)
    };
    assert!(filed(&newer).unwrap().is_empty());
    assert!(filed(&record("1.1", "9.9", 1000)).unwrap().is_empty());
    let elsewhere = InstanceRecord {
        path: PathBuf::from("/y"),
        ..record("1.1", "9.9", 1500)
    };
    assert_eq!(filed(&elsewhere).unwrap(), vec![PathBuf::from("/y")]);
    assert_eq!(store.instances().unwrap(), vec![newer.clone()]);
    // A copy received later still replaces it, and the file it left is removed.
    let latest = InstanceRecord {
        path: PathBuf::from("/z"),
        ..record("1.1", "9.9", 3000)
    };
    assert_eq!(filed(&latest).unwrap(), vec![PathBuf::from("/x")]);
    assert_eq!(store.instances().unwrap(), vec![latest.clone()]);
    // Not yielding (STOW-RS, the per-file path): the last recorded wins.
    let mut conn = connect(&store.path).unwrap();
    assert_eq!(
        record_instances(&mut conn, &store.base, std::slice::from_ref(&elsewhere)).unwrap(),
        vec![PathBuf::from("/z")]
    );
    assert_eq!(store.instances().unwrap(), vec![elsewhere]);
}
