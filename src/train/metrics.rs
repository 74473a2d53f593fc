//! Classification and regression metrics, as the papers report them: accuracy, macro-F1,
//! per-class sensitivity and specificity, one-vs-rest AUC (osteoporosis vs rest, low BMD
//! vs normal), T-score MAE and Pearson r, and the confusion matrix. Computed per study
//! (the images of a study averaged, as the daemon fuses them).

use serde::Serialize;

/// One study's truth and prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The study's id in the data set (its Study Instance UID or manifest id).
    pub study: String,
    pub label: u8,
    pub probabilities: [f32; 3],
    pub t_true: Option<f32>,
    pub t_pred: f32,
}

impl Scored {
    pub fn predicted(&self) -> u8 {
        argmax(&self.probabilities)
    }
}

pub fn argmax(p: &[f32; 3]) -> u8 {
    let mut best = 0;
    for i in 1..3 {
        if p[i] > p[best] {
            best = i;
        }
    }
    best as u8
}

/// Per class: sensitivity (recall) and specificity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassMetrics {
    pub class: &'static str,
    pub n: usize,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub studies: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// Osteoporosis vs normal + osteopenia, on P(osteoporosis).
    pub auc_osteoporosis: Option<f64>,
    /// Osteopenia + osteoporosis vs normal, on 1 - P(normal).
    pub auc_low_bmd: Option<f64>,
    pub t_score_mae: Option<f64>,
    pub t_score_pearson_r: Option<f64>,
    /// rows: truth, columns: prediction.
    pub confusion: [[usize; 3]; 3],
}

pub const CLASS_NAMES: [&str; 3] = ["normal", "osteopenia", "osteoporosis"];

pub fn compute(s: &[Scored]) -> Metrics {
    let mut confusion = [[0usize; 3]; 3];
    for x in s {
        confusion[x.label as usize][x.predicted() as usize] += 1;
    }
    let n = s.len();
    let correct: usize = (0..3).map(|i| confusion[i][i]).sum();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let per_class: Vec<ClassMetrics> = (0..3)
        .map(|c| {
            let tp = confusion[c][c];
            let actual: usize = confusion[c].iter().sum();
            let predicted: usize = (0..3).map(|r| confusion[r][c]).sum();
            let tn = n + tp - actual - predicted;
            let precision = ratio(tp, predicted).unwrap_or(0.0);
            let recall = ratio(tp, actual).unwrap_or(0.0);
            ClassMetrics {
                class: CLASS_NAMES[c],
                n: actual,
                sensitivity: ratio(tp, actual),
                specificity: ratio(tn, n - actual),
                f1: if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                },
            }
        })
        .collect();
    // Macro-F1 over the classes present in the truth.
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.n > 0).collect();
    let macro_f1 = present.iter().map(|c| c.f1).sum::<f64>() / present.len().max(1) as f64;
    let (osteo, low) = (osteoporosis_scores(s), low_bmd_scores(s));
    let pairs: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|x| x.t_true.map(|t| (t as f64, x.t_pred as f64)))
        .collect();
    Metrics {
        studies: n,
        accuracy: ratio(correct, n).unwrap_or(0.0),
        macro_f1,
        per_class,
        auc_osteoporosis: auc(&osteo),
        auc_low_bmd: auc(&low),
        t_score_mae: (!pairs.is_empty())
            .then(|| pairs.iter().map(|(a, b)| (a - b).abs()).sum::<f64>() / pairs.len() as f64),
        t_score_pearson_r: pearson(&pairs),
        confusion,
    }
}

/// (P(osteoporosis), is osteoporosis) per study: the osteoporosis-vs-rest ROC's input.
pub fn osteoporosis_scores(s: &[Scored]) -> Vec<(f64, bool)> {
    s.iter()
        .map(|x| (x.probabilities[2] as f64, x.label == 2))
        .collect()
}

/// (1 - P(normal), is osteopenia or osteoporosis): the low-BMD-vs-normal ROC's input.
pub fn low_bmd_scores(s: &[Scored]) -> Vec<(f64, bool)> {
    s.iter()
        .map(|x| (1.0 - x.probabilities[0] as f64, x.label >= 1))
        .collect()
}

/// Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let pos = scored.iter().filter(|x| x.1).count();
    let neg = scored.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut v = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_pos += avg_rank * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

/// ROC points (false positive rate, true positive rate), from the highest threshold down.
pub fn roc(scored: &[(f64, bool)]) -> Vec<(f64, f64)> {
    let pos = scored.iter().filter(|x| x.1).count().max(1) as f64;
    let neg = scored.iter().filter(|x| !x.1).count().max(1) as f64;
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for (i, (score, positive)) in v.iter().enumerate() {
        if *positive {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if v.get(i + 1).is_none_or(|next| next.0 != *score) {
            out.push((fp / neg, tp / pos));
        }
    }
    out
}

pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (ma, mb) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (a, b) in pairs {
        sab += (a - ma) * (b - mb);
        saa += (a - ma).powi(2);
        sbb += (b - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(label: u8, p: [f32; 3], t: f32, tp: f32) -> Scored {
        Scored {
            study: String::new(),
            label,
            probabilities: p,
            t_true: Some(t),
            t_pred: tp,
        }
    }

    #[test]
    fn metrics_on_a_small_known_case() {
        let data = [
            s(0, [0.8, 0.1, 0.1], 0.5, 0.3),
            s(0, [0.4, 0.5, 0.1], -0.2, -1.2),
            s(1, [0.2, 0.6, 0.2], -1.8, -1.6),
            s(2, [0.1, 0.2, 0.7], -3.0, -2.8),
        ];
        let m = compute(&data);
        assert_eq!(m.confusion, [[1, 1, 0], [0, 1, 0], [0, 0, 1]]);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        // F1: normal 2/3, osteopenia 2/3, osteoporosis 1.
        assert!((m.macro_f1 - (2.0 / 3.0 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.per_class[0].sensitivity, Some(0.5));
        assert_eq!(m.per_class[1].specificity, Some(2.0 / 3.0));
        assert_eq!(m.auc_osteoporosis, Some(1.0));
        // Low BMD scores: 0.2, 0.6 (normals) vs 0.8, 0.9: perfectly separated.
        assert_eq!(m.auc_low_bmd, Some(1.0));
        assert!((m.t_score_mae.unwrap() - (0.2 + 1.0 + 0.2 + 0.2) / 4.0).abs() < 1e-6);
        assert!(m.t_score_pearson_r.unwrap() > 0.9);
    }

    #[test]
    fn auc_counts_ties_half_and_roc_ends_at_one() {
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(auc(&[(0.2, true), (0.8, false)]), Some(0.0));
        assert_eq!(auc(&[(0.2, true)]), None);
        let r = roc(&[(0.9, true), (0.1, false), (0.5, true)]);
        assert_eq!(r.first(), Some(&(0.0, 0.0)));
        assert_eq!(r.last(), Some(&(1.0, 1.0)));
    }
}
