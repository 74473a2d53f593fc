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

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::evaluate::input_of;
use super::images::{self, Grey};
use super::{progress, TrainError};
use crate::model::adabn;
use crate::model::card::ModelCard;

pub use crate::model::adabn::{MAX_IMAGES, MIN_IMAGES};

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
    let mut images = images.to_vec();
    if images.len() > MAX_IMAGES {
        images.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        images.truncate(MAX_IMAGES);
    }
    let input = card.input_spec();
    let bar = progress::bar(images.len() as u64, "decoding images");
    let cache: Vec<Option<Grey>> = images
        .par_iter()
        .map(|p| {
            let g = images::load(p, None, input).ok();
            bar.inc(1);
            g
        })
        .collect();
    bar.finish_and_clear();
    let readable: Vec<&Grey> = cache.iter().flatten().collect();
    if readable.len() < MIN_IMAGES {
        return Err(TrainError::Invalid(format!(
            "{} readable radiographs of {}: adaptation needs at least {MIN_IMAGES}",
            readable.len(),
            images.len()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let how = adabn::Adaptation {
        name,
        description,
        seed,
    };
    let adapted = adabn::adapt_to(
        weights,
        &card,
        readable.len(),
        &|i| input_of(readable[i], input),
        &weights_out,
        &how,
        device,
    )?;
    Ok(Adapted {
        card: weights_out.with_extension("json"),
        weights: weights_out,
        images: readable.len(),
        unreadable: images.len() - readable.len(),
        sha256: adapted.weights_sha256,
    })
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
