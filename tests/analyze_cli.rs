//! `osteoscreen analyze` as a user runs it: a Finding for CT studies, a reason otherwise.

mod common;

use std::process::Command;

use common::*;

fn analyze(args: &[&std::path::Path]) -> (bool, String) {
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("analyze")
        .arg("--json")
        .args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn synthetic_ct_gives_levels_hu_and_class() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(work.path(), &CT_3MM);
    let manifest: Vec<std::collections::HashMap<String, String>> =
        csv::Reader::from_path(work.path().join("manifest.csv"))
            .unwrap()
            .deserialize()
            .map(|r| r.unwrap())
            .collect();
    let (ok, json) = analyze(&[&study]);
    assert!(ok, "{json}");
    let f: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(f["status"], "analysed");
    assert_eq!(f["study_uid"], manifest[0]["study_uid"].as_str());
    let levels = f["ct"]["levels"].as_array().unwrap();
    let l1 = levels
        .iter()
        .find(|l| l["level"] == "L1")
        .expect("L1 labelled");
    let truth: f64 = manifest[0]["l1_hu"].parse().unwrap();
    let measured = l1["mean_hu"].as_f64().unwrap();
    assert!((measured - truth).abs() <= 10.0, "L1 {measured} vs {truth}");
    if !l1["compressed"].as_bool().unwrap() {
        let median = l1["median_hu"].as_f64().unwrap();
        let expected = if median <= 110.0 {
            "osteoporosis_likely"
        } else if median >= 160.0 {
            "normal_likely"
        } else {
            "indeterminate"
        };
        assert_eq!(f["ct"]["class"], expected);
    }
    assert_eq!(
        f["risk"]["status"], "known",
        "synthetic headers carry age and weight"
    );
    assert!(f["instances_used"].as_array().unwrap().len() > 50);
}

#[test]
fn real_ct_slices_are_measured_and_other_studies_get_a_reason() {
    let (ok, json) = analyze(&[&real("ct-abdomen-20slices")]);
    assert!(ok, "{json}");
    let f: serde_json::Value = serde_json::from_str(&json).unwrap();
    let levels = f["ct"]["levels"].as_array().unwrap();
    assert!(!levels.is_empty());
    for l in levels {
        let hu = l["mean_hu"].as_f64().unwrap();
        assert!((50.0..=350.0).contains(&hu), "{hu}");
    }
    // PatientWeight 79 but no usable age: risk unknown, never guessed.
    assert_eq!(f["risk"]["status"], "unknown");

    let work = tempfile::tempdir().unwrap();
    let dx = synth_study(work.path(), &DX_SMALL);
    let (ok, json) = analyze(&[&dx]);
    assert!(!ok);
    assert!(json.contains("no X-ray model is configured"), "{json}");

    let (ok, json) = analyze(&[&real("pydicom/rtplan.dcm")]);
    assert!(!ok);
    assert!(json.contains("not_applicable"), "{json}");
}

#[test]
fn a_series_of_mixed_matrix_sizes_fails_with_a_reason() {
    // pydicom's 128 x 128 CT_small relabelled into the real 512 x 512 series: the volume
    // cannot be built, and the Finding says so instead of the process panicking.
    let work = tempfile::tempdir().unwrap();
    let series = real("ct-abdomen-20slices");
    for k in 1..=6 {
        let name = format!("slice{k:02}.dcm");
        std::fs::copy(series.join(&name), work.path().join(&name)).unwrap();
    }
    let odd = work.path().join("odd.dcm");
    std::fs::copy(real("pydicom/CT_small.dcm"), &odd).unwrap();
    let out = run(Command::new("dcmodify")
        .args(["-nb", "-m"])
        .arg("(0020,000d)=2.25.91027218759557615504600538762936668014")
        .arg("-m")
        .arg("(0020,000e)=2.25.78309743566385585849368344861617060418")
        .args(["-m", "(0018,0050)=3"])
        .arg(&odd));
    assert!(out.status.success(), "{}", text(&out));
    let (ok, json) = analyze(&[work.path()]);
    assert!(!ok);
    let f: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(f["status"], "failed");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("different matrix sizes"),
        "{json}"
    );
}
