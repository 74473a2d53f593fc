//! `osteoscreen train`: the loop. Split by patient, decode every image once, then per
//! epoch: shuffle (seeded by epoch), augment (seeded by epoch and position), forward and
//! backward with a class-weighted cross-entropy plus a masked T-score regression, AdamW
//! under warm-up + cosine; validate (macro-F1 per study), keep the best weights, checkpoint,
//! stop early. Every random draw derives from the seed, so the same seed gives the same
//! weights, and `--resume` continues a stopped run to the same result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::{augment, Img, Processing};
use super::checkpoint::{self, State};
use super::data::Dataset;
use super::evaluate::{by_study, input_of, ImagePred};
use super::images::{self, Grey};
use super::metrics::{self, Metrics};
use super::split::{split, Split};
use super::{progress, TrainError};
use crate::model;
use crate::model::framing::Framing;
use crate::model::net::XrayNet;
use crate::model::preprocess::{self, InputSpec, Normalisation};

/// Everything `osteoscreen train` can be asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Folder the model (`<name>.safetensors` + `<name>.json`) is written to.
    pub out: PathBuf,
    pub name: String,
    /// Checkpoints and history; default `<out>/<name>-checkpoint`.
    pub checkpoint_dir: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Epochs without a better validation macro-F1 before stopping.
    pub patience: usize,
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// At most this many training images per epoch (all when None).
    pub images_per_epoch: Option<usize>,
    pub device: String,
    /// Continue from the checkpoint in `checkpoint_dir` (an error when there is none).
    pub resume: bool,
    /// What the card says the data was (e.g. "synthetic: osteoscreen synth --seed 11").
    pub data_description: String,
    pub intended_use: String,
    pub limitations: String,
    /// The input preprocessing, written to the card (`--resume` needs the same).
    #[serde(default)]
    pub normalisation: Normalisation,
    /// The input's side in pixels (`--resume` needs the same).
    #[serde(default = "preprocess::default_side")]
    pub input_size: usize,
    /// How far augmentation imitates vendor processing (`--resume` needs the same).
    #[serde(default)]
    pub processing: Processing,
    /// Start from these weights (same architecture) instead of a seeded random
    /// initialisation; the optimiser and schedule start afresh.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// What part of each radiograph the network reads (`--resume` needs the same).
    #[serde(default)]
    pub framing: Framing,
}

/// What a finished run produced.
pub struct TrainReport {
    pub weights: PathBuf,
    pub card: model::ModelCard,
    pub validation: Metrics,
    pub test: Option<Metrics>,
    pub history: Vec<checkpoint::EpochRecord>,
}

impl TrainOptions {
    /// The network's input: its side, normalisation and framing.
    pub fn input(&self) -> InputSpec {
        InputSpec {
            side: self.input_size,
            norm: self.normalisation,
            framing: self.framing,
        }
    }
}

/// Weight of the T-score loss beside the cross-entropy.
const T_LOSS_WEIGHT: f64 = 0.25;

pub fn train(data: &Dataset, opts: &TrainOptions) -> Result<TrainReport, TrainError> {
    if !InputSpec::valid_side(opts.input_size) {
        return Err(TrainError::Invalid(format!(
            "input size {}: must be {}",
            opts.input_size,
            InputSpec::SIDES
        )));
    }
    let device = model::device(&opts.device)?;
    let parts = split(
        &data.samples,
        opts.val_fraction,
        opts.test_fraction,
        opts.seed,
    );
    if parts.train.is_empty() || parts.val.is_empty() {
        return Err(TrainError::Invalid(format!(
            "too few patients to split: {} training and {} validation images",
            parts.train.len(),
            parts.val.len()
        )));
    }
    eprintln!(
        "split (seed {}): {} training, {} validation, {} test images",
        opts.seed,
        parts.train.len(),
        parts.val.len(),
        parts.test.len()
    );
    let cache = load_all(data, opts.input())?;
    let parts = Split {
        train: parts
            .train
            .into_iter()
            .filter(|&i| cache[i].is_some())
            .collect(),
        val: parts
            .val
            .into_iter()
            .filter(|&i| cache[i].is_some())
            .collect(),
        test: parts
            .test
            .into_iter()
            .filter(|&i| cache[i].is_some())
            .collect(),
    };

    let varmap = VarMap::new();
    let net = XrayNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    checkpoint::init_weights(&varmap, opts.seed, &device)?;
    let mut opt = super::optim::AdamW::new(
        varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        opts.weight_decay,
    );
    std::fs::create_dir_all(&opts.checkpoint_dir)
        .map_err(|e| TrainError::io(&opts.checkpoint_dir, e))?;
    let mut state = State::new(opts, data.samples.len());
    // A resumed run's weights come from its checkpoint, and its state keeps the sha256
    // of the weights it started from.
    if let (Some(init), false) = (&opts.init, opts.resume) {
        // Hashed now: a run writing its result over the same file must still name what
        // it started from.
        state.init_sha256 = Some(checkpoint::start_from(&varmap, init)?);
        eprintln!("starting from the weights in {}", init.display());
    }
    if opts.resume {
        let saved = checkpoint::resume(&opts.checkpoint_dir, &varmap, &mut opt, &device)?
            .ok_or_else(|| {
                TrainError::Invalid(format!(
                    "--resume: no checkpoint in {}",
                    opts.checkpoint_dir.display()
                ))
            })?;
        saved.check_compatible(&state)?;
        eprintln!(
            "resuming after epoch {} (best macro-F1 {:.3} at epoch {})",
            saved.epochs_done, saved.best_f1, saved.best_epoch
        );
        state = saved;
    }

    let class_weight = class_weights(data, &parts.train);
    let per_epoch = opts
        .images_per_epoch
        .unwrap_or(parts.train.len())
        .min(parts.train.len());
    let steps_per_epoch = per_epoch.div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let warmup = ((opts.warmup_epochs * steps_per_epoch as f64) as usize).max(1);

    for epoch in state.epochs_done..opts.epochs {
        let started = Instant::now();
        let mut order = parts.train.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
            opts.seed,
            epoch as u64,
            0,
        )));
        order.truncate(per_epoch);
        let bar = progress::bar(
            steps_per_epoch as u64,
            &format!("epoch {}/{}", epoch + 1, opts.epochs),
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut lr = 0.0;
        for (b, batch) in order.chunks(opts.batch_size).enumerate() {
            let inputs: Vec<Vec<f32>> = batch
                .par_iter()
                .enumerate()
                .map(|(k, &i)| {
                    let pos = (b * opts.batch_size + k) as u64;
                    augmented_input(
                        cache[i].as_ref().expect("loaded"),
                        mix(opts.seed, epoch as u64, pos + 1),
                        opts.input(),
                        opts.processing,
                    )
                })
                .collect();
            let x = stack(&inputs, opts.input_size, &device)?;
            let labels: Vec<u32> = batch
                .iter()
                .map(|&i| data.samples[i].label as u32)
                .collect();
            let out = net.forward_t(&x, true)?;
            let loss = loss(&out, &labels, batch, data, &class_weight, &device)?;
            let grads = loss.backward()?;
            lr = super::optim::learning_rate(opts.learning_rate, opt.step, warmup, total_steps);
            opt.step(&grads, lr)?;
            let predicted = out.logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted
                .iter()
                .zip(&labels)
                .filter(|(p, l)| p == l)
                .count();
            seen += batch.len();
            loss_sum += loss.to_scalar::<f32>()? as f64 * batch.len() as f64;
            bar.set_message(format!(
                "loss {:.3} acc {:.3}",
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let input = opts.input();
        recalibrate_batch_norm(&net, &cache, &parts.train, &device, input)?;
        let val = metrics::compute(&scored(&net, data, &cache, &parts.val, &device, input)?);
        let record = checkpoint::EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy: val.accuracy,
            val_macro_f1: val.macro_f1,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        eprintln!("{}", record.line());
        let improved = state.record(record);
        checkpoint::save(&opts.checkpoint_dir, &varmap, &opt, &state, improved)?;
        if state.epochs_done - state.best_epoch >= opts.patience {
            eprintln!(
                "early stop: no better validation macro-F1 for {} epochs",
                opts.patience
            );
            break;
        }
    }
    finish(data, opts, &varmap, &net, &cache, &parts, &state, &device)
}

/// Reload the best epoch's weights, measure validation and test, profile the features,
/// write weights and card.
#[allow(clippy::too_many_arguments)]
fn finish(
    data: &Dataset,
    opts: &TrainOptions,
    varmap: &VarMap,
    net: &XrayNet,
    cache: &[Option<Grey>],
    parts: &Split,
    state: &State,
    device: &Device,
) -> Result<TrainReport, TrainError> {
    checkpoint::load_best(&opts.checkpoint_dir, varmap)?;
    let input = opts.input();
    let validation = metrics::compute(&scored(net, data, cache, &parts.val, device, input)?);
    let test = if parts.test.is_empty() {
        None
    } else {
        Some(metrics::compute(&scored(
            net,
            data,
            cache,
            &parts.test,
            device,
            input,
        )?))
    };
    let profile = checkpoint::feature_profile(net, cache, parts, device, input)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let weights = opts.out.join(format!("{}.safetensors", opts.name));
    varmap.save(&weights).map_err(TrainError::Candle)?;
    let card = checkpoint::card(
        data,
        opts,
        parts,
        state,
        &validation,
        test.as_ref(),
        profile,
        &weights,
    )?;
    card.write(&weights.with_extension("json"))?;
    Ok(TrainReport {
        weights,
        card,
        validation,
        test,
        history: state.history.clone(),
    })
}

/// Decode every image once, in parallel; failures are reported and left out.
fn load_all(data: &Dataset, input: InputSpec) -> Result<Vec<Option<Grey>>, TrainError> {
    let bar = progress::bar(data.samples.len() as u64, "decoding images");
    let loaded: Vec<Result<Grey, images::ImageLoadError>> = data
        .samples
        .par_iter()
        .map(|s| {
            let r = images::load(&s.image, s.view, input);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut failed = 0;
    let cache: Vec<Option<Grey>> = loaded
        .into_iter()
        .map(|r| match r {
            Ok(g) => Some(g),
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("left out: {e}");
                }
                None
            }
        })
        .collect();
    if failed > 0 {
        eprintln!(
            "{failed} of {} images could not be read and are left out",
            cache.len()
        );
    }
    if failed == cache.len() {
        return Err(TrainError::Invalid("no image could be read".into()));
    }
    Ok(cache)
}

/// The augmented network input for one cached image.
fn augmented_input(g: &Grey, seed: u64, input: InputSpec, processing: Processing) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let img = augment(
        Img {
            rows: g.rows,
            cols: g.cols,
            v: g.to_f32(),
        },
        processing,
        &mut rng,
    );
    preprocess::prepare(&img.v, img.rows, img.cols, input)
}

pub(crate) fn stack(
    inputs: &[Vec<f32>],
    side: usize,
    device: &Device,
) -> Result<Tensor, TrainError> {
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(
        flat,
        (inputs.len(), 1, side, side),
        device,
    )?)
}

/// Class-weighted cross-entropy plus T_LOSS_WEIGHT x the mean squared T-score error over
/// the images that have a T-score.
fn loss(
    out: &model::net::Output,
    labels: &[u32],
    batch: &[usize],
    data: &Dataset,
    class_weight: &[f32; 3],
    device: &Device,
) -> Result<Tensor, TrainError> {
    let n = labels.len();
    let w: Vec<f32> = labels.iter().map(|&l| class_weight[l as usize]).collect();
    let w_sum: f32 = w.iter().sum();
    let w = Tensor::from_vec(w.iter().map(|x| x / w_sum).collect::<Vec<_>>(), n, device)?;
    let idx = Tensor::from_vec(labels.to_vec(), (n, 1), device)?;
    let logp = candle_nn::ops::log_softmax(&out.logits, D::Minus1)?;
    let picked = logp.gather(&idx, 1)?.squeeze(1)?;
    let ce = (picked * w)?.sum_all()?.neg()?;
    let (t, mask): (Vec<f32>, Vec<f32>) = batch
        .iter()
        .map(|&i| match data.samples[i].t_score {
            Some(t) => (t, 1.0),
            None => (0.0, 0.0),
        })
        .unzip();
    let known: f32 = mask.iter().sum();
    if known == 0.0 {
        return Ok(ce);
    }
    let t = Tensor::from_vec(t, n, device)?;
    let mask = Tensor::from_vec(
        mask.iter().map(|m| m / known).collect::<Vec<_>>(),
        n,
        device,
    )?;
    let mse = ((&out.t_score - t)?.sqr()? * mask)?.sum_all()?;
    Ok((ce + (mse * T_LOSS_WEIGHT)?)?)
}

/// Inverse class frequency in the training part, normalised to mean 1, capped at 5.
fn class_weights(data: &Dataset, train: &[usize]) -> [f32; 3] {
    let counts = data.class_counts_of(train.iter().copied());
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    let total: usize = counts.iter().sum();
    let mut w = [0f32; 3];
    for c in 0..3 {
        if counts[c] > 0 {
            w[c] = (total as f32 / (present as f32 * counts[c] as f32)).min(5.0);
        }
    }
    w
}

/// Batch-norm running statistics from un-augmented training images ("precise BN"):
/// during training they follow augmented batches, and validation (like the daemon) sees
/// clean images; without this, validation swung between epochs by 20 points. 24 batches
/// at momentum 0.1 leave under 10 % of the augmented statistics.
fn recalibrate_batch_norm(
    net: &XrayNet,
    cache: &[Option<Grey>],
    train: &[usize],
    device: &Device,
    input: InputSpec,
) -> Result<(), TrainError> {
    let step = (train.len() / (24 * 16)).max(1);
    let chosen: Vec<usize> = train.iter().step_by(step).take(24 * 16).copied().collect();
    forward_clean(net, cache, &chosen, device, true, input)?;
    Ok(())
}

/// The network's outputs for the un-augmented images `idx`, 16 at a time; `train` runs
/// batch norm in training mode (updating its running statistics). The outputs are
/// detached: each would otherwise keep its batch's whole autograd graph (every layer's
/// activations, about 20 MB an image), and a validation set of 900 images ran a 24 GiB
/// machine out of memory.
pub(crate) fn forward_clean(
    net: &XrayNet,
    cache: &[Option<Grey>],
    idx: &[usize],
    device: &Device,
    train: bool,
    input: InputSpec,
) -> Result<Vec<model::net::Output>, TrainError> {
    idx.chunks(16)
        .map(|chunk| {
            let inputs: Vec<Vec<f32>> = chunk
                .par_iter()
                .map(|&i| input_of(cache[i].as_ref().expect("loaded"), input))
                .collect();
            let out = net.forward_t(&stack(&inputs, input.side, device)?, train)?;
            Ok(model::net::Output {
                logits: out.logits.detach(),
                t_score: out.t_score.detach(),
                features: out.features.detach(),
            })
        })
        .collect()
}

/// Un-augmented predictions for `idx`, fused per study.
fn scored(
    net: &XrayNet,
    data: &Dataset,
    cache: &[Option<Grey>],
    idx: &[usize],
    device: &Device,
    input: InputSpec,
) -> Result<Vec<metrics::Scored>, TrainError> {
    let mut preds = Vec::with_capacity(idx.len());
    for out in forward_clean(net, cache, idx, device, false, input)? {
        let probs = candle_nn::ops::softmax(&out.logits, D::Minus1)?.to_vec2::<f32>()?;
        let t = out.t_score.to_vec1::<f32>()?;
        preds.extend(probs.into_iter().zip(t).map(|(p, t)| ImagePred {
            probabilities: [p[0], p[1], p[2]],
            t_score: t,
        }));
    }
    Ok(by_study(&data.samples, idx, &preds))
}

/// A seed for (run seed, epoch, position): distinct streams, same on every machine.
fn mix(seed: u64, epoch: u64, pos: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(pos.wrapping_mul(0x94D0_49BB_1331_11EB));
    z ^= z >> 31;
    z = z.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z ^ (z >> 29)
}

/// Where checkpoints go by default.
pub fn default_checkpoint_dir(out: &Path, name: &str) -> PathBuf {
    out.join(format!("{name}-checkpoint"))
}
