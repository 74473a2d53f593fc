//! The X-ray method: every selected lumbar radiograph is decoded, windowed for display
//! (MONOCHROME1 inverted), preprocessed and run through the model in batches. Images of
//! one view are averaged; frontal and lateral then count equally (a study with two AP
//! images and one lateral is not decided by its AP alone).

use rayon::prelude::*;
use serde::Serialize;

use super::finding::BoneClass;
use super::image;
use super::select::{InstanceInfo, View};
use crate::model::{preprocess, XrayModel};

/// Radiographs decoded at the same time.
const DECODE_AT_ONCE: usize = 2;

/// Below this fused probability of the chosen class the result is flagged low-confidence.
pub const LOW_CONFIDENCE: f32 = 0.6;

/// Which model produced a result: enough to find the weights and their card again.
#[derive(Debug, Clone, Serialize)]
pub struct ModelIdentity {
    pub name: String,
    pub version: String,
    pub weights_sha256: String,
    pub training_data: String,
    pub intended_use: String,
}

/// One radiograph's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePrediction {
    pub sop_instance_uid: String,
    pub view: View,
    /// Normal, osteopenia, osteoporosis.
    pub probabilities: [f32; 3],
    pub t_score: f32,
    pub bmd_g_cm2: f32,
}

/// What the X-ray model concluded for the study.
#[derive(Debug, Clone, Serialize)]
pub struct XrayFinding {
    pub model: ModelIdentity,
    pub images: Vec<ImagePrediction>,
    /// Fused over views: normal, osteopenia, osteoporosis.
    pub probabilities: [f32; 3],
    pub t_score: f32,
    pub bmd_g_cm2: f32,
    /// The most probable class.
    pub class: BoneClass,
    /// The WHO class of `t_score`; differs from `class` only when flagged.
    pub class_from_t_score: BoneClass,
    pub fusion: String,
}

/// Run the model on the selected radiographs. Images that cannot be decoded are left out
/// and flagged; an error only when none is left.
pub fn run(
    model: &XrayModel,
    radiographs: &[(InstanceInfo, View)],
    batch_size: usize,
    flags: &mut Vec<String>,
) -> Result<XrayFinding, String> {
    // Decoding and preprocessing are per image and dominate for full-size radiographs.
    // Two at a time: a full-size radiograph decodes to ~20 MB of f32 (a hostile one to the
    // 2 GiB cap), so memory stays bounded however many cores the host has.
    let prepared: Vec<Result<Vec<f32>, String>> = radiographs
        .chunks(DECODE_AT_ONCE)
        .flat_map(|pair| {
            pair.par_iter()
                .map(|(info, _)| prepare(info))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut kept = Vec::new();
    let mut inputs = Vec::new();
    for ((info, view), p) in radiographs.iter().zip(prepared) {
        match p {
            Ok(x) => {
                kept.push((info, *view));
                inputs.push(x);
            }
            Err(e) => flags.push(format!(
                "radiograph {} left out: {e}",
                info.sop_instance_uid
            )),
        }
    }
    if inputs.is_empty() {
        return Err("no selected radiograph could be decoded".into());
    }
    let mut predictions = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch_size.max(1)) {
        predictions.extend(model.predict(chunk).map_err(|e| e.to_string())?);
    }
    let images: Vec<ImagePrediction> = kept
        .iter()
        .zip(&predictions)
        .map(|((info, view), p)| ImagePrediction {
            sop_instance_uid: info.sop_instance_uid.clone(),
            view: *view,
            probabilities: p.probabilities,
            t_score: p.t_score,
            bmd_g_cm2: p.bmd,
        })
        .collect();
    Ok(fuse(model, images, flags))
}

fn prepare(info: &InstanceInfo) -> Result<Vec<f32>, String> {
    let obj = dicom_object::open_file(&info.path).map_err(|e| e.to_string())?;
    let (header, frame) = image::decode_first(&obj).map_err(|e| e.to_string())?;
    let shown = image::display(&frame, &header);
    Ok(preprocess::prepare(&shown, frame.rows, frame.columns))
}

/// Average within each view, then across views with equal weight.
fn fuse(model: &XrayModel, images: Vec<ImagePrediction>, flags: &mut Vec<String>) -> XrayFinding {
    let mut per_view: Vec<(View, [f32; 3], f32, f32)> = Vec::new();
    for view in [View::Frontal, View::Lateral, View::Unknown] {
        let of: Vec<&ImagePrediction> = images.iter().filter(|i| i.view == view).collect();
        if of.is_empty() {
            continue;
        }
        let n = of.len() as f32;
        let mut p = [0.0f32; 3];
        for i in &of {
            for (k, v) in i.probabilities.iter().enumerate() {
                p[k] += v / n;
            }
        }
        let t = of.iter().map(|i| i.t_score).sum::<f32>() / n;
        let b = of.iter().map(|i| i.bmd_g_cm2).sum::<f32>() / n;
        per_view.push((view, p, t, b));
    }
    let n = per_view.len() as f32;
    let mut probabilities = [0.0f32; 3];
    for (_, p, _, _) in &per_view {
        for k in 0..3 {
            probabilities[k] += p[k] / n;
        }
    }
    let t_score = per_view.iter().map(|v| v.2).sum::<f32>() / n;
    let bmd_g_cm2 = per_view.iter().map(|v| v.3).sum::<f32>() / n;
    let argmax = |p: &[f32; 3]| {
        (0..3)
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .expect("three classes")
    };
    let class = BoneClass::ALL[argmax(&probabilities)];
    let class_from_t_score = BoneClass::from_t_score(t_score as f64);
    let has = |v: View| per_view.iter().any(|p| p.0 == v);
    if !has(View::Frontal) {
        flags.push("frontal (AP/PA) view missing".into());
    }
    if !has(View::Lateral) {
        flags.push("lateral view missing".into());
    }
    let unknown = images.iter().filter(|i| i.view == View::Unknown).count();
    if unknown > 0 {
        flags.push(format!("view of {unknown} radiograph(s) not identified"));
    }
    let view_classes: Vec<BoneClass> = per_view
        .iter()
        .map(|v| BoneClass::ALL[argmax(&v.1)])
        .collect();
    if view_classes.windows(2).any(|w| w[0] != w[1]) {
        flags.push("views disagree on the class".into());
    }
    if probabilities[argmax(&probabilities)] < LOW_CONFIDENCE {
        flags.push(format!(
            "low confidence (probability {:.2} < {LOW_CONFIDENCE})",
            probabilities[argmax(&probabilities)]
        ));
    }
    if class != class_from_t_score {
        flags.push(format!(
            "model class ({}) and estimated T-score {t_score:+.1} ({}) disagree",
            class.words(),
            class_from_t_score.words()
        ));
    }
    let card = &model.card;
    let training = card.training_data.to_lowercase();
    if training.starts_with("none") || training.contains("synthetic") {
        flags.push(format!(
            "model {} {} was not trained on patient data: demonstration only",
            card.name, card.version
        ));
    }
    XrayFinding {
        model: ModelIdentity {
            name: card.name.clone(),
            version: card.version.clone(),
            weights_sha256: card.weights_sha256.clone(),
            training_data: card.training_data.clone(),
            intended_use: card.intended_use.clone(),
        },
        images,
        probabilities,
        t_score,
        bmd_g_cm2,
        class,
        class_from_t_score,
        fusion: format!(
            "mean within each view, then views weighted equally ({})",
            per_view
                .iter()
                .map(|v| format!("{:?}", v.0).to_lowercase())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
    }
}
