//! The bundled model reads one radiograph study the same in every transfer syntax a PACS
//! may send it in: DCMTK's encoders write each, `osteoscreen analyze` reads each. Lossless
//! encodings must give the very same result; 12-bit lossy JPEG (what CR archives store)
//! the same class and nearly the same T-score.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The study's files re-encoded by `tool ARGS` into `dir`; each file's transfer syntax
/// is checked to be `ts`.
fn encoded(study: &Path, dir: &Path, tool: &str, args: &[&str], ts: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for file in dicom_files(study) {
        let to = dir.join(file.file_name().unwrap());
        let out = run(Command::new(tool).args(args).arg(&file).arg(&to));
        assert!(out.status.success(), "{tool} {args:?}: {}", text(&out));
        let obj = dicom_object::open_file(&to).unwrap();
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            ts,
            "{tool} {args:?}"
        );
    }
    dir.to_path_buf()
}

/// JPEG Extended (Process 2 & 4): 12-bit lossy JPEG as `dcmcjpeg +ee` writes it.
const TWELVE_BIT_JPEG: &str = "1.2.840.10008.1.2.4.51";

/// One radiograph of a synthetic study, as 12-bit lossy JPEG, under `work`.
fn twelve_bit_radiograph(work: &Path) -> PathBuf {
    let study = synth_study(&work.join("s"), &DX_SMALL);
    let lossy = encoded(
        &study,
        &work.join("lossy"),
        "dcmcjpeg",
        &["+ee"],
        TWELVE_BIT_JPEG,
    );
    dicom_files(&lossy).into_iter().next().unwrap()
}

/// `analyze --json` with the shipped settings: the class and T-score of a study read
/// from both its images.
fn read(dir: &Path) -> (String, f64) {
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(dir));
    assert!(out.status.success(), "{}: {}", dir.display(), text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["status"], "analysed", "{f}");
    assert_eq!(f["instances_used"].as_array().unwrap().len(), 2, "{f}");
    let c = &f["conclusion"];
    (
        c["class"].as_str().unwrap().to_string(),
        c["t_score"].as_f64().unwrap(),
    )
}

#[test]
fn a_radiograph_study_reads_the_same_in_every_transfer_syntax() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("s"), &DX_SMALL);
    let (class, t) = read(&study);
    let lossless = [
        ("dcmconv", &["+ti"][..], "1.2.840.10008.1.2"),
        ("dcmconv", &["+tb"][..], "1.2.840.10008.1.2.2"),
        ("dcmconv", &["+td"][..], "1.2.840.10008.1.2.1.99"),
        ("dcmcjpeg", &[][..], "1.2.840.10008.1.2.4.70"),
        ("dcmcjpeg", &["+el"][..], "1.2.840.10008.1.2.4.57"),
        ("dcmcjpls", &[][..], "1.2.840.10008.1.2.4.80"),
        ("dcmcrle", &[][..], "1.2.840.10008.1.2.5"),
    ];
    for (i, (tool, args, ts)) in lossless.into_iter().enumerate() {
        let dir = encoded(&study, &work.path().join(format!("e{i}")), tool, args, ts);
        let (c, x) = read(&dir);
        assert_eq!(
            (c.as_str(), x),
            (class.as_str(), t),
            "{ts}: lossless, the same reading"
        );
    }
    // 12-bit lossy JPEG (JPEG Extended, Process 2 & 4): decoded by src/analysis/jpeg12.rs.
    let dir = encoded(
        &study,
        &work.path().join("lossy"),
        "dcmcjpeg",
        &["+ee"],
        TWELVE_BIT_JPEG,
    );
    let (c, x) = read(&dir);
    assert_eq!(c, class, "12-bit lossy JPEG");
    assert!(
        (t - x).abs() < 0.15,
        "T {t} uncompressed, {x} as 12-bit lossy JPEG"
    );
}

/// Every frame of `file`, decoded as analysis decodes it.
fn pixels(file: &Path) -> Vec<Vec<f32>> {
    let obj = dicom_object::open_file(file).unwrap();
    let (_, frames) = osteoscreen::analysis::image::decode(&obj)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    frames.into_iter().map(|f| f.values).collect()
}

#[test]
fn twelve_bit_jpeg_with_restarts_wide_tables_or_several_frames_decodes_the_same() {
    // DCMTK writes neither restart intervals, 16-bit quantisation tables, a 12-bit SOF0
    // nor multi-frame 12-bit JPEG; tests/jpeg12_variants.py re-encodes DCMTK's file into
    // each with the same coefficients, and dcmdjpeg checks that each is the same image.
    let work = tempfile::tempdir().unwrap();
    let base = twelve_bit_radiograph(work.path());
    let variants = work.path().join("variants");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jpeg12_variants.py");
    let out = run(Command::new(python()).arg(script).arg(&base).arg(&variants));
    assert!(out.status.success(), "jpeg12_variants.py: {}", text(&out));
    let expected = pixels(&base);
    let dcmtk_expected = pixels(&dcmdjpeg(&base, &work.path().join("base-dcmtk.dcm")));
    let mut names = Vec::new();
    for file in dicom_files(&variants) {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        // The peer first: dcmdjpeg reads the variant's first frame as the same image.
        let native = pixels(&dcmdjpeg(
            &file,
            &work.path().join(format!("{name}-dcmtk.dcm")),
        ));
        assert_eq!(native[0], dcmtk_expected[0], "{name}: dcmdjpeg");
        let frames = pixels(&file);
        let want = if name == "two_frames" { 2 } else { 1 };
        assert_eq!((frames.len(), native.len()), (want, want), "{name}");
        assert!(
            frames[0] == expected[0],
            "{name}: not the same pixels as the file it came from"
        );
        // Every frame as dcmdjpeg reads it (the inverse DCTs round apart by a level at
        // most); two_frames' second is another image (its DC moved), read in its place.
        for (k, (ours, peer)) in frames.iter().zip(&native).enumerate() {
            let max = ours
                .iter()
                .zip(peer)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(max <= 1.0, "{name} frame {k}: {max} from dcmdjpeg");
        }
        if want == 2 {
            assert!(
                frames[1] != frames[0],
                "two_frames: the second frame is another image"
            );
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "dqt16",
            "ri1",
            "ri13_fill",
            "ri64",
            "ri7",
            "sof0",
            "two_frames"
        ]
    );
}

/// `file` decoded by DCMTK's dcmdjpeg into `to`.
fn dcmdjpeg(file: &Path, to: &Path) -> PathBuf {
    let out = run(Command::new("dcmdjpeg").arg(file).arg(to));
    assert!(
        out.status.success(),
        "dcmdjpeg {}: {}",
        file.display(),
        text(&out)
    );
    to.to_path_buf()
}

#[test]
fn a_twelve_bit_jpeg_frame_bigger_than_its_image_is_refused() {
    // A second, huge frame header behind a small one: codestream::check reads the first,
    // the decoder must not size its buffer from the second.
    let work = tempfile::tempdir().unwrap();
    let base = twelve_bit_radiograph(work.path());
    let obj = with_first_fragment(&base, |f| {
        let sof = f.windows(2).position(|w| w == [0xFF, 0xC1]).unwrap();
        let mut huge = f[sof..sof + 13].to_vec();
        huge[5..9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        f.splice(sof + 13..sof + 13, huge);
    });
    let err = osteoscreen::analysis::image::decode(&obj)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(TWELVE_BIT_JPEG) && err.contains("two frame headers"),
        "{err}"
    );
}
