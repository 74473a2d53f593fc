//! The ground truth of one synthetic patient: demographics, bone status, per-level CT
//! attenuation and an optional vertebral fracture. Relations follow the published cohorts
//! loosely: women over-represented, T-score falling with age and rising with weight.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

/// WHO class from a T-score: 0 normal (T ≥ −1.0), 1 osteopenia, 2 osteoporosis (T ≤ −2.5).
pub fn who_class(t_score: f64) -> u8 {
    if t_score >= -1.0 {
        0
    } else if t_score > -2.5 {
        1
    } else {
        2
    }
}

/// Lumbar levels drawn (and measured) in CT, top to bottom.
pub const LEVELS: [&str; 5] = ["L1", "L2", "L3", "L4", "L5"];

/// A simulated vertebral fracture (Genant semi-quantitative grade 1-3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fracture {
    /// Index into `LEVELS`.
    pub level: usize,
    pub grade: u8,
}

impl Fracture {
    /// Fraction of vertebral height lost (Genant: 20-25 %, 25-40 %, > 40 %).
    pub fn height_loss(&self) -> f64 {
        match self.grade {
            1 => 0.22,
            2 => 0.32,
            _ => 0.45,
        }
    }
}

/// Young-adult reference for L1-L4 areal BMD (g/cm²); keep configurable.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub mean: f64,
    pub sd: f64,
}

impl Default for Reference {
    fn default() -> Self {
        Reference {
            mean: 1.047,
            sd: 0.11,
        }
    }
}

/// Everything true about one synthetic patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub sex: char,
    pub age_years: u32,
    pub weight_kg: f64,
    pub height_m: f64,
    pub t_score: f64,
    pub bmd: f64,
    pub class: u8,
    /// Trabecular attenuation of L1..L5 (HU).
    pub level_hu: [f64; 5],
    pub fracture: Option<Fracture>,
}

impl Subject {
    /// Draw a subject; `balance` gives the probabilities of classes 0, 1, 2.
    pub fn draw(rng: &mut impl Rng, balance: [f64; 3], reference: Reference) -> Subject {
        let u: f64 = rng.random();
        let class = if u < balance[0] {
            0
        } else if u < balance[0] + balance[1] {
            1
        } else {
            2
        };
        // T-score uniform within the class's band (bands kept clear of the cut-offs by
        // 0.05 so that the class survives rounding to two decimals).
        let (lo, hi) = match class {
            0 => (-0.95, 2.0),
            1 => (-2.45, -1.05),
            _ => (-4.2, -2.55),
        };
        let t_score: f64 = rng.random_range(lo..hi);
        let sex = if rng.random::<f64>() < 0.8 { 'F' } else { 'M' };
        let noise =
            |rng: &mut dyn rand::RngCore, sd: f64| Normal::new(0.0, sd).unwrap().sample(rng);
        let age = (52.0 - 7.0 * t_score + noise(rng, 7.0)).clamp(30.0, 92.0);
        let (w0, h0) = if sex == 'F' {
            (66.0, 1.61)
        } else {
            (80.0, 1.75)
        };
        let weight = (w0 + 5.0 * t_score + noise(rng, 9.0)).clamp(38.0, 140.0);
        let height = (h0 + noise(rng, 0.065) - 0.002 * (age - 50.0).max(0.0)).clamp(1.40, 2.0);
        let bmd = reference.mean + reference.sd * t_score;
        // L1 trabecular HU: about 80 HU at T = -2.5, 215 at T = +1 (Pickhardt 2013 ranges);
        // slightly lower caudally.
        let l1 = 175.0 + 38.0 * t_score + noise(rng, 6.0);
        let mut level_hu = [0.0; 5];
        for (i, hu) in level_hu.iter_mut().enumerate() {
            *hu = (l1 - 3.0 * i as f64 + noise(rng, 3.0)).clamp(20.0, 330.0);
        }
        let p_fracture = [0.04, 0.10, 0.30][class as usize];
        let fracture = (rng.random::<f64>() < p_fracture).then(|| Fracture {
            level: rng.random_range(0..4),
            grade: rng.random_range(1..=3),
        });
        Subject {
            sex,
            age_years: age.round() as u32,
            weight_kg: (weight * 10.0).round() / 10.0,
            height_m: (height * 100.0).round() / 100.0,
            t_score: (t_score * 100.0).round() / 100.0,
            bmd: (bmd * 1000.0).round() / 1000.0,
            class,
            level_hu: level_hu.map(|h| (h * 10.0).round() / 10.0),
            fracture,
        }
    }

    /// Bone strength in 0..1 (0 = T −4.2, 1 = T +2): drives density, cortex and texture.
    pub fn bone_quality(&self) -> f64 {
        ((self.t_score + 4.2) / 6.2).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn classes_follow_the_who_cut_offs_and_the_balance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let subjects: Vec<_> = (0..3000)
            .map(|_| Subject::draw(&mut rng, [0.36, 0.36, 0.28], Reference::default()))
            .collect();
        for s in &subjects {
            assert_eq!(s.class, who_class(s.t_score), "{s:?}");
        }
        let share = |c| subjects.iter().filter(|s| s.class == c).count() as f64 / 3000.0;
        assert!((share(0) - 0.36).abs() < 0.03 && (share(2) - 0.28).abs() < 0.03);
        // Older and lighter patients have lower T-scores.
        let corr = |f: &dyn Fn(&Subject) -> f64| {
            let n = subjects.len() as f64;
            let (mx, my) = (
                subjects.iter().map(f).sum::<f64>() / n,
                subjects.iter().map(|s| s.t_score).sum::<f64>() / n,
            );
            let cov: f64 = subjects
                .iter()
                .map(|s| (f(s) - mx) * (s.t_score - my))
                .sum();
            let vx: f64 = subjects.iter().map(|s| (f(s) - mx).powi(2)).sum();
            let vy: f64 = subjects.iter().map(|s| (s.t_score - my).powi(2)).sum();
            cov / (vx * vy).sqrt()
        };
        assert!(corr(&|s| s.age_years as f64) < -0.5);
        assert!(corr(&|s| s.weight_kg) > 0.3);
        let women = subjects.iter().filter(|s| s.sex == 'F').count();
        assert!(women > 2200);
    }
}
