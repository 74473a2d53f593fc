//! Dataset loaders on small fixture folders the tests build: LUMOS (an .xlsx with
//! unpublished-style headers, written here), the tabular DXA CSV with PNG images, a plain
//! manifest and synth's manifest; columns found by pattern or named with --column.

mod common;

use std::path::Path;

use osteoscreen::analysis::finding::View;
use osteoscreen::train::data::{self, ColumnOverrides};
use rust_xlsxwriter::Workbook;

use common::*;

/// One small synthetic AP + lateral study; returns its two files.
fn two_radiographs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let study = synth_study(
        dir,
        &["--modality", "dx", "--size", "256x320", "--seed", "8"],
    );
    (study.join("dx_ap.dcm"), study.join("dx_lat.dcm"))
}

/// A LUMOS folder: patients 1, 2 and 741 have radiographs (741 with the archive's typo:
/// image 670 twice), patient 5 has none; folder 9 has no clinical row.
fn lumos_fixture(root: &Path) {
    let src = tempfile::tempdir().unwrap();
    let (ap, lat) = two_radiographs(src.path());
    let put = |folder: &str, file: &str, from: &Path| {
        let dir = root.join("lumos_x").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(from, dir.join(file)).unwrap();
    };
    put("lumos_x_001", "lumos_x_001_1.dcm", &ap);
    put("lumos_x_001", "lumos_x_001_2.dcm", &lat);
    put("lumos_x_002", "lumos_x_002_3.dcm", &ap);
    put("lumos_x_741", "lumos_x_741_670.dcm", &ap);
    put("lumos_x_670", "lumos_x_670_670.dcm", &lat);
    put("lumos_x_009", "lumos_x_009_20.dcm", &ap);
    std::fs::create_dir_all(root.join("lumos_ct/lumos_ct_001")).unwrap();

    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "LUMOS clinical data (title row)")
        .unwrap();
    let headers = [
        "Patient No.",
        "Age (years)",
        "Sex",
        "Weight (kg)",
        "Height (cm)",
        "L1-L4 BMD (g/cm2)",
        "Femoral neck T-score",
        "L1-L4 T-score",
        "Group (0 normal, 1 osteopenia, 2 osteoporosis)",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(1, c as u16, *h).unwrap();
    }
    // Patient, age, (sex), weight, height, BMD, neck T, L1-L4 T, group.
    let rows: [(&str, [f64; 8]); 5] = [
        ("F", [1.0, 61.0, 70.0, 160.0, 0.95, -0.4, -0.8, 0.0]),
        ("F", [2.0, 74.0, 52.0, 155.0, 0.70, -2.0, -3.1, 2.0]),
        ("M", [5.0, 66.0, 80.0, 175.0, 0.88, -1.1, -1.5, 1.0]),
        ("F", [670.0, 70.0, 58.0, 158.0, 0.84, -1.6, -1.9, 1.0]),
        ("F", [741.0, 58.0, 64.0, 162.0, 0.80, -1.2, -2.2, 1.0]),
    ];
    for (r, (sex, v)) in rows.iter().enumerate() {
        let r = r as u32 + 2;
        ws.write_string(r, 2, *sex).unwrap();
        for (i, c) in [0u16, 1, 3, 4, 5, 6, 7, 8].into_iter().enumerate() {
            ws.write_number(r, c, v[i]).unwrap();
        }
    }
    wb.save(root.join("lumos_clinical_data.xlsx")).unwrap();
}

#[test]
fn lumos_folders_and_sheet_are_joined_by_patient() {
    let root = tempfile::tempdir().unwrap();
    lumos_fixture(root.path());
    let d = data::open(root.path(), &ColumnOverrides::default()).unwrap();
    assert_eq!(d.layout, "LUMOS");
    let notes = d.notes.join("\n");
    // What was matched is reported.
    assert!(
        notes.contains("t_score: column \"L1-L4 T-score\""),
        "{notes}"
    );
    assert!(notes.contains("label: column \"Group (0 normal"), "{notes}");
    assert!(
        notes.contains("bmd: column \"L1-L4 BMD (g/cm2)\""),
        "{notes}"
    );
    assert!(notes.contains("patient: column \"Patient No.\""), "{notes}");
    // The typo is tolerated and said; the folder without a row is skipped and counted.
    assert!(notes.contains("the same image number 670"), "{notes}");
    assert!(
        notes.contains("1 image folders have no clinical row"),
        "{notes}"
    );
    assert!(notes.contains("lumos_ct: 1 CT folders"), "{notes}");
    // Patients 1 (2 images), 2, 670, 741.
    assert_eq!(d.samples.len(), 5);
    assert_eq!(d.patients(), 4);
    let of = |p: &str| {
        d.samples
            .iter()
            .filter(|s| s.patient == p)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("001").len(), 2);
    assert_eq!(of("002")[0].label, 2);
    assert_eq!(of("002")[0].t_score, Some(-3.1));
    assert_eq!(of("002")[0].bmd, Some(0.70));
    assert_eq!(of("741")[0].label, 1);
    // Clinical rows for every patient, images or not; height in cm becomes metres.
    assert_eq!(d.records.len(), 5);
    let p5 = d.records.iter().find(|r| r.patient == "005").unwrap();
    assert_eq!((p5.sex, p5.height_m), (Some('M'), Some(1.75)));

    // --column overrides the detection.
    let over = ColumnOverrides::parse(&["t_score=Femoral neck T-score".into()]).unwrap();
    let d = data::open(root.path(), &over).unwrap();
    let p2 = d.samples.iter().find(|s| s.patient == "002").unwrap();
    assert_eq!(p2.t_score, Some(-2.0));
    let bad = ColumnOverrides::parse(&["label=No such column".into()]).unwrap();
    let err = data::open(root.path(), &bad).unwrap_err().to_string();
    assert!(err.contains("no such column"), "{err}");
}

/// A greyscale 8-bit PNG.
fn write_png(path: &Path, w: u32, h: u32) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

#[test]
fn tabular_dxa_rows_join_their_images_by_identifier() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("bmd.csv"),
        "IDENTIFIER1,SPINE_BMD,SPINE_TSCORE,HIP_BMD,HIP_TSCORE,HIPNECK_BMD,HIPNECK_TSCORE,SEX,WEIGHT,HEIGHT,BMI,ADJUSTED_AGE,MENOPAUSE_YEAR,label\n\
         A1,0.98,-0.6,0.9,-0.5,0.8,-0.7,F,70,160,27.3,45-49,0,normal\n\
         A2,0.71,-3.0,0.7,-2.1,0.6,-2.4,F,51,152,22.1,70-74,22,osteoporosis\n\
         A3,0.85,-1.8,0.8,-1.2,0.7,-1.5,M,82,176,26.5,60-64,,\n\
         A4,0.90,-1.2,0.8,-1.0,0.7,-1.3,F,66,158,26.4,55-59,6,1\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("images")).unwrap();
    write_png(&root.path().join("A1.png"), 40, 50);
    write_png(&root.path().join("images/A2.png"), 40, 50);
    write_png(&root.path().join("images/A3.png"), 40, 50);
    let d = data::open(root.path(), &ColumnOverrides::default()).unwrap();
    assert_eq!(d.layout, "tabular DXA");
    assert_eq!(d.records.len(), 4);
    assert_eq!(d.samples.len(), 3, "A4 has no image");
    let a2 = &d.records[1];
    assert_eq!(a2.label, Some(2));
    assert_eq!(a2.age_years, Some(72.0));
    assert_eq!(a2.menopause_years, Some(22.0));
    assert_eq!(a2.height_m, Some(1.52));
    // No label: from the spine T-score (-1.8: osteopenia).
    assert_eq!(d.records[2].label, Some(1));
    assert_eq!(d.samples[2].label, 1);
    assert_eq!(d.samples[0].t_score, Some(-0.6));
    // The PNGs decode for training.
    let g = osteoscreen::train::images::load(
        &d.samples[0].image,
        d.samples[0].view,
        osteoscreen::model::preprocess::InputSpec::default(),
    )
    .unwrap();
    assert_eq!((g.rows, g.cols), (50, 40));
}

#[test]
fn manifests_plain_and_synth() {
    let root = tempfile::tempdir().unwrap();
    let (ap, lat) = two_radiographs(&root.path().join("src"));
    std::fs::write(
        root.path().join("list.csv"),
        format!(
            "path,label,t_score,bmd,patient_id,view\n{},,-2.7,0.75,P1,AP\n{},osteoporosis,-2.7,0.75,P1,LAT\nmissing.dcm,,,,P2,AP\n",
            ap.strip_prefix(root.path()).unwrap().display(),
            lat.strip_prefix(root.path()).unwrap().display()
        ),
    )
    .unwrap();
    let d = data::open(&root.path().join("list.csv"), &ColumnOverrides::default()).unwrap();
    assert_eq!(d.layout, "manifest");
    assert_eq!(d.samples.len(), 2);
    assert!(d.samples.iter().all(|s| s.label == 2 && s.patient == "P1"));
    assert_eq!(d.samples[0].view, Some(View::Frontal));
    assert_eq!(d.samples[1].view, Some(View::Lateral));
    assert!(
        d.notes.join(" ").contains("1 rows without"),
        "{:?}",
        d.notes
    );

    // synth's own manifest: every radiograph of each study folder.
    let s = data::open(&root.path().join("src"), &ColumnOverrides::default()).unwrap();
    assert_eq!(s.layout, "manifest");
    assert_eq!(s.samples.len(), 2);
    assert_eq!(s.patients(), 1);
    assert!(s
        .samples
        .iter()
        .all(|x| x.t_score.is_some() && x.bmd.is_some()));

    let err = data::open(root.path(), &ColumnOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("no known dataset layout"), "{err}");
}
