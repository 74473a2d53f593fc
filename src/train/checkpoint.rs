//! What a training run keeps on disk and writes at the end: seeded weight initialisation,
//! checkpoints (`last.safetensors` = weights + optimiser moments, `best.safetensors`,
//! `state.json` with the history, written last so it always names complete files), the
//! feature profile for the out-of-distribution flag, and the model card.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::augment::Processing;
use super::data::Dataset;
use super::images::Grey;
use super::metrics::Metrics;
use super::optim::AdamW;
use super::split::Split;
use super::trainer::{forward_clean, TrainOptions};
use super::TrainError;
use crate::model::card::{sha256_file, BmdReference, FeatureProfile};
use crate::model::framing::Framing;
use crate::model::net::{XrayNet, FEATURES};
use crate::model::preprocess::{InputSpec, Normalisation};
use crate::model::ModelCard;

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

impl EpochRecord {
    pub fn line(&self) -> String {
        format!(
            "epoch {:>3}: loss {:.4}, train accuracy {:.3}, validation accuracy {:.3}, macro-F1 {:.3}, lr {:.2e}, {:.0} s",
            self.epoch,
            self.train_loss,
            self.train_accuracy,
            self.val_accuracy,
            self.val_macro_f1,
            self.learning_rate,
            self.seconds
        )
    }
}

/// The run's progress, saved as `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub epochs_done: usize,
    pub step: usize,
    pub best_f1: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochRecord>,
    pub seed: u64,
    pub samples: usize,
    pub batch_size: usize,
    /// Checkpoints from before the choice existed were robust.
    #[serde(default)]
    pub normalisation: Normalisation,
    /// Likewise mild.
    #[serde(default)]
    pub processing: Processing,
    /// Likewise 256.
    #[serde(default = "crate::model::preprocess::default_side")]
    pub input_size: usize,
    /// The sha256 of the weights `--init` started from, if any.
    #[serde(default)]
    pub init_sha256: Option<String>,
    /// Checkpoints from before the choice existed read the whole field.
    #[serde(default)]
    pub framing: Framing,
}

impl State {
    pub fn new(opts: &TrainOptions, samples: usize) -> State {
        State {
            epochs_done: 0,
            step: 0,
            best_f1: -1.0,
            best_epoch: 0,
            history: Vec::new(),
            seed: opts.seed,
            samples,
            batch_size: opts.batch_size,
            normalisation: opts.normalisation,
            processing: opts.processing,
            input_size: opts.input_size,
            init_sha256: None,
            framing: opts.framing,
        }
    }

    /// A checkpoint can only continue the same run: same seed, data, batch size and input.
    pub fn check_compatible(&self, fresh: &State) -> Result<(), TrainError> {
        let run = |s: &State| {
            (
                s.seed,
                s.samples,
                s.batch_size,
                s.normalisation,
                s.processing,
                s.input_size,
                s.framing,
            )
        };
        if run(self) != run(fresh) {
            return Err(TrainError::Invalid(format!(
                "the checkpoint is of another run (seed {}, {} images, batch {}, {:?} {} px input of {:?} framing, {:?} processing; now seed {}, {} images, batch {}, {:?} {} px input of {:?} framing, {:?} processing)",
                self.seed, self.samples, self.batch_size, self.normalisation, self.input_size, self.framing, self.processing,
                fresh.seed, fresh.samples, fresh.batch_size, fresh.normalisation, fresh.input_size, fresh.framing, fresh.processing
            )));
        }
        Ok(())
    }

    /// Add an epoch; true when its validation macro-F1 is the best so far.
    pub fn record(&mut self, r: EpochRecord) -> bool {
        self.epochs_done = r.epoch;
        let improved = r.val_macro_f1 > self.best_f1;
        if improved {
            self.best_f1 = r.val_macro_f1;
            self.best_epoch = r.epoch;
        }
        self.history.push(r);
        improved
    }
}

/// Load `--init` weights over the initialised ones; returns their sha256. Every variable
/// must be in the file: a partial load would train a mix.
pub fn start_from(varmap: &VarMap, weights: &Path) -> Result<String, TrainError> {
    let sha = sha256_file(weights)?;
    // `load` takes `&mut`; a clone shares the same variables.
    varmap.clone().load(weights).map_err(|e| {
        TrainError::Invalid(format!(
            "--init {}: not weights of this network ({e})",
            weights.display()
        ))
    })?;
    Ok(sha)
}

/// Seeded initialisation (candle's CPU generator cannot be seeded): Kaiming-normal
/// convolutions, uniform ±1/√fan-in linear layers; batch norms keep their ones and zeros.
pub fn init_weights(varmap: &VarMap, seed: u64, device: &Device) -> Result<(), TrainError> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let head = name.starts_with("class_head") || name.starts_with("t_head");
        let values: Vec<f32> = if dims.len() == 4 {
            let fan_in = (dims[1] * dims[2] * dims[3]) as f32;
            let normal = Normal::new(0.0, (2.0 / fan_in).sqrt()).expect("valid sd");
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        } else if head {
            let bound = 1.0 / (FEATURES as f32).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        } else {
            continue;
        };
        var.set(&Tensor::from_vec(values, dims, device)?)?;
    }
    Ok(())
}

/// Save the epoch's checkpoint (and the best weights when `improved`).
pub fn save(
    dir: &Path,
    varmap: &VarMap,
    opt: &AdamW,
    state: &State,
    improved: bool,
) -> Result<(), TrainError> {
    let mut tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors.extend(opt.state());
    candle_core::safetensors::save(&tensors, dir.join("last.safetensors"))?;
    if improved {
        varmap.save(dir.join("best.safetensors"))?;
    }
    let mut state = state.clone();
    state.step = opt.step;
    let tmp = dir.join("state.json.tmp");
    let text = serde_json::to_string_pretty(&state).expect("state serialises");
    std::fs::write(&tmp, text).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| TrainError::io(dir, e))?;
    Ok(())
}

/// Load the checkpoint in `dir` into `varmap` and `opt`; None when there is none.
pub fn resume(
    dir: &Path,
    varmap: &VarMap,
    opt: &mut AdamW,
    device: &Device,
) -> Result<Option<State>, TrainError> {
    let state_path = dir.join("state.json");
    if !state_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: State = serde_json::from_str(&text)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", state_path.display())))?;
    let saved = candle_core::safetensors::load(dir.join("last.safetensors"), device)?;
    for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
        let t = saved.get(name).ok_or_else(|| {
            TrainError::Invalid(format!("checkpoint lacks {name}: another architecture?"))
        })?;
        var.set(t)?;
    }
    opt.restore(&saved, state.step);
    Ok(Some(state))
}

pub fn load_best(dir: &Path, varmap: &VarMap) -> Result<(), TrainError> {
    let mut vm = varmap.clone();
    vm.load(dir.join("best.safetensors"))?;
    Ok(())
}

/// Feature statistics of (up to 400) training images, and a threshold: 1.25 x the 99th
/// percentile of the validation images' distances.
pub fn feature_profile(
    net: &XrayNet,
    cache: &[Option<Grey>],
    parts: &Split,
    device: &Device,
    input: InputSpec,
) -> Result<FeatureProfile, TrainError> {
    let features = |idx: &[usize]| -> Result<Vec<Vec<f32>>, TrainError> {
        let mut out = Vec::new();
        for o in forward_clean(net, cache, idx, device, false, input)? {
            out.extend(o.features.to_vec2::<f32>()?);
        }
        Ok(out)
    };
    let step = (parts.train.len() / 400).max(1);
    let sample: Vec<usize> = parts.train.iter().step_by(step).copied().collect();
    let train = features(&sample)?;
    let n = train.len().max(1) as f32;
    let mut mean = vec![0f32; FEATURES];
    for f in &train {
        mean.iter_mut().zip(f).for_each(|(m, x)| *m += x / n);
    }
    let mut sd = vec![0f32; FEATURES];
    for f in &train {
        sd.iter_mut()
            .zip(f.iter().zip(&mean))
            .for_each(|(s, (x, m))| *s += (x - m).powi(2) / n);
    }
    sd.iter_mut().for_each(|s| *s = s.sqrt().max(1e-3));
    let mut profile = FeatureProfile {
        mean,
        sd,
        threshold: 0.0,
    };
    let mut d: Vec<f32> = features(&parts.val)?
        .iter()
        .map(|f| profile.distance(f))
        .collect();
    d.sort_by(|a, b| a.total_cmp(b));
    let p99 = d
        .get(d.len() * 99 / 100)
        .or(d.last())
        .copied()
        .unwrap_or(1.0);
    profile.threshold = 1.25 * p99;
    Ok(profile)
}

/// The card of the trained weights.
#[allow(clippy::too_many_arguments)]
pub fn card(
    data: &Dataset,
    opts: &TrainOptions,
    parts: &Split,
    state: &State,
    validation: &Metrics,
    test: Option<&Metrics>,
    profile: FeatureProfile,
    weights: &Path,
) -> Result<ModelCard, TrainError> {
    let counts = |idx: &[usize]| {
        let c = data.class_counts_of(idx.iter().copied());
        let patients: std::collections::BTreeSet<&str> = idx
            .iter()
            .map(|&i| data.samples[i].patient.as_str())
            .collect();
        serde_json::json!({
            "images": idx.len(),
            "patients": patients.len(),
            "images_per_class": {"normal": c[0], "osteopenia": c[1], "osteoporosis": c[2]},
        })
    };
    Ok(ModelCard {
        name: opts.name.clone(),
        version: format!("{}+seed{}", env!("CARGO_PKG_VERSION"), opts.seed),
        architecture: "ResNet, 4 basic-block stages 16-128 channels, class + T-score heads".into(),
        input: opts.input().spec(),
        training_data: opts.data_description.clone(),
        metrics: serde_json::json!({
            "held_out_test": test,
            "validation": validation,
            "unit": "per study (views averaged)",
        }),
        intended_use: opts.intended_use.clone(),
        bmd_reference: BmdReference {
            mean: 1.047,
            sd: 0.11,
        },
        weights_sha256: sha256_file(weights)?,
        limitations: opts.limitations.clone(),
        training: Some(serde_json::json!({
            "data_layout": data.layout,
            "data_source": data.source,
            "split_seed": opts.seed,
            "split": {"train": counts(&parts.train), "validation": counts(&parts.val), "test": counts(&parts.test)},
            "best_epoch": state.best_epoch,
            "options": opts,
            "init_sha256": state.init_sha256,
            "history": state.history,
        })),
        feature_profile: Some(profile),
        covariates: None,
        readout: None,
        polarity: None,
    })
}
