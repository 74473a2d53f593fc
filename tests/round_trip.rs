//! The round trip a hospital installs osteoscreen for, with Orthanc as the PACS: Orthanc
//! routes studies to osteoscreen (`POST /modalities/{id}/store`, as auto-routing does);
//! osteoscreen analyses them and sends an SR and an SC back into the same study, by
//! C-STORE or STOW-RS; through PACS outages and kill -9 of the daemon, each object
//! arrives exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::orthanc::{Orthanc, OrthancOptions};
use common::*;
use osteoscreen::store::{DeliveryState, JobState};

/// Generous limits: a loaded 2-core machine analyses a CT in seconds, not minutes.
const LIMIT: Duration = Duration::from_secs(180);

/// The shipped settings plus `[[destinations]]`, written into `work`.
fn config_with(work: &Path, destinations: &str) -> PathBuf {
    let text = std::fs::read_to_string(shipped_config()).unwrap() + "\n" + destinations;
    let path = work.join("osteoscreen.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn dimse_destination(o: &Orthanc) -> String {
    format!(
        "[[destinations]]\nname = \"pacs\"\nkind = \"dimse\"\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {}\n",
        o.dicom_port
    )
}

/// A running daemon that analyses (not paused), with quick retries for the tests.
fn daemon(work: &Path, config: &Path, model: &Path) -> Daemon {
    daemon_with(work, config, model, "1000")
}

fn daemon_with(work: &Path, config: &Path, model: &Path, max_attempts: &str) -> Daemon {
    Daemon::start_with_config(
        work,
        config,
        &[
            ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
            ("OSTEOSCREEN__PIPELINE__WORKERS", "2"),
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            ("OSTEOSCREEN__DELIVERY__INITIAL_BACKOFF_SECONDS", "0.3"),
            ("OSTEOSCREEN__DELIVERY__MAX_BACKOFF_SECONDS", "1"),
            ("OSTEOSCREEN__DELIVERY__MAX_ATTEMPTS", max_attempts),
            ("OSTEOSCREEN__DELIVERY__TIMEOUT_SECONDS", "5"),
            ("OSTEOSCREEN__MODEL__WEIGHTS", model.to_str().unwrap()),
        ],
    )
}

/// Modalities of the instances Orthanc holds in a study, sorted.
fn modalities(o: &Orthanc, study: &str) -> Vec<String> {
    let mut m: Vec<String> = o.instances_of(study).into_iter().map(|(m, _)| m).collect();
    m.sort();
    m
}

/// How many SR and OT (our SC) instances a study holds in Orthanc.
fn results_in(o: &Orthanc, study: &str) -> (usize, usize) {
    let m = modalities(o, study);
    (
        m.iter().filter(|x| *x == "SR").count(),
        m.iter().filter(|x| *x == "OT").count(),
    )
}

/// `wait_until`, showing the daemon's state and logs when it times out.
fn wait_for(d: &Daemon, what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        if start.elapsed() > LIMIT {
            let store = d.store();
            let jobs = store.jobs().unwrap();
            let deliveries: Vec<_> = jobs
                .iter()
                .flat_map(|j| store.deliveries_of(&j.study_uid).unwrap())
                .collect();
            let logs = d.logs();
            let tail: String = logs.lines().rev().take(60).collect::<Vec<_>>().join("\n");
            panic!("timed out waiting for {what}\njobs: {jobs:#?}\ndeliveries: {deliveries:#?}\nlogs (last lines first):\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until every job of the daemon has ended, and return their states.
fn wait_all_final(d: &Daemon, jobs: usize) -> Vec<JobState> {
    wait_for(d, "every job to end", || {
        let all = d.store().jobs().unwrap();
        all.len() >= jobs && all.iter().all(|j| j.state.is_final())
    });
    d.store().jobs().unwrap().iter().map(|j| j.state).collect()
}

#[test]
fn orthanc_routes_studies_and_receives_sr_and_sc_by_c_store() {
    let work = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(work.path());
    let dx = synth_study(&work.path().join("dx"), &DX_SMALL);
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let hip = work.path().join("hip");
    std::fs::create_dir_all(&hip).unwrap();
    std::fs::copy(real("wg04/RG2_UNC.dcm"), hip.join("rg2.dcm")).unwrap();
    let model = untrained_model(work.path());
    let config = config_with(work.path(), &dimse_destination(&orthanc));
    let d = daemon(work.path(), &config, &model);
    orthanc.add_modality("OSTEO", "OSTEOSCREEN", d.port);

    let studies: Vec<String> = [&dx, &ct, &hip]
        .iter()
        .map(|dir| orthanc.upload_study(dir))
        .collect();
    let before: Vec<usize> = studies
        .iter()
        .map(|s| modalities(&orthanc, s).len())
        .collect();
    for s in &studies {
        orthanc.send_study("OSTEO", s);
    }
    let states = wait_all_final(&d, 3);
    assert_eq!(
        states.iter().filter(|s| **s == JobState::Done).count(),
        2,
        "{states:?}\n{}",
        d.logs()
    );
    assert!(states.contains(&JobState::NotApplicable), "{states:?}");
    // Each lumbar study holds one SR and one SC more than it was sent with; the hip CR
    // study holds nothing new.
    for (s, n) in studies[..2].iter().zip(&before) {
        assert_eq!(
            results_in(&orthanc, s),
            (1, 1),
            "{:?}",
            modalities(&orthanc, s)
        );
        assert_eq!(modalities(&orthanc, s).len(), n + 2);
    }
    assert_eq!(modalities(&orthanc, &studies[2]).len(), before[2]);
    assert_eq!(orthanc.studies().len(), 3, "results joined their studies");
    // The queue tells an administrator the same.
    let out = run(std::process::Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["queue", "list"])
        .env("OSTEOSCREEN__STORAGE__DIR", &d.storage));
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    assert_eq!(listing.matches("2/2 sent").count(), 2, "{listing}");
    assert!(listing.contains("not_applicable"), "{listing}");
    // One outcome line per study, without patient data.
    let logs = d.logs();
    assert_eq!(logs.matches("study finished").count(), 3, "{logs}");
    assert!(!logs.contains("SYNTH^"), "patient names must not be logged");
}

#[test]
fn results_go_back_by_stow_rs_into_orthanc_dicomweb() {
    let work = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start_with(
        work.path(),
        OrthancOptions {
            dicomweb: true,
            ..OrthancOptions::default()
        },
    );
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let model = untrained_model(work.path());
    let destination = format!(
        "[[destinations]]\nname = \"pacs-web\"\nkind = \"stow\"\nurl = \"http://127.0.0.1:{}/dicom-web\"\n",
        orthanc.http_port
    );
    let config = config_with(work.path(), &destination);
    let d = daemon(work.path(), &config, &model);
    orthanc.add_modality("OSTEO", "OSTEOSCREEN", d.port);
    let study = orthanc.upload_study(&ct);
    orthanc.send_study("OSTEO", &study);
    let states = wait_all_final(&d, 1);
    assert_eq!(states, vec![JobState::Done], "{}", d.logs());
    assert_eq!(results_in(&orthanc, &study), (1, 1));
    let deliveries = d
        .store()
        .deliveries_of(&d.store().jobs().unwrap()[0].study_uid)
        .unwrap();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries
        .iter()
        .all(|x| x.destination == "pacs-web" && x.state == DeliveryState::Done));
}

#[test]
fn a_pacs_outage_is_retried_and_every_object_arrives_once() {
    let work = tempfile::tempdir().unwrap();
    let mut orthanc = Orthanc::start(work.path());
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let model = untrained_model(work.path());
    let config = config_with(work.path(), &dimse_destination(&orthanc));
    // Two attempts allowed: a PACS that cannot be reached at all does not use them up,
    // however long it is away (its deliveries stay pending, not dead).
    let d = daemon_with(work.path(), &config, &model, "2");
    let study = orthanc.upload_study(&ct);
    // The PACS is away when the results are ready (the modality sent the study to
    // osteoscreen directly).
    orthanc.stop();
    let sent = run(d.storescu("MODALITY").args(dicom_files(&ct)));
    assert!(sent.status.success(), "{}", text(&sent));
    wait_for(&d, "three rounds of reconnecting", || {
        d.logs().matches("destination not reached").count() >= 6
    });
    let job = d.store().jobs().unwrap().remove(0);
    assert_eq!(job.state, JobState::Delivering);
    let pending = d.store().deliveries_of(&job.study_uid).unwrap();
    assert!(
        pending
            .iter()
            .all(|x| x.state == DeliveryState::Pending && x.attempts == 0),
        "no attempt used while the PACS cannot be reached: {pending:?}"
    );
    assert!(
        pending.iter().all(|x| x.last_error.is_some()),
        "the reason is kept: {pending:?}"
    );
    orthanc.restart();
    let states = wait_all_final(&d, 1);
    assert_eq!(states, vec![JobState::Done], "{}", d.logs());
    assert_eq!(results_in(&orthanc, &study), (1, 1));
}

#[test]
fn kill_9_during_analysis_and_during_delivery_still_delivers_exactly_once() {
    let work = tempfile::tempdir().unwrap();
    let mut orthanc = Orthanc::start(work.path());
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let dx = synth_study(&work.path().join("dx"), &DX_SMALL);
    let model = untrained_model(work.path());
    let config = config_with(work.path(), &dimse_destination(&orthanc));
    let mut d = daemon(work.path(), &config, &model);
    orthanc.add_modality("OSTEO", "OSTEOSCREEN", d.port);
    let ct_study = orthanc.upload_study(&ct);
    let dx_study = orthanc.upload_study(&dx);

    // 1. Killed while the CT is being analysed.
    orthanc.send_study("OSTEO", &ct_study);
    wait_for(&d, "the CT to be analysed", || {
        d.store()
            .jobs()
            .unwrap()
            .iter()
            .any(|j| j.state == JobState::Analysing)
    });
    d.kill9();
    d.restart();
    wait_all_final(&d, 1);

    // 2. Killed while results wait for a PACS that is down (the modality sends the DX
    // straight to osteoscreen while the PACS is away).
    orthanc.stop();
    let sent = run(d.storescu("MODALITY").args(dicom_files(&dx)));
    assert!(sent.status.success(), "{}", text(&sent));
    wait_for(&d, "the DX results to wait for the PACS", || {
        let store = d.store();
        store.jobs().unwrap().iter().any(|j| {
            j.state == JobState::Delivering
                && store
                    .deliveries_of(&j.study_uid)
                    .unwrap()
                    .iter()
                    .any(|x| x.last_error.is_some())
        })
    });
    d.kill9();
    orthanc.restart();
    d.restart();

    // 3. Killed right after it is back, before it can have finished anything new.
    d.kill9();
    d.restart();

    let states = wait_all_final(&d, 2);
    assert_eq!(states, vec![JobState::Done, JobState::Done], "{}", d.logs());
    assert_eq!(results_in(&orthanc, &ct_study), (1, 1));
    assert_eq!(results_in(&orthanc, &dx_study), (1, 1));
}

#[test]
fn reply_to_sender_returns_results_to_the_pacs_that_routed_the_study() {
    let work = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(work.path());
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let model = untrained_model(work.path());
    // No [[destinations]]: results go to the default folder, and back to the sender
    // because [[peers]] says how to reach it.
    let peers = format!(
        "[[peers]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {}\n",
        orthanc.dicom_port
    );
    let config = config_with(work.path(), &peers);
    let d = Daemon::start_with_config(
        work.path(),
        &config,
        &[
            ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            ("OSTEOSCREEN__DELIVERY__REPLY_TO_SENDER", "true"),
            ("OSTEOSCREEN__MODEL__WEIGHTS", model.to_str().unwrap()),
        ],
    );
    orthanc.add_modality("OSTEO", "OSTEOSCREEN", d.port);
    let study = orthanc.upload_study(&ct);
    orthanc.send_study("OSTEO", &study);
    // A modality the peers table does not know gets nothing back.
    let dx = synth_study(&work.path().join("dx"), &DX_SMALL);
    let sent = run(d.storescu("UNKNOWN").args(dicom_files(&dx)));
    assert!(sent.status.success(), "{}", text(&sent));
    let states = wait_all_final(&d, 2);
    assert_eq!(states, vec![JobState::Done, JobState::Done], "{}", d.logs());
    assert_eq!(results_in(&orthanc, &study), (1, 1));
    let store = d.store();
    let jobs = store.jobs().unwrap();
    let mut destinations: Vec<(String, String)> = jobs
        .iter()
        .flat_map(|j| store.deliveries_of(&j.study_uid).unwrap())
        .map(|x| (x.study_uid, x.destination))
        .collect();
    destinations.sort();
    destinations.dedup();
    let ct_uid = &jobs
        .iter()
        .find(|j| j.instance_count > 2)
        .unwrap()
        .study_uid;
    let of = |uid: &str| -> Vec<&str> {
        destinations
            .iter()
            .filter(|(s, _)| s == uid)
            .map(|(_, d)| d.as_str())
            .collect()
    };
    assert_eq!(of(ct_uid), vec!["reply-ORTHANC", "results"]);
    let dx_uid = &jobs
        .iter()
        .find(|j| j.instance_count == 2)
        .unwrap()
        .study_uid;
    assert_eq!(of(dx_uid), vec!["results"]);
}
