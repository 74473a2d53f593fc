//! The daemon as an administrator runs it: analysis failures retried then dead and
//! revived by `queue retry`, `queue show`, `queue purge`, priorities, SIGHUP reloading
//! destinations while a modality is sending, SIGTERM while a study is analysed, the site's
//! feature shift and the daemon's own adaptation to the site.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::scu::RawAssociation;
use common::*;
use osteoscreen::deliver::dimse::OutgoingFile;
use osteoscreen::store::JobState;

const LIMIT: Duration = Duration::from_secs(180);

fn analysing(work: &Path, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
        ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
    ];
    env.extend_from_slice(extra);
    Daemon::start(work, &env)
}

fn send(d: &Daemon, ae: &str, study: &Path) {
    let out = run(d.storescu(ae).args(dicom_files(study)));
    assert!(out.status.success(), "{}", text(&out));
}

fn jobs_final(d: &Daemon, n: usize) -> Vec<osteoscreen::store::Job> {
    wait_until("jobs to end", LIMIT, || {
        let jobs = d.store().jobs().unwrap();
        jobs.len() >= n && jobs.iter().all(|j| j.state.is_final())
    });
    d.store().jobs().unwrap()
}

#[test]
fn failed_analysis_is_retried_then_dead_and_queue_retry_brings_it_back() {
    let work = tempfile::tempdir().unwrap();
    let dx = synth_study(&work.path().join("dx"), &DX_SMALL);
    // No X-ray model configured: radiograph studies fail, saying so.
    let d = analysing(
        work.path(),
        &[
            ("OSTEOSCREEN__MODEL__WEIGHTS", ""),
            ("OSTEOSCREEN__PIPELINE__MAX_ATTEMPTS", "2"),
            ("OSTEOSCREEN__PIPELINE__RETRY_SECONDS", "1"),
        ],
    );
    send(&d, "MODALITY", &dx);
    let jobs = jobs_final(&d, 1);
    assert_eq!(jobs[0].state, JobState::Dead, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 2);
    assert!(
        jobs[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("[model] weights"),
        "{jobs:?}"
    );
    let study = jobs[0].study_uid.clone();
    let shown = text(&d.cli(&["queue", "show", &study]));
    assert!(
        shown.contains("dead") && shown.contains("[model] weights"),
        "{shown}"
    );
    assert_eq!(d.logs().matches("study analysis failed").count(), 2);

    let out = d.cli(&["queue", "retry", &study]);
    assert!(
        text(&out).contains("1 job(s) queued again"),
        "{}",
        text(&out)
    );
    wait_until("the retried job to fail twice more", LIMIT, || {
        d.logs().matches("study analysis failed").count() == 4
            && d.store().jobs().unwrap()[0].state == JobState::Dead
    });
}

#[test]
fn purge_removes_finished_studies_and_their_files_only() {
    let work = tempfile::tempdir().unwrap();
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let dx = synth_study(&work.path().join("dx"), &DX_SMALL);
    let d = analysing(work.path(), &[]);
    send(&d, "MODALITY", &ct);
    let jobs = jobs_final(&d, 1);
    assert_eq!(jobs[0].state, JobState::Done);
    let ct_uid = jobs[0].study_uid.clone();
    let results = d.storage.join("results").join(&ct_uid);
    assert_eq!(
        std::fs::read_dir(&results).unwrap().count(),
        2,
        "SR + SC delivered"
    );
    let spool = d.storage.join("spool").join(&ct_uid);
    assert!(spool.exists());

    // A study still waiting (paused pipeline) must survive the purge.
    let mut d = d;
    d.terminate();
    d.set_env("OSTEOSCREEN__PIPELINE__PAUSED", "true");
    d.restart();
    send(&d, "MODALITY", &dx);
    wait_until("the DX to be queued", LIMIT, || {
        d.store().jobs().unwrap().len() == 2
    });

    // A purge that crashed after moving a file aside: the next one puts it back (it can no
    // longer tell the finished study's file from a re-sent one) and keeps the study, now
    // fresh; a later one removes it.
    let first = dicom_files(&spool)[0].clone();
    let aside = std::path::PathBuf::from(format!("{}.purging", first.display()));
    std::fs::rename(&first, &aside).unwrap();
    let out = d.cli(&["queue", "purge", "--older-than", "0"]);
    assert!(text(&out).contains("purged 0 studies"), "{}", text(&out));
    assert!(first.exists() && !aside.exists(), "put back");
    std::thread::sleep(Duration::from_millis(1500));

    let out = d.cli(&["queue", "purge", "--older-than", "0"]);
    assert!(text(&out).contains("purged 1 studies"), "{}", text(&out));
    assert!(!spool.exists(), "spool files of the finished study removed");
    assert!(!d.storage.join("outbox").join(&ct_uid).exists());
    assert!(results.exists(), "a folder destination belongs to the user");
    let jobs = d.store().jobs().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, JobState::Queued);
    let left: Vec<_> = d.store().instances().unwrap();
    assert_eq!(left.len(), 2, "the waiting study's instances stay");
    assert!(left.iter().all(|i| i.path.exists()));
}

#[test]
fn priorities_put_ct_before_a_radiograph_backfill() {
    let work = tempfile::tempdir().unwrap();
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let model = untrained_model(work.path());
    let config = work.path().join("priorities.toml");
    let rules = "\n[[pipeline.priorities]]\nmodality = \"CT\"\npriority = 10\n\
                 [[pipeline.priorities]]\ncalling_ae = \"BACKFILL\"\npriority = -10\n";
    std::fs::write(
        &config,
        std::fs::read_to_string(shipped_config()).unwrap() + rules,
    )
    .unwrap();
    // Paused (the test default): three radiograph studies from a backfill, then a CT.
    let mut d = Daemon::start_with_config(
        work.path(),
        &config,
        &[
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            ("OSTEOSCREEN__PIPELINE__WORKERS", "1"),
            ("OSTEOSCREEN__MODEL__WEIGHTS", model.to_str().unwrap()),
        ],
    );
    for seed in ["21", "22", "23"] {
        let dir = work.path().join(format!("dx{seed}"));
        let args = ["--modality", "dx", "--size", "512x640", "--seed", seed];
        send(&d, "BACKFILL", &synth_study(&dir, &args));
    }
    send(&d, "CT01", &ct);
    wait_until("four jobs queued", LIMIT, || {
        d.store().jobs().unwrap().len() == 4
    });
    let jobs = d.store().jobs().unwrap();
    let ct_job = jobs
        .iter()
        .find(|j| j.priority == 10)
        .expect("CT job at 10");
    assert_eq!(
        jobs.iter().filter(|j| j.priority == -10).count(),
        3,
        "{jobs:?}"
    );
    assert_eq!(ct_job.instance_count, dicom_files(&ct).len() as i64);
    // One worker: the CT, queued last, is analysed first.
    assert!(d.terminate().success());
    d.set_env("OSTEOSCREEN__PIPELINE__PAUSED", "false");
    d.restart();
    jobs_final(&d, 4);
    let logs = d.logs();
    let first = logs
        .lines()
        .find(|l| l.contains("analysing study"))
        .expect("a study analysed");
    assert!(first.contains(&ct_job.study_uid), "{first}");
}

#[test]
fn sighup_reloads_destinations_while_a_modality_sends() {
    let work = tempfile::tempdir().unwrap();
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let first = work.path().join("first");
    let second = work.path().join("second");
    let config = work.path().join("osteoscreen.toml");
    let with = |dir: &Path| {
        std::fs::read_to_string(shipped_config()).unwrap()
            + &format!(
                "\n[[destinations]]\nname = \"out\"\nkind = \"folder\"\npath = \"{}\"\n",
                dir.display()
            )
    };
    std::fs::write(&config, with(&first)).unwrap();
    let d = Daemon::start_with_config(
        work.path(),
        &config,
        &[
            ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            // Without the journal: the held store's partial file shows it is in flight.
            ("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0"),
        ],
    );
    // A modality is in the middle of a store when the reload happens: half a data set
    // is in the daemon's hands.
    let held = OutgoingFile::inspect(&real("wg04/CT1_UNC.dcm")).unwrap();
    let data = held.data_set().unwrap();
    let mut association = RawAssociation::for_file(d.port, "MODALITY", &held);
    association.send_store_command(&held);
    association.send_data(&data[..8000], false);
    wait_until("a store in flight", LIMIT, || {
        d.partial_files().iter().any(|(_, size)| *size >= 8000)
    });
    std::fs::write(&config, with(&second)).unwrap();
    run(Command::new("kill").arg("-HUP").arg(d.pid().to_string()));
    wait_until("the reload to be logged", LIMIT, || {
        d.logs()
            .contains("SIGHUP: destinations, priorities and log level reloaded")
    });
    // The association is still there: the rest of the data set is stored.
    association.send_data(&data[8000..], true);
    let (status, comment) = association.response();
    assert!(status.is_success(), "{status} {comment:?}\n{}", d.logs());
    association.release();
    send(&d, "MODALITY", &ct);
    let jobs = jobs_final(&d, 2);
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|j| j.instance_count == dicom_files(&ct).len() as i64)
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, JobState::Done, "{}", d.logs());
    assert_eq!(jobs[0].instance_count, dicom_files(&ct).len() as i64);
    let results = second.join(&jobs[0].study_uid);
    assert_eq!(
        std::fs::read_dir(&results).unwrap().count(),
        2,
        "{}",
        d.logs()
    );
    assert!(!first.exists(), "the old destination got nothing");

    // An invalid file changes nothing and says why.
    std::fs::write(&config, "[dicom]\nmax_associations = 0\n").unwrap();
    run(Command::new("kill").arg("-HUP").arg(d.pid().to_string()));
    wait_until("the refusal to be logged", LIMIT, || {
        d.logs().contains("SIGHUP: settings not reloaded")
    });
}

#[test]
fn sigterm_lets_the_study_being_analysed_finish() {
    let work = tempfile::tempdir().unwrap();
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let mut d = analysing(work.path(), &[]);
    send(&d, "MODALITY", &ct);
    wait_until("the CT to be analysed", LIMIT, || {
        d.store()
            .jobs()
            .unwrap()
            .iter()
            .any(|j| j.state == JobState::Analysing)
    });
    assert!(d.terminate().success());
    let jobs = d.store().jobs().unwrap();
    // Finished (and delivered to the default folder), not left half-done.
    assert!(
        matches!(jobs[0].state, JobState::Done | JobState::Delivering),
        "{jobs:?}\n{}",
        d.logs()
    );
    assert!(d.logs().contains("shutdown complete"));
}

#[test]
fn the_site_s_feature_shift_is_a_metric_once_enough_radiographs_were_read() {
    let work = tempfile::tempdir().unwrap();
    // 20 two-view studies: 40 radiographs, above the 32 the shift is reported after.
    let data = synth_dx_studies(&work.path().join("synth"), 20, 47);
    // The shift of the weights as configured: no site adaptation after 32 radiographs.
    let d = analysing(
        work.path(),
        &[("OSTEOSCREEN__MODEL__SITE_ADAPTATION", "false")],
    );
    let shift = || common::stow::metric(&d, "osteoscreen_xray_feature_shift");
    assert!(shift().is_some_and(f64::is_nan), "{:?}", shift());
    let out = run(d.storescu("MODALITY").args(dicom_files(&data)));
    assert!(out.status.success(), "{}", text(&out));
    let jobs = jobs_final(&d, 20);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Done),
        "{}",
        d.logs()
    );
    // The bundled weights' own synth studies: a number, below the warning level, and
    // no warning in the log.
    let s = shift().unwrap();
    assert!(s.is_finite() && s > 0.0 && s < 0.45, "{s}");
    assert!(
        !d.logs().contains("look unlike the X-ray model"),
        "{}",
        d.logs()
    );
}

#[test]
fn the_daemon_adapts_to_the_site_after_its_first_radiographs_and_keeps_it_across_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let data = synth_dx_studies(&work.path().join("synth"), 18, 53);
    let study = |k: usize| data.join(format!("study{k:05}"));
    let mut d = analysing(
        work.path(),
        &[("OSTEOSCREEN__MODEL__SITE_ADAPTATION_IMAGES", "32")],
    );
    let adapted = |d: &Daemon| common::stow::metric(d, "osteoscreen_xray_site_adapted");
    assert_eq!(adapted(&d), Some(0.0));
    // Sixteen two-view studies: the 32 radiographs adapted on.
    let first: Vec<_> = (0..16).flat_map(|k| dicom_files(&study(k))).collect();
    let out = run(d.storescu("MODALITY").args(&first));
    assert!(out.status.success(), "{}", text(&out));
    let jobs = jobs_final(&d, 16);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Done),
        "{}",
        d.logs()
    );
    d.wait_for_log("adapted to this site's radiographs", LIMIT);
    assert_eq!(adapted(&d), Some(1.0), "{}", d.logs());
    // The look is measured again against the adapted model: no number until 32 more.
    let shift = common::stow::metric(&d, "osteoscreen_xray_feature_shift");
    assert!(shift.is_some_and(f64::is_nan), "{shift:?}");
    let weights = d.storage_dir().join("model/site-adapted.safetensors");
    let card = osteoscreen::model::ModelCard::read(&weights.with_extension("json")).unwrap();
    card.check_weights(&weights).unwrap();
    assert!(card.version.ends_with("+adapted"), "{}", card.version);
    assert!(card.training_data.contains("32 unlabelled radiographs"));

    // A later study's report names the adapted model; the first studies' do not.
    let version_in = |d: &Daemon, uid: &str| {
        let dir = d.storage_dir().join("results").join(uid);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", dir.display(), d.logs()))
            .map(|e| e.unwrap().path())
            .collect();
        let sr = common::report::pick(&files, "sr");
        common::report::dciodvfy_clean(sr);
        common::report::dsrdump(sr)
    };
    // dsrdump shortens the version; the adapted model's name is the configured one's
    // with "-site".
    let site_model = format!(
        "\"{}-site\"",
        osteoscreen::model::ModelCard::read(&common::models::bundled().with_extension("json"))
            .unwrap()
            .name
    );
    assert!(!version_in(&d, &jobs[0].study_uid).contains(&site_model));
    send(&d, "MODALITY", &study(16));
    let jobs = jobs_final(&d, 17);
    let later = jobs.iter().max_by_key(|j| j.id).unwrap();
    let shown = version_in(&d, &later.study_uid);
    assert!(shown.contains(&site_model), "{shown}");

    // A restart reads with the adapted weights at once.
    assert!(d.terminate().success());
    d.restart();
    d.wait_for_log("adapted to this site earlier", LIMIT);
    assert_eq!(adapted(&d), Some(1.0));
    send(&d, "MODALITY", &study(17));
    let jobs = jobs_final(&d, 18);
    let last = jobs.iter().max_by_key(|j| j.id).unwrap();
    assert!(version_in(&d, &last.study_uid).contains(&site_model));

    // Switched off, the configured weights read again and the file is left alone.
    assert!(d.terminate().success());
    d.set_env("OSTEOSCREEN__MODEL__SITE_ADAPTATION", "false");
    d.restart();
    assert_eq!(adapted(&d), Some(0.0));
    assert!(weights.exists());
}
