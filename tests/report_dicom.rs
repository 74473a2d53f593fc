//! `osteoscreen analyze --out DIR` writes the TID 1500 SR and the Secondary Capture:
//! dciodvfy (dicom3tools) finds no errors in either, DCMTK's dsrdump/dsr2xml read back the
//! coded class, the measurements with their units and the image references, dcmj2pnm
//! renders the key image (kept in target/tmp/report-previews/ to look at); the patient and
//! study are the source's; UIDs repeat; Orthanc files both into the original study.

mod common;

use common::orthanc::Orthanc;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::report::*;
use common::*;

fn dsr2xml(file: &Path) -> String {
    let o = run(Command::new("dsr2xml").arg(file));
    assert!(o.status.success(), "dsr2xml: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// highdicom's reading of an SR (tests/highdicom_check.py, in the venv scripts/test.sh
/// makes: OSTEOSCREEN_PYTHON, else ~/.cache/osteoscreen-venv).
fn highdicom(sr: &Path) -> serde_json::Value {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/highdicom_check.py");
    let o = Command::new(&python)
        .arg(script)
        .arg(sr)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test.sh installs highdicom)"));
    assert!(o.status.success(), "highdicom: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The Secondary Capture: valid, RGB, burned in, readable size, rendered by DCMTK with
/// the amber banner text present; a PNG is kept for people to look at.
fn check_sc(sc: &Path, source: &Path, preview: &str) {
    dciodvfy_clean(sc);
    for (key, want) in [
        ("SamplesPerPixel", "3"),
        ("PhotometricInterpretation", "RGB"),
        ("BurnedInAnnotation", "YES"),
        ("ImageType", "DERIVED\\SECONDARY"),
        ("ConversionType", "WSD"),
    ] {
        assert_eq!(tag(sc, key), want, "{key}");
    }
    assert_eq!(tag(sc, "StudyInstanceUID"), tag(source, "StudyInstanceUID"));
    assert_eq!(tag(sc, "PatientID"), tag(source, "PatientID"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-previews");
    std::fs::create_dir_all(&dir).unwrap();
    let png_path = dir.join(format!("{preview}.png"));
    let o = run(Command::new("dcmj2pnm")
        .args(["--write-png", "-il"])
        .arg(sc)
        .arg(&png_path));
    assert!(o.status.success(), "dcmj2pnm: {}", text(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert!((1024..=2048).contains(&w.max(h)), "{w} x {h}");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    // The banner's amber first line (the disclaimer) is in the bottom part of the image.
    let amber = (h * 3 / 4..h)
        .flat_map(|y| (0..w).map(move |x| (y * w + x) * 3))
        .filter(|&i| buf[i] > 200 && (140..220).contains(&buf[i + 1]) && buf[i + 2] < 80)
        .count();
    assert!(amber > 500, "{amber} amber pixels in the banner");
}

fn words(class: &str) -> &'static str {
    match class {
        "normal" => "normal",
        "osteopenia" => "osteopenia",
        _ => "osteoporosis",
    }
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
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let (f, files) = analyze_out(&study, &work.path().join("out"), Some(&weights));
    assert_eq!(files.len(), 2, "{files:?}");
    let sr = pick(&files, "sr");
    check_sc(pick(&files, "sc"), &study.join("dx_ap.dcm"), "dx");
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
    let names = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&again), names(&files));
    assert_eq!(
        tag(pick(&again, "sr"), "SOPInstanceUID"),
        tag(sr, "SOPInstanceUID")
    );

    // highdicom, an independent TID 1500 reader, finds the same.
    let hd = highdicom(sr);
    assert_eq!(hd["template"], "1500");
    assert_eq!(hd["observer_types"], serde_json::json!(["Device"]));
    let g = &hd["groups"][0];
    assert_eq!(g["finding_sites"], serde_json::json!(["Lumbar spine"]));
    assert_eq!(
        g["finding_type"].as_str().unwrap().to_lowercase(),
        words(class)
    );
    let units: Vec<&str> = g["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["{T-score}", "g/cm2", "1", "1", "1"]);
    let t = g["measurements"][0]["value"].as_f64().unwrap();
    assert!((t - f["xray"]["t_score"].as_f64().unwrap()).abs() < 1e-4);

    // The SR explains itself: views used and flags, as comments.
    assert!(xml.contains("Radiographs used: frontal "), "views");
    assert!(xml.contains("Flag: model osteoscreen-xray-resnet"), "flags");

    // A study that cannot be analysed gets no SR...
    let rg2 = real("wg04/RG2_UNC.dcm");
    let (f, files) = analyze_out(&rg2, &work.path().join("none"), None);
    assert_eq!(f["status"], "not_applicable");
    assert!(files.is_empty(), "{files:?}");
    // ...unless asked for: then one that says why, and references nothing.
    let why = work.path().join("why");
    let o = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .env("OSTEOSCREEN__OUTPUT__REPORT_NOT_ANALYSED", "true")
        .args(["analyze", "--out"])
        .arg(&why)
        .arg(&rg2));
    assert!(!o.status.success(), "not analysed: exit 1");
    let files: Vec<PathBuf> = std::fs::read_dir(&why)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    dciodvfy_clean(&files[0]);
    let xml = dsr2xml(&files[0]);
    assert!(
        xml.contains("Not analysed: CR of HIP: not a lumbar study"),
        "{xml}"
    );
    assert_eq!(
        tag(&files[0], "StudyInstanceUID"),
        tag(&rg2, "StudyInstanceUID")
    );
}

#[test]
fn ct_sr_has_levels_hu_rois_and_class() {
    let work = tempfile::tempdir().unwrap();
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let (f, files) = analyze_out(&ct, &work.path().join("out"), None);
    assert_eq!(files.len(), 2, "{f}");
    let sr = pick(&files, "sr");
    let any_slice = std::fs::read_dir(&ct)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dcm"))
        .unwrap();
    check_sc(pick(&files, "sc"), &any_slice, "ct-synthetic");
    // Orientation from the series' ImageOrientationPatient: sagittal reformat, anterior
    // to posterior across, head to feet down.
    assert_eq!(tag(pick(&files, "sc"), "PatientOrientation"), "P\\F");
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
    assert!(dump.contains("(77477000,SCT,\"Computed tomography\")"));
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
    let hd = highdicom(sr);
    let l1 = hd["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["finding_sites"] == serde_json::json!(["L1 vertebra"]))
        .expect("an L1 group");
    for m in l1["measurements"].as_array().unwrap() {
        assert_eq!(m["name"], "Attenuation Coefficient");
        assert_eq!(m["unit"], "[hnsf'U]");
    }
    assert!(dump
        .split("Qualitative Evaluations")
        .nth(1)
        .unwrap()
        .contains(class_code(class)));

    // The real CT slices: valid too (the source's own procedure code is copied).
    let real_ct = real("ct-abdomen-20slices");
    let (_, files) = analyze_out(&real_ct, &work.path().join("real"), None);
    assert_eq!(files.len(), 2);
    let report = dciodvfy_clean(pick(&files, "sr"));
    assert!(
        dsrdump(pick(&files, "sr")).contains("(121058,DCM,\"Procedure reported\")"),
        "{report}"
    );
    check_sc(pick(&files, "sc"), &real_ct.join("slice01.dcm"), "ct-real");
    // A 38 mm CT shows its measured axial slice: patient left across, posterior down.
    assert_eq!(tag(pick(&files, "sc"), "PatientOrientation"), "L\\P");
}

#[test]
fn orthanc_files_sr_and_sc_into_the_original_study() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    let weights = untrained_model(work.path());
    let out = work.path().join("out");
    let (_, files) = analyze_out(&study, &out, Some(&weights));
    assert_eq!(files.len(), 2);
    let pacs = Orthanc::start(work.path());
    let o = run(Command::new(bin())
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--called-ae",
            &pacs.aet,
            "--port",
        ])
        .arg(pacs.dicom_port.to_string())
        .arg(&study)
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("sent 4 of 4 files, 0 failed"),
        "{}",
        text(&o)
    );
    assert_eq!(
        pacs.get("/patients").as_array().unwrap().len(),
        1,
        "one patient"
    );
    let studies = pacs.get("/studies");
    let studies = studies.as_array().unwrap();
    assert_eq!(studies.len(), 1, "one study");
    let id = studies[0].as_str().unwrap();
    let info = pacs.get(&format!("/studies/{id}"));
    assert_eq!(
        info["MainDicomTags"]["StudyInstanceUID"].as_str().unwrap(),
        tag(&study.join("dx_ap.dcm"), "StudyInstanceUID")
    );
    let series = pacs.get(&format!("/studies/{id}/series"));
    let mut modalities: Vec<String> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["MainDicomTags"]["Modality"].as_str().unwrap().to_string())
        .collect();
    modalities.sort();
    assert_eq!(modalities, ["DX", "OT", "SR"]);
}

#[test]
fn duplicated_inputs_and_a_missing_study_uid_are_handled() {
    let work = tempfile::tempdir().unwrap();
    let series = real("ct-abdomen-20slices");
    // The same short CT exported twice: one volume, one SR and one SC (axial key image).
    for copy in ["a", "b"] {
        let dir = work.path().join(copy);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&series).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let out = work.path().join("out");
    let o = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json", "--out"])
        .arg(&out)
        .arg(work.path().join("a"))
        .arg(work.path().join("b")));
    assert!(o.status.success(), "{}", text(&o));
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let written: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    for file in &written {
        dciodvfy_clean(file);
    }
    assert_eq!(f["ct"]["levels"].as_array().unwrap().len(), 1, "{f}");
    // Each instance counts once: the SR references exactly what it references when given
    // one copy (the Finding's list: `duplicated_inputs_are_listed_once_in_the_finding`).
    let (_, single) = analyze_out(&work.path().join("a"), &work.path().join("single"), None);
    // Every Referenced SOP Instance UID in the SR: evidence, image library, ROI slices.
    let references = |sr: &Path| -> Vec<String> {
        let o = run(Command::new("dcmdump")
            .args(["-q", "+P", "0008,1155"])
            .arg(sr));
        let mut refs: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| Some(l.split_once('[')?.1.split(']').next()?.to_string()))
            .collect();
        refs.sort();
        refs
    };
    let (one, two) = (
        references(pick(&single, "sr")),
        references(pick(&written, "sr")),
    );
    assert!(!one.is_empty());
    assert_eq!(two, one, "references with duplicated inputs");

    // Without a StudyInstanceUID our objects cannot join the study: refused, saying so.
    let lost = work.path().join("lost");
    std::fs::create_dir_all(&lost).unwrap();
    for e in std::fs::read_dir(work.path().join("a")).unwrap() {
        let p = e.unwrap().path();
        let to = lost.join(p.file_name().unwrap());
        std::fs::copy(&p, &to).unwrap();
        let o = run(Command::new("dcmodify")
            .args(["-nb", "-ea", "(0020,000d)"])
            .arg(&to));
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--out"])
        .arg(work.path().join("lost-out"))
        .arg(&lost));
    assert!(!o.status.success());
    assert!(text(&o).contains("StudyInstanceUID"), "{}", text(&o));
}

#[test]
fn output_switches_turn_the_sr_and_the_sc_off() {
    let work = tempfile::tempdir().unwrap();
    let study = real("ct-abdomen-20slices");
    let run_with = |name: &str, sr: &str, sc: &str| -> Vec<PathBuf> {
        let out = work.path().join(name);
        let o = run(Command::new(bin())
            .arg("--config")
            .arg(shipped_config())
            .env("OSTEOSCREEN__OUTPUT__STRUCTURED_REPORT", sr)
            .env("OSTEOSCREEN__OUTPUT__SECONDARY_CAPTURE", sc)
            .args(["analyze", "--json", "--out"])
            .arg(&out)
            .arg(&study));
        assert!(o.status.success(), "{name}: {}", text(&o));
        let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(f["status"], "analysed", "{name}");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };
    let kind = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|f| tag(f, "Modality") + "/" + &tag(f, "SOPClassUID"))
            .collect()
    };
    const SR: &str = "SR/=Comprehensive3DSRStorage";
    const SC: &str = "OT/=SecondaryCaptureImageStorage";
    let both = run_with("both", "true", "true");
    assert_eq!(kind(&both), [SC, SR], "{both:?}");
    let sc_only = run_with("sc-only", "false", "true");
    assert_eq!(kind(&sc_only), [SC], "{sc_only:?}");
    let sr_only = run_with("sr-only", "true", "false");
    assert_eq!(kind(&sr_only), [SR], "{sr_only:?}");
    let neither = run_with("neither", "false", "false");
    assert!(neither.is_empty(), "{neither:?}");
    // Switching one off does not change the other.
    assert_eq!(
        tag(&sc_only[0], "SOPInstanceUID"),
        tag(pick(&both, "sc"), "SOPInstanceUID")
    );
    assert_eq!(
        tag(&sr_only[0], "SOPInstanceUID"),
        tag(pick(&both, "sr"), "SOPInstanceUID")
    );
}

#[test]
fn duplicated_inputs_are_listed_once_in_the_finding() {
    let work = tempfile::tempdir().unwrap();
    let series = real("ct-abdomen-20slices");
    for copy in ["a", "b"] {
        let dir = work.path().join(copy);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&series).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let o = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(work.path().join("a"))
        .arg(work.path().join("b")));
    assert!(o.status.success(), "{}", text(&o));
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let series_uids: std::collections::BTreeSet<String> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| tag(&e.unwrap().path(), "SOPInstanceUID"))
        .collect();
    assert_eq!(series_uids.len(), 20);
    let used: Vec<String> = f["instances_used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    assert_eq!(used.len(), 20, "instances_used: {used:?}");
    assert_eq!(
        used.into_iter().collect::<std::collections::BTreeSet<_>>(),
        series_uids
    );
}
