//! Grey-level polarity: whether a radiograph's pixels run the way its header says. A
//! router or converter that inverts the pixels and leaves the Photometric Interpretation
//! as it was (bone dark in a MONOCHROME2 image) makes every study read as osteopenia
//! near T -1.5, whatever the bone (BENCHMARKS.md, thirty-fifth session), and the
//! out-of-distribution distance does not notice.
//!
//! The probe is a linear model on the difference between the network's pooled features
//! of an image as shown and of the same image inverted. Being antisymmetric (no
//! intercept), it compares the two readings of one image rather than judging one alone:
//! a single image's score varies with its patient and its look, the pair's difference far
//! less. A study's images are summed, because a converter inverts a whole study.

use serde::{Deserialize, Serialize};

/// A fitted polarity probe, kept in the model card (`osteoscreen polarity` writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolarityProbe {
    /// Per feature: the root-mean-square of the difference (shown - inverted) over the
    /// images fitted on; differences are divided by it.
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    /// A study whose summed evidence is below minus this is read inverted; between that
    /// and 0 it is flagged only.
    pub threshold: f32,
    /// What it was fitted on, and how it did on sources held out (for the card's reader).
    pub fitted_on: String,
    pub evaluation: String,
    /// The weights whose features it was fitted on: another network's features mean
    /// nothing to it (a card copied beside other weights drops it, `XrayModel::load`).
    /// Absent: not known, dropped the same way.
    #[serde(default)]
    pub weights_sha256: String,
}

/// Why a card's probe cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolarityError {
    #[error("polarity probe needs {expected} finite weights and scales >= 1e-6 (one per pooled feature), a threshold >= 0 and a hex sha256 of its weights")]
    Shape { expected: usize },
}

/// What the probe says of one study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Polarity {
    /// As the header says.
    Upright,
    /// Probably inverted, but not clearly enough to read it the other way: flagged.
    Doubtful(f32),
    /// Clearly inverted: the study is read with its grey levels turned over.
    Inverted(f32),
}

impl PolarityProbe {
    /// A probe fitted on this network's pooled features, with numbers that can be used.
    pub fn check(&self) -> Result<(), PolarityError> {
        let expected = super::net::FEATURES;
        let ok = self.scale.len() == expected
            && self.weights.len() == expected
            && self.scale.iter().all(|s| s.is_finite() && *s >= 1e-6)
            && self.weights.iter().all(|w| w.is_finite())
            && self.threshold.is_finite()
            && self.threshold >= 0.0
            && (self.weights_sha256.is_empty()
                || (self.weights_sha256.len() == 64
                    && self.weights_sha256.bytes().all(|b| b.is_ascii_hexdigit())));
        ok.then_some(()).ok_or(PolarityError::Shape { expected })
    }

    /// Evidence that the image as shown is upright (bone bright): positive when it is,
    /// negative when its inverse looks the more upright. `shown` and `inverted` are the
    /// pooled features of the image and of its inverse.
    pub fn evidence(&self, shown: &[f32], inverted: &[f32]) -> f32 {
        shown
            .iter()
            .zip(inverted)
            .zip(self.scale.iter().zip(&self.weights))
            .map(|((a, b), (s, w))| (a - b) / s * w)
            .sum()
    }

    /// A probe with every feature weighted `weight` and scaled 1, for tests.
    #[cfg(test)]
    pub fn uniform(weight: f32, weights_sha256: &str) -> PolarityProbe {
        PolarityProbe {
            scale: vec![1.0; super::net::FEATURES],
            weights: vec![weight; super::net::FEATURES],
            threshold: 3.0,
            fitted_on: String::new(),
            evaluation: String::new(),
            weights_sha256: weights_sha256.to_string(),
        }
    }

    /// Whether a study's images clearly disagree: one reads upright by more than the
    /// threshold and another inverted by more (say two converters, one of them inverting).
    /// The study is still judged on the sum: turning images one by one turned an upright
    /// image of 2 of 765 studies on phantoms it was not fitted for (BENCHMARKS.md,
    /// thirty-seventh session); this only says the images differ.
    pub fn disagree(&self, evidence: &[f32]) -> bool {
        evidence.iter().any(|e| *e > self.threshold)
            && evidence.iter().any(|e| *e < -self.threshold)
    }

    /// The study's polarity from its images' evidence, summed.
    pub fn judge(&self, evidence: &[f32]) -> Polarity {
        let sum: f32 = evidence.iter().sum();
        if !sum.is_finite() || sum >= 0.0 {
            Polarity::Upright
        } else if sum < -self.threshold {
            Polarity::Inverted(sum)
        } else {
            Polarity::Doubtful(sum)
        }
    }
}

/// Fit scale and weights on pairs of features (each image as shown, upright by its
/// header, and inverted): logistic regression of "the first of the pair is upright" on the
/// scaled difference, each pair also presented the other way round (so each counts
/// twice in the data term), plus `l2 / 2 x |w|²`. Newton steps, as the problem is small
/// (one weight per feature) and its features are correlated, where gradient steps crawl.
/// A feature that hardly differed between the two readings gets at least a hundredth of
/// the mean scale, so that it cannot dominate on a look where it does differ. None when
/// the features are not finite or the fit does not converge.
pub fn fit(pairs: &[(Vec<f32>, Vec<f32>)], l2: f64) -> Option<(Vec<f32>, Vec<f32>)> {
    let d = pairs.first().map_or(0, |p| p.0.len());
    if d == 0 {
        return None;
    }
    let diffs: Vec<Vec<f64>> = pairs
        .iter()
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| f64::from(x - y)).collect())
        .collect();
    let n = diffs.len().max(1) as f64;
    if !diffs.iter().flatten().all(|v| v.is_finite()) || diffs.iter().any(|v| v.len() != d) {
        return None;
    }
    let rms: Vec<f64> = (0..d)
        .map(|j| (diffs.iter().map(|v| v[j] * v[j]).sum::<f64>() / n).sqrt())
        .collect();
    let floor = (rms.iter().sum::<f64>() / d.max(1) as f64 / 100.0).max(1e-6);
    let scale: Vec<f64> = rms.iter().map(|r| r.max(floor)).collect();
    let z: Vec<Vec<f64>> = diffs
        .iter()
        .map(|v| v.iter().zip(&scale).map(|(x, s)| x / s).collect())
        .collect();
    let mut w = vec![0.0; d];
    let mut converged = false;
    for _ in 0..100 {
        // Each pair as (z, 1) and (-z, 0): both give the same gradient and curvature, so
        // the pair counts twice.
        let mut grad: Vec<f64> = w.iter().map(|wj| l2 * wj).collect();
        let mut hess = vec![vec![0.0; d]; d];
        for (j, row) in hess.iter_mut().enumerate() {
            row[j] = l2;
        }
        for x in &z {
            let m: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-m).exp());
            let curv = 2.0 * p * (1.0 - p);
            for ((g, row), xj) in grad.iter_mut().zip(hess.iter_mut()).zip(x) {
                *g += 2.0 * (p - 1.0) * xj;
                for (h, xk) in row.iter_mut().zip(x) {
                    *h += curv * xj * xk;
                }
            }
        }
        let step = solve_spd(hess, &grad)?;
        let big = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        for (wj, s) in w.iter_mut().zip(&step) {
            *wj -= s;
        }
        if big < 1e-7 {
            converged = true;
            break;
        }
    }
    converged.then(|| {
        (
            scale.iter().map(|&s| s as f32).collect(),
            w.iter().map(|&v| v as f32).collect(),
        )
    })
}

/// Solve `a x = b` for a symmetric positive definite `a` (Cholesky); None if it is not.
fn solve_spd(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let diag = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if diag <= 0.0 || !diag.is_finite() {
            return None;
        }
        let l = diag.sqrt();
        a[j][j] = l;
        for i in j + 1..n {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / l;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| a[i][k] * y[k]).sum::<f64>()) / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| a[k][i] * x[k]).sum::<f64>()) / a[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs whose first feature says which way round they are, among noise features.
    fn pairs(n: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
        (0..n)
            .map(|i| {
                let noise = |k: usize| ((i * 31 + k * 17) % 13) as f32 / 13.0 - 0.5;
                let up = vec![1.0 + noise(0), noise(1), noise(2)];
                let down = vec![-1.0 + noise(3), noise(4), noise(5)];
                (up, down)
            })
            .collect()
    }

    #[test]
    fn images_disagree_only_when_each_side_is_clear() {
        let probe = PolarityProbe::uniform(1.0, "");
        assert!(probe.disagree(&[5.0, -4.0]));
        assert!(!probe.disagree(&[-6.0, 1.0]));
        assert!(!probe.disagree(&[4.0, 2.0]));
        assert!(!probe.disagree(&[-3.5, -4.0]));
        assert!(!probe.disagree(&[]));
    }

    #[test]
    fn the_fitted_probe_tells_the_pair_apart_and_is_antisymmetric() {
        let data = pairs(40);
        let (scale, weights) = fit(&data, 1.0).unwrap();
        let probe = PolarityProbe {
            scale,
            weights,
            threshold: 2.0,
            ..PolarityProbe::uniform(0.0, "")
        };
        for (up, down) in &data {
            let e = probe.evidence(up, down);
            assert!(e > 0.0, "{e}");
            assert!((probe.evidence(down, up) + e).abs() < 1e-4);
        }
        assert!(probe.weights[0].abs() > 4.0 * probe.weights[1].abs());
        assert_eq!(probe.judge(&[1.0, -0.5]), Polarity::Upright);
        assert_eq!(probe.judge(&[-1.0, -0.5]), Polarity::Doubtful(-1.5));
        assert_eq!(probe.judge(&[-3.0, 0.5]), Polarity::Inverted(-2.5));
        assert_eq!(probe.judge(&[f32::NAN]), Polarity::Upright);
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = vec![vec![4.0, 2.0], vec![2.0, 3.0]];
        let x = solve_spd(a, &[2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(vec![vec![-1.0]], &[1.0]).is_none());
    }

    #[test]
    fn a_nan_feature_fits_nothing_and_a_misshapen_probe_is_refused() {
        let mut data = pairs(10);
        data[3].0[1] = f32::NAN;
        assert!(fit(&data, 1.0).is_none());
        assert!(fit(&[], 1.0).is_none());
        let good = PolarityProbe::uniform(0.5, "");
        assert!(good.check().is_ok());
        let misshapen = [
            PolarityProbe {
                weights: vec![0.5; 3],
                ..good.clone()
            },
            PolarityProbe {
                threshold: -1.0,
                ..good.clone()
            },
            PolarityProbe {
                threshold: f32::NAN,
                ..good.clone()
            },
            PolarityProbe {
                scale: vec![1e-30; crate::model::net::FEATURES],
                ..good.clone()
            },
            PolarityProbe {
                weights_sha256: "é".repeat(32),
                ..good.clone()
            },
        ];
        for probe in misshapen {
            assert!(probe.check().is_err(), "{probe:?}");
        }
    }
}
