//! `osteoscreen analyze` on radiographs, as a user runs it: selection by header or by
//! description (edited with DCMTK's dcmodify), the X-ray model named in `[model] weights`
//! (randomly initialised here: plumbing, not accuracy), fusion of views, flags, refusals.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// `analyze --json` with the weights given, or with the X-ray model switched off (None:
/// `[model] weights = ""`).
fn analyze(weights: Option<&Path>, paths: &[&Path]) -> (Output, serde_json::Value) {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(shipped_config());
    cmd.env(
        "OSTEOSCREEN__MODEL__WEIGHTS",
        weights.map_or(std::ffi::OsStr::new(""), Path::as_os_str),
    );
    let out = run(cmd.args(["analyze", "--json"]).args(paths));
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    (out, json)
}

fn dcmodify(file: &Path, args: &[&str]) {
    let out = run(Command::new("dcmodify").arg("-nb").args(args).arg(file));
    assert!(out.status.success(), "dcmodify: {}", text(&out));
}

#[test]
fn ap_and_lateral_are_fused_into_one_finding() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(f["status"], "analysed");
    assert_eq!(f["methods"], serde_json::json!(["xray_model"]));
    let x = &f["xray"];
    let images = x["images"].as_array().unwrap();
    let views: Vec<&str> = images.iter().map(|i| i["view"].as_str().unwrap()).collect();
    assert_eq!(views, ["frontal", "lateral"]);
    // Equal-weight fusion of the two views, and probabilities that sum to 1.
    for k in 0..3 {
        let mean = (images[0]["probabilities"][k].as_f64().unwrap()
            + images[1]["probabilities"][k].as_f64().unwrap())
            / 2.0;
        assert!((x["probabilities"][k].as_f64().unwrap() - mean).abs() < 1e-5);
    }
    let sum: f64 = (0..3)
        .map(|k| x["probabilities"][k].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
    let c = &f["conclusion"];
    assert_eq!(c["method"], "xray_model");
    assert_eq!(c["class"], x["class"]);
    assert_eq!(x["model"]["version"], "0.0.0-untrained");
    let sha = osteoscreen::model::card::sha256_file(&weights).unwrap();
    assert_eq!(x["model"]["weights_sha256"], sha.as_str());
    let flags = f["flags"].to_string();
    assert!(flags.contains("not trained on patient data"), "{flags}");
    assert!(!flags.contains("view missing"), "{flags}");
    // Deterministic: the same study gives the same numbers.
    let (_, again) = analyze(Some(&weights), &[&study]);
    assert_eq!(again["xray"]["probabilities"], x["probabilities"]);

    // The readable summary names the result and the model.
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__MODEL__WEIGHTS", &weights)
        .arg("analyze")
        .arg(&study));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("result: "), "{summary}");
    assert!(summary.contains("osteoscreen-xray-resnet"), "{summary}");
}

#[test]
fn lumbar_evidence_and_views_from_descriptions_and_bad_images_flagged() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let (ap, lat) = (study.join("dx_ap.dcm"), study.join("dx_lat.dcm"));
    // No BodyPartExamined or ViewPosition: German descriptions carry the evidence.
    for (file, words) in [(&ap, "LWS a.p."), (&lat, "LWS seitlich")] {
        dcmodify(
            file,
            &[
                "-ea",
                "(0018,0015)",
                "-ea",
                "(0018,5101)",
                "-m",
                &format!("(0008,103e)={words}"),
                "-m",
                "(0008,1030)=Röntgen",
            ],
        );
    }
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    let views: Vec<&str> = f["xray"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["view"].as_str().unwrap())
        .collect();
    assert_eq!(views, ["frontal", "lateral"]);

    // A lateral whose header promises more pixels than it has: left out and flagged,
    // the AP alone is analysed and the missing view is said.
    dcmodify(&lat, &["-m", "(0028,0010)=4000"]);
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    let flags = f["flags"].to_string();
    assert!(flags.contains("left out"), "{flags}");
    assert!(flags.contains("lateral view missing"), "{flags}");
    assert_eq!(f["xray"]["images"].as_array().unwrap().len(), 1);

    // Oblique views are not for this model.
    dcmodify(&ap, &["-m", "(0008,103e)=LWS oblique"]);
    std::fs::remove_file(&lat).unwrap();
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(!out.status.success());
    assert!(f["reason"].as_str().unwrap().contains("oblique"), "{f}");
}

#[test]
fn refusals_say_why() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    // No model configured: the study fails, saying what to configure.
    let (out, f) = analyze(None, &[&study]);
    assert!(!out.status.success());
    assert_eq!(f["status"], "failed");
    assert!(
        f["reason"].as_str().unwrap().contains("[model] weights"),
        "{f}"
    );

    // A real CR of the hip is not a lumbar study.
    let (out, f) = analyze(None, &[&real("wg04/RG2_UNC.dcm")]);
    assert!(!out.status.success());
    assert_eq!(f["status"], "not_applicable");
    assert_eq!(f["reason"], "CR of HIP: not a lumbar study");

    // Corrupt weights: refused before anything is analysed, naming the sha256 mismatch.
    let weights = untrained_model(work.path());
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&weights, bytes).unwrap();
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__MODEL__WEIGHTS", &weights)
        .arg("analyze")
        .arg(&study));
    assert!(!out.status.success());
    assert!(text(&out).contains("sha256"), "{}", text(&out));

    // A device that does not exist is a configuration error (exit 2).
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__MODEL__DEVICE", "tpu")
        .arg("check-config"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model"), "{}", text(&out));
}

#[test]
fn real_compressed_radiographs_go_through_the_model() {
    // WG04's CR (hip, 2140 x 1760, 10-bit) in several encodings, relabelled as a lumbar
    // AP with dcmodify: decoding, windowing and preprocessing of a radiograph nobody on
    // this project made, in JPEG 2000, JPEG lossless and RLE.
    let work = tempfile::tempdir().unwrap();
    let weights = untrained_model(work.path());
    let mut first: Option<serde_json::Value> = None;
    for enc in ["UNC", "J2KR", "JPLL", "RLE"] {
        let file = work.path().join(format!("{enc}.dcm"));
        std::fs::copy(real(&format!("wg04/RG2_{enc}.dcm")), &file).unwrap();
        dcmodify(&file, &["-m", "(0018,0015)=LSPINE", "-m", "(0018,5101)=AP"]);
        let (out, f) = analyze(Some(&weights), &[&file]);
        assert!(out.status.success(), "{enc}: {}", text(&out));
        let images = f["xray"]["images"].as_array().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0]["view"], "frontal");
        assert!(f["flags"].to_string().contains("lateral view missing"));
        // Lossless encodings decode to the same pixels, so the model says the same.
        match &first {
            None => first = Some(f["xray"]["probabilities"].clone()),
            Some(p) => {
                for k in 0..3 {
                    let (a, b) = (
                        p[k].as_f64().unwrap(),
                        f["xray"]["probabilities"][k].as_f64().unwrap(),
                    );
                    assert!((a - b).abs() < 1e-5, "{enc}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn views_count_equally_however_many_images_each_has() {
    // Two identical APs (a copy under a new SOP Instance UID) and one lateral: the fused
    // result is (AP + lateral) / 2, not the mean over three images.
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let copy = study.join("dx_ap_copy.dcm");
    std::fs::copy(study.join("dx_ap.dcm"), &copy).unwrap();
    dcmodify(&copy, &["-gin"]);
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    let images = f["xray"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    let p = |i: &serde_json::Value, k: usize| i["probabilities"][k].as_f64().unwrap();
    let ap = images.iter().find(|i| i["view"] == "frontal").unwrap();
    let lat = images.iter().find(|i| i["view"] == "lateral").unwrap();
    let mut differs = false;
    for k in 0..3 {
        let fused = f["xray"]["probabilities"][k].as_f64().unwrap();
        let by_view = (p(ap, k) + p(lat, k)) / 2.0;
        let by_image = (2.0 * p(ap, k) + p(lat, k)) / 3.0;
        assert!((fused - by_view).abs() < 1e-5, "{fused} vs {by_view}");
        differs |= (by_view - by_image).abs() > 1e-4;
    }
    assert!(
        differs,
        "the two views predicted the same; the test cannot tell"
    );
}

#[test]
fn coded_anatomy_view_codes_orientation_or_no_anatomy_at_all() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let (ap, lat) = (study.join("dx_ap.dcm"), study.join("dx_lat.dcm"));
    let views = |f: &serde_json::Value| -> Vec<String> {
        f["xray"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["view"].as_str().unwrap().to_string())
            .collect()
    };
    // No body part, view position or description: the lumbar spine only as the coded
    // Anatomic Region (the DX IOD's own); the AP's view from PatientOrientation (L\F),
    // the lateral's from a View Code Sequence.
    let bare = [
        "-imt",
        "-ea",
        "(0018,0015)",
        "-ea",
        "(0018,5101)",
        "-ea",
        "(0008,1030)",
        "-ea",
        "(0008,103e)",
        "-ea",
        "(0018,1030)",
    ];
    for file in [&ap, &lat] {
        dcmodify(file, &bare);
    }
    dcmodify(
        &lat,
        &[
            "-ea",
            "(0020,0020)",
            "-i",
            "(0054,0220)[0].(0008,0104)=left lateral",
        ],
    );
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(views(&f), ["frontal", "lateral"]);
    assert!(
        !f["flags"].to_string().contains("as sent"),
        "{}",
        f["flags"]
    );

    // No anatomy at all: analysed as sent, and flagged so...
    for file in [&ap, &lat] {
        dcmodify(file, &["-ea", "(0008,2218)"]);
    }
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(views(&f), ["frontal", "lateral"]);
    let flags = f["flags"].to_string();
    assert!(flags.contains("taken as lumbar, as sent"), "{flags}");
    // ...or left out where the operator wants lumbar evidence.
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__MODEL__WEIGHTS", &weights)
        .env(
            "OSTEOSCREEN__SELECTION__RADIOGRAPHS_WITHOUT_ANATOMY",
            "false",
        )
        .args(["analyze", "--json"])
        .arg(&study));
    assert!(!out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["status"], "not_applicable");
    assert!(
        f["reason"].as_str().unwrap().contains("not a lumbar study"),
        "{f}"
    );

    // A series that names another region is never taken.
    for file in [&ap, &lat] {
        dcmodify(file, &["-i", "(0008,2218)[0].(0008,0104)=Chest"]);
    }
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(!out.status.success());
    assert_eq!(f["status"], "not_applicable");
}

#[test]
fn a_folder_of_several_studies_is_analysed_study_by_study() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("many");
    let out = run(Command::new(bin())
        .args([
            "synth",
            "--studies",
            "2",
            "--modality",
            "dx",
            "--size",
            "512x640",
        ])
        .args(["--seed", "8", "--out"])
        .arg(&dir));
    assert!(out.status.success(), "synth: {}", text(&out));
    // A real CR of the hip among them, and a file that is not DICOM.
    std::fs::copy(real("wg04/RG2_UNC.dcm"), dir.join("hip.dcm")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not DICOM").unwrap();
    let weights = untrained_model(work.path());
    let results = work.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__MODEL__WEIGHTS", &weights)
        .args(["analyze", "--json", "--out"])
        .arg(&results)
        .arg(&dir));
    // One study could not be analysed: exit 1, every Finding printed all the same.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings.len(), 3, "{}", text(&out));
    let analysed: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["status"] == "analysed")
        .collect();
    assert_eq!(analysed.len(), 2);
    assert_ne!(analysed[0]["study_uid"], analysed[1]["study_uid"]);
    for f in &analysed {
        assert_eq!(f["xray"]["images"].as_array().unwrap().len(), 2, "{f}");
    }
    let hip = findings.iter().find(|f| f["status"] != "analysed").unwrap();
    assert_eq!(hip["reason"], "CR of HIP: not a lumbar study");
    // The unreadable file is counted once, not dropped silently.
    let unreadable = findings
        .iter()
        .filter(|f| f["flags"].to_string().contains("not readable as DICOM"))
        .count();
    assert_eq!(unreadable, 1);
    // An SR and a key image for each analysed study (none for the hip, by default).
    let mut written: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy()[..3].to_string())
        .collect();
    written.sort();
    assert_eq!(written, ["sc-", "sc-", "sr-", "sr-"]);
}

#[test]
fn a_raw_detector_image_gives_way_to_the_processed_one() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let raw = study.join("dx_ap_raw.dcm");
    std::fs::copy(study.join("dx_ap.dcm"), &raw).unwrap();
    dcmodify(
        &raw,
        &[
            "-m",
            "(0008,0068)=FOR PROCESSING",
            "-m",
            "(0008,0018)=1.2.826.0.1.3680043.8.498.77",
        ],
    );
    let (out, f) = analyze(Some(&weights), &[&study]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(f["xray"]["images"].as_array().unwrap().len(), 2, "{f}");
    assert!(
        f["excluded"].to_string().contains("raw (For Processing)"),
        "{f}"
    );
}
