//! `osteoscreen analyze --out DIR` writes the TID 1500 SR: dciodvfy (dicom3tools) finds no
//! errors, DCMTK's dsrdump/dsr2xml read back the coded class, the measurements with their
//! units and the image references; the patient and study are the source's; UIDs repeat.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use osteoscreen::model::XrayModel;

/// Run analyze --json --out; returns the Finding and the files written.
fn analyze_out(
    study: &Path,
    out: &Path,
    weights: Option<&Path>,
) -> (serde_json::Value, Vec<PathBuf>) {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(shipped_config());
    if let Some(w) = weights {
        cmd.env("OSTEOSCREEN__MODEL__WEIGHTS", w);
    }
    let o = run(cmd.args(["analyze", "--json", "--out"]).arg(out).arg(study));
    let f = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    (f, files)
}

fn dciodvfy_clean(file: &Path) -> String {
    let o = run(Command::new("dciodvfy").arg(file));
    let report = text(&o);
    assert!(
        !report.lines().any(|l| l.starts_with("Error")),
        "dciodvfy errors in {}:\n{report}",
        file.display()
    );
    report
}

fn dsrdump(file: &Path) -> String {
    let o = run(Command::new("dsrdump").arg("+Pc").arg(file));
    assert!(o.status.success(), "dsrdump: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn dsr2xml(file: &Path) -> String {
    let o = run(Command::new("dsr2xml").arg(file));
    assert!(o.status.success(), "dsr2xml: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn tag(file: &Path, key: &str) -> String {
    let o = run(Command::new("dcmdump")
        .args(["-q", "-s", "+P", key])
        .arg(file));
    let line = String::from_utf8_lossy(&o.stdout).to_string();
    line.split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or("")
        .to_string()
}

fn class_code(class: &str) -> &'static str {
    match class {
        "normal" => "(17621005,SCT,\"Normal\")",
        "osteopenia" => "(312894000,SCT,\"Osteopenia\")",
        "osteoporosis" => "(64859006,SCT,\"Osteoporosis\")",
        other => panic!("class {other}"),
    }
}

#[test]
fn xray_sr_is_valid_readable_and_stable() {
    let work = tempfile::tempdir().unwrap();
    let o = run(Command::new(bin())
        .args([
            "synth",
            "--modality",
            "dx",
            "--studies",
            "1",
            "--size",
            "512x640",
        ])
        .arg("--out")
        .arg(work.path().join("dx")));
    assert!(o.status.success());
    let weights = work.path().join("xray.safetensors");
    XrayModel::create_untrained(&weights).unwrap();
    let study = work.path().join("dx/study00000");
    let (f, files) = analyze_out(&study, &work.path().join("out"), Some(&weights));
    assert_eq!(files.len(), 1, "{files:?}");
    let sr = &files[0];
    dciodvfy_clean(sr);
    let dump = dsrdump(sr);
    assert!(
        dump.contains("(126000,DCM,\"Imaging Measurement Report\")"),
        "{dump}"
    );
    assert!(dump.contains("(38267-1,LN,\"DXA Lumbar spine [T-score] Bone density\")"));
    assert!(dump.contains("({T-score},UCUM,\"T-score\")"));
    assert!(dump.contains("(24966-4,LN,\"DXA Lumbar spine [Mass/Area] Bone density\")"));
    assert!(dump.contains("(g/cm2,UCUM,"));
    assert!(dump.contains("(122496007,SCT,\"Lumbar spine\")"));
    assert!(dump.contains("(123110,DCM,\"Artificial Intelligence\")"));
    assert!(dump.contains("Verification Flag   : UNVERIFIED"));
    let class = f["conclusion"]["class"].as_str().unwrap();
    let qualitative = dump
        .split("Qualitative Evaluations")
        .nth(1)
        .expect("qualitative evaluations");
    assert!(
        qualitative.contains(class_code(class)),
        "{class}: {qualitative}"
    );
    // Every radiograph used is referenced, by SOP Instance UID.
    let xml = dsr2xml(sr);
    for uid in f["instances_used"].as_array().unwrap() {
        assert!(
            xml.contains(&format!("<instance uid=\"{}\"/>", uid.as_str().unwrap())),
            "{uid} not referenced"
        );
    }
    // Same patient and study as the source; a new SR series.
    let source = study.join("dx_ap.dcm");
    for key in [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyInstanceUID",
        "AccessionNumber",
    ] {
        assert_eq!(tag(sr, key), tag(&source, key), "{key}");
    }
    assert_eq!(tag(sr, "Modality"), "SR");
    assert_ne!(
        tag(sr, "SeriesInstanceUID"),
        tag(&source, "SeriesInstanceUID")
    );
    // Re-running gives the same SOP Instance UID (same file name).
    let (_, again) = analyze_out(&study, &work.path().join("out2"), Some(&weights));
    assert_eq!(again[0].file_name(), sr.file_name());
    assert_eq!(tag(&again[0], "SOPInstanceUID"), tag(sr, "SOPInstanceUID"));

    // A study that cannot be analysed gets no SR.
    let (f, files) = analyze_out(&real("wg04/RG2_UNC.dcm"), &work.path().join("none"), None);
    assert_eq!(f["status"], "not_applicable");
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn ct_sr_has_levels_hu_rois_and_class() {
    let work = tempfile::tempdir().unwrap();
    let o = run(Command::new(bin())
        .args([
            "synth",
            "--modality",
            "ct",
            "--studies",
            "1",
            "--seed",
            "61",
        ])
        .args(["--ct-slice-mm", "3", "--out"])
        .arg(work.path().join("ct")));
    assert!(o.status.success());
    let (f, files) = analyze_out(
        &work.path().join("ct/study00000"),
        &work.path().join("out"),
        None,
    );
    assert_eq!(files.len(), 1, "{f}");
    let sr = &files[0];
    dciodvfy_clean(sr);
    let dump = dsrdump(sr);
    for site in [
        "(66794005,SCT,\"L1 vertebra\")",
        "(14293000,SCT,\"L2 vertebra\")",
    ] {
        assert!(dump.contains(site), "{site} missing:\n{dump}");
    }
    assert!(dump.contains("(112031,DCM,\"Attenuation Coefficient\")"));
    assert!(dump.contains("([hnsf'U],UCUM,\"Hounsfield unit\")"));
    assert!(dump.contains("(373099004,SCT,\"Median\")"));
    assert!(dump.contains("(111030,DCM,\"Image Region\")=(POLYLINE"));
    assert!(dump.contains("(77477000,SCT,\"Computerized axial tomography\")"));
    // The L1 median in the SR is the Finding's.
    let l1 = f["ct"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["level"] == "L1")
        .unwrap();
    let median = format!("{:.6}", l1["median_hu"].as_f64().unwrap());
    assert!(dump.contains(&format!("=\"{median}\"")), "{median}");
    let class = f["conclusion"]["class"].as_str().unwrap();
    assert!(dump
        .split("Qualitative Evaluations")
        .nth(1)
        .unwrap()
        .contains(class_code(class)));

    // The real CT slices: valid too (the source's own procedure code is copied).
    let (_, files) = analyze_out(
        &real("ct-abdomen-20slices"),
        &work.path().join("real"),
        None,
    );
    assert_eq!(files.len(), 1);
    let report = dciodvfy_clean(&files[0]);
    assert!(
        dsrdump(&files[0]).contains("(121058,DCM,\"Procedure reported\")"),
        "{report}"
    );
}
