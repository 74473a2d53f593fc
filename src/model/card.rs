//! The model card: what a weights file is, what it was trained on, how well it did, and the
//! sha256 of the weights, so that a mismatched or corrupt file is refused at load.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::covariates::CovariateModel;
use super::error::{CardError, ModelError};
use super::polarity::PolarityProbe;
use super::preprocess::InputSpec;
use super::readout::Readout;

/// Young-adult reference used to turn T-scores into BMD (g/cm²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BmdReference {
    pub mean: f64,
    pub sd: f64,
}

/// What the training images looked like to the network: per-feature mean and standard
/// deviation of the pooled features, and the distance above which an input is flagged as
/// unlike the training data (the root-mean-square z-score over the features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
    pub threshold: f32,
}

impl FeatureProfile {
    /// RMS z-score of `features` against the profile.
    pub fn distance(&self, features: &[f32]) -> f32 {
        let n = features.len().min(self.mean.len()).max(1);
        let s: f32 = features
            .iter()
            .zip(&self.mean)
            .zip(&self.sd)
            .map(|((f, m), sd)| ((f - m) / sd.max(1e-4)).powi(2))
            .sum();
        (s / n as f32).sqrt()
    }

    /// How far a set of images' mean features lie from the training images' (RMS over the
    /// features of the mean's z-score). Each image's `distance` is mostly its patient;
    /// the mean over a site's images is the site's look. Images from the training
    /// distribution give about 1/sqrt(n). None for an empty set.
    pub fn shift(&self, features: &[Vec<f32>]) -> Option<f32> {
        let n = features.len();
        if n == 0 {
            return None;
        }
        let mut mean = vec![0f32; self.mean.len()];
        for f in features {
            for (m, x) in mean.iter_mut().zip(f) {
                *m += x / n as f32;
            }
        }
        Some(self.distance(&mean))
    }
}

/// A set's `FeatureProfile::shift` above which its look is one the weights did not learn
/// (`eval` suggests `osteoscreen adapt`; the daemon logs a warning). The bundled weights
/// give 0.3-0.4 on sets of one of their training generators and 0.5-0.6 on generators they
/// never saw (BENCHMARKS.md, twenty-third session).
pub const SITE_SHIFT_WARNING: f32 = 0.45;

/// The JSON card stored beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub input: String,
    pub training_data: String,
    pub metrics: serde_json::Value,
    pub intended_use: String,
    pub bmd_reference: BmdReference,
    pub weights_sha256: String,
    /// What the model must not be used for, and what it was not validated on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub limitations: String,
    /// How it was trained: data source and counts, split seed, options, history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_profile: Option<FeatureProfile>,
    /// The radiographs' estimate combined with the patient's age (`osteoscreen calibrate`);
    /// absent: the radiographs alone decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariates: Option<CovariateModel>,
    /// How the network's fused T-score becomes the reported T-score and class
    /// probabilities (`osteoscreen readout`); absent: the network's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readout: Option<Readout>,
    /// Whether an image's grey levels run the way its header says (`osteoscreen
    /// polarity`); absent: images are read as their header says, unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polarity: Option<PolarityProbe>,
}

/// The first 12 hex digits of a sha256, for messages.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::WeightsFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

impl ModelCard {
    pub fn read(path: &Path) -> Result<ModelCard, ModelError> {
        let card_err = |source: CardError| ModelError::Card {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| card_err(e.into()))?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| card_err(e.into()))?;
        if InputSpec::from_spec(&card.input).is_none() {
            return Err(card_err(CardError::Input(card.input)));
        }
        if let Some(c) = &card.covariates {
            c.check().map_err(|e| card_err(e.into()))?;
        }
        if let Some(r) = &card.readout {
            r.check().map_err(|e| card_err(e.into()))?;
        }
        if let Some(p) = &card.polarity {
            p.check().map_err(|e| card_err(e.into()))?;
        }
        Ok(card)
    }

    /// Report the network's own result (`[model] readout = false`): the read-out goes, and
    /// a covariate model fitted after it with it (logged).
    pub fn drop_readout(&mut self) {
        self.readout = None;
        if let Some(why) = self.drop_stale_covariates() {
            tracing::warn!("{why}");
        }
    }

    /// Drop a covariate model fitted on another read-out than the card applies now (one
    /// refitted since, or turned off by `[model] readout = false`): its inputs would be on
    /// another scale. Returns why, for a warning.
    pub fn drop_stale_covariates(&mut self) -> Option<String> {
        let fitted_after = self.covariates.as_ref()?.after_readout.clone();
        let applied = self.readout.as_ref().map(|r| r.identity());
        if fitted_after == applied {
            return None;
        }
        self.covariates = None;
        Some(format!(
            "the card's covariate model was fitted on results {} but the card now reads {}: not applied (fit it again with `osteoscreen calibrate`)",
            fitted_after.map_or("before any read-out".into(), |f| format!("after the read-out {f}")),
            applied.map_or("without a read-out".into(), |f| format!("through {f}")),
        ))
    }

    /// BMD (g/cm²) of a T-score in the card's reference population.
    pub fn bmd(&self, t_score: f64) -> f32 {
        (self.bmd_reference.mean + self.bmd_reference.sd * t_score) as f32
    }

    /// The input the weights were trained with (the card's `input`; a card that `read`
    /// accepted always names one).
    pub fn input_spec(&self) -> InputSpec {
        InputSpec::from_spec(&self.input).unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let text = serde_json::to_string_pretty(self).expect("card serialises");
        std::fs::write(path, text).map_err(|e| ModelError::Card {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }

    /// Refuse weights whose sha256 differs from the card's.
    pub fn check_weights(&self, weights: &Path) -> Result<(), ModelError> {
        let actual = sha256_file(weights)?;
        if actual != self.weights_sha256 {
            return Err(ModelError::Mismatch {
                path: weights.to_path_buf(),
                actual,
                expected: self.weights_sha256.clone(),
            });
        }
        Ok(())
    }

    /// The dataset `train` read, from the card's training record.
    pub fn training_data_source(&self) -> Option<&Path> {
        self.training
            .as_ref()?
            .get("data_source")?
            .as_str()
            .map(Path::new)
    }

    /// The weights this network was fine-tuned from (`train --init`), if any.
    pub fn init_sha256(&self) -> Option<&str> {
        self.training.as_ref()?.get("init_sha256")?.as_str()
    }

    /// Whether `data` is the dataset the card's network was trained on.
    pub fn trained_on(&self, data: &Path) -> bool {
        self.training_data_source()
            .is_some_and(|s| crate::fsutil::same_file(s, data))
    }

    /// The card of randomly initialised weights.
    pub fn untrained(weights: &Path) -> Result<ModelCard, ModelError> {
        Ok(ModelCard {
            name: "osteoscreen-xray-resnet".into(),
            version: "0.0.0-untrained".into(),
            architecture: "ResNet, 4 basic-block stages 16-128 channels, class + T-score heads"
                .into(),
            input: InputSpec::default().spec(),
            training_data: "none: random initialisation".into(),
            metrics: serde_json::json!({}),
            intended_use: "tests only; predictions are meaningless".into(),
            bmd_reference: BmdReference {
                mean: 1.047,
                sd: 0.11,
            },
            weights_sha256: sha256_file(weights)?,
            limitations: "random weights".into(),
            training: None,
            feature_profile: None,
            covariates: None,
            readout: None,
            polarity: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set's shift is its mean's distance: images spread evenly about the training
    /// mean show none, however far each lies; a set displaced by one sd shows 1.
    #[test]
    fn shift_is_the_distance_of_the_set_s_mean() {
        let p = FeatureProfile {
            mean: vec![1.0, -2.0],
            sd: vec![0.5, 2.0],
            threshold: 3.0,
        };
        let spread = [vec![3.0, 6.0], vec![-1.0, -10.0]];
        assert!(p.distance(&spread[0]) > 3.0);
        assert!(p.shift(&spread).unwrap().abs() < 1e-6);
        let displaced = [vec![1.5, 0.0], vec![1.5, 0.0]];
        assert!((p.shift(&displaced).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(p.shift(&[]), None);
    }

    /// `calibrate` rewrites the card it reads: every number must come back digit for
    /// digit (serde_json's `float_roundtrip`), or each rewrite would change its metrics.
    #[test]
    fn the_bundled_card_read_and_written_again_is_unchanged() {
        let bundled =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osteoscreen-xray-demo.json");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("card.json");
        ModelCard::read(&bundled).unwrap().write(&copy).unwrap();
        let original = std::fs::read_to_string(&bundled).unwrap();
        let written = std::fs::read_to_string(&copy).unwrap();
        assert!(
            original == written,
            "{}",
            original
                .lines()
                .zip(written.lines())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("{a} -> {b}"))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
