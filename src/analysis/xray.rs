//! The X-ray method: every selected lumbar radiograph is decoded, windowed for display
//! (MONOCHROME1 inverted), preprocessed and run through the model in batches, each image
//! read as taken and mirrored and the two readings averaged. Images of one view are
//! averaged; frontal and lateral then count equally (a study with two AP
//! images and one lateral is not decided by its AP alone). When the card has a covariate
//! model and a header gives the patient's age, the fused estimate is combined with it
//! (`model::covariates`), and the radiographs' own result is kept beside the combined one.

use std::path::PathBuf;

use dicom_dictionary_std::tags;
use rayon::prelude::*;

use super::finding::{
    BoneClass, CovariateUse, ImagePrediction, KeyPixels, ModelIdentity, NetworkReading,
    RadiographPixels, View, XrayFinding,
};
use super::image::{self, ImageError};
use super::select::InstanceInfo;
use crate::dicom::text;
use crate::model::polarity::{Polarity, PolarityProbe};
use crate::model::preprocess::{self, InputSpec};
use crate::model::{ModelCard, ModelError, XrayModel};

/// Radiographs decoded at the same time.
const DECODE_AT_ONCE: usize = 2;

/// Below this fused probability of the chosen class the result is flagged low-confidence.
pub const LOW_CONFIDENCE: f32 = 0.6;

/// Why the X-ray method gave no result.
#[derive(Debug, thiserror::Error)]
pub enum XrayError {
    #[error("no selected radiograph could be decoded")]
    NothingDecoded,
    #[error("the model reads frontal views only (the card's input is framed on the lumbar spine of an AP or PA view) and the study has only lateral radiographs")]
    NoFrontal,
    #[error("the model's output is not a number (damaged weights?): no estimate is reported")]
    NotFinite,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Why one radiograph was left out.
#[derive(Debug, thiserror::Error)]
pub enum RadiographError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        // Boxed: the reader's error is large, and errors travel by value.
        source: Box<crate::dicom::open::OpenError>,
    },
    #[error(transparent)]
    Decode(#[from] ImageError),
}

/// What the X-ray method hands back: its finding, the key image's pixels and the time
/// the network itself took.
pub struct XrayRun {
    pub finding: XrayFinding,
    pub key: Option<KeyPixels>,
    pub inference_ms: f64,
    /// Each analysed image's pooled features (as taken, or turned over when the polarity
    /// check turned the study over), for `site_shift`.
    pub features: Vec<Vec<f32>>,
    /// Each analysed image as the model read it (as taken, or turned over with the
    /// study), for `site_adapt`.
    pub inputs: Vec<Vec<f32>>,
}

/// One decoded radiograph: the model's input and what the key image would show.
struct Prepared {
    input: Vec<f32>,
    /// The image with its grey levels turned over, prepared the same way, when the card
    /// has a polarity probe to compare the two with.
    inverted: Option<Vec<f32>>,
    key: KeyPixels,
}

/// Run the model on the selected radiographs. Images that cannot be decoded are left out
/// and flagged; an error only when none is left. The key image's pixels are the first
/// decoded frontal radiograph's, else the first decoded one's. `covariates`: combine with
/// the patient's age (read once per study, from its header) when the card can
/// (`[model] covariates`).
pub fn run(
    model: &XrayModel,
    radiographs: &[(InstanceInfo, View)],
    batch_size: usize,
    covariates: bool,
    age_years: Option<f64>,
    flags: &mut Vec<String>,
) -> Result<XrayRun, XrayError> {
    let mut kept = Vec::new();
    let mut inputs = Vec::new();
    let mut inverted = Vec::new();
    let mut key: Option<(bool, KeyPixels)> = None;
    let probe = model.card.polarity.as_ref();
    // Decoding and preprocessing are per image and dominate for full-size radiographs.
    // Two at a time: a full-size radiograph decodes to ~20 MB of f32 (a hostile one to the
    // 2 GiB cap), so memory stays bounded however many cores the host has.
    let input = model.input();
    let (read, unread): (Vec<_>, Vec<_>) = radiographs
        .iter()
        .partition(|(_, view)| *view != View::Lateral || input.framing.reads_laterals());
    if !unread.is_empty() {
        flags.push(format!(
            "{} lateral radiograph(s) not read: the model reads frontal views (its input is framed on the lumbar spine of an AP or PA view)",
            unread.len()
        ));
        if read.is_empty() {
            return Err(XrayError::NoFrontal);
        }
    }
    for pair in read.chunks(DECODE_AT_ONCE) {
        let prepared: Vec<_> = pair
            .par_iter()
            .map(|(info, view)| prepare(info, *view == View::Lateral, input, probe.is_some()))
            .collect();
        for ((info, view), p) in pair.iter().zip(prepared) {
            match p {
                Ok(p) => {
                    let frontal = *view == View::Frontal;
                    if key.as_ref().is_none_or(|(f, _)| frontal && !f) {
                        key = Some((frontal, p.key));
                    }
                    kept.push((info, *view));
                    inputs.push(p.input);
                    inverted.extend(p.inverted);
                }
                Err(e) => flags.push(format!(
                    "radiograph {} left out: {e}",
                    info.sop_instance_uid
                )),
            }
        }
    }
    if inputs.is_empty() {
        return Err(XrayError::NothingDecoded);
    }
    let mut predictions = Vec::with_capacity(inputs.len());
    let inference = std::time::Instant::now();
    for chunk in inputs.chunks(batch_size.max(1)) {
        predictions.extend(model.predict_mirrored(chunk)?);
    }
    if let Some(probe) = probe {
        if let Some(turned) =
            check_polarity(model, probe, &predictions, &inverted, batch_size, flags)
        {
            predictions = turned;
            inputs = inverted;
            if let Some((_, KeyPixels::Radiograph(r))) = key.as_mut() {
                r.grey.iter_mut().for_each(|v| *v = 1.0 - *v);
            }
        }
    }
    let inference_ms = inference.elapsed().as_secs_f64() * 1e3;
    let finite = |p: &crate::model::Prediction| {
        p.probabilities.iter().all(|v| v.is_finite()) && p.t_score.is_finite() && p.bmd.is_finite()
    };
    if !predictions.iter().all(finite) {
        return Err(XrayError::NotFinite);
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
            feature_distance: p.feature_distance,
        })
        .collect();
    if let Some(profile) = &model.card.feature_profile {
        let unlike = images
            .iter()
            .filter(|i| i.feature_distance.is_some_and(|d| d > profile.threshold))
            .count();
        if unlike > 0 {
            flags.push(format!(
                "{unlike} of {} radiograph(s) look unlike the model's training data (feature distance above {:.2}): out of distribution, treat the estimate with caution",
                images.len(),
                profile.threshold
            ));
        }
    }
    let per_view = view_means(
        &images
            .iter()
            .map(|i| (i.view, i.probabilities, i.t_score))
            .collect::<Vec<_>>(),
    );
    let mut finding = fuse(&model.card, images, &per_view);
    if covariates {
        combine(&mut finding, &model.card, age_years, flags);
    }
    flag(&finding, &per_view, &model.card, flags);
    Ok(XrayRun {
        finding,
        key: key.map(|(_, k)| k),
        inference_ms,
        features: predictions.into_iter().map(|p| p.features).collect(),
        inputs,
    })
}

/// Compare each image's reading with its inverse's by the card's polarity probe
/// (`model::polarity`), summed over the study. A study that is clearly inverted is read
/// again turned over (its predictions returned), a doubtful one is flagged; both say so.
fn check_polarity(
    model: &XrayModel,
    probe: &PolarityProbe,
    taken: &[crate::model::Prediction],
    inverted: &[Vec<f32>],
    batch_size: usize,
    flags: &mut Vec<String>,
) -> Option<Vec<crate::model::Prediction>> {
    if inverted.len() != taken.len() {
        return unchecked(flags, "an image's inverse is missing");
    }
    let mut evidence = Vec::with_capacity(taken.len());
    for (chunk, read) in inverted
        .chunks(batch_size.max(1))
        .zip(taken.chunks(batch_size.max(1)))
    {
        match model.polarity_evidence(probe, read, chunk) {
            Ok(e) => evidence.extend(e),
            Err(e) => return unchecked(flags, &e.to_string()),
        }
    }
    if !evidence.iter().all(|e| e.is_finite()) {
        return unchecked(flags, "the evidence is not a number");
    }
    if probe.disagree(&evidence) {
        flags.push(format!(
            "the radiographs disagree on their grey levels (polarity evidence of single images from {:.1} to {:.1}, clear beyond {:.1} either way): some may be inverted against their Photometric Interpretation and others not; the study is read as a whole, by their sum; check each image's display",
            evidence.iter().copied().fold(f32::INFINITY, f32::min),
            evidence.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            probe.threshold
        ));
    }
    match probe.judge(&evidence) {
        Polarity::Upright => None,
        Polarity::Doubtful(sum) => {
            flags.push(format!(
                "the radiographs' grey levels may be inverted against their Photometric Interpretation (polarity evidence of the study's images together {sum:.1}, read inverted below -{:.1}): read as the header says; check the images' display",
                probe.threshold
            ));
            None
        }
        Polarity::Inverted(sum) => {
            let mut turned = Vec::with_capacity(inverted.len());
            for chunk in inverted.chunks(batch_size.max(1)) {
                match model.predict_mirrored(chunk) {
                    Ok(p) => turned.extend(p),
                    Err(e) => return unchecked(flags, &e.to_string()),
                }
            }
            flags.push(format!(
                "the radiographs' grey levels look inverted against their Photometric Interpretation (bone dark; polarity evidence of the study's images together {sum:.1}, below -{:.1}): every image of the study read with its grey levels turned over; the sender or a converter may have inverted the pixels",
                probe.threshold
            ));
            Some(turned)
        }
    }
}

/// The polarity check could not be made: the study is read as its header says, and says
/// so (the check is a safeguard, not a condition of the reading).
fn unchecked(flags: &mut Vec<String>, why: &str) -> Option<Vec<crate::model::Prediction>> {
    flags.push(format!(
        "the radiographs' grey levels were not checked against their header: {why}"
    ));
    None
}

fn prepare(
    info: &InstanceInfo,
    lateral: bool,
    input: InputSpec,
    with_inverse: bool,
) -> Result<Prepared, RadiographError> {
    let obj = crate::dicom::open::open_file(&info.path, &Default::default()).map_err(|source| {
        RadiographError::Open {
            path: info.path.clone(),
            source: Box::new(source),
        }
    })?;
    let (header, frame) = image::decode_first(&obj)?;
    let shown = image::display(&frame, &header);
    // Framed and shrunk once, as training caches its images; the inverse from that
    // (shrinking is an area mean, so it commutes with turning the grey levels over; the
    // frame is placed on the image as given, as training places it): no second
    // full-size copy of a large radiograph.
    let spacing = header.pixel_spacing.map(|s| s.1);
    let (rows, cols, small) =
        preprocess::framed(&shown, frame.rows, frame.columns, spacing, lateral, input);
    let inverted = with_inverse.then(|| {
        let turned: Vec<f32> = small.iter().map(|v| 1.0 - v).collect();
        preprocess::prepare(&turned, rows, cols, input)
    });
    Ok(Prepared {
        input: preprocess::prepare(&small, rows, cols, input),
        inverted,
        key: KeyPixels::Radiograph(RadiographPixels {
            sop_instance_uid: info.sop_instance_uid.clone(),
            grey: shown,
            rows: frame.rows,
            columns: frame.columns,
            pixel_spacing: header.pixel_spacing,
            patient_orientation: patient_orientation(&text(&obj, tags::PATIENT_ORIENTATION)),
        }),
    })
}

/// PatientOrientation when it is a valid pair of direction letters, else empty.
fn patient_orientation(value: &str) -> String {
    let parts: Vec<&str> = value.split('\\').collect();
    let valid = parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 16 && p.chars().all(|c| "LRAPHF".contains(c)));
    if valid {
        value.to_string()
    } else {
        String::new()
    }
}

/// One image's reading, as view fusion takes it: view, class probabilities, T-score.
pub type Reading = (View, [f32; 3], f32);

/// One view's mean prediction.
pub struct ViewMean {
    pub view: View,
    pub probabilities: [f32; 3],
    pub t_score: f32,
}

fn argmax(p: &[f32; 3]) -> usize {
    (0..3)
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .expect("three classes")
}

/// Mean of the images of each view present, from each image's (view, probabilities,
/// T-score). `eval` fuses with this too, so that it measures what the daemon reports.
pub fn view_means(images: &[Reading]) -> Vec<ViewMean> {
    [View::Frontal, View::Lateral, View::Unknown]
        .into_iter()
        .filter_map(|view| {
            let of: Vec<_> = images.iter().filter(|i| i.0 == view).collect();
            if of.is_empty() {
                return None;
            }
            let n = of.len() as f32;
            let mut p = [0.0f32; 3];
            for (_, probabilities, _) in &of {
                for (sum, v) in p.iter_mut().zip(probabilities) {
                    *sum += v / n;
                }
            }
            Some(ViewMean {
                view,
                probabilities: p,
                t_score: of.iter().map(|i| i.2).sum::<f32>() / n,
            })
        })
        .collect()
}

/// The views weighted equally: probabilities and T-score.
pub fn across_views(per_view: &[ViewMean]) -> ([f32; 3], f32) {
    let n = per_view.len().max(1) as f32;
    let mut probabilities = [0.0f32; 3];
    for v in per_view {
        for (sum, p) in probabilities.iter_mut().zip(v.probabilities) {
            *sum += p / n;
        }
    }
    (
        probabilities,
        per_view.iter().map(|v| v.t_score).sum::<f32>() / n,
    )
}

/// The card's read-out of the network's fused result (`model::readout`): the reported
/// probabilities and T-score, and the network's own when they differ.
pub fn read_out(
    card: &ModelCard,
    probabilities: [f32; 3],
    t_score: f32,
) -> ([f32; 3], f32, Option<NetworkReading>) {
    match &card.readout {
        None => (probabilities, t_score, None),
        Some(r) => {
            let (t, p) = r.apply(t_score as f64);
            let network = NetworkReading {
                probabilities,
                t_score,
                class: BoneClass::ALL[argmax(&probabilities)],
            };
            (p.map(|v| v as f32), t as f32, Some(network))
        }
    }
}

/// Average within each view, then across views with equal weight; then the card's
/// read-out.
fn fuse(card: &ModelCard, images: Vec<ImagePrediction>, per_view: &[ViewMean]) -> XrayFinding {
    let (probabilities, t_score) = across_views(per_view);
    let (probabilities, t_score, network) = read_out(card, probabilities, t_score);
    let bmd_g_cm2 = card.bmd(t_score as f64);
    let class = BoneClass::ALL[argmax(&probabilities)];
    let class_from_t_score = BoneClass::from_t_score(t_score as f64);
    let read = match (&card.readout, &network) {
        (Some(r), Some(n)) => format!(
            "; the network's T {:+.1} ({}) read out as fitted on looks it had not learned: {}",
            n.t_score,
            n.class.words(),
            r.formula()
        ),
        _ => String::new(),
    };
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
            "mean within each view, then views weighted equally ({}){read}",
            per_view
                .iter()
                .map(|v| format!("{:?}", v.view).to_lowercase())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        covariates: None,
        network,
    }
}

/// Replace the radiographs' estimate by the card's combination with the age, keeping the
/// radiographs' own result beside it; without an age, or with one outside the ages the
/// model was fitted on, the radiographs stand alone, flagged (the flag never says the age:
/// flags are stored in the job summary).
fn combine(x: &mut XrayFinding, card: &ModelCard, age: Option<f64>, flags: &mut Vec<String>) {
    let Some(model) = &card.covariates else {
        return;
    };
    let image_p = x.probabilities.map(f64::from);
    let c = match model.combine(image_p, x.t_score as f64, age) {
        Ok(c) => c,
        Err(why) => {
            flags.push(format!(
                "{why}: class from the radiographs alone (the card's covariate model not applied)"
            ));
            return;
        }
    };
    let use_ = CovariateUse {
        age_years: age.unwrap_or_default(),
        image_probabilities: x.probabilities,
        image_t_score: x.t_score,
        image_class: x.class,
    };
    x.t_score = c.t_score as f32;
    x.bmd_g_cm2 = card.bmd(c.t_score);
    x.probabilities = c.probabilities.map(|p| p as f32);
    x.class = BoneClass::ALL[argmax(&x.probabilities)];
    x.class_from_t_score = BoneClass::from_t_score(c.t_score);
    x.fusion = format!(
        "{}; then combined with the patient's age (class by logistic regression on the radiographs' probabilities, T and age; {}, residual sd {:.2})",
        x.fusion,
        model.t_score_formula(),
        model.residual_sd
    );
    if use_.image_class != x.class {
        flags.push(format!(
            "with the patient's age the class is {}; the radiographs alone say {} (T {:+.1})",
            x.class.words(),
            use_.image_class.words(),
            use_.image_t_score
        ));
    }
    x.covariates = Some(use_);
}

/// What a reader should know about the fused result: missing or unidentified views,
/// disagreement, low confidence, and a model not trained on patient data.
fn flag(x: &XrayFinding, per_view: &[ViewMean], card: &ModelCard, flags: &mut Vec<String>) {
    let has = |v: View| per_view.iter().any(|p| p.view == v);
    if !has(View::Frontal) {
        flags.push("frontal (AP/PA) view missing".into());
    }
    if !has(View::Lateral) {
        flags.push("lateral view missing".into());
    }
    let unknown = x.images.iter().filter(|i| i.view == View::Unknown).count();
    if unknown > 0 {
        flags.push(format!("view of {unknown} radiograph(s) not identified"));
    }
    let view_classes: Vec<usize> = per_view.iter().map(|v| argmax(&v.probabilities)).collect();
    if view_classes.windows(2).any(|w| w[0] != w[1]) {
        flags.push("views disagree on the class".into());
    }
    let chosen = BoneClass::ALL.iter().position(|c| *c == x.class);
    let top = chosen.map_or(0.0, |k| x.probabilities[k]);
    if top < LOW_CONFIDENCE {
        flags.push(format!(
            "low confidence (probability {top:.2} < {LOW_CONFIDENCE})"
        ));
    }
    if x.class != x.class_from_t_score {
        // The read-out's T and probabilities are one model: they part only near a cut-off.
        // The network's heads, or the covariate model's two parts, can disagree outright.
        flags.push(if x.network.is_some() && x.covariates.is_none() {
            format!(
                "estimated T-score {:+.1} ({}) lies near a WHO cut-off; the read-out finds {} more probable ({top:.2})",
                x.t_score,
                x.class_from_t_score.words(),
                x.class.words()
            )
        } else {
            format!(
                "model class ({}) and estimated T-score {:+.1} ({}) disagree",
                x.class.words(),
                x.t_score,
                x.class_from_t_score.words()
            )
        });
    }
    let training = card.training_data.to_lowercase();
    if training.starts_with("none") || training.contains("synthetic") {
        flags.push(format!(
            "model {} {} was not trained on patient data: demonstration only",
            card.name, card.version
        ));
    }
}
