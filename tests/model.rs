//! The X-ray model plumbing with randomly initialised weights (no trained weights yet):
//! load checks, shapes, probabilities, determinism, batching. Accuracy is not tested here.

mod common;

use candle_core::Device;
use osteoscreen::analysis::image;
use osteoscreen::model::preprocess::{self, InputSpec};
use osteoscreen::model::{ModelError, XrayModel};
use osteoscreen::synth::{self, SynthModality, SynthOptions};

fn synthetic_inputs(dir: &std::path::Path, n: usize) -> Vec<Vec<f32>> {
    let mut opts = SynthOptions::new(dir.to_path_buf(), n, SynthModality::Dx);
    opts.size = (512, 640);
    let rows = synth::generate(&opts).unwrap();
    rows.iter()
        .map(|row| {
            let obj = dicom_object::open_file(dir.join(&row.folder).join("dx_ap.dcm")).unwrap();
            let (header, frames) = image::decode(&obj).unwrap();
            let shown = image::display(&frames[0], &header);
            preprocess::prepare(
                &shown,
                frames[0].rows,
                frames[0].columns,
                InputSpec::default(),
            )
        })
        .collect()
}

#[test]
fn untrained_model_loads_predicts_and_batches_consistently() {
    let work = tempfile::tempdir().unwrap();
    let weights = work.path().join("xray.safetensors");
    let card = XrayModel::create_untrained(&weights).unwrap();
    assert!(card.intended_use.contains("tests only"));
    let model = XrayModel::load(&weights, None, Device::Cpu).unwrap();
    let inputs = synthetic_inputs(&work.path().join("dx"), 3);
    let batch = model.predict(&inputs).unwrap();
    assert_eq!(batch.len(), 3);
    for (i, p) in batch.iter().enumerate() {
        let sum: f32 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
        assert!(p.probabilities.iter().all(|x| (0.0..=1.0).contains(x)));
        assert!((p.bmd - (1.047 + 0.11 * p.t_score)).abs() < 1e-4);
        let single = model.predict(&inputs[i..i + 1]).unwrap();
        for k in 0..3 {
            assert!((single[0].probabilities[k] - p.probabilities[k]).abs() < 1e-4);
        }
    }
    assert_eq!(model.predict(&inputs).unwrap(), batch, "deterministic");
    assert!(
        model.predict(&[vec![0.0; 10]]).is_err(),
        "wrong input size refused"
    );

    // Read as taken and mirrored: the average of the two single passes, the distance of
    // the image as taken.
    let side = (inputs[0].len() as f64).sqrt() as usize;
    let mirror: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| {
            x.chunks(side)
                .flat_map(|r| r.iter().rev().copied())
                .collect()
        })
        .collect();
    let mirrored = model.predict(&mirror).unwrap();
    let both = model.predict_mirrored(&inputs).unwrap();
    assert_eq!(both.len(), 3);
    for ((b, p), m) in both.iter().zip(&batch).zip(&mirrored) {
        for k in 0..3 {
            let mean = (p.probabilities[k] + m.probabilities[k]) / 2.0;
            assert!(
                (b.probabilities[k] - mean).abs() < 1e-4,
                "{b:?} {p:?} {m:?}"
            );
        }
        assert!((b.t_score - (p.t_score + m.t_score) / 2.0).abs() < 1e-4);
        assert_eq!(b.feature_distance, p.feature_distance);
    }
    assert!(model.predict_mirrored(&[vec![0.0; 10]]).is_err());
    assert!(model.predict_mirrored(&[]).unwrap().is_empty());
}

#[test]
fn mismatched_or_corrupt_weights_are_refused_with_a_reason() {
    let work = tempfile::tempdir().unwrap();
    let weights = work.path().join("xray.safetensors");
    XrayModel::create_untrained(&weights).unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xFF;
    std::fs::write(&weights, &bytes).unwrap();
    match XrayModel::load(&weights, None, Device::Cpu) {
        Err(e @ ModelError::Mismatch { .. }) => assert!(e.to_string().contains("sha256")),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("corrupt weights loaded"),
    }
    // A card for another input format is refused too.
    let other = work.path().join("other.safetensors");
    XrayModel::create_untrained(&other).unwrap();
    let card_path = other.with_extension("json");
    let text = std::fs::read_to_string(&card_path).unwrap();
    std::fs::write(&card_path, text.replace("1x256x256", "3x512x512")).unwrap();
    assert!(matches!(
        XrayModel::load(&other, None, Device::Cpu),
        Err(ModelError::Card { .. })
    ));
    assert!(matches!(
        osteoscreen::model::device("tpu"),
        Err(ModelError::Device(_))
    ));
}
