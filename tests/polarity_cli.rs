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

/// A copy of `study` whose every image says the other MONOCHROME than it did, pixels
/// untouched (dcmodify).
fn header_turned_over(study: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for file in dicom_files(study) {
        let copy = to.join(file.file_name().unwrap());
        std::fs::copy(&file, &copy).unwrap();
        let now = tag(&copy, "0028,0004");
        let other = if now.contains("MONOCHROME1") {
            "MONOCHROME2"
        } else {
            "MONOCHROME1"
        };
        let out = run(Command::new("dcmodify")
            .args(["-nb", "-m", &format!("(0028,0004)={other}")])
            .arg(&copy));
        assert!(out.status.success(), "dcmodify: {}", text(&out));
    }
    to.to_path_buf()
}

fn flags(finding: &serde_json::Value) -> Vec<String> {
    finding["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
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
        assert!(
            !flags(&upright).iter().any(|f| f.contains("grey levels")),
            "{:?}",
            flags(&upright)
        );
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
    assert!(unchecked.status.success(), "{}", text(&unchecked));
    let f: serde_json::Value = serde_json::from_slice(&unchecked.stdout).unwrap();
    assert!(
        !flags(&f).iter().any(|f| f.contains("grey levels")),
        "{:?}",
        flags(&f)
    );
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
    std::fs::create_dir_all(&m).unwrap();
    let weights = m.join("x.safetensors");
    std::fs::copy(bundled(), &weights).unwrap();
    std::fs::copy(
        bundled().with_extension("json"),
        weights.with_extension("json"),
    )
    .unwrap();
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
    assert!(text(&out).contains("empty"), "{}", text(&out));
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
    // Every study of the held-out set told from its inverse, none turned over.
    for set in [&dx, &cr] {
        let line = format!("{}: images 12/12, studies 6/6", set.display());
        assert!(printed.contains(&line), "{line} in {printed}");
    }
    assert!(!printed.contains("upright turned 1"), "{printed}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card_out).unwrap()).unwrap();
    let probe = &card["polarity"];
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
    assert!(out.status.success(), "{}", text(&out));
}
