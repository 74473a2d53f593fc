//! The card's covariate model: the study's T-score estimated from the radiographs'
//! estimate and the patient's age together, and the class probabilities that follow from
//! it. Bone density falls with age, so age is evidence a reader of the radiograph also
//! has (the OST index rests on it; models of radiographs plus clinical covariates beat
//! radiographs alone, REFERENCES.md). It is a linear model, T = a·T_image + b·age + c,
//! with a normal residual of the measured spread, fitted by `osteoscreen calibrate` on
//! labelled studies, so a site can refit it on its own patients.

use serde::{Deserialize, Serialize};

/// The inputs, in the order of `CovariateModel::coefficients`.
pub const FEATURES: [&str; 2] = ["image_t_score", "age_years"];

/// WHO cut-offs: normal T >= -1.0, osteoporosis T <= -2.5.
const NORMAL_FROM: f64 = -1.0;
const OSTEOPOROSIS_TO: f64 = -2.5;

/// Fewest studies (with age and T-score) `fit` accepts.
pub const MIN_STUDIES: usize = 20;

/// A fitted covariate model as the card stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovariateModel {
    /// Must equal `FEATURES`.
    pub features: Vec<String>,
    /// One weight per feature, then the intercept.
    pub coefficients: Vec<f64>,
    /// Standard deviation of the residual T-score on the data it was fitted on.
    pub residual_sd: f64,
    /// What it was fitted on, and how it did there (cross-validated).
    pub fitted_on: String,
    #[serde(default)]
    pub evaluation: serde_json::Value,
}

/// One study for `fit`: the radiographs' T-score estimate, the age, the true T-score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub image_t: f64,
    pub age_years: f64,
    pub t_true: f64,
}

/// The combined estimate of one study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combined {
    pub t_score: f64,
    /// Normal, osteopenia, osteoporosis: the residual distribution's mass in each WHO band.
    pub probabilities: [f64; 3],
}

/// Why a covariate model was not fitted or not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CovariateError {
    #[error("{0} studies with both an age and a T-score; at least {MIN_STUDIES} are needed")]
    TooFew(usize),
    #[error("the ages or image estimates do not vary, so their weights cannot be fitted")]
    Degenerate,
    #[error("not a covariate model of {FEATURES:?}")]
    Shape,
}

impl CovariateModel {
    /// Least squares (with a tiny ridge so that near-collinear inputs stay finite) on at
    /// least `MIN_STUDIES` studies.
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
        let rows: Vec<[f64; 3]> = obs.iter().map(|o| [o.image_t, o.age_years, 1.0]).collect();
        let y: Vec<f64> = obs.iter().map(|o| o.t_true).collect();
        let spread = |k: usize| {
            let m = rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64;
            rows.iter().map(|r| (r[k] - m).powi(2)).sum::<f64>() / rows.len() as f64
        };
        if spread(0) < 1e-6 || spread(1) < 1e-6 {
            return Err(CovariateError::Degenerate);
        }
        let w = least_squares(&rows, &y, 1e-6).ok_or(CovariateError::Degenerate)?;
        let model = CovariateModel {
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            coefficients: w.to_vec(),
            residual_sd: 1.0,
            fitted_on: fitted_on.to_string(),
            evaluation: serde_json::Value::Null,
        };
        let sse: f64 = obs
            .iter()
            .map(|o| (o.t_true - model.t_score(o.image_t, o.age_years)).powi(2))
            .sum();
        // Two weights and an intercept were fitted.
        let dof = (obs.len() - 3).max(1) as f64;
        Ok(CovariateModel {
            residual_sd: (sse / dof).sqrt().max(0.05),
            ..model
        })
    }

    /// Refuse a card's model of other inputs.
    pub fn check(&self) -> Result<(), CovariateError> {
        let ok = self.features == FEATURES
            && self.coefficients.len() == FEATURES.len() + 1
            && self.coefficients.iter().all(|c| c.is_finite())
            && self.residual_sd.is_finite()
            && self.residual_sd > 0.0;
        if ok {
            Ok(())
        } else {
            Err(CovariateError::Shape)
        }
    }

    fn t_score(&self, image_t: f64, age_years: f64) -> f64 {
        let c = &self.coefficients;
        c[0] * image_t + c[1] * age_years + c[2]
    }

    /// The combined estimate; None without an age (the radiographs then stand alone).
    pub fn combine(&self, image_t: f64, age_years: Option<f64>) -> Option<Combined> {
        let age = age_years.filter(|a| a.is_finite())?;
        let t = self.t_score(image_t, age);
        Some(Combined {
            t_score: t,
            probabilities: who_bands(t, self.residual_sd),
        })
    }
}

/// The mass of N(mean, sd) in the normal, osteopenia and osteoporosis bands.
pub fn who_bands(mean: f64, sd: f64) -> [f64; 3] {
    let below = |x: f64| 0.5 * (1.0 + libm::erf((x - mean) / (sd * std::f64::consts::SQRT_2)));
    let osteoporosis = below(OSTEOPOROSIS_TO);
    let low = below(NORMAL_FROM);
    [1.0 - low, low - osteoporosis, osteoporosis]
}

/// Solve (XᵀX + λI) w = Xᵀy for three unknowns by Gaussian elimination.
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

    fn obs(n: usize) -> Vec<Observation> {
        // T = 0.5·image - 0.04·age + 1.5 exactly, over a spread of inputs.
        (0..n)
            .map(|i| {
                let image_t = -3.5 + (i % 9) as f64 * 0.5;
                let age_years = 40.0 + (i * 7 % 45) as f64;
                Observation {
                    image_t,
                    age_years,
                    t_true: 0.5 * image_t - 0.04 * age_years + 1.5,
                }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_a_linear_relation() {
        let m = CovariateModel::fit(&obs(60), "test").unwrap();
        m.check().unwrap();
        let c = &m.coefficients;
        assert!((c[0] - 0.5).abs() < 1e-3, "{c:?}");
        assert!((c[1] + 0.04).abs() < 1e-4, "{c:?}");
        assert!((c[2] - 1.5).abs() < 1e-2, "{c:?}");
        let got = m.combine(-2.0, Some(70.0)).unwrap();
        assert!((got.t_score - (-1.0 - 2.8 + 1.5)).abs() < 1e-2);
        assert!(m.combine(-2.0, None).is_none(), "no age: radiographs alone");
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
    fn bands_sum_to_one_and_follow_the_mean() {
        for (mean, top) in [(0.0, 0), (-1.8, 1), (-3.5, 2)] {
            let p = who_bands(mean, 0.6);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(best, top, "{mean}: {p:?}");
        }
        // On the cut-off itself the two neighbouring bands share the mass.
        let p = who_bands(-1.0, 0.3);
        assert!((p[0] - 0.5).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_model_of_other_inputs_is_refused() {
        let mut m = CovariateModel::fit(&obs(30), "t").unwrap();
        m.features = vec!["image_t_score".into(), "weight_kg".into()];
        assert_eq!(m.check(), Err(CovariateError::Shape));
    }
}
