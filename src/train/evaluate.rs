//! Predictions over a set of samples, fused per study (the images of a study averaged, as
//! the daemon fuses views), ready for `metrics`.

use std::collections::BTreeMap;

use super::data::{Dataset, Sample};
use super::images::Grey;
use super::metrics::Scored;
use crate::model::covariates::CovariateModel;
use crate::model::preprocess::{self, Normalisation};

/// One image's prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePred {
    pub probabilities: [f32; 3],
    pub t_score: f32,
}

/// The network's input for a cached image (no augmentation).
pub fn input_of(grey: &Grey, norm: Normalisation) -> Vec<f32> {
    preprocess::prepare(&grey.to_f32(), grey.rows, grey.cols, norm)
}

/// Average the predictions of each study; `idx[i]` is the sample `preds[i]` belongs to.
pub fn by_study(samples: &[Sample], idx: &[usize], preds: &[ImagePred]) -> Vec<Scored> {
    let mut acc: BTreeMap<&str, (Scored, usize)> = BTreeMap::new();
    for (&i, p) in idx.iter().zip(preds) {
        let s = &samples[i];
        let e = acc.entry(s.study.as_str()).or_insert((
            Scored {
                study: s.study.clone(),
                label: s.label,
                probabilities: [0.0; 3],
                t_true: s.t_score,
                t_pred: 0.0,
            },
            0,
        ));
        for k in 0..3 {
            e.0.probabilities[k] += p.probabilities[k];
        }
        e.0.t_pred += p.t_score;
        e.1 += 1;
    }
    acc.into_values()
        .map(|(mut s, n)| {
            let n = n as f32;
            s.probabilities.iter_mut().for_each(|p| *p /= n);
            s.t_pred /= n;
            s
        })
        .collect()
}

/// What `osteoscreen eval` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub model_sha256: String,
    pub data: String,
    pub images: usize,
    pub images_unreadable: usize,
    /// Images whose features lie beyond the card's out-of-distribution threshold.
    pub images_out_of_distribution: Option<usize>,
    pub metrics: super::metrics::Metrics,
    /// Present when the card's covariate model combined the radiographs with the age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covariates: Option<Combination>,
    /// Published results on real lumbar radiographs, for orientation (not the same data).
    pub published_anchors: Vec<Anchor>,
}

/// How the age entered `eval`'s result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Combination {
    /// The covariate model's `fitted_on`.
    pub model: String,
    /// Studies combined with the age (the others: radiographs alone).
    pub studies_with_age: usize,
    /// The same studies measured on the radiographs alone.
    pub radiographs_alone: super::metrics::Metrics,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Anchor {
    pub source: &'static str,
    pub metric: &'static str,
    pub value: &'static str,
}

pub fn anchors() -> Vec<Anchor> {
    vec![
        Anchor {
            source: "Zhang et al., Bone 2020 (lumbar AP radiographs, deep learning)",
            metric: "AUC osteoporosis vs rest",
            value: "0.767",
        },
        Anchor {
            source: "Mao et al., Front Endocrinol 2022 (AP + lateral)",
            metric: "AUC",
            value: "0.91-0.94",
        },
    ]
}

/// The model's per-study predictions over some samples, before any measuring.
pub struct Predicted {
    /// The radiographs alone, per study.
    pub scored: Vec<Scored>,
    /// The patient's age per study, from the first image header that gives one (DICOM
    /// only: PatientAge, else birth and study dates, as the daemon reads it).
    pub ages: BTreeMap<String, f64>,
    pub images: usize,
    pub unreadable: usize,
    /// Images beyond the card's out-of-distribution threshold (None: the card has no profile).
    pub out_of_distribution: Option<usize>,
}

/// Run `model` over the samples `idx` of `dataset` (decoding each image) and fuse per
/// study. A study's age comes from its first image header that gives one, else from the
/// dataset's clinical record of the patient (LUMOS's sheet, a DXA table).
pub fn predict(
    model: &crate::model::XrayModel,
    dataset: &Dataset,
    idx: &[usize],
) -> Result<Predicted, super::TrainError> {
    use rayon::prelude::*;
    let samples = &dataset.samples;
    let bar = super::progress::bar(idx.len() as u64, "evaluating");
    let mut kept = Vec::new();
    let mut preds = Vec::new();
    let mut ages = BTreeMap::new();
    let (mut unreadable, mut ood) = (0, 0);
    let norm = model.card.normalisation();
    for chunk in idx.chunks(16) {
        let inputs: Vec<(usize, Option<Vec<f32>>, Option<f64>)> = chunk
            .par_iter()
            .map(|&i| {
                let path = &samples[i].image;
                let input = super::images::load(path).ok().map(|g| input_of(&g, norm));
                (i, input, age_of(path))
            })
            .collect();
        let mut ok = Vec::new();
        let mut batch = Vec::new();
        for (i, x, age) in inputs {
            if let Some(x) = x {
                ok.push(i);
                batch.push(x);
                if let Some(a) = age {
                    ages.entry(samples[i].study.clone()).or_insert(a);
                }
            }
        }
        unreadable += chunk.len() - ok.len();
        for p in model.predict_mirrored(&batch)? {
            if let (Some(d), Some(profile)) = (p.feature_distance, &model.card.feature_profile) {
                ood += usize::from(d > profile.threshold);
            }
            preds.push(ImagePred {
                probabilities: p.probabilities,
                t_score: p.t_score,
            });
        }
        kept.extend(ok);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let recorded: BTreeMap<&str, f64> = dataset
        .records
        .iter()
        .filter_map(|r| Some((r.patient.as_str(), r.age_years?)))
        .collect();
    for &i in &kept {
        let s = &samples[i];
        if let Some(&age) = recorded.get(s.patient.as_str()) {
            ages.entry(s.study.clone()).or_insert(age);
        }
    }
    Ok(Predicted {
        scored: by_study(samples, &kept, &preds),
        ages,
        images: kept.len(),
        unreadable,
        out_of_distribution: model.card.feature_profile.as_ref().map(|_| ood),
    })
}

/// The patient's age from a DICOM file's header; None for other files.
fn age_of(path: &std::path::Path) -> Option<f64> {
    let obj = crate::dicom::open::open_header(path, &Default::default()).ok()?;
    crate::analysis::risk::age_years(&obj)
}

/// The card's covariate model applied to each study with an age, as the daemon applies
/// it; the others keep the radiographs' result. Returns how many were combined.
pub fn with_covariates(
    model: &CovariateModel,
    scored: &mut [Scored],
    ages: &BTreeMap<String, f64>,
) -> usize {
    let mut n = 0;
    for s in scored {
        let image_p = s.probabilities.map(f64::from);
        if let Some(c) = model.combine(image_p, s.t_pred as f64, ages.get(&s.study).copied()) {
            s.t_pred = c.t_score as f32;
            s.probabilities = c.probabilities.map(|p| p as f32);
            n += 1;
        }
    }
    n
}

/// Run `model` over the samples `idx` of `dataset`, fuse per study, combine with the age
/// when `covariates` and the card has a covariate model, and measure; also write
/// metrics.json and the plots into `out` when given.
pub fn evaluate(
    model: &crate::model::XrayModel,
    dataset: &Dataset,
    idx: &[usize],
    data: &str,
    covariates: bool,
    out: Option<&std::path::Path>,
) -> Result<EvalReport, super::TrainError> {
    let predicted = predict(model, dataset, idx)?;
    let image_only = predicted.scored.clone();
    let mut scored = predicted.scored;
    let combined = match (&model.card.covariates, covariates) {
        (Some(c), true) => Some(Combination {
            model: c.fitted_on.clone(),
            studies_with_age: with_covariates(c, &mut scored, &predicted.ages),
            radiographs_alone: super::metrics::compute(&image_only),
        }),
        _ => None,
    };
    let report = EvalReport {
        model: model.card.name.clone(),
        model_sha256: model.card.weights_sha256.clone(),
        data: data.to_string(),
        images: predicted.images,
        images_unreadable: predicted.unreadable,
        images_out_of_distribution: predicted.out_of_distribution,
        metrics: super::metrics::compute(&scored),
        covariates: combined,
        published_anchors: anchors(),
    };
    if let Some(dir) = out {
        write_outputs(dir, &report, &scored, &image_only, &predicted.ages)?;
    }
    Ok(report)
}

fn write_outputs(
    dir: &std::path::Path,
    report: &EvalReport,
    scored: &[Scored],
    image_only: &[Scored],
    ages: &BTreeMap<String, f64>,
) -> Result<(), super::TrainError> {
    use super::{metrics, plots, TrainError};
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json = dir.join("metrics.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(report).expect("serialises"),
    )
    .map_err(|e| TrainError::io(&json, e))?;
    plots::confusion(
        &dir.join("confusion.png"),
        &report.metrics,
        &format!(
            "{} studies, accuracy {:.3}",
            report.metrics.studies, report.metrics.accuracy
        ),
    )?;
    let curve = |name: &str, auc: Option<f64>, pts: Vec<(f64, bool)>| {
        (
            format!(
                "{name} (AUC {})",
                auc.map_or("n/a".into(), |a| format!("{a:.3}"))
            ),
            metrics::roc(&pts),
        )
    };
    plots::roc(
        &dir.join("roc.png"),
        &[
            curve(
                "osteoporosis vs rest",
                report.metrics.auc_osteoporosis,
                metrics::osteoporosis_scores(scored),
            ),
            curve(
                "low BMD vs normal",
                report.metrics.auc_low_bmd,
                metrics::low_bmd_scores(scored),
            ),
        ],
    )?;
    let pairs: Vec<(f64, f64)> = scored
        .iter()
        .filter_map(|s| s.t_true.map(|t| (t as f64, s.t_pred as f64)))
        .collect();
    plots::t_scores(&dir.join("t_scores.png"), &pairs)?;
    write_predictions(&dir.join("predictions.csv"), scored, image_only, ages)
}

/// One row of predictions.csv, for a reader's own analysis: truth, the fused
/// probabilities, the estimated T-score and the class each of them gives; then the age
/// and the radiographs' own estimate (the same unless the age was combined).
#[derive(serde::Serialize)]
struct PredictionRow<'a> {
    study: &'a str,
    label: u8,
    p_normal: f32,
    p_osteopenia: f32,
    p_osteoporosis: f32,
    predicted: u8,
    t_true: Option<f32>,
    t_pred: f32,
    class_from_t_pred: u8,
    age_years: Option<f64>,
    t_pred_radiographs: f32,
    predicted_radiographs: u8,
}

fn write_predictions(
    path: &std::path::Path,
    scored: &[Scored],
    image_only: &[Scored],
    ages: &BTreeMap<String, f64>,
) -> Result<(), super::TrainError> {
    let fail = |e: csv::Error| super::TrainError::Invalid(format!("{}: {e}", path.display()));
    let mut writer = csv::Writer::from_path(path).map_err(fail)?;
    for (s, alone) in scored.iter().zip(image_only) {
        let [p_normal, p_osteopenia, p_osteoporosis] = s.probabilities;
        writer
            .serialize(PredictionRow {
                study: &s.study,
                label: s.label,
                p_normal,
                p_osteopenia,
                p_osteoporosis,
                predicted: s.predicted(),
                t_true: s.t_true,
                t_pred: s.t_pred,
                class_from_t_pred: super::data::who_class(s.t_pred as f64),
                age_years: ages.get(&s.study).copied(),
                t_pred_radiographs: alone.t_pred,
                predicted_radiographs: alone.predicted(),
            })
            .map_err(fail)?;
    }
    writer.flush().map_err(|e| super::TrainError::io(path, e))
}
