//! Predictions over a set of samples, fused per study (the images of a study averaged, as
//! the daemon fuses views), ready for `metrics`.

use std::collections::BTreeMap;

use super::data::{Dataset, Sample};
use super::images::Grey;
use super::metrics::Scored;
use super::turn;
use crate::analysis::finding::View;
use crate::analysis::risk::{age_years, plausible_age};
use crate::analysis::xray::{across_views, read_out, view_means, Reading};
use crate::model::covariates::CovariateModel;
use crate::model::preprocess::{self, InputSpec};

/// One image's prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePred {
    pub probabilities: [f32; 3],
    pub t_score: f32,
}

/// The network's input for a cached image (no augmentation).
pub fn input_of(grey: &Grey, input: InputSpec) -> Vec<f32> {
    preprocess::prepare(&grey.to_f32(), grey.rows, grey.cols, input)
}

/// Fuse the predictions of each study as the daemon does (`analysis::xray`'s own view
/// fusion: the images of one view averaged, then the views weighted equally). `idx[i]` is
/// the sample `preds[i]` belongs to.
pub fn by_study(samples: &[Sample], idx: &[usize], preds: &[ImagePred]) -> Vec<Scored> {
    let mut studies: BTreeMap<&str, (&Sample, Vec<Reading>)> = BTreeMap::new();
    for (&i, p) in idx.iter().zip(preds) {
        let s = &samples[i];
        let image = (s.view.unwrap_or(View::Unknown), p.probabilities, p.t_score);
        studies
            .entry(s.study.as_str())
            .or_insert((s, Vec::new()))
            .1
            .push(image);
    }
    studies
        .into_values()
        .map(|(s, images)| {
            let (probabilities, t_pred) = across_views(&view_means(&images));
            Scored {
                study: s.study.clone(),
                label: s.label,
                probabilities,
                t_true: s.t_score,
                t_pred,
            }
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
    /// How far the set's mean features lie from the training images'
    /// (`FeatureProfile::shift`): a look the weights never saw, which `osteoscreen
    /// adapt` addresses.
    pub feature_shift: Option<f32>,
    /// The card's polarity check over the set, as the daemon makes it (absent: no probe,
    /// or `--no-polarity-check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polarity: Option<turn::PolarityCounts>,
    pub metrics: super::metrics::Metrics,
    /// Present when the card's covariate model combined the radiographs with the age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covariates: Option<Combination>,
    /// Present when the card has a read-out: the network's own result on the same
    /// studies, before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkOwn>,
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

/// The network's own result where the card's read-out reported another.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetworkOwn {
    /// The read-out's `formula` and `fitted_on`.
    pub readout: String,
    pub metrics: super::metrics::Metrics,
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
    /// The radiographs alone, per study, after the card's read-out (as the daemon reports).
    pub scored: Vec<Scored>,
    /// The network's own fused result per study, before the read-out.
    pub network: Vec<Scored>,
    /// The patient's age per study: from the first image header that gives one
    /// (PatientAge, else birth and study dates, as the daemon reads it), else from the
    /// dataset's clinical record of the patient; implausible ages left out either way.
    pub ages: BTreeMap<String, f64>,
    pub images: usize,
    pub unreadable: usize,
    /// Images beyond the card's out-of-distribution threshold (None: the card has no profile).
    pub out_of_distribution: Option<usize>,
    /// The set's `FeatureProfile::shift` (None: the card has no profile).
    pub feature_shift: Option<f32>,
    /// The polarity check, as the daemon makes it (None: no probe, or not asked for).
    pub polarity: Option<turn::PolarityCounts>,
}

/// Run `model` over the samples `idx` of `dataset` (decoding each image) and fuse per
/// study. A study's age comes from its first image header that gives one, else from the
/// dataset's clinical record of the patient (LUMOS's sheet, a DXA table).
pub fn predict(
    model: &crate::model::XrayModel,
    dataset: &Dataset,
    idx: &[usize],
    polarity_check: bool,
) -> Result<Predicted, super::TrainError> {
    use rayon::prelude::*;
    let samples = &dataset.samples;
    let bar = super::progress::bar(idx.len() as u64, "evaluating");
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut unreadable = 0;
    let input = model.input();
    let probe = model.card.polarity.as_ref().filter(|_| polarity_check);
    let mut evidence = Vec::new();
    for chunk in idx.chunks(16) {
        // Each readable image's input and, for the polarity check, its inverse's (in
        // order: rayon's collect keeps it).
        let read: Vec<(usize, Vec<f32>, Option<Vec<f32>>)> = chunk
            .par_iter()
            .filter_map(|&i| {
                let g = super::images::load(&samples[i].image, samples[i].view, input).ok()?;
                let inverse = probe.map(|_| turn::inverse_input(&g, input));
                Some((i, input_of(&g, input), inverse))
            })
            .collect();
        unreadable += chunk.len() - read.len();
        let (mut ok, mut batch, mut inverse) = (Vec::new(), Vec::new(), Vec::new());
        for (i, x, inv) in read {
            ok.push(i);
            batch.push(x);
            inverse.extend(inv);
        }
        let read = model.predict_mirrored(&batch)?;
        if let Some(probe) = probe {
            evidence.extend(turn::evidence(model, probe, &read, &inverse));
        }
        taken.extend(read);
        kept.extend(ok);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let polarity = probe.map(|probe| {
        // The inverses are not kept from the first pass (a large set would hold them all):
        // the few studies read turned over load theirs again.
        let reload = |i: usize| {
            let g = super::images::load(&samples[i].image, samples[i].view, input).ok()?;
            Some(turn::inverse_input(&g, input))
        };
        turn::apply(model, probe, samples, &kept, &evidence, &mut taken, reload)
    });
    // Counted after the check, as the daemon counts a study it read turned over.
    let ood = model.card.feature_profile.as_ref().map(|profile| {
        taken
            .iter()
            .filter(|p| p.feature_distance.is_some_and(|d| d > profile.threshold))
            .count()
    });
    let preds: Vec<ImagePred> = taken
        .iter()
        .map(|p| ImagePred {
            probabilities: p.probabilities,
            t_score: p.t_score,
        })
        .collect();
    let features: Vec<Vec<f32>> = taken.into_iter().map(|p| p.features).collect();
    let network = by_study(samples, &kept, &preds);
    let scored = network
        .iter()
        .map(|s| {
            let (probabilities, t_pred, _) = read_out(&model.card, s.probabilities, s.t_pred);
            Scored {
                probabilities,
                t_pred,
                ..s.clone()
            }
        })
        .collect();
    Ok(Predicted {
        ages: ages_of(dataset, &kept),
        scored,
        network,
        images: kept.len(),
        unreadable,
        out_of_distribution: ood,
        polarity,
        feature_shift: model
            .card
            .feature_profile
            .as_ref()
            .and_then(|p| p.shift(&features)),
    })
}

/// Each study's age: from the first of its images whose header gives one (a header read
/// per study, not per image), else from the dataset's clinical record of the patient.
fn ages_of(dataset: &Dataset, kept: &[usize]) -> BTreeMap<String, f64> {
    use rayon::prelude::*;
    let mut images: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for &i in kept {
        let s = &dataset.samples[i];
        images.entry(s.study.as_str()).or_default().push(s);
    }
    let recorded: BTreeMap<&str, f64> = dataset
        .records
        .iter()
        .filter_map(|r| Some((r.patient.as_str(), plausible_age(r.age_years?)?)))
        .collect();
    let header_age = |s: &Sample| {
        let obj = crate::dicom::open::open_header(&s.image, &Default::default()).ok()?;
        age_years(&obj)
    };
    images
        .into_par_iter()
        .filter_map(|(study, of)| {
            let age = of
                .iter()
                .find_map(|s| header_age(s))
                .or_else(|| recorded.get(of[0].patient.as_str()).copied())?;
            Some((study.to_string(), age))
        })
        .collect()
}

/// The card's covariate model applied to each study with an age in its range, as the
/// daemon applies it; the others keep the radiographs' result. Returns how many were
/// combined.
pub fn with_covariates(
    model: &CovariateModel,
    scored: &mut [Scored],
    ages: &BTreeMap<String, f64>,
) -> usize {
    let mut n = 0;
    for s in scored {
        let image_p = s.probabilities.map(f64::from);
        if let Ok(c) = model.combine(image_p, s.t_pred as f64, ages.get(&s.study).copied()) {
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
    polarity_check: bool,
    out: Option<&std::path::Path>,
) -> Result<EvalReport, super::TrainError> {
    let predicted = predict(model, dataset, idx, polarity_check)?;
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
        feature_shift: predicted.feature_shift,
        polarity: predicted.polarity.clone(),
        metrics: super::metrics::compute(&scored),
        covariates: combined,
        network: model.card.readout.as_ref().map(|r| NetworkOwn {
            readout: format!("{}; fitted on {}", r.formula(), r.fitted_on),
            metrics: super::metrics::compute(&predicted.network),
        }),
        published_anchors: anchors(),
    };
    if let Some(dir) = out {
        let rows = Rows {
            scored: &scored,
            image_only: &image_only,
            network: &predicted.network,
            ages: &predicted.ages,
        };
        write_outputs(dir, &report, &rows)?;
    }
    Ok(report)
}

/// Each study's result as reported, from the radiographs alone, and from the network
/// before the read-out (all in the same study order), with the ages.
struct Rows<'a> {
    scored: &'a [Scored],
    image_only: &'a [Scored],
    network: &'a [Scored],
    ages: &'a BTreeMap<String, f64>,
}

fn write_outputs(
    dir: &std::path::Path,
    report: &EvalReport,
    rows: &Rows,
) -> Result<(), super::TrainError> {
    let scored = rows.scored;
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
    write_predictions(&dir.join("predictions.csv"), rows)
}

/// One row of predictions.csv, for a reader's own analysis: truth, the fused
/// probabilities, the estimated T-score and the class each of them gives; then the age
/// and the radiographs' own estimate (the same unless the age was combined); then the
/// network's before the card's read-out (the same unless the card has one).
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
    t_network: f32,
    predicted_network: u8,
}

fn write_predictions(path: &std::path::Path, rows: &Rows) -> Result<(), super::TrainError> {
    let fail = |e: csv::Error| super::TrainError::Invalid(format!("{}: {e}", path.display()));
    let mut writer = csv::Writer::from_path(path).map_err(fail)?;
    let (scored, image_only, network) = (rows.scored, rows.image_only, rows.network);
    for ((s, alone), net) in scored.iter().zip(image_only).zip(network) {
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
                age_years: rows.ages.get(&s.study).copied(),
                t_pred_radiographs: alone.t_pred,
                predicted_radiographs: alone.predicted(),
                t_network: net.t_pred,
                predicted_network: net.predicted(),
            })
            .map_err(fail)?;
    }
    writer.flush().map_err(|e| super::TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(study: &str, view: Option<View>) -> Sample {
        Sample {
            image: std::path::PathBuf::from("x.dcm"),
            patient: study.into(),
            study: study.into(),
            label: 1,
            t_score: Some(-2.0),
            bmd: None,
            view,
        }
    }

    #[test]
    fn views_count_equally_however_many_images_each_has() {
        let samples = [
            sample("a", Some(View::Frontal)),
            sample("a", Some(View::Frontal)),
            sample("a", Some(View::Lateral)),
            sample("b", None),
        ];
        let pred = |p0: f32, t: f32| ImagePred {
            probabilities: [p0, 1.0 - p0, 0.0],
            t_score: t,
        };
        let preds = [
            pred(1.0, 0.0),
            pred(0.8, -1.0),
            pred(0.0, -3.0),
            pred(0.5, -2.0),
        ];
        let scored = by_study(&samples, &[0, 1, 2, 3], &preds);
        assert_eq!(scored.len(), 2);
        let a = &scored[0];
        // Frontal mean 0.9 / -0.5, lateral 0.0 / -3.0, then halves.
        assert!((a.probabilities[0] - 0.45).abs() < 1e-6, "{a:?}");
        assert!((a.t_pred + 1.75).abs() < 1e-6, "{a:?}");
        assert_eq!(scored[1].t_pred, -2.0);
    }
}
