//! Fitting the card's polarity probe (`model::polarity`): every image of each set is read
//! as its header says and inverted, the probe is fitted on all of them, and how it does on
//! a set it did not see is measured by leaving each set out in turn (per image, and per
//! study with the study's images summed as the daemon sums them). Labels are not used:
//! the sets' headers are taken to be right. `osteoscreen polarity` runs it.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::data::Dataset;
use super::evaluate::input_of;
use super::TrainError;
use crate::model::polarity::{fit, PolarityProbe};
use crate::model::XrayModel;

/// Weight decay of the fit (as a sum over pairs): as strong as keeps the held-out sets'
/// accuracy, which is flat between 1 and 100 (BENCHMARKS.md, thirty-sixth session).
const L2: f64 = 10.0;

/// One image's pooled features as shown and inverted.
type Pair = (Vec<f32>, Vec<f32>);

/// One set's images: the pooled features as shown and inverted, with the study of each.
pub struct PolaritySet {
    pub name: String,
    pub studies: Vec<String>,
    pub pairs: Vec<Pair>,
    /// Images that could not be read, or whose features were not finite.
    pub unreadable: usize,
}

/// Read every image `idx` of `dataset` both ways round.
pub fn read_set(
    model: &XrayModel,
    name: &str,
    dataset: &Dataset,
    idx: &[usize],
) -> Result<PolaritySet, TrainError> {
    let input = model.input();
    let bar = super::progress::bar(idx.len() as u64, "reading both ways");
    let mut set = PolaritySet {
        name: name.to_string(),
        studies: Vec::new(),
        pairs: Vec::new(),
        unreadable: 0,
    };
    for chunk in idx.chunks(16) {
        let loaded: Vec<(usize, Option<Pair>)> = chunk
            .par_iter()
            .map(|&i| {
                let grey =
                    super::images::load(&dataset.samples[i].image, dataset.samples[i].view, input);
                let both = grey.ok().map(|mut g| {
                    let shown = input_of(&g, input);
                    g.data.iter_mut().for_each(|v| *v = u16::MAX - *v);
                    (shown, input_of(&g, input))
                });
                (i, both)
            })
            .collect();
        let (mut batch, mut studies) = (Vec::new(), Vec::new());
        for (i, both) in loaded {
            match both {
                Some((shown, inverted)) => {
                    studies.push(dataset.samples[i].study.clone());
                    batch.push(shown);
                    batch.push(inverted);
                }
                None => set.unreadable += 1,
            }
        }
        let mut features = model.predict(&batch)?.into_iter().map(|p| p.features);
        let mut studies = studies.into_iter();
        while let (Some(a), Some(b), Some(study)) =
            (features.next(), features.next(), studies.next())
        {
            if a.iter().chain(&b).all(|v| v.is_finite()) {
                set.pairs.push((a, b));
                set.studies.push(study);
            } else {
                set.unreadable += 1;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(set)
}

/// How a probe did on one held-out set.
pub struct HeldOut {
    pub name: String,
    pub images: usize,
    /// Images whose inverse the probe told from them (evidence > 0).
    pub images_right: usize,
    pub studies: usize,
    /// Upright studies whose summed evidence is positive...
    pub studies_right: usize,
    /// ...and, read inverted, would be turned over (below minus the threshold).
    pub inverted_caught: usize,
    /// Upright studies the daemon would have turned over (below minus the threshold).
    pub upright_turned: usize,
    /// The lowest summed evidence of an upright study.
    pub lowest: f32,
}

impl HeldOut {
    /// One line for the command's report and the card's evaluation.
    pub fn line(&self) -> String {
        format!(
            "{}: images {}/{}, studies {}/{}, inverted caught {}/{}, upright turned {}, lowest {:+.2}",
            self.name,
            self.images_right,
            self.images,
            self.studies_right,
            self.studies,
            self.inverted_caught,
            self.studies,
            self.upright_turned,
            self.lowest
        )
    }
}

/// The probe fitted on all sets, with each set's held-out result.
pub struct PolarityFit {
    pub probe: PolarityProbe,
    pub held_out: Vec<HeldOut>,
}

impl PolarityFit {
    pub fn summary(&self) -> String {
        let mut s = String::from(
            "held out (fitted on the other sets): images told apart, studies told apart, inverted studies read turned over, upright studies wrongly turned over, lowest upright study evidence\n",
        );
        for h in &self.held_out {
            s += &format!("  {}\n", h.line());
        }
        s
    }
}

/// Fit on all `sets`; with two or more, first leave each out and test on it.
/// `weights_sha256`: the weights whose features the sets were read with.
pub fn fit_polarity(
    sets: &[PolaritySet],
    threshold: f32,
    fitted_on: &str,
    weights_sha256: &str,
) -> Result<PolarityFit, TrainError> {
    if let Some(empty) = sets.iter().find(|s| s.pairs.is_empty()) {
        return Err(TrainError::Invalid(format!(
            "{}: no image could be read",
            empty.name
        )));
    }
    let probe_of = |pairs: Vec<Pair>| -> Result<PolarityProbe, TrainError> {
        let (scale, weights) = fit(&pairs, L2).ok_or_else(|| {
            TrainError::Invalid("the polarity probe's fit did not converge".into())
        })?;
        let probe = PolarityProbe {
            scale,
            weights,
            threshold,
            fitted_on: fitted_on.to_string(),
            evaluation: String::new(),
            weights_sha256: weights_sha256.to_string(),
        };
        probe
            .check()
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        Ok(probe)
    };
    let mut held_out = Vec::new();
    if sets.len() > 1 {
        for (k, set) in sets.iter().enumerate() {
            let rest: Vec<_> = sets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .flat_map(|(_, s)| s.pairs.iter().cloned())
                .collect();
            held_out.push(test(&probe_of(rest)?, set));
        }
    }
    let mut probe = probe_of(sets.iter().flat_map(|s| s.pairs.clone()).collect())?;
    probe.evaluation = held_out
        .iter()
        .map(HeldOut::line)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(PolarityFit { probe, held_out })
}

fn test(probe: &PolarityProbe, set: &PolaritySet) -> HeldOut {
    let mut studies: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    let mut images_right = 0;
    for (study, (a, b)) in set.studies.iter().zip(&set.pairs) {
        let e = probe.evidence(a, b);
        images_right += usize::from(e > 0.0);
        studies.entry(study).or_default().push(e);
    }
    let sums: Vec<f32> = studies.values().map(|v| v.iter().sum()).collect();
    HeldOut {
        name: set.name.clone(),
        images: set.pairs.len(),
        images_right,
        studies: sums.len(),
        studies_right: sums.iter().filter(|&&s| s > 0.0).count(),
        inverted_caught: sums.iter().filter(|&&s| s > probe.threshold).count(),
        upright_turned: sums.iter().filter(|&&s| s < -probe.threshold).count(),
        lowest: sums.iter().copied().fold(f32::INFINITY, f32::min),
    }
}
