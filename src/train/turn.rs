//! The daemon's polarity check (`analysis::xray`) in `eval`, `readout` and `calibrate`:
//! each image's reading is compared with its inverse's by the card's probe, the evidence
//! summed per study, and a clearly inverted study read again turned over, so that what
//! these commands measure or fit on is what the daemon reports.

use std::collections::BTreeMap;

use super::data::Sample;
use super::evaluate::input_of;
use super::images::Grey;
use crate::model::polarity::{Polarity, PolarityProbe};
use crate::model::{Prediction, XrayModel};

/// How the check went over a set of studies.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PolarityCounts {
    /// The card's threshold (evidence summed over a study below minus it: turned over).
    pub threshold: f32,
    /// Studies read with their grey levels turned over.
    pub turned_over: usize,
    /// Studies the daemon would flag as perhaps inverted, read as their headers say.
    pub doubtful: usize,
    /// Studies whose check could not be made (an inference error, evidence that is not a
    /// number): read as their headers say, as the daemon does.
    pub unchecked: usize,
    /// Studies whose images clearly disagree (`PolarityProbe::disagree`), which the daemon
    /// flags; judged on their sum like the others.
    pub disagreeing: usize,
}

impl PolarityCounts {
    /// Whether any study was turned over, doubtful or unchecked.
    pub fn any(&self) -> bool {
        self.turned_over + self.doubtful + self.unchecked + self.disagreeing > 0
    }

    pub fn line(&self) -> String {
        format!(
            "grey levels (the card's polarity probe, threshold {:.1}): {} studies read turned over, {} doubtful, {} unchecked, {} with images that disagree",
            self.threshold, self.turned_over, self.doubtful, self.unchecked, self.disagreeing
        )
    }
}

/// The inverse of a cached image (grey levels turned over), as the network's input.
pub fn inverse_input(grey: &Grey, input: crate::model::preprocess::InputSpec) -> Vec<f32> {
    let turned = Grey {
        rows: grey.rows,
        cols: grey.cols,
        data: grey.data.iter().map(|v| u16::MAX - v).collect(),
    };
    input_of(&turned, input)
}

/// Each image's evidence that it is upright: `taken` are the readings as shown
/// (mirrored as the daemon reads), `inverse` the images' inverse inputs. NaN where the
/// inverse could not be read, which leaves its study unchecked.
pub fn evidence(
    model: &XrayModel,
    probe: &PolarityProbe,
    taken: &[Prediction],
    inverse: &[Vec<f32>],
) -> Vec<f32> {
    model
        .polarity_evidence(probe, taken, inverse)
        .unwrap_or_else(|e| {
            // Their studies stay unchecked; why goes to stderr, as the daemon's flag says.
            eprintln!("grey levels of {} images not checked: {e}", taken.len());
            vec![f32::NAN; taken.len()]
        })
}

/// Judge every study by its images' summed evidence (`kept[k]` is the sample of
/// `evidence[k]` and `readings[k]`) and read the clearly inverted ones again turned over,
/// their inverse inputs from `inverse_of(sample)`. Returns the counts.
pub fn apply(
    model: &XrayModel,
    probe: &PolarityProbe,
    samples: &[Sample],
    kept: &[usize],
    evidence: &[f32],
    readings: &mut [Prediction],
    inverse_of: impl Fn(usize) -> Option<Vec<f32>>,
) -> PolarityCounts {
    let mut studies: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (k, &i) in kept.iter().enumerate() {
        studies
            .entry(samples[i].study.as_str())
            .or_default()
            .push(k);
    }
    let mut counts = PolarityCounts {
        threshold: probe.threshold,
        ..Default::default()
    };
    for positions in studies.values() {
        let of: Vec<f32> = positions.iter().map(|&k| evidence[k]).collect();
        if !of.iter().all(|e| e.is_finite()) {
            counts.unchecked += 1;
            continue;
        }
        counts.disagreeing += usize::from(probe.disagree(&of));
        match probe.judge(&of) {
            Polarity::Upright => {}
            Polarity::Doubtful(_) => counts.doubtful += 1,
            Polarity::Inverted(_) => {
                let inputs: Option<Vec<Vec<f32>>> =
                    positions.iter().map(|&k| inverse_of(kept[k])).collect();
                match inputs.map(|x| model.predict_mirrored(&x)) {
                    Some(Ok(turned)) if turned.len() == positions.len() => {
                        for (&k, p) in positions.iter().zip(turned) {
                            readings[k] = p;
                        }
                        counts.turned_over += 1;
                    }
                    Some(Err(e)) => {
                        eprintln!("a study could not be read turned over: {e}");
                        counts.unchecked += 1;
                    }
                    _ => {
                        eprintln!("a study's images could not be read again turned over");
                        counts.unchecked += 1;
                    }
                }
            }
        }
    }
    counts
}
