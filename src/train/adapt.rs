//! Site adaptation: a model's batch-norm statistics re-estimated on a site's own
//! unlabelled radiographs (AdaBN, Li et al., "Revisiting batch normalization for practical
//! domain adaptation", 2016). A detector, a vendor's processing or a generator the weights
//! never saw shifts every layer's feature statistics; the heads then read compressed,
//! biased T-scores (BENCHMARKS.md, twenty-second session). Weights and heads stay as
//! trained; only the per-channel means and variances the network normalises by are
//! measured again, so no label is needed. `osteoscreen adapt` writes the result as a new
//! model (weights + card) that the daemon loads like any other.

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

/// Batch-norm updates made in all (momentum 0.1 each: the trained statistics keep
/// 0.9^48, under 1 %, of their weight).
const UPDATES: usize = 48;

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
    let per_pass = (readable.len() / 16).max(1);
    let passes = UPDATES.div_ceil(per_pass);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bar = progress::bar((passes * per_pass) as u64, "measuring batch statistics");
    for _ in 0..passes {
        let mut order = readable.clone();
        order.shuffle(&mut rng);
        for batch in order.chunks_exact(16).take(per_pass) {
            forward_clean(&net, &cache, batch, device, true, input)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let weights_out = out.join(format!("{name}.safetensors"));
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
                "note": "metrics are those of the weights before adaptation, on their own held-out test",
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

/// The radiographs under `root`: a dataset's images when `root` is in a layout `train`
/// reads (labels unused), else every PNG and every DICOM file whose modality is CR or DX
/// (a PACS export: CTs and reports are passed over).
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
            Ok(files.into_par_iter().filter(|p| is_radiograph(p)).collect())
        }
        Err(e) => Err(e.into()),
    }
}

fn is_radiograph(path: &Path) -> bool {
    let png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    png || crate::dicom::open::open_header(path, &Default::default()).is_ok_and(|obj| {
        obj.element(dicom_dictionary_std::tags::MODALITY)
            .ok()
            .and_then(|e| e.to_str().ok())
            .is_some_and(|m| matches!(m.trim(), "CR" | "DX"))
    })
}
