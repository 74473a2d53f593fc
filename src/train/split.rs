//! Patient-level stratified split: patients (not images) are shuffled within each class by
//! a seeded generator and dealt to test, validation and training, so a patient's views
//! never straddle two parts and every part keeps the class mix.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::data::Sample;

/// Sample indices of each part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Split `samples` by patient; `val` and `test` are fractions of each class's patients
/// (at least one patient each where the class has three or more).
pub fn split(samples: &[Sample], val: f64, test: f64, seed: u64) -> Split {
    // Patients in first-seen order, each with its (first) label.
    let mut by_patient: BTreeMap<&str, (u8, Vec<usize>)> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        by_patient
            .entry(s.patient.as_str())
            .or_insert((s.label, Vec::new()))
            .1
            .push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SPLIT_SALT);
    let mut out = Split::default();
    for class in 0..3u8 {
        let mut patients: Vec<&Vec<usize>> = by_patient
            .values()
            .filter(|(l, _)| *l == class)
            .map(|(_, v)| v)
            .collect();
        patients.shuffle(&mut rng);
        let n = patients.len();
        let count = |f: f64| {
            let k = (n as f64 * f).round() as usize;
            if n >= 3 && f > 0.0 {
                k.max(1)
            } else {
                k
            }
        };
        let (n_test, n_val) = (count(test), count(val));
        for (i, p) in patients.into_iter().enumerate() {
            let part = if i < n_test {
                &mut out.test
            } else if i < n_test + n_val {
                &mut out.val
            } else {
                &mut out.train
            };
            part.extend(p);
        }
    }
    out.train.sort_unstable();
    out.val.sort_unstable();
    out.test.sort_unstable();
    out
}

/// A fixed salt so the split's stream differs from the training stream of the same seed.
const SPLIT_SALT: u64 = 0x5eed_5917;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(patient: usize, label: u8) -> Sample {
        Sample {
            image: format!("{patient}.dcm").into(),
            patient: format!("p{patient}"),
            study: format!("p{patient}"),
            label,
            t_score: None,
            bmd: None,
            view: None,
        }
    }

    #[test]
    fn patients_stay_whole_classes_are_kept_and_the_seed_decides() {
        // 60 patients, two images each, 20 per class.
        let samples: Vec<Sample> = (0..60)
            .flat_map(|p| [sample(p, (p % 3) as u8), sample(p, (p % 3) as u8)])
            .collect();
        let s = split(&samples, 0.15, 0.15, 3);
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 120);
        let patients = |idx: &[usize]| -> std::collections::BTreeSet<String> {
            idx.iter().map(|&i| samples[i].patient.clone()).collect()
        };
        assert!(patients(&s.train).is_disjoint(&patients(&s.test)));
        assert!(patients(&s.train).is_disjoint(&patients(&s.val)));
        for class in 0..3u8 {
            let n = s
                .test
                .iter()
                .filter(|&&i| samples[i].label == class)
                .count();
            assert_eq!(n, 6, "class {class}: 3 patients x 2 images in test");
        }
        assert_eq!(s, split(&samples, 0.15, 0.15, 3));
        assert_ne!(s, split(&samples, 0.15, 0.15, 4));
    }
}
