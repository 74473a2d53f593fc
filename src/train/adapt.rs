//! Site adaptation: a model's batch-norm statistics re-estimated on a site's own
//! unlabelled radiographs (AdaBN, Li et al., "Revisiting batch normalization for practical
//! domain adaptation", 2016). A detector, a vendor's processing or a generator the weights
//! never saw shifts every layer's feature statistics; the heads then read compressed,
//! biased T-scores (BENCHMARKS.md, twenty-second session). Weights and heads stay as
//! trained; only the per-channel means and variances the network normalises by are
//! measured again (the average of many batches' own statistics), so no label is needed.
//! `osteoscreen adapt` writes the result as a new model (weights + card) that the daemon
//! loads like any other.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::images::{self, Grey};
use super::trainer::forward_clean;
use super::{progress, TrainError};
use crate::model::card::{sha256_file, ModelCard};
use crate::model::net::XrayNet;

/// Fewest readable images worth adapting on: with fewer, a batch's statistics are mostly
/// the few patients in it, not the site.
pub const MIN_IMAGES: usize = 32;

/// At most this many images are read (a seeded sample of more): enough for the site's
/// statistics, and memory stays bounded (about 0.3 MB an image).
pub const MAX_IMAGES: usize = 1024;

/// Fewest batches measured (more when the images fill more): each batch's statistics are
/// mostly its 16 patients, their average over many is the site.
const BATCHES: usize = 48;

/// candle_nn's default batch-norm momentum, which `XrayNet`'s batch norms use: each
/// training-mode pass sets running = (1 - m) x running + m x batch. `adapt` recovers each
/// batch's own statistics from that and averages them all with equal weight.
const MOMENTUM: f64 = 0.1;

/// What `adapt` did.
#[derive(Debug)]
pub struct Adapted {
    pub weights: PathBuf,
    pub card: PathBuf,
    pub images: usize,
    pub unreadable: usize,
    pub sha256: String,
}

/// Re-estimate the batch-norm statistics of the model `weights` (card beside it) on the
/// radiographs `images` and write `<out>/<name>.safetensors` + `.json`. Order and batches
/// are drawn from `seed`, so the same images give the same weights.
pub fn adapt(
    weights: &Path,
    images: &[PathBuf],
    out: &Path,
    name: &str,
    description: &str,
    seed: u64,
    device: &Device,
) -> Result<Adapted, TrainError> {
    let card = ModelCard::read(&weights.with_extension("json"))?;
    card.check_weights(weights)?;
    let weights_out = out.join(format!("{name}.safetensors"));
    if crate::fsutil::same_file(&weights_out, weights) {
        return Err(TrainError::Invalid(format!(
            "{} is the model being adapted: give another --out or --name",
            weights_out.display()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = images.to_vec();
    if images.len() > MAX_IMAGES {
        images.shuffle(&mut rng);
        images.truncate(MAX_IMAGES);
    }
    let input = card.input_spec();
    let varmap = VarMap::new();
    let net = XrayNet::new(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    super::checkpoint::start_from(&varmap, weights)?;

    let bar = progress::bar(images.len() as u64, "decoding images");
    let cache: Vec<Option<Grey>> = images
        .par_iter()
        .map(|p| {
            let g = images::load(p, input.source_side()).ok();
            bar.inc(1);
            g
        })
        .collect();
    bar.finish_and_clear();
    let readable: Vec<usize> = (0..cache.len()).filter(|&i| cache[i].is_some()).collect();
    if readable.len() < MIN_IMAGES {
        return Err(TrainError::Invalid(format!(
            "{} readable radiographs of {}: adaptation needs at least {MIN_IMAGES}",
            readable.len(),
            images.len()
        )));
    }

    // Whole batches of 16 only: a short last batch would weigh a few images as much as 16.
    // Each pass reshuffles, so the images leave out of one pass join the next.
    let per_pass = (readable.len() / 16).max(1);
    let passes = BATCHES.div_ceil(per_pass);
    let stats = running_statistics(&varmap);
    let mut sums: Vec<Vec<f64>> = Vec::with_capacity(stats.len());
    for (_, var) in &stats {
        sums.push(vec![0.0; var.elem_count()]);
    }
    let bar = progress::bar((passes * per_pass) as u64, "measuring batch statistics");
    let mut batches = 0usize;
    let mut before = values(&stats)?;
    for _ in 0..passes {
        let mut order = readable.clone();
        order.shuffle(&mut rng);
        for batch in order.chunks_exact(16).take(per_pass) {
            forward_clean(&net, &cache, batch, device, true, input)?;
            let after = values(&stats)?;
            for ((sum, a), b) in sums.iter_mut().zip(&after).zip(&before) {
                for ((s, a), b) in sum.iter_mut().zip(a).zip(b) {
                    *s += (*a as f64 - (1.0 - MOMENTUM) * *b as f64) / MOMENTUM;
                }
            }
            before = after;
            batches += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    for ((_, var), sum) in stats.iter().zip(sums) {
        let mean: Vec<f32> = sum.iter().map(|s| (s / batches as f64) as f32).collect();
        var.set(&candle_core::Tensor::from_vec(mean, var.dims(), device)?)?;
    }

    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    varmap.save(&weights_out)?;
    let sha = sha256_file(&weights_out)?;
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
                "images": readable.len(),
                "data": description,
                "seed": seed,
                "batches": batches,
                "note": "metrics, feature profile and covariate model are those of the weights before adaptation; refit the covariate model with osteoscreen calibrate on labelled local studies",
            }),
        );
    }
    let adapted = ModelCard {
        name: name.to_string(),
        version: format!("{}+adapted", card.version),
        training_data: format!(
            "{}; batch-norm statistics adapted to {} unlabelled radiographs ({description})",
            card.training_data,
            readable.len()
        ),
        weights_sha256: sha.clone(),
        training: Some(training),
        ..card
    };
    let card_out = weights_out.with_extension("json");
    adapted.write(&card_out)?;
    Ok(Adapted {
        weights: weights_out,
        card: card_out,
        images: readable.len(),
        unreadable: images.len() - readable.len(),
        sha256: sha,
    })
}

/// The batch norms' running means and variances, by name.
fn running_statistics(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut stats: Vec<(String, candle_core::Var)> = data
        .iter()
        .filter(|(name, _)| name.contains(".running_"))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    stats
}

fn values(stats: &[(String, candle_core::Var)]) -> Result<Vec<Vec<f32>>, TrainError> {
    stats
        .iter()
        .map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        .collect()
}

/// The radiographs under `root`: a dataset's images when `root` is in a layout `train`
/// reads (labels unused), else every PNG and the DICOM images the daemon would analyse as
/// lumbar radiographs (CR and DX of the lumbar spine, AP or lateral, by the default
/// `[analysis]` selection rules; CTs, reports, other body parts and obliques are passed
/// over).
pub fn radiographs(root: &Path) -> Result<Vec<PathBuf>, TrainError> {
    use super::data::{self, ColumnOverrides, DataError};
    match data::open(root, &ColumnOverrides::default()) {
        Ok(d) => {
            let mut paths: Vec<PathBuf> = d.samples.into_iter().map(|s| s.image).collect();
            paths.sort();
            paths.dedup();
            Ok(paths)
        }
        Err(DataError::Unknown(_)) => {
            let files = crate::dicom::files::collect_files(&[root.to_path_buf()])
                .map_err(|e| TrainError::io(root, e))?;
            let (png, dicom): (Vec<PathBuf>, Vec<PathBuf>) =
                files.into_iter().partition(|p| images::is_png(p));
            let (headers, _) = crate::analysis::header::read_headers(&dicom);
            let chosen = crate::analysis::select::select(&headers, &Default::default());
            let mut paths: Vec<PathBuf> = chosen
                .radiographs
                .into_iter()
                .map(|(info, _)| info.path)
                .chain(png)
                .collect();
            paths.sort();
            Ok(paths)
        }
        Err(e) => Err(e.into()),
    }
}
