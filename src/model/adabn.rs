//! Batch-norm statistics measured again on other images (AdaBN, Li et al., "Revisiting
//! batch normalization for practical domain adaptation", 2016): the core shared by
//! `osteoscreen adapt` (`train::adapt`, a folder of a site's radiographs) and the daemon's
//! own site adaptation (`analysis::site_adapt`, the radiographs it received). Weights and
//! heads stay as trained; each batch norm's running mean and variance become the average
//! of many batches' own statistics, so no label is needed.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::card::{sha256_file, ModelCard};
use super::error::ModelError;
use super::net::XrayNet;

/// Images in one measured batch.
pub const BATCH: usize = 16;

/// Fewest images worth adapting on: with fewer, a batch's statistics are mostly the few
/// patients in it, not the site.
pub const MIN_IMAGES: usize = 32;

/// Most images an adaptation holds (a seeded sample of more is read): enough for a site's
/// statistics, and memory stays bounded (about 0.25 MB an image as the model reads it).
pub const MAX_IMAGES: usize = 1024;

/// Fewest batches measured (more when the images fill more): each batch's statistics are
/// mostly its 16 patients, their average over many is the site.
const BATCHES: usize = 48;

/// candle_nn's default batch-norm momentum, which `XrayNet`'s batch norms use: each
/// training-mode pass sets running = (1 - m) x running + m x batch. Each batch's own
/// statistics are recovered from that and all are averaged with equal weight.
const MOMENTUM: f64 = 0.1;

/// Measure the running statistics of `net` (its variables in `varmap`) again on `count`
/// images, `input_of(i)` giving image i prepared as the model reads it. Whole batches of
/// `BATCH` only (a short last batch would weigh a few images as much as 16); each pass
/// reshuffles with `rng`, so images left out of one pass join the next. Returns the number
/// of batches measured.
pub fn remeasure(
    varmap: &VarMap,
    net: &XrayNet,
    count: usize,
    side: usize,
    input_of: &(dyn Fn(usize) -> Vec<f32> + Sync),
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> candle_core::Result<usize> {
    let per_pass = (count / BATCH).max(1);
    let passes = BATCHES.div_ceil(per_pass);
    let stats = running_statistics(varmap);
    let mut sums: Vec<Vec<f64>> = stats
        .iter()
        .map(|(_, v)| vec![0.0; v.elem_count()])
        .collect();
    let mut before = values(&stats)?;
    let mut batches = 0usize;
    for _ in 0..passes {
        let mut order: Vec<usize> = (0..count).collect();
        order.shuffle(rng);
        for batch in order.chunks_exact(BATCH.min(count)).take(per_pass) {
            let inputs: Vec<f32> = batch.par_iter().flat_map(|&i| input_of(i)).collect();
            let x = Tensor::from_vec(inputs, (batch.len(), 1, side, side), device)?;
            net.forward_t(&x, true)?;
            let after = values(&stats)?;
            for ((sum, a), b) in sums.iter_mut().zip(&after).zip(&before) {
                for ((s, a), b) in sum.iter_mut().zip(a).zip(b) {
                    *s += (*a as f64 - (1.0 - MOMENTUM) * *b as f64) / MOMENTUM;
                }
            }
            before = after;
            batches += 1;
        }
    }
    for ((_, var), sum) in stats.iter().zip(sums) {
        let mean: Vec<f32> = sum.iter().map(|s| (s / batches as f64) as f32).collect();
        var.set(&Tensor::from_vec(mean, var.dims(), device)?)?;
    }
    Ok(batches)
}

/// What an adaptation changed, for the adapted model's card.
pub struct Adaptation<'a> {
    pub name: &'a str,
    /// What the images were (never a path: a folder's name may be a patient's).
    pub description: &'a str,
    pub seed: u64,
}

/// The card of `card`'s weights adapted as `how` says on `images` images (`batches`
/// batches' statistics averaged), whose file has sha256 `sha`.
pub fn adapted_card(
    card: &ModelCard,
    how: &Adaptation,
    images: usize,
    batches: usize,
    sha: &str,
) -> ModelCard {
    let mut training = card
        .training
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = training.as_object_mut() {
        map.insert(
            "adapted".into(),
            serde_json::json!({
                "method": "batch-norm statistics re-estimated on unlabelled radiographs (AdaBN); weights as trained",
                "from_sha256": card.weights_sha256,
                "origin_sha256": adapted_origin(card).unwrap_or(&card.weights_sha256),
                "images": images,
                "data": how.description,
                "seed": how.seed,
                "batches": batches,
                "note": "metrics, feature profile and covariate model are those of the weights before adaptation; refit the covariate model with osteoscreen calibrate on labelled local studies",
            }),
        );
    }
    ModelCard {
        name: how.name.to_string(),
        version: format!("{}+adapted", card.version),
        training_data: format!(
            "{}; batch-norm statistics adapted to {} unlabelled radiographs ({})",
            card.training_data, images, how.description
        ),
        weights_sha256: sha.to_string(),
        training: Some(training),
        ..card.clone()
    }
}

/// How many images a card's weights were adapted on (0: not adapted).
pub fn adapted_images(card: &ModelCard) -> usize {
    card.training
        .as_ref()
        .and_then(|t| t.get("adapted")?.get("images")?.as_u64())
        .unwrap_or(0) as usize
}

/// The sha256 of the weights a card's model was adapted from, when it was adapted.
pub fn adapted_from(card: &ModelCard) -> Option<&str> {
    card.training
        .as_ref()?
        .get("adapted")?
        .get("from_sha256")?
        .as_str()
}

/// The sha256 of the weights as trained, before any adaptation: what an adapted card's
/// heads and probes were fitted on (adapting only re-measures batch-norm statistics, so
/// adapting an adapted model again keeps that origin). Cards adapted before it was
/// recorded give the weights they were adapted from.
pub fn adapted_origin(card: &ModelCard) -> Option<&str> {
    let adapted = card.training.as_ref()?.get("adapted")?;
    adapted
        .get("origin_sha256")
        .or_else(|| adapted.get("from_sha256"))?
        .as_str()
}

/// `adapt_to` on prepared images held in memory (side² values each).
pub fn adapt_inputs(
    weights: &Path,
    card: &ModelCard,
    inputs: &[Vec<f32>],
    out: &Path,
    how: &Adaptation,
    device: &Device,
) -> Result<ModelCard, ModelError> {
    let side = card.input_spec().side;
    if inputs.iter().any(|x| x.len() != side * side) {
        return Err(ModelError::InputSize { side });
    }
    adapt_to(
        weights,
        card,
        inputs.len(),
        &|i| inputs[i].clone(),
        out,
        how,
        device,
    )
}

/// Adapt the weights `weights` (whose card is `card`, already checked) to `count` images,
/// `input_of(i)` giving image i as the model reads it (at least `MIN_IMAGES`), batches
/// drawn from `how.seed`, and write them to `out` with their card beside it (`out` with
/// .json). Both files are written under temporary names and renamed, so a reader never
/// sees half of either. Returns the new card.
pub fn adapt_to(
    weights: &Path,
    card: &ModelCard,
    count: usize,
    input_of: &(dyn Fn(usize) -> Vec<f32> + Sync),
    out: &Path,
    how: &Adaptation,
    device: &Device,
) -> Result<ModelCard, ModelError> {
    let side = card.input_spec().side;
    if count < MIN_IMAGES {
        return Err(ModelError::TooFewImages {
            count,
            least: MIN_IMAGES,
        });
    }
    let varmap = VarMap::new();
    let net = XrayNet::new(VarBuilder::from_varmap(&varmap, DType::F32, device))
        .map_err(ModelError::Network)?;
    varmap
        .clone()
        .load(weights)
        .map_err(|source| ModelError::Weights {
            path: weights.to_path_buf(),
            source,
        })?;
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(how.seed);
    let batches = remeasure(&varmap, &net, count, side, input_of, &mut rng, device)?;
    let staged = out.with_extension("safetensors.partial");
    varmap.save(&staged).map_err(|source| ModelError::Weights {
        path: staged.clone(),
        source,
    })?;
    let sha = sha256_file(&staged)?;
    let adapted = adapted_card(card, how, count, batches, &sha);
    let card_path = out.with_extension("json");
    let staged_card = out.with_extension("json.partial");
    adapted.write(&staged_card)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::WeightsFile { path, source }
    };
    // The weights first: a card naming weights not yet in place would fail its sha256
    // check and be passed over, never loaded against other weights.
    std::fs::rename(&staged, out).map_err(io(out))?;
    std::fs::rename(&staged_card, &card_path).map_err(io(&card_path))?;
    Ok(adapted)
}

/// The batch norms' running means and variances, by name.
fn running_statistics(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut stats: Vec<(String, candle_core::Var)> = data
        .iter()
        .filter(|(name, _)| name.contains(".running_"))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    stats
}

fn values(stats: &[(String, candle_core::Var)]) -> candle_core::Result<Vec<Vec<f32>>> {
    stats
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all()?.to_vec1::<f32>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapted_weights_keep_the_heads_change_the_statistics_and_repeat_with_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.safetensors");
        let card = super::super::XrayModel::create_untrained(&base).unwrap();
        let side = card.input_spec().side;
        // Brighter and more varied than the untrained network's zero-mean statistics.
        let inputs: Vec<Vec<f32>> = (0..40)
            .map(|k| {
                (0..side * side)
                    .map(|i| 1.0 + ((i * 7 + k * 13) % 29) as f32 / 10.0)
                    .collect()
            })
            .collect();
        let how = Adaptation {
            name: "site",
            description: "test images",
            seed: 3,
        };
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        let ca = adapt_inputs(&base, &card, &inputs, &a, &how, &Device::Cpu).unwrap();
        let cb = adapt_inputs(&base, &card, &inputs, &b, &how, &Device::Cpu).unwrap();
        assert_eq!(ca.weights_sha256, cb.weights_sha256, "same images and seed");
        assert_ne!(ca.weights_sha256, card.weights_sha256);
        assert_eq!(adapted_from(&ca), Some(card.weights_sha256.as_str()));
        assert!(ca.version.ends_with("+adapted"));
        ca.check_weights(&a).unwrap();
        let load = |p: &Path| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
        let (before, after) = (load(&base), load(&a));
        let differs = |name: &str| {
            let x = before[name]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let y = after[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            x != y
        };
        assert!(differs("stem.bn.running_mean"));
        assert!(!differs("class_head.weight") && !differs("stem.conv.weight"));
        assert!(!dir.path().join("a.safetensors.partial").exists());
        // Too few images, or images of another size, are refused.
        let few = &inputs[..MIN_IMAGES - 1];
        assert!(adapt_inputs(&base, &card, few, &a, &how, &Device::Cpu).is_err());
        let wrong = vec![vec![0.0; 10]; MIN_IMAGES];
        assert!(adapt_inputs(&base, &card, &wrong, &a, &how, &Device::Cpu).is_err());
    }
}
