//! Grey-level polarity: a study whose pixels run against its Photometric Interpretation
//! (DCMTK's dcmodify turns the header over, as a faulty converter does) is read the right
//! way round and flagged, in the Finding and the SR; `osteoscreen polarity` fits the probe
//! into a card, held out set by set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::models::*;
use common::report::*;
use common::*;

/// A copy of `study` whose every image says the other MONOCHROME than it did (and the
/// Presentation LUT Shape that goes with it), pixels untouched (dcmodify).
fn header_turned_over(study: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for file in dicom_files(study) {
        let copy = to.join(file.file_name().unwrap());
        std::fs::copy(&file, &copy).unwrap();
        let now = tag(&copy, "0028,0004");
        let (other, shape) = if now.contains("MONOCHROME1") {
            ("MONOCHROME2", "IDENTITY")
        } else {
            ("MONOCHROME1", "INVERSE")
        };
        let out = run(Command::new("dcmodify")
            .args(["-nb", "-m", &format!("(0028,0004)={other}")])
            .args(["-i", &format!("(2050,0020)={shape}")])
            .arg(&copy));
        assert!(out.status.success(), "dcmodify: {}", text(&out));
    }
    to.to_path_buf()
}

/// What `polarity` says of a set with no images.
const EMPTY_SET: &str = "no known dataset layout";

fn flags(finding: &serde_json::Value) -> Vec<String> {
    finding["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// The Finding a successful `analyze --json` printed.
fn finding(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether a flag of the Finding says the study was read turned over.
fn turned_over(finding: &serde_json::Value) -> bool {
    flags(finding)
        .iter()
        .any(|f| f.contains("grey levels look inverted"))
}

/// Whether any flag of the Finding speaks of its grey levels.
fn grey_flagged(finding: &serde_json::Value) -> bool {
    flags(finding).iter().any(|f| f.contains("grey levels"))
}

/// `turned` (a study whose headers were turned over) read with the weights `env` names:
/// their card's probe is kept (no "other weights" warning) and catches the turn.
fn caught_by_the_probe_of(turned: &Path, env: &[(&str, &std::ffi::OsStr)]) {
    let out = analyze(turned, env);
    assert!(!text(&out).contains("other weights"), "{}", text(&out));
    let f = finding(&out);
    assert!(turned_over(&f), "{:?}", flags(&f));
}

fn t_score(finding: &serde_json::Value) -> f64 {
    finding["conclusion"]["t_score"].as_f64().unwrap()
}

#[test]
fn a_study_with_inverted_grey_levels_is_read_turned_over_and_says_so() {
    let work = tempfile::tempdir().unwrap();
    let studies = synth_dx_studies(&work.path().join("s"), 3, 8101);
    for k in 0..3 {
        let study = studies.join(format!("study{k:05}"));
        let turned = header_turned_over(&study, &work.path().join(format!("turned{k}")));
        let (upright, _) = analyze_out(&study, &work.path().join(format!("o{k}")), None);
        let (read, files) = analyze_out(&turned, &work.path().join(format!("t{k}")), None);
        assert!(!grey_flagged(&upright), "{:?}", flags(&upright));
        let said: Vec<String> = flags(&read)
            .into_iter()
            .filter(|f| f.contains("grey levels look inverted"))
            .collect();
        assert_eq!(said.len(), 1, "{:?}", flags(&read));
        // Turned over, the image is the upright one again: the same reading.
        assert_eq!(read["conclusion"]["class"], upright["conclusion"]["class"]);
        assert!(
            (t_score(&read) - t_score(&upright)).abs() < 1e-3,
            "{} vs {}",
            t_score(&read),
            t_score(&upright)
        );
        // The radiologist reads it in the SR, which stays valid.
        let sr = pick(&files, "sr");
        dciodvfy_clean(sr);
        let dump = text(&run(Command::new("dsrdump").arg("+Pl").arg(sr)));
        assert!(dump.contains("grey levels look inverted"), "{dump}");
    }

    // Unchecked (`[model] polarity_check = false`), the same study is read as its header
    // says, bone dark, and nothing says so.
    let turned = work.path().join("turned0");
    let unchecked = analyze(
        &turned,
        &[("OSTEOSCREEN__MODEL__POLARITY_CHECK", "false".as_ref())],
    );
    let f = finding(&unchecked);
    assert!(!grey_flagged(&f), "{:?}", flags(&f));
}

#[test]
fn polarity_fits_a_probe_into_the_card_held_out_set_by_set() {
    let work = tempfile::tempdir().unwrap();
    let dx = synth_dx_studies(&work.path().join("dx"), 6, 8201);
    let cr = work.path().join("cr");
    let out = run(Command::new(bin())
        .args(["synth", "--modality", "cr", "--size", "256x320"])
        .args(["--studies", "6", "--seed", "8202", "--out"])
        .arg(&cr));
    assert!(out.status.success(), "{}", text(&out));
    let m = work.path().join("m");
    let weights = bundled_with(&m, |_| {});
    let polarity = |extra: &[&str], data: &[&Path]| {
        let mut cmd = Command::new(bin());
        cmd.arg("polarity").arg("--model").arg(&weights);
        for d in data {
            cmd.arg("--data").arg(d);
        }
        run(cmd.args(extra))
    };

    // Bad input is refused with a reason, the card left as it was.
    let before = std::fs::read(weights.with_extension("json")).unwrap();
    let out = polarity(&["--threshold=-1"], &[&dx]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--threshold"), "{}", text(&out));
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = polarity(&[], &[&dx, &empty]);
    assert!(!out.status.success());
    assert!(text(&out).contains(EMPTY_SET), "{}", text(&out));
    assert_eq!(
        std::fs::read(weights.with_extension("json")).unwrap(),
        before
    );

    // Two sets: each held out in turn, then the probe fitted on both into the card.
    let card_out = m.join("probed.json");
    let out = polarity(
        &[
            "--threshold",
            "1.5",
            "--card-out",
            card_out.to_str().unwrap(),
        ],
        &[&dx, &cr],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("held out"), "{printed}");
    // Every study of the held-out set told from its inverse, every inverted one caught,
    // no upright one turned over.
    for set in [&dx, &cr] {
        let line = format!(
            "{}: images 12/12, studies 6/6, inverted caught 6/6, upright turned 0,",
            set.display()
        );
        assert!(printed.contains(&line), "{line} in {printed}");
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card_out).unwrap()).unwrap();
    let probe = &card["polarity"];
    assert_eq!(probe["weights_sha256"], card["weights_sha256"]);
    assert_eq!(probe["weights"].as_array().unwrap().len(), 128);
    assert_eq!(probe["scale"].as_array().unwrap().len(), 128);
    assert_eq!(probe["threshold"].as_f64().unwrap(), 1.5);
    assert!(probe["fitted_on"].as_str().unwrap().contains("(12 images)"));
    // The weights are the model's: the card still loads with them.
    std::fs::copy(&card_out, weights.with_extension("json")).unwrap();
    let study = dx.join("study00000");
    let out = analyze(
        &study,
        &[("OSTEOSCREEN__MODEL__WEIGHTS", weights.as_os_str())],
    );
    let f = finding(&out);
    assert!(!grey_flagged(&f), "{:?}", flags(&f));
    // ...and the probe it wrote is used: a study turned over is caught.
    let turned = header_turned_over(&study, &work.path().join("turned"));
    caught_by_the_probe_of(
        &turned,
        &[("OSTEOSCREEN__MODEL__WEIGHTS", weights.as_os_str())],
    );
}

#[test]
fn weights_adapted_twice_keep_the_probe_of_the_weights_they_came_from() {
    let work = tempfile::tempdir().unwrap();
    let site = synth_dx_studies(&work.path().join("site"), 16, 8501);
    let adapt = |model: &Path, name: &str| {
        let out = run(Command::new(bin())
            .arg("adapt")
            .arg("--model")
            .arg(model)
            .arg("--data")
            .arg(&site)
            .args([
                "--out",
                work.path().join("m").to_str().unwrap(),
                "--name",
                name,
            ]));
        assert!(out.status.success(), "{}", text(&out));
        work.path().join("m").join(format!("{name}.safetensors"))
    };
    let once = adapt(&bundled(), "once");
    let twice = adapt(&once, "twice");
    let turned = header_turned_over(&site.join("study00003"), &work.path().join("turned"));
    caught_by_the_probe_of(
        &turned,
        &[
            ("OSTEOSCREEN__MODEL__WEIGHTS", twice.as_os_str()),
            ("OSTEOSCREEN__MODEL__SITE_ADAPTATION", "false".as_ref()),
        ],
    );
}

#[test]
fn a_probe_that_does_not_fit_the_weights_is_refused_or_dropped_and_said() {
    let work = tempfile::tempdir().unwrap();
    let studies = synth_dx_studies(&work.path().join("s"), 1, 8301);
    let turned = header_turned_over(&studies.join("study00000"), &work.path().join("turned"));

    // A hand-edited probe of the wrong length: the model does not load, and says why.
    let short = bundled_with(&work.path().join("short"), |c| {
        c["polarity"]["weights"] = serde_json::json!([0.5, 0.5, 0.5]);
    });
    let out = analyze(
        &turned,
        &[("OSTEOSCREEN__MODEL__WEIGHTS", short.as_os_str())],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("polarity probe needs 128"),
        "{}",
        text(&out)
    );

    // A probe fitted on other weights' features: dropped with a warning, the study read
    // unchecked (as its header says).
    let other = bundled_with(&work.path().join("other"), |c| {
        c["polarity"]["weights_sha256"] = serde_json::json!("0".repeat(64));
    });
    let out = analyze(
        &turned,
        &[("OSTEOSCREEN__MODEL__WEIGHTS", other.as_os_str())],
    );
    assert!(
        text(&out).contains("fitted on the features of other weights"),
        "{}",
        text(&out)
    );
    let f = finding(&out);
    assert!(!grey_flagged(&f), "{:?}", flags(&f));
}

#[test]
fn pixels_inverted_under_a_kept_window_are_caught_too() {
    // A converter that inverts the stored values and keeps the header, window included:
    // the display is then clipped differently, not exactly the upright image inverted.
    let work = tempfile::tempdir().unwrap();
    let studies = synth_dx_studies(&work.path().join("s"), 2, 8401);
    for k in 0..2 {
        let study = studies.join(format!("study{k:05}"));
        let inverted = work.path().join(format!("inv{k}"));
        std::fs::create_dir_all(&inverted).unwrap();
        let script = r#"
import sys, pydicom, numpy as np
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    ds = pydicom.dcmread(src)
    top = (1 << int(ds.BitsStored)) - 1
    px = ds.pixel_array
    assert 'WindowCenter' in ds
    ds.PixelData = (top - px.astype(np.int64)).astype(px.dtype).tobytes()
    ds.save_as(dst)
"#;
        let mut cmd = Command::new(python());
        cmd.args(["-c", script]);
        for file in dicom_files(&study) {
            cmd.arg(&file).arg(inverted.join(file.file_name().unwrap()));
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", text(&out));
        let (upright, _) = analyze_out(&study, &work.path().join(format!("o{k}")), None);
        let (read, _) = analyze_out(&inverted, &work.path().join(format!("t{k}")), None);
        assert!(turned_over(&read), "{:?}", flags(&read));
        println!(
            "study {k}: upright {} T {:.2}; pixels inverted under the window, read turned over: {} T {:.2}",
            upright["conclusion"]["class"],
            t_score(&upright),
            read["conclusion"]["class"],
            t_score(&read)
        );
    }
}

/// DCMTK's rendering of `file` (min-max window, `+Wm`) as PGM bytes.
fn dcmtk_rendering(file: &Path, to: &Path) -> Vec<u8> {
    let out = run(Command::new("dcm2pnm").arg("+Wm").arg(file).arg(to));
    assert!(out.status.success(), "dcm2pnm: {}", text(&out));
    std::fs::read(to).unwrap()
}

#[test]
fn presentation_lut_shape_inverse_is_read_as_dcmtk_shows_it() {
    // Synth writes MONOCHROME1 with Presentation LUT Shape INVERSE, as the DX Image module
    // pairs them. The same pixels labelled MONOCHROME2 under INVERSE show the same picture
    // (DCMTK draws both alike), so they must read the same and raise no grey-level flag;
    // under IDENTITY they show bone dark, and the polarity check turns them over.
    let work = tempfile::tempdir().unwrap();
    let studies = synth_dx_studies(&work.path().join("s"), 8, 8502);
    let monochrome1: Vec<PathBuf> = (0..8)
        .map(|k| studies.join(format!("study{k:05}")))
        .filter(|s| tag(&s.join("dx_ap.dcm"), "0028,0004").contains("MONOCHROME1"))
        .collect();
    assert!(
        !monochrome1.is_empty(),
        "no MONOCHROME1 study in the synth set"
    );
    for (k, study) in monochrome1.iter().enumerate() {
        let relabelled = work.path().join(format!("m2-{k}"));
        let identity = work.path().join(format!("id-{k}"));
        for dir in [&relabelled, &identity] {
            std::fs::create_dir_all(dir).unwrap();
        }
        for file in dicom_files(study) {
            let name = file.file_name().unwrap();
            assert!(tag(&file, "2050,0020").contains("INVERSE"));
            let copy = relabelled.join(name);
            std::fs::copy(&file, &copy).unwrap();
            let out = run(Command::new("dcmodify")
                .args(["-nb", "-m", "(0028,0004)=MONOCHROME2"])
                .arg(&copy));
            assert!(out.status.success(), "dcmodify: {}", text(&out));
            let pgm = |f: &Path, n: &str| dcmtk_rendering(f, &work.path().join(n));
            assert!(pgm(&file, "a.pgm") == pgm(&copy, "b.pgm"), "{copy:?}");
            let plain = identity.join(name);
            std::fs::copy(&copy, &plain).unwrap();
            let out = run(Command::new("dcmodify")
                .args(["-nb", "-m", "(2050,0020)=IDENTITY"])
                .arg(&plain));
            assert!(out.status.success(), "dcmodify: {}", text(&out));
        }
        let (given, _) = analyze_out(study, &work.path().join(format!("o{k}")), None);
        let (read, _) = analyze_out(&relabelled, &work.path().join(format!("r{k}")), None);
        assert!(!grey_flagged(&given), "{:?}", flags(&given));
        assert!(!grey_flagged(&read), "{:?}", flags(&read));
        assert_eq!(read["conclusion"]["class"], given["conclusion"]["class"]);
        assert!((t_score(&read) - t_score(&given)).abs() < 1e-3);
        let (dark, _) = analyze_out(&identity, &work.path().join(format!("i{k}")), None);
        assert!(turned_over(&dark), "{:?}", flags(&dark));
    }
}

#[test]
fn eval_scores_inverted_studies_as_the_daemon_reads_them() {
    // `eval` checks grey levels as the daemon does: a set whose headers were turned over
    // scores as the upright set, and says how many studies it read turned over.
    let work = tempfile::tempdir().unwrap();
    let upright = synth_dx_studies(&work.path().join("s"), 6, 8601);
    let turned = work.path().join("turned");
    let out = run(Command::new("cp").arg("-r").arg(&upright).arg(&turned));
    assert!(out.status.success(), "{}", text(&out));
    for k in 0..6 {
        let study = format!("study{k:05}");
        header_turned_over(&upright.join(&study), &turned.join(&study));
    }
    let metrics = |data: &Path, name: &str, extra: &[&str]| {
        let dir = work.path().join(name);
        let out = run(Command::new(bin())
            .args(["eval", "--model"])
            .arg(bundled())
            .arg("--data")
            .arg(data)
            .arg("--out")
            .arg(&dir)
            .args(extra));
        assert!(out.status.success(), "{}", text(&out));
        let json = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
        (
            text(&out),
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        )
    };
    let (said, given) = metrics(&upright, "e-upright", &[]);
    assert!(said.contains("): 0 studies read turned over"), "{said}");
    assert_eq!(given["polarity"]["turned_over"], 0);
    let (said, read) = metrics(&turned, "e-turned", &[]);
    assert!(said.contains("): 6 studies read turned over"), "{said}");
    assert_eq!(read["polarity"]["turned_over"], 6);
    let m = |v: &serde_json::Value, k: &str| v["metrics"][k].as_f64().unwrap();
    assert_eq!(m(&read, "accuracy"), m(&given, "accuracy"));
    assert!((m(&read, "t_score_mae") - m(&given, "t_score_mae")).abs() < 1e-3);
    // Unchecked, the turned set reads as its headers say, and no count is reported.
    let (said, unchecked) = metrics(&turned, "e-unchecked", &["--no-polarity-check"]);
    assert!(!said.contains("turned over"), "{said}");
    assert!(unchecked.get("polarity").is_none());
    assert!((m(&unchecked, "t_score_mae") - m(&given, "t_score_mae")).abs() > 0.05);
}

#[test]
fn a_study_whose_images_disagree_on_their_grey_levels_says_so() {
    // One view's header turned over, the other's not (two converters): the images clearly
    // disagree. The daemon flags it and reads the study by its sum; eval counts the same
    // studies. Upright studies never raise it.
    let work = tempfile::tempdir().unwrap();
    let upright = synth_dx_studies(&work.path().join("s"), 3, 8501);
    let mixed = work.path().join("mixed");
    let out = run(Command::new("cp").arg("-r").arg(&upright).arg(&mixed));
    assert!(out.status.success(), "{}", text(&out));
    let disagree = |f: &serde_json::Value| {
        flags(f)
            .iter()
            .any(|x| x.contains("disagree on their grey levels"))
    };
    let mut flagged = 0;
    for k in 0..3 {
        let study = format!("study{k:05}");
        let lateral = work.path().join(format!("lat{k}"));
        std::fs::create_dir_all(&lateral).unwrap();
        std::fs::copy(
            upright.join(&study).join("dx_lat.dcm"),
            lateral.join("dx_lat.dcm"),
        )
        .unwrap();
        header_turned_over(&lateral, &mixed.join(&study));
        assert!(!disagree(&finding(&analyze(&upright.join(&study), &[]))));
        flagged += usize::from(disagree(&finding(&analyze(&mixed.join(&study), &[]))));
    }
    assert!(flagged >= 2, "{flagged} of 3 mixed studies flagged");
    let dir = work.path().join("e");
    let out = eval(&bundled(), &mixed, &dir);
    assert!(out.status.success(), "{}", text(&out));
    let json = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(m["polarity"]["disagreeing"], flagged, "{}", text(&out));
}
