//! Fitting the card's read-out (`model::readout`) on labelled studies the weights did not
//! learn: the network's fused T-score per study (before any read-out the card already
//! has), optionally also as read after adapting to those studies (the daemon's default),
//! a k-fold cross-validated comparison with the network's own classes, then the fit on
//! all of them. `osteoscreen readout` runs it.

use super::data::Dataset;
use super::evaluate::predict;
use super::TrainError;
use crate::model::readout::{Readout, ReadoutError};
use crate::model::XrayModel;

/// A fitted read-out and how it did.
pub struct ReadoutFit {
    /// `evaluation` filled in with the numbers below.
    pub readout: Readout,
    /// Readings fitted on (a study read as-is and adapted counts twice).
    pub readings: usize,
    pub folds: usize,
    /// Cross-validated accuracy of the read-out, and of the network's own classes.
    pub with_readout: f64,
    pub network: f64,
}

impl ReadoutFit {
    /// Whether the read-out read the held-out folds at least as well as the network.
    pub fn helps(&self) -> bool {
        self.with_readout >= self.network
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ({} readings)\n{}-fold cross-validated accuracy: read out {:.3}, the network's own classes {:.3}",
            self.readout.formula(),
            self.readings,
            self.folds,
            self.with_readout,
            self.network
        )
    }
}

/// One set of labelled studies and the models that read it (the weights as given, and
/// perhaps adapted to this set).
pub struct ReadoutSet<'a> {
    pub models: Vec<&'a XrayModel>,
    pub dataset: &'a Dataset,
    pub idx: &'a [usize],
}

/// Run each set's models on its samples and fit the read-out on every study's reading
/// by each.
pub fn fit_readout(
    sets: &[ReadoutSet],
    folds: usize,
    description: &str,
) -> Result<ReadoutFit, TrainError> {
    // A study in two sets would be fitted on in one fold and scored in another. Told by
    // its image files: two data sets may both number their studies from 1.
    let mut seen = std::collections::HashSet::new();
    for set in sets {
        for &i in set.idx {
            let image = &set.dataset.samples[i].image;
            let key = std::fs::canonicalize(image).unwrap_or_else(|_| image.clone());
            if !seen.insert(key) {
                return Err(TrainError::Invalid(format!(
                    "{} is in more than one of the sets: give each study once",
                    image.display()
                )));
            }
        }
    }
    // (the patient's place over all sets, network T, class, the network's own class),
    // per reading: folds go by patient, so that neither a study read twice (as given and
    // adapted) nor a patient's other study is fitted on and scored in the same round.
    let mut readings: Vec<(usize, f64, u8, u8)> = Vec::new();
    let mut patients: std::collections::HashMap<(usize, String), usize> = Default::default();
    let mut studies = 0;
    for (k, set) in sets.iter().enumerate() {
        let patient_of: std::collections::HashMap<&str, &str> = set
            .idx
            .iter()
            .map(|&i| {
                let s = &set.dataset.samples[i];
                (s.study.as_str(), s.patient.as_str())
            })
            .collect();
        for model in &set.models {
            // Read as the daemon reads: the polarity check on.
            let predicted = predict(model, set.dataset, set.idx, true)?;
            if let Some(p) = predicted.polarity.as_ref().filter(|p| p.any()) {
                eprintln!("{}", p.line());
            }
            for s in &predicted.network {
                let patient = patient_of
                    .get(s.study.as_str())
                    .map_or_else(|| s.study.clone(), |p| p.to_string());
                let next = patients.len();
                let place = *patients.entry((k, patient)).or_insert(next);
                readings.push((place, s.t_pred as f64, s.label, s.predicted()));
            }
        }
        studies += patient_of.len();
    }
    // The floor is on studies: a study read as given and adapted is still one patient.
    if studies < crate::model::readout::MIN_STUDIES {
        return Err(ReadoutError::TooFew(studies).into());
    }
    let pairs: Vec<(f64, u8)> = readings.iter().map(|r| (r.1, r.2)).collect();
    let fitted = Readout::fit(
        &pairs,
        &format!("{} readings of {description}", pairs.len()),
    )?;
    let folds = folds.clamp(2, readings.iter().map(|r| r.0 + 1).max().unwrap_or(2));
    let (with_readout, network) = cross_validate(&readings, folds)?;
    let readout = Readout {
        evaluation: serde_json::json!({
            "readings": pairs.len(),
            "folds": folds,
            "cross_validated_accuracy": {"read_out": with_readout, "network": network},
        }),
        ..fitted
    };
    Ok(ReadoutFit {
        readout,
        readings: pairs.len(),
        folds,
        with_readout,
        network,
    })
}

/// Accuracy of the read-out fitted on the other folds, and of the network's own classes.
/// Folds are by patient (the patient in place j in fold j mod k).
fn cross_validate(
    readings: &[(usize, f64, u8, u8)],
    folds: usize,
) -> Result<(f64, f64), ReadoutError> {
    let (mut read, mut own) = (0usize, 0usize);
    for f in 0..folds {
        let train: Vec<(f64, u8)> = readings
            .iter()
            .filter(|r| r.0 % folds != f)
            .map(|r| (r.1, r.2))
            .collect();
        let m = Readout::fit_fold(&train, "fold")?;
        for r in readings.iter().filter(|r| r.0 % folds == f) {
            read += usize::from(m.class(r.1) == r.2);
            own += usize::from(r.3 == r.2);
        }
    }
    let n = readings.len().max(1) as f64;
    Ok((read as f64 / n, own as f64 / n))
}
