//! Fitting the card's covariate model (`model::covariates`) on labelled studies: the
//! model's per-study results, each study's age, a k-fold cross-validated comparison with
//! the radiographs alone, then the fit on all of them. `osteoscreen calibrate` runs it on
//! any data; `osteoscreen train` runs it on its validation patients.

use std::path::Path;

use super::data::Dataset;
use super::evaluate::predict;
use super::metrics::{argmax, pearson};
use super::TrainError;
use crate::model::covariates::{CovariateModel, Observation};
use crate::model::{ModelCard, ModelError, XrayModel};

/// A fitted covariate model and how it did.
pub struct Calibration {
    /// `evaluation` filled in with the numbers below.
    pub model: CovariateModel,
    /// Studies with an age and a T-score (the others were left out).
    pub studies: usize,
    pub of_studies: usize,
    pub folds: usize,
    /// Cross-validated accuracy with the age, and of the radiographs alone.
    pub with_age: f64,
    pub radiographs_alone: f64,
    pub age_t_score_r: Option<f64>,
}

impl Calibration {
    /// Whether the age helped where it was fitted.
    pub fn helps(&self) -> bool {
        self.with_age >= self.radiographs_alone
    }

    /// Write `card` with this covariate model in it to `path` (weights and sha256 as they
    /// were).
    pub fn write_into(self, card: &ModelCard, path: &Path) -> Result<(), ModelError> {
        ModelCard {
            covariates: Some(self.model),
            ..card.clone()
        }
        .write(path)
    }

    /// The fit and the comparison, in one line each.
    pub fn summary(&self) -> String {
        format!(
            "{}, residual sd {:.2}; class by logistic regression on the radiographs' probabilities, T and age ({} of {} studies had an age and a T-score; age vs T-score r {:.2})\n{}-fold cross-validated accuracy: with the age {:.3}, radiographs alone {:.3}",
            self.model.t_score_formula(),
            self.model.residual_sd,
            self.studies,
            self.of_studies,
            self.age_t_score_r.unwrap_or(f64::NAN),
            self.folds,
            self.with_age,
            self.radiographs_alone
        )
    }
}

/// Run `model` on the samples `idx` of `dataset` and fit the covariate model on the
/// studies that have an age (header first, else the dataset's clinical record) and a
/// T-score. `description` names the studies in the card.
pub fn calibrate(
    model: &XrayModel,
    dataset: &Dataset,
    idx: &[usize],
    folds: usize,
    description: &str,
) -> Result<Calibration, TrainError> {
    // Read as the daemon reads: the polarity check on.
    let predicted = predict(model, dataset, idx, true)?;
    if let Some(p) = predicted.polarity.as_ref().filter(|p| p.any()) {
        eprintln!("{}", p.line());
    }
    let studies: Vec<Observation> = predicted
        .scored
        .iter()
        .filter_map(|s| {
            Some(Observation {
                image_probabilities: s.probabilities.map(f64::from),
                image_t: s.t_pred as f64,
                age_years: *predicted.ages.get(&s.study)?,
                label: s.label,
                t_true: s.t_true? as f64,
            })
        })
        .collect();
    let fitted = CovariateModel::fit(
        &studies,
        &format!("{} studies of {description}", studies.len()),
    )?;
    let folds = folds.clamp(2, studies.len());
    let (with_age, radiographs_alone) = cross_validate(&studies, folds)?;
    let age_t_score_r = pearson(
        &studies
            .iter()
            .map(|o| (o.age_years, o.t_true))
            .collect::<Vec<_>>(),
    );
    let model = CovariateModel {
        evaluation: serde_json::json!({
            "studies": studies.len(),
            "folds": folds,
            "cross_validated_accuracy": {"with_age": with_age, "radiographs_alone": radiographs_alone},
            "age_t_score_pearson_r": age_t_score_r,
        }),
        after_readout: model.card.readout.as_ref().map(|r| r.identity()),
        ..fitted
    };
    Ok(Calibration {
        model,
        studies: studies.len(),
        of_studies: predicted.scored.len(),
        folds,
        with_age,
        radiographs_alone,
        age_t_score_r,
    })
}

/// Accuracy with the age and of the radiographs alone, each study predicted by a model
/// fitted on the other folds (study i in fold i mod k, in the order of the study ids).
fn cross_validate(
    studies: &[Observation],
    folds: usize,
) -> Result<(f64, f64), crate::model::covariates::CovariateError> {
    let (mut with_age, mut alone) = (0usize, 0usize);
    let best = |p: &[f64; 3]| argmax(&p.map(|v| v as f32));
    for f in 0..folds {
        let train: Vec<Observation> = studies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != f)
            .map(|(_, s)| *s)
            .collect();
        let m = CovariateModel::fit_fold(&train, "fold")?;
        for s in studies.iter().skip(f).step_by(folds) {
            // A fold's ages may not reach this study's: then the radiographs decide, as
            // in the daemon.
            let p = m
                .combine(s.image_probabilities, s.image_t, Some(s.age_years))
                .map_or(s.image_probabilities, |c| c.probabilities);
            with_age += usize::from(best(&p) == s.label);
            alone += usize::from(best(&s.image_probabilities) == s.label);
        }
    }
    let n = studies.len().max(1) as f64;
    Ok((with_age as f64 / n, alone as f64 / n))
}
