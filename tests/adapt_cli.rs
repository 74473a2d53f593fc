//! `osteoscreen adapt`: the bundled model's batch-norm statistics re-estimated on a
//! site's unlabelled radiographs whose look the weights never saw.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::models::*;
use common::*;
use osteoscreen::model::XrayModel;
use osteoscreen::train::augment::box_blur;
use osteoscreen::train::evaluate::input_of;
use osteoscreen::train::images::{load, Grey};

/// The synth radiographs under `from`, redrawn as a vendor the training never showed
/// (strong dynamic-range compression: the broad background subtracted) as 16-bit PNGs
/// in `to`.
fn unfamiliar_site(from: &Path, to: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).unwrap();
    dicom_files(from)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let g = load(
                p,
                None,
                osteoscreen::model::preprocess::InputSpec::default(),
            )
            .unwrap();
            let x = g.to_f32();
            let r = g.rows.max(g.cols) / 17;
            let broad = box_blur(
                &box_blur(&box_blur(&x, g.rows, g.cols, r), g.rows, g.cols, r),
                g.rows,
                g.cols,
                r,
            );
            let v: Vec<u16> = x
                .iter()
                .zip(broad)
                .map(|(x, b)| ((0.5 + 1.5 * (x - b)).clamp(0.0, 1.0) * 65535.0) as u16)
                .collect();
            let path = to.join(format!("img{i:03}.png"));
            let file = std::fs::File::create(&path).unwrap();
            let mut enc = png::Encoder::new(file, g.cols as u32, g.rows as u32);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Sixteen);
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
            enc.write_header()
                .unwrap()
                .write_image_data(&bytes)
                .unwrap();
            path
        })
        .collect()
}

/// The feature shift (the card's profile) of `images` under `weights`: how far their
/// mean features lie from the training images'.
fn shift(weights: &Path, images: &[PathBuf]) -> f32 {
    let model = XrayModel::load(weights, None, candle_core::Device::Cpu).unwrap();
    let inputs: Vec<Vec<f32>> = images
        .iter()
        .map(|p| {
            let g: Grey = load(p, None, model.input()).unwrap();
            input_of(&g, model.input())
        })
        .collect();
    let features: Vec<Vec<f32>> = model
        .predict(&inputs)
        .unwrap()
        .into_iter()
        .map(|p| p.features)
        .collect();
    model
        .card
        .feature_profile
        .as_ref()
        .unwrap()
        .shift(&features)
        .unwrap()
}

fn adapt(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    adapt_model(&bundled(), data, out, extra)
}

fn adapt_model(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(Command::new(bin())
        .arg("adapt")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu"])
        .args(extra))
}

fn tensors(path: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn adapt_measures_a_site_s_statistics_and_nothing_else() {
    let work = tempfile::tempdir().unwrap();
    let synth = work.path().join("synth");
    synth_set(&synth, 20, 43, "320x400");
    // A PACS export: 40 radiographs in another look, a CT study and a stray file, which
    // are passed over.
    let site = work.path().join("site");
    let images = unfamiliar_site(&synth, &site);
    assert_eq!(images.len(), 40);
    synth_study(&site.join("ct"), &CT_3MM);
    std::fs::write(site.join("readme.txt"), "export notes").unwrap();

    let out = adapt(&site, &work.path().join("a"), &["--name", "site-a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("40 radiographs under"),
        "{}",
        text(&out)
    );
    let weights = work.path().join("a/site-a.safetensors");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap())
            .unwrap();
    let bundled_card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled().with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(card["name"], "site-a");
    assert_eq!(
        card["training"]["adapted"]["from_sha256"],
        bundled_card["weights_sha256"]
    );
    assert_eq!(card["training"]["adapted"]["images"], 40);
    assert!(card["training_data"]
        .as_str()
        .unwrap()
        .contains("not validated on patients"));

    // Only the running statistics changed, and every one of them did.
    let (before, after) = (tensors(&bundled()), tensors(&weights));
    assert_eq!(before.len(), after.len());
    for (name, b) in &before {
        let a = &after[name];
        let changed = a.iter().zip(b).any(|(x, y)| x != y);
        assert_eq!(changed, name.contains("running"), "{name}");
    }

    // The site's images now sit nearer the training images' features (the card's
    // profile): the shift adaptation exists to remove.
    let (s0, s1) = (shift(&bundled(), &images), shift(&weights, &images));
    eprintln!("feature shift {s0:.2} -> {s1:.2}");
    assert!(s1 < 0.9 * s0, "feature shift {s0:.2} -> {s1:.2}");

    // The adapted model is a model like any other: eval loads it (sha256 checked).
    let out = eval(&weights, &synth, &work.path().join("ev"));
    assert!(out.status.success(), "{}", text(&out));

    // The statistics are the site's alone: adapting the adapted model again (other starting
    // statistics, the same images and batches) measures the same ones.
    let out = adapt_model(
        &weights,
        &site,
        &work.path().join("again"),
        &["--name", "site-a"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let again = tensors(&work.path().join("again/site-a.safetensors"));
    for (name, a) in &after {
        let worst = a
            .iter()
            .zip(&again[name])
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-3))
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{name}: {worst}");
    }
    let changed = |name: &str| {
        before[name]
            .iter()
            .zip(&after[name])
            .any(|(x, y)| (x - y).abs() > 1e-3 * x.abs().max(1e-3))
    };
    assert!(changed("stem.bn.running_mean"));
    // The model being adapted is not overwritten.
    let out = adapt_model(
        &weights,
        &site,
        &work.path().join("a"),
        &["--name", "site-a"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is the model being adapted"),
        "{}",
        text(&out)
    );

    // Same images, same seed: the same weights.
    let out = adapt(&site, &work.path().join("b"), &["--name", "site-a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        std::fs::read(work.path().join("b/site-a.safetensors")).unwrap()
    );
}

#[test]
fn adapt_refuses_too_few_radiographs_and_a_wrong_card() {
    let work = tempfile::tempdir().unwrap();
    let synth = work.path().join("synth");
    synth_set(&synth, 5, 44, "256x320");
    let out = adapt(&synth, &work.path().join("a"), &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("10 readable radiographs of 10: adaptation needs at least 32"),
        "{}",
        text(&out)
    );
    assert!(!work.path().join("a").exists());

    // Weights that are not the card's are refused before any work.
    let m = work.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let weights = untrained_model(&m);
    std::fs::copy(
        bundled().with_extension("json"),
        weights.with_extension("json"),
    )
    .unwrap();
    let out = adapt_model(&weights, &synth, &work.path().join("b"), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("sha256"), "{}", text(&out));
}
