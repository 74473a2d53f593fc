//! CT screening on volumes from a generator written apart from `osteoscreen synth` and
//! the CT method (`scripts/phantoms/ct_phantom_e.py`, numpy + scipy + pydicom in the venv
//! `scripts/test.sh` makes): its own anatomy (transverse processes that leave the arch
//! apart from the body, thin iliac plates, discs at 12 HU, gas-filled bowel), headers and
//! storage (unsigned with another intercept, either z order, shuffled file names). Each
//! level the product names must be the level the generator drew there, L1 must be named
//! when an anchor is in view, and each named level's median must lie within 15 HU of the
//! trabecular truth.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// One volume from the independent generator; its folder and truth.json.
fn generate(work: &Path, name: &str, args: &[&str]) -> (PathBuf, Value) {
    let dir = work.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/phantoms/ct_phantom_e.py");
    let out = run(Command::new(python()).arg(script).arg(&dir).args(args));
    assert!(out.status.success(), "ct_phantom_e.py: {}", text(&out));
    let truth = std::fs::read_to_string(dir.join("truth.json")).unwrap();
    (dir, serde_json::from_str(&truth).unwrap())
}

fn analyze(dir: &Path) -> Value {
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(dir));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Each file's SOP Instance UID and slice z (Image Position (Patient) z).
fn z_of_instances(dir: &Path) -> HashMap<String, f64> {
    use dicom_dictionary_std::tags;
    let mut z = HashMap::new();
    let files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("dcm"));
    for path in files {
        let obj = dicom_object::open_file(&path).unwrap();
        let uid = obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap();
        let position = obj
            .element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        z.insert(uid.trim_end_matches('\0').trim().to_string(), position[2]);
    }
    z
}

/// The truth level drawn at `z` (its body's extent, 1 mm either side), if any.
fn truth_at(truth: &Value, z: f64) -> Option<(String, f64)> {
    truth["levels"].as_array().unwrap().iter().find_map(|l| {
        let (a, b) = (
            l["z_top"].as_f64().unwrap(),
            l["z_bottom"].as_f64().unwrap(),
        );
        (a.min(b) - 1.0 <= z && z <= a.max(b) + 1.0).then(|| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["trabecular_hu"].as_f64().unwrap(),
            )
        })
    })
}

/// Every named level is the one drawn there and within 15 HU of its truth; returns the
/// names given, in order.
fn check_levels(dir: &Path, truth: &Value, finding: &Value) -> Vec<String> {
    let z = z_of_instances(dir);
    let mut named = Vec::new();
    let levels = finding["ct"]["levels"].as_array().expect("CT levels");
    // Unnamed bodies carry no claim to check; the callers assert which names must appear.
    let named_levels = levels
        .iter()
        .filter_map(|l| l["level"].as_str().map(|name| (name, l)));
    for (name, level) in named_levels {
        let at = z[level["roi_sop_instance_uid"].as_str().unwrap()];
        let (drawn, hu) = truth_at(truth, at)
            .unwrap_or_else(|| panic!("{name} at z {at} is no vertebra: {finding:#}"));
        assert_eq!(name, drawn, "level at z {at}: {finding:#}");
        let median = level["median_hu"].as_f64().unwrap();
        assert!(
            (median - hu).abs() <= 15.0,
            "{name}: median {median} HU, truth {hu} HU"
        );
        named.push(drawn);
    }
    named
}

/// 2.5 mm, no ribs, the ilium in view (thin plates, ~250 mm² a slice); 1 mm slices on
/// 0.6 mm pixels with ribs; 5 mm slices stored unsigned; contrast; 5 mm with ribs: each
/// labelled right, L1 named.
#[test]
fn an_independent_generators_phantoms_are_labelled_and_measured_at_every_thickness() {
    let work = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("base", &["--seed", "201"][..]),
        (
            "thin",
            &[
                "--seed",
                "204",
                "--slice-mm",
                "1",
                "--pixel-mm",
                "0.6",
                "--ribs",
                "--body-width-mm",
                "264",
            ][..],
        ),
        (
            "thick-unsigned",
            &["--seed", "205", "--slice-mm", "5", "--unsigned"][..],
        ),
        // Each iliac plate as two pieces (one per cortex) beside L5.
        ("contrast", &["--seed", "322", "--contrast", "--ribs"][..]),
        // A 5 mm body cut in two by one lost slice.
        (
            "thick-ribs",
            &["--seed", "332", "--slice-mm", "5", "--unsigned", "--ribs"][..],
        ),
    ] {
        let (dir, truth) = generate(work.path(), name, args);
        let finding = analyze(&dir);
        let named = check_levels(&dir, &truth, &finding);
        assert!(
            named.iter().any(|n| n == "L1"),
            "{name}: L1 not named: {finding:#}"
        );
        assert!(
            finding["ct"]["class"].is_string(),
            "{name}: no class: {finding:#}"
        );
        // The generator draws no fracture: a body measured short is one partly missed.
        assert_no_fracture_flag(name, &finding);
        // Without ribs, the pelvis and the transverse processes below a T12 without any
        // agree: sure.
        if name == "base" {
            assert_eq!(finding["ct"]["level_confidence"], "labelled", "{finding:#}");
            assert!(
                finding["ct"]["labelling"]
                    .to_string()
                    .contains("transverse processes agrees"),
                "{finding:#}"
            );
        }
    }
}

fn assert_no_fracture_flag(name: &str, finding: &Value) {
    let compressed: Vec<&Value> = finding["ct"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["compressed"] == true)
        .collect();
    assert!(compressed.is_empty(), "{name}: {compressed:#?}");
}

/// No ribs and no pelvis, T12 in view: the lumbar transverse processes below a T12
/// without any name the levels, at the lower confidence, with a flag. Cut at L1 too (no
/// vertebra above the processes): no anchor, so no level is named, and the class comes from
/// the lumbar-looking bodies at the lowest confidence, with a flag.
#[test]
fn an_independent_phantom_without_ribs_or_pelvis_is_labelled_from_its_processes_or_not_at_all() {
    let work = tempfile::tempdir().unwrap();
    let (dir, truth) = generate(work.path(), "nopelvis", &["--seed", "203", "--no-pelvis"]);
    let finding = analyze(&dir);
    let named = check_levels(&dir, &truth, &finding);
    assert!(named.iter().any(|n| n == "L1"), "{finding:#}");
    assert_no_fracture_flag("nopelvis", &finding);
    assert_class_at(&finding, "low", "from the transverse processes only");

    let (dir, truth) = generate(
        work.path(),
        "fromL1",
        &["--seed", "206", "--no-pelvis", "--top", "L1"],
    );
    let finding = analyze(&dir);
    assert!(check_levels(&dir, &truth, &finding).is_empty());
    assert_no_fracture_flag("fromL1", &finding);
    assert_class_at(&finding, "unlabelled", "CT levels not identified");
}

/// A class, at `confidence`, with a flag that says `why`.
fn assert_class_at(finding: &Value, confidence: &str, why: &str) {
    assert!(finding["ct"]["class"].is_string(), "{finding:#}");
    assert_eq!(finding["ct"]["level_confidence"], confidence, "{finding:#}");
    assert!(finding["flags"].to_string().contains(why), "{finding:#}");
}
