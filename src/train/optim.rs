//! AdamW (decoupled weight decay, not applied to biases and batch-norm parameters) with its
//! moments kept by variable name so a checkpoint can save and restore them (`--resume`
//! continues exactly where it stopped), and the learning-rate schedule: linear warm-up,
//! then cosine decay to a small floor.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

pub struct AdamW {
    /// (name, variable), sorted by name.
    vars: Vec<(String, Var)>,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    pub step: usize,
    pub weight_decay: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl AdamW {
    /// Every trainable variable (batch-norm running statistics are not trained).
    pub fn new(mut vars: Vec<(String, Var)>, weight_decay: f64) -> AdamW {
        vars.retain(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"));
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        AdamW {
            vars,
            m: HashMap::new(),
            v: HashMap::new(),
            step: 0,
            weight_decay,
        }
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = match self.m.get(name) {
                Some(m) => ((m * BETA1)? + (g * (1.0 - BETA1))?)?,
                None => (g * (1.0 - BETA1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?,
                None => (g.sqr()? * (1.0 - BETA2))?,
            };
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            let w = var.as_tensor();
            // Decay weights only (convolutions, linear layers): rank 2 and up.
            let decayed = if w.rank() >= 2 && self.weight_decay > 0.0 {
                (w * (1.0 - lr * self.weight_decay))?
            } else {
                w.clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// The moments as named tensors (`adam.m.<var>`, `adam.v.<var>`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, t) in &self.m {
            out.insert(format!("adam.m.{name}"), t.clone());
        }
        for (name, t) in &self.v {
            out.insert(format!("adam.v.{name}"), t.clone());
        }
        out
    }

    /// Restore moments saved by `state` (other tensors in `saved` are ignored).
    pub fn restore(&mut self, saved: &HashMap<String, Tensor>, step: usize) {
        for (key, t) in saved {
            if let Some(name) = key.strip_prefix("adam.m.") {
                self.m.insert(name.to_string(), t.clone());
            } else if let Some(name) = key.strip_prefix("adam.v.") {
                self.v.insert(name.to_string(), t.clone());
            }
        }
        self.step = step;
    }
}

/// Learning rate at `step` of `total`: linear warm-up over `warmup` steps, then cosine to
/// 2 % of `base`.
pub fn learning_rate(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = 0.02 * base;
    floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
        assert!((learning_rate(1.0, 100, 10, 100) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let w = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], 0.0);
        for _ in 0..300 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.05).unwrap();
        }
        let v = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        assert_eq!(opt.state().len(), 2);
    }
}
