//! `osteoscreen calibrate`: the radiographs combined with the patient's age, fitted on
//! labelled studies and applied wherever the model runs (`eval`, `train`'s card, the
//! daemon's analysis).

mod common;

use std::path::Path;
use std::process::Command;

use common::models::*;
use common::*;

#[test]
fn calibrate_combines_the_age_and_eval_and_analyze_apply_it() {
    let work = tempfile::tempdir().unwrap();
    // Synth ages track the T-score (older patients, lower T), as in the cohorts.
    let data = work.path().join("data");
    synth_set(&data, 48, 31, "256x320");
    let m = work.path().join("m");
    let weights = bundled_with(&m, |c| {
        c.as_object_mut().unwrap().remove("covariates");
        // The network's own result is what the age is combined with here (`readout_cli`
        // covers the read-out).
        c.as_object_mut().unwrap().remove("readout");
    });
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap())
            .unwrap();
    let calibrate = |data: &Path, extra: &[&str]| {
        run(Command::new(bin())
            .arg("calibrate")
            .arg("--model")
            .arg(&weights)
            .arg("--data")
            .arg(data)
            .args(extra))
    };

    // Too few studies: refused with the count, and the card is left as it was.
    let few = work.path().join("few");
    synth_set(&few, 6, 32, "256x320");
    let out = calibrate(&few, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("6 studies with both an age and a T-score"),
        "{}",
        text(&out)
    );
    let untouched = std::fs::read_to_string(weights.with_extension("json")).unwrap();
    assert!(!untouched.contains("covariates"));

    // The bundled weights read synth studies well, and there the age does not add to them
    // in cross-validation: the card is left as it was unless --force.
    let out = calibrate(&data, &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("did not help"), "{}", text(&out));
    let untouched = std::fs::read_to_string(weights.with_extension("json")).unwrap();
    assert!(!untouched.contains("covariates"));
    let out = calibrate(&data, &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("5-fold cross-validated accuracy"),
        "{}",
        text(&out)
    );
    let calibrated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap())
            .unwrap();
    let cov = &calibrated["covariates"];
    assert_eq!(
        cov["features"],
        serde_json::json!([
            "log_p_normal",
            "log_p_osteopenia",
            "log_p_osteoporosis",
            "image_t_score",
            "age_years"
        ])
    );
    assert!(
        cov["t_score_coefficients"][1].as_f64().unwrap() < 0.0,
        "older, lower T: {cov}"
    );
    assert_eq!(cov["evaluation"]["studies"], 48);
    assert_eq!(
        calibrated["weights_sha256"], c["weights_sha256"],
        "weights untouched"
    );
    // Now the card has a covariate model that these studies do not bear out: calibrating
    // again without --force removes it (here into --card-out, the card itself kept).
    let bare = work.path().join("bare.json");
    let out = calibrate(&data, &["--card-out", bare.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed the card's covariate model"),
        "{}",
        text(&out)
    );
    let bare: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bare).unwrap()).unwrap();
    assert!(bare.get("covariates").is_none(), "{bare}");
    assert_eq!(bare["weights_sha256"], c["weights_sha256"]);
    let kept = std::fs::read_to_string(weights.with_extension("json")).unwrap();
    assert!(kept.contains("covariates"));

    // eval applies it, and says what the radiographs alone scored; --radiographs-only
    // measures exactly that.
    let metrics = |extra: &[&str]| {
        let dir = work.path().join(format!("eval{}", extra.len()));
        let out = run(Command::new(bin())
            .arg("eval")
            .arg("--model")
            .arg(&weights)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&dir)
            .args(extra));
        assert!(out.status.success(), "{}", text(&out));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                .unwrap();
        (text(&out), m)
    };
    let (printed, with_age) = metrics(&[]);
    assert!(
        printed.contains("combined with the age for 48 of 48 studies"),
        "{printed}"
    );
    let (printed, alone) = metrics(&["--radiographs-only"]);
    assert!(!printed.contains("combined with the age"), "{printed}");
    assert!(alone.get("covariates").is_none());
    assert_eq!(
        with_age["covariates"]["radiographs_alone"], alone["metrics"],
        "the same studies, the same radiographs"
    );
    assert_ne!(
        with_age["metrics"]["t_score_mae"],
        alone["metrics"]["t_score_mae"]
    );

    // `train` fits one on its validation patients (here 24 studies with ages) and keeps it
    // where the age helps: a one-epoch network reads little, the synth ages a lot.
    let trained = work.path().join("trained");
    let out = train(
        &data,
        &trained,
        &[
            "--epochs",
            "1",
            "--images-per-epoch",
            "16",
            "--val-fraction",
            "0.5",
            "--test-fraction",
            "0.1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the card combines the radiographs with the age"),
        "{}",
        text(&out)
    );
    assert!(card(&trained)["covariates"]["t_score_coefficients"].is_array());
    // Calibrating on all of the data the model was trained on is refused.
    let out = run(Command::new(bin())
        .arg("calibrate")
        .arg("--model")
        .arg(trained.join("osteoscreen-xray.safetensors"))
        .arg("--data")
        .arg(&data));
    assert!(!out.status.success());
    assert!(text(&out).contains("--split val"), "{}", text(&out));

    // The daemon's analysis: combined and said so, the radiographs' own result kept; off
    // by configuration; a study without an age is left to the radiographs, flagged.
    let study = synth_study(work.path(), &DX_SMALL);
    let model_env = [("OSTEOSCREEN__MODEL__WEIGHTS", weights.as_os_str())];
    let finding = |env: &[(&str, &std::ffi::OsStr)], study: &Path| {
        let out = analyze(study, env);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let f = finding(&model_env, &study);
    let x = &f["xray"];
    let age = x["covariates"]["age_years"].as_f64().expect("combined");
    assert!((20.0..=95.0).contains(&age), "{x}");
    assert!(x["covariates"]["image_t_score"].as_f64().is_some());
    assert!(x["fusion"].as_str().unwrap().contains("age"), "{x}");
    assert!(
        f["conclusion"]["basis"]
            .as_str()
            .unwrap()
            .contains("with the patient's age"),
        "{f}"
    );
    let off = [
        model_env[0],
        (
            "OSTEOSCREEN__MODEL__COVARIATES",
            std::ffi::OsStr::new("false"),
        ),
    ];
    let f = finding(&off, &study);
    assert!(f["xray"].get("covariates").is_none(), "{f}");
    // Each header change below leaves the study to the radiographs alone: the flags say why.
    let left_alone = |dcmodify: &[&str]| {
        for file in dicom_files(&study) {
            let out = run(Command::new("dcmodify")
                .arg("-nb")
                .args(dcmodify)
                .arg(&file));
            assert!(out.status.success(), "{}", text(&out));
        }
        let f = finding(&model_env, &study);
        assert!(f["xray"].get("covariates").is_none(), "{f}");
        f["flags"].to_string()
    };
    let flags = left_alone(&["-ea", "(0010,1010)", "-ea", "(0010,0030)"]);
    assert!(flags.contains("patient age missing"), "{flags}");
    // A child's age lies outside the ages it applies to.
    let flags = left_alone(&["-i", "(0010,1010)=005Y"]);
    assert!(flags.contains("outside the ages"), "{flags}");
    assert!(
        !flags.contains("005"),
        "the age itself is not in a flag: {flags}"
    );
}

#[test]
fn ages_come_from_the_clinical_table_when_the_images_have_no_header() {
    let work = tempfile::tempdir().unwrap();
    let table = work.path().join("bmd.csv");
    dxa_csv(&table, 30);
    // PNG images (no DICOM header, so no age there), one per row, named by IDENTIFIER1.
    std::fs::create_dir_all(work.path().join("images")).unwrap();
    for i in 0..30 {
        let file = std::fs::File::create(work.path().join(format!("images/R{i}.png"))).unwrap();
        let mut enc = png::Encoder::new(file, 64, 80);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let data: Vec<u8> = (0..64 * 80).map(|p| ((p * (i + 3)) % 251) as u8).collect();
        enc.write_header().unwrap().write_image_data(&data).unwrap();
    }
    let m = work.path().join("m");
    let weights = bundled_with(&m, |_| {});
    let out = run(Command::new(bin())
        .arg("calibrate")
        .arg("--model")
        .arg(&weights)
        .arg("--data")
        .arg(&table));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("30 of 30 studies had an age and a T-score"),
        "{}",
        text(&out)
    );
}
