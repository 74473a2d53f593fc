//! `osteoscreen train-risk`: a multinomial logistic model of the WHO class from sex, age,
//! weight, height, BMI and years since menopause (a tabular DXA dataset's clinical rows),
//! fitted by gradient descent with a little L2, and compared on held-out rows with the OST
//! index (AUC both, osteoporosis vs rest and low BMD vs normal).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::data::ClinicalRecord;
use super::metrics::auc;
use super::TrainError;
use crate::analysis::risk::{ost, RiskModel, FEATURES};

/// Held-out comparison of the fitted model with OST.
#[derive(Debug, Clone, Serialize)]
pub struct RiskEvaluation {
    pub train_rows: usize,
    pub test_rows: usize,
    pub fitted_auc_osteoporosis: Option<f64>,
    pub fitted_auc_low_bmd: Option<f64>,
    pub fitted_accuracy: f64,
    pub ost_auc_osteoporosis: Option<f64>,
    pub ost_auc_low_bmd: Option<f64>,
}

/// A record's inputs in `FEATURES` order.
pub fn inputs(r: &ClinicalRecord) -> [Option<f64>; 6] {
    let bmi = r.bmi.or_else(|| match (r.weight_kg, r.height_m) {
        (Some(w), Some(h)) if h > 0.5 => Some(w / (h * h)),
        _ => None,
    });
    let menopause = match (r.sex, r.menopause_years) {
        (Some('M'), _) => Some(0.0),
        (_, m) => m.filter(|v| (0.0..=70.0).contains(v)),
    };
    [
        r.sex.map(|s| if s == 'F' { 1.0 } else { 0.0 }),
        r.age_years,
        r.weight_kg,
        r.height_m,
        bmi,
        menopause,
    ]
}

/// Fit on a seeded share of the labelled rows with age and weight (OST needs both) and
/// evaluate on the rest.
pub fn fit(
    records: &[ClinicalRecord],
    name: &str,
    trained_on: &str,
    test_fraction: f64,
    seed: u64,
) -> Result<(RiskModel, RiskEvaluation), TrainError> {
    let mut rows: Vec<(&ClinicalRecord, u8)> = records
        .iter()
        .filter(|r| r.age_years.is_some() && r.weight_kg.is_some())
        .filter_map(|r| r.label.map(|l| (r, l)))
        .collect();
    if rows.len() < 20 {
        return Err(TrainError::Invalid(format!(
            "{} labelled rows with age and weight; at least 20 are needed",
            rows.len()
        )));
    }
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = ((rows.len() as f64 * test_fraction).round() as usize).clamp(1, rows.len() - 10);
    let (test, train) = rows.split_at(n_test);
    let x_train: Vec<[Option<f64>; 6]> = train.iter().map(|(r, _)| inputs(r)).collect();
    let (mean, sd) = standardisation(&x_train);
    let z: Vec<[f64; 6]> = x_train
        .iter()
        .map(|x| std::array::from_fn(|i| x[i].map_or(0.0, |v| (v - mean[i]) / sd[i])))
        .collect();
    let y: Vec<u8> = train.iter().map(|(_, l)| *l).collect();
    let coefficients = gradient_descent(&z, &y);
    let model = RiskModel {
        name: name.to_string(),
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
        mean: mean.to_vec(),
        sd: sd.to_vec(),
        coefficients,
        trained_on: trained_on.to_string(),
        evaluation: serde_json::Value::Null,
    };
    let mut correct = 0;
    let (mut f_osteo, mut f_low, mut o_osteo, mut o_low) = (vec![], vec![], vec![], vec![]);
    for (r, label) in test {
        let p = model.predict(&inputs(r));
        let predicted = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
        correct += usize::from(predicted == *label as usize);
        f_osteo.push((p[2], *label == 2));
        f_low.push((1.0 - p[0], *label >= 1));
        // Lower OST means higher risk.
        let (index, _) = ost(r.age_years.unwrap_or(0.0), r.weight_kg.unwrap_or(0.0));
        o_osteo.push((-(index as f64), *label == 2));
        o_low.push((-(index as f64), *label >= 1));
    }
    let eval = RiskEvaluation {
        train_rows: train.len(),
        test_rows: test.len(),
        fitted_auc_osteoporosis: auc(&f_osteo),
        fitted_auc_low_bmd: auc(&f_low),
        fitted_accuracy: correct as f64 / test.len() as f64,
        ost_auc_osteoporosis: auc(&o_osteo),
        ost_auc_low_bmd: auc(&o_low),
    };
    let model = RiskModel {
        evaluation: serde_json::to_value(&eval).expect("serialises"),
        ..model
    };
    Ok((model, eval))
}

/// Mean and standard deviation of each input over the rows that have it.
fn standardisation(x: &[[Option<f64>; 6]]) -> ([f64; 6], [f64; 6]) {
    let mut mean = [0.0; 6];
    let mut sd = [1.0; 6];
    for i in 0..6 {
        let v: Vec<f64> = x.iter().filter_map(|r| r[i]).collect();
        if v.is_empty() {
            continue;
        }
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64;
        mean[i] = m;
        sd[i] = var.sqrt().max(1e-6);
    }
    (mean, sd)
}

/// The softmax model's 3 x 7 coefficients, intercept last (L2 1e-3 on the weights).
fn gradient_descent(z: &[[f64; 6]], y: &[u8]) -> Vec<Vec<f64>> {
    let rows: Vec<Vec<f64>> = z.iter().map(|x| x.to_vec()).collect();
    crate::model::logistic::fit(&rows, y, 1e-3, 3000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Rows where the class follows age and weight (as OST assumes) plus sex.
    fn cohort(n: usize) -> Vec<ClinicalRecord> {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        (0..n)
            .map(|i| {
                let age: f64 = rng.random_range(40.0..85.0);
                let weight: f64 = rng.random_range(45.0..100.0);
                let female = rng.random_bool(0.8);
                let score = 0.2 * (weight - age)
                    + if female { -1.5 } else { 1.5 }
                    + rng.random_range(-2.0..2.0);
                ClinicalRecord {
                    patient: i.to_string(),
                    label: Some(if score > -1.0 {
                        0
                    } else if score > -6.0 {
                        1
                    } else {
                        2
                    }),
                    sex: Some(if female { 'F' } else { 'M' }),
                    age_years: Some(age),
                    weight_kg: Some(weight),
                    height_m: Some(rng.random_range(1.5..1.9)),
                    ..ClinicalRecord::default()
                }
            })
            .collect()
    }

    #[test]
    fn the_fitted_model_beats_chance_and_uses_sex_where_ost_cannot() {
        let (model, eval) = fit(&cohort(600), "test", "synthetic", 0.25, 3).unwrap();
        assert_eq!(eval.test_rows, 150);
        let fitted = eval.fitted_auc_osteoporosis.unwrap();
        let ost = eval.ost_auc_osteoporosis.unwrap();
        assert!(fitted > 0.85, "fitted AUC {fitted}");
        assert!(ost > 0.7, "OST AUC {ost}");
        assert!(fitted >= ost - 0.02, "fitted {fitted} vs OST {ost}");
        // The JSON round-trips through the daemon's loader.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("risk.json");
        std::fs::write(&path, serde_json::to_string(&model).unwrap()).unwrap();
        let loaded = RiskModel::load(&path).unwrap();
        let p = loaded.predict(&[Some(1.0), Some(80.0), Some(48.0), None, None, None]);
        assert!(p[2] > p[0], "an 80-year-old 48 kg woman: {p:?}");
    }

    #[test]
    fn too_few_rows_is_an_error() {
        assert!(fit(&cohort(10), "t", "s", 0.2, 1).is_err());
    }
}
