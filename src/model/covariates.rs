//! The card's covariate model: the radiographs' result combined with the patient's age.
//! Bone density falls with age, and a reader of the radiograph knows the age too (the OST
//! index rests on it; adding age, sex and BMI to a radiograph network raised its accuracy
//! in Yamamoto et al., Biomolecules 2020;10:1534). Two small models fitted together by `osteoscreen calibrate` on
//! labelled studies, so that a site can refit them on its own patients:
//! - the class: multinomial logistic regression on the radiographs' class probabilities
//!   (as log-probabilities), their T-score estimate and the age;
//! - the T-score: least squares, T = a·T_radiographs + b·age + c.

use serde::{Deserialize, Serialize};

use super::logistic;

/// The class model's inputs, in order.
pub const FEATURES: [&str; 5] = [
    "log_p_normal",
    "log_p_osteopenia",
    "log_p_osteoporosis",
    "image_t_score",
    "age_years",
];

/// Fewest studies (with an age and a T-score) `fit` accepts.
pub const MIN_STUDIES: usize = 20;

/// Years the fitted ages are widened by (a few years' extrapolation of a linear trend).
pub const AGE_MARGIN: f64 = 10.0;

/// Youngest age combined: T-scores compare with young adults and are not used for children.
pub const ADULT: f64 = 20.0;

/// Probabilities are floored here before the logarithm.
const P_FLOOR: f64 = 1e-6;

/// A fitted covariate model as the card stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovariateModel {
    /// Must equal `FEATURES`.
    pub features: Vec<String>,
    /// Standardisation of the class model's inputs.
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Per class (normal, osteopenia, osteoporosis): one weight per standardised input,
    /// then the intercept.
    pub class_coefficients: Vec<Vec<f64>>,
    /// Weights on the radiographs' T-score and the age, then the intercept.
    pub t_score_coefficients: Vec<f64>,
    /// Standard deviation of the T-score's residual where it was fitted.
    pub residual_sd: f64,
    /// The ages it applies to: those it was fitted on, widened by `AGE_MARGIN` years but
    /// not below `ADULT`. Outside, the radiographs stand alone: a linear model says little
    /// about ages far from any it saw, and T-scores are not for children.
    pub age_range: [f64; 2],
    /// What it was fitted on, and how it did there (cross-validated).
    pub fitted_on: String,
    #[serde(default)]
    pub evaluation: serde_json::Value,
    /// The card's read-out (`Readout::identity`) the radiographs' results went through
    /// when it was fitted; absent: the network's own. Its inputs are on that read-out's scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_readout: Option<String>,
}

/// One study for `fit`: the radiographs' result, the age and the truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub image_probabilities: [f64; 3],
    pub image_t: f64,
    pub age_years: f64,
    pub label: u8,
    pub t_true: f64,
}

/// The combined estimate of one study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combined {
    pub t_score: f64,
    /// Normal, osteopenia, osteoporosis.
    pub probabilities: [f64; 3],
}

/// Why a study's result was left to the radiographs alone.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum NotCombined {
    #[error("patient age missing")]
    NoAge,
    #[error("patient age outside the ages the covariate model applies to ({0:.0}-{1:.0} years)")]
    OutOfRange(f64, f64),
}

/// Why a covariate model was not fitted or not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CovariateError {
    #[error("{0} studies with both an age and a T-score; at least {MIN_STUDIES} are needed")]
    TooFew(usize),
    #[error(
        "the ages or the radiographs' estimates do not vary, so their weights cannot be fitted"
    )]
    Degenerate,
    #[error("not a covariate model of {FEATURES:?}")]
    Shape,
}

/// The class model's raw inputs.
fn inputs(p: [f64; 3], image_t: f64, age: f64) -> [f64; 5] {
    let lp = p.map(|v| v.max(P_FLOOR).ln());
    [lp[0], lp[1], lp[2], image_t, age]
}

impl CovariateModel {
    /// Fit on at least `MIN_STUDIES` studies.
    pub fn fit(obs: &[Observation], fitted_on: &str) -> Result<CovariateModel, CovariateError> {
        if obs.len() < MIN_STUDIES {
            return Err(CovariateError::TooFew(obs.len()));
        }
        Self::fit_fold(obs, fitted_on)
    }

    /// `fit` without the floor, for the folds of a cross-validation (at least 4 studies).
    pub fn fit_fold(
        obs: &[Observation],
        fitted_on: &str,
    ) -> Result<CovariateModel, CovariateError> {
        if obs.len() < 4 {
            return Err(CovariateError::TooFew(obs.len()));
        }
        let x: Vec<[f64; 5]> = obs
            .iter()
            .map(|o| inputs(o.image_probabilities, o.image_t, o.age_years))
            .collect();
        let n = x.len() as f64;
        let mean: Vec<f64> = (0..5)
            .map(|i| x.iter().map(|r| r[i]).sum::<f64>() / n)
            .collect();
        let sd: Vec<f64> = (0..5)
            .map(|i| (x.iter().map(|r| (r[i] - mean[i]).powi(2)).sum::<f64>() / n).sqrt())
            .collect();
        // Written so that NaN fails too.
        if !(sd[3] >= 1e-3 && sd[4] >= 1e-3) {
            return Err(CovariateError::Degenerate);
        }
        let sd: Vec<f64> = sd.into_iter().map(|s| s.max(1e-6)).collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| (0..5).map(|i| (r[i] - mean[i]) / sd[i]).collect())
            .collect();
        let labels: Vec<u8> = obs.iter().map(|o| o.label).collect();
        let class_coefficients = logistic::fit(&z, &labels, 1e-3, 3000);
        let rows: Vec<[f64; 3]> = obs.iter().map(|o| [o.image_t, o.age_years, 1.0]).collect();
        let y: Vec<f64> = obs.iter().map(|o| o.t_true).collect();
        let t = least_squares(&rows, &y, 1e-6).ok_or(CovariateError::Degenerate)?;
        let sse: f64 = rows
            .iter()
            .zip(&y)
            .map(|(r, y)| (y - (t[0] * r[0] + t[1] * r[1] + t[2])).powi(2))
            .sum();
        let ages = obs.iter().map(|o| o.age_years);
        Ok(CovariateModel {
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            mean,
            sd,
            class_coefficients,
            t_score_coefficients: t.to_vec(),
            // Two weights and an intercept were fitted.
            residual_sd: (sse / (obs.len().saturating_sub(3).max(1)) as f64).sqrt(),
            age_range: [
                (ages.clone().fold(f64::INFINITY, f64::min) - AGE_MARGIN).max(ADULT),
                ages.fold(f64::NEG_INFINITY, f64::max) + AGE_MARGIN,
            ],
            fitted_on: fitted_on.to_string(),
            evaluation: serde_json::Value::Null,
            after_readout: None,
        })
    }

    /// Refuse a card's model of other inputs.
    pub fn check(&self) -> Result<(), CovariateError> {
        let finite = |v: &[f64]| v.iter().all(|c| c.is_finite());
        let ok = self.features == FEATURES
            && self.mean.len() == 5
            && self.sd.len() == 5
            && self.sd.iter().all(|s| *s > 0.0)
            && self.class_coefficients.len() == 3
            && self
                .class_coefficients
                .iter()
                .all(|c| c.len() == 6 && finite(c))
            && self.t_score_coefficients.len() == 3
            && finite(&self.t_score_coefficients)
            && finite(&self.mean)
            && finite(&self.sd)
            && finite(&self.age_range)
            && self.age_range[0] <= self.age_range[1];
        if ok {
            Ok(())
        } else {
            Err(CovariateError::Shape)
        }
    }

    /// The combined estimate, or why the radiographs stand alone.
    pub fn combine(
        &self,
        image_probabilities: [f64; 3],
        image_t: f64,
        age_years: Option<f64>,
    ) -> Result<Combined, NotCombined> {
        let age = age_years.ok_or(NotCombined::NoAge)?;
        let [lo, hi] = self.age_range;
        if !(lo..=hi).contains(&age) {
            return Err(NotCombined::OutOfRange(lo, hi));
        }
        let x = inputs(image_probabilities, image_t, age);
        let z: Vec<f64> = (0..5).map(|i| (x[i] - self.mean[i]) / self.sd[i]).collect();
        let t = &self.t_score_coefficients;
        Ok(Combined {
            t_score: t[0] * image_t + t[1] * age + t[2],
            probabilities: logistic::predict(&self.class_coefficients, &z),
        })
    }

    /// The T-score formula, for reports.
    pub fn t_score_formula(&self) -> String {
        let t = &self.t_score_coefficients;
        format!(
            "T = {:.2} x radiographs' T {:+.3} x age {:+.2}",
            t[0], t[1], t[2]
        )
    }
}

/// Solve (XᵀX + λnI) w = Xᵀy for three unknowns by Gaussian elimination (the ridge scaled
/// by the row count, intercept included: it only keeps near-collinear inputs finite).
fn least_squares(rows: &[[f64; 3]], y: &[f64], ridge: f64) -> Option<[f64; 3]> {
    let mut a = [[0.0f64; 4]; 3];
    for (r, &t) in rows.iter().zip(y) {
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += r[i] * r[j];
            }
            a[i][3] += r[i] * t;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += ridge * rows.len() as f64;
    }
    for col in 0..3 {
        let pivot = (col..3).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-12 {
            return None;
        }
        for r in 0..3 {
            if r != col {
                let f = a[r][col] / a[col][col];
                let pivot_row = a[col];
                for (x, p) in a[r].iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let w = [a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]];
    w.iter().all(|v| v.is_finite()).then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(t: f64) -> u8 {
        if t >= -1.0 {
            0
        } else if t > -2.5 {
            1
        } else {
            2
        }
    }

    /// Studies whose true T is 0.5·(radiographs' T) - 0.04·age + 1.5, with radiographs
    /// whose probabilities know nothing (uniform): only T and age can decide.
    fn obs(n: usize) -> Vec<Observation> {
        (0..n)
            .map(|i| {
                let image_t = -3.5 + (i % 9) as f64 * 0.5;
                let age_years = 40.0 + (i * 7 % 45) as f64;
                let t_true = 0.5 * image_t - 0.04 * age_years + 1.5;
                Observation {
                    image_probabilities: [1.0 / 3.0; 3],
                    image_t,
                    age_years,
                    label: who(t_true),
                    t_true,
                }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_the_t_score_relation_and_the_classes() {
        let data = obs(90);
        let m = CovariateModel::fit(&data, "test").unwrap();
        m.check().unwrap();
        let t = &m.t_score_coefficients;
        assert!((t[0] - 0.5).abs() < 1e-3, "{t:?}");
        assert!((t[1] + 0.04).abs() < 1e-4, "{t:?}");
        assert!(m.residual_sd < 1e-3);
        let right = data
            .iter()
            .filter(|o| {
                let c = m
                    .combine(o.image_probabilities, o.image_t, Some(o.age_years))
                    .unwrap();
                let p = c.probabilities;
                (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])) == Some(o.label as usize)
            })
            .count();
        assert!(right >= 80, "{right} of 90");
        let old = m.combine([1.0 / 3.0; 3], -2.0, Some(84.0)).unwrap();
        let young = m.combine([1.0 / 3.0; 3], -2.0, Some(45.0)).unwrap();
        assert!(old.t_score < young.t_score);
        assert!(old.probabilities[2] > young.probabilities[2]);
        assert_eq!(
            m.combine([1.0 / 3.0; 3], -2.0, None),
            Err(NotCombined::NoAge)
        );
        assert_eq!(
            m.age_range,
            [30.0, 94.0],
            "fitted on 40-84, ten years either side"
        );
        assert!(m.combine([1.0 / 3.0; 3], -2.0, Some(94.0)).is_ok());
        assert_eq!(
            m.combine([1.0 / 3.0; 3], -2.0, Some(95.0)),
            Err(NotCombined::OutOfRange(30.0, 94.0))
        );
        assert_eq!(
            m.combine([1.0 / 3.0; 3], -2.0, Some(5.0)),
            Err(NotCombined::OutOfRange(30.0, 94.0)),
            "a child is not an older adult extrapolated"
        );
    }

    #[test]
    fn too_few_or_constant_inputs_are_refused() {
        assert_eq!(
            CovariateModel::fit(&obs(5), "t").unwrap_err(),
            CovariateError::TooFew(5)
        );
        let same_age: Vec<_> = obs(40)
            .into_iter()
            .map(|o| Observation {
                age_years: 60.0,
                ..o
            })
            .collect();
        assert_eq!(
            CovariateModel::fit(&same_age, "t").unwrap_err(),
            CovariateError::Degenerate
        );
    }

    #[test]
    fn a_model_of_other_inputs_is_refused() {
        let mut m = CovariateModel::fit(&obs(30), "t").unwrap();
        m.check().unwrap();
        m.features[4] = "weight_kg".into();
        assert_eq!(m.check(), Err(CovariateError::Shape));
        let mut m = CovariateModel::fit(&obs(30), "t").unwrap();
        m.class_coefficients.pop();
        assert_eq!(m.check(), Err(CovariateError::Shape));
        let mut m = CovariateModel::fit(&obs(30), "t").unwrap();
        m.age_range = [80.0, 40.0];
        assert_eq!(m.check(), Err(CovariateError::Shape));
    }

    /// Its inputs are on the scale of the read-out it was fitted after: another read-out,
    /// or none (`[model] readout = false`), and the card does without it.
    #[test]
    fn a_card_drops_a_covariate_model_fitted_on_another_read_out() {
        let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/osteoscreen-xray-demo.json");
        let mut card = super::super::card::ModelCard::read(&bundled).unwrap();
        let readout = card
            .readout
            .clone()
            .expect("the bundled card has a read-out");
        let fitted = CovariateModel {
            after_readout: Some(readout.identity()),
            ..CovariateModel::fit(&obs(30), "t").unwrap()
        };
        card.covariates = Some(fitted.clone());
        assert_eq!(card.clone().drop_stale_covariates(), None);
        let mut off = card.clone();
        off.readout = None;
        let why = off.drop_stale_covariates().expect("dropped");
        assert!(why.contains("without a read-out"), "{why}");
        assert!(off.covariates.is_none());
        let mut refitted = card.clone();
        refitted.readout.as_mut().unwrap().t_slope += 0.001;
        assert!(refitted.drop_stale_covariates().is_some());
        assert!(refitted.covariates.is_none());
        // Fitted on the network's own results, read without a read-out: kept.
        let mut plain = card;
        plain.readout = None;
        plain.covariates = Some(CovariateModel {
            after_readout: None,
            ..fitted
        });
        assert_eq!(plain.drop_stale_covariates(), None);
        assert!(plain.covariates.is_some());
    }
}
