//! `osteoscreen adapt`: a model's batch-norm statistics re-estimated on a site's own
//! unlabelled radiographs (`train::adapt`), written as a new model for `[model] weights`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::card::ModelCard;
use osteoscreen::model::device;
use osteoscreen::train::adapt::{adapt, radiographs};

#[derive(Args)]
pub struct AdaptArgs {
    /// Weights (.safetensors) to adapt; the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    /// The site's radiographs: a folder of DICOM files (the lumbar AP and lateral CR/DX
    /// images the daemon would analyse; CTs, reports, other body parts and obliques are
    /// passed over) or PNGs, or a dataset in any layout `train` reads (its labels are not
    /// used). At least 32 images; at most 1,024 are read (a seeded sample).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder for `<name>.safetensors` and `<name>.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the adapted model (default: the model's name with "-adapted").
    #[arg(long)]
    pub name: Option<String>,
    /// What the images are, for the card (default: "site radiographs"; the card does not
    /// record the folder, whose name may be a patient's).
    #[arg(long)]
    pub description: Option<String>,
    /// Seed of the batches' order (the same images and seed give the same weights).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: AdaptArgs) -> anyhow::Result<ExitCode> {
    let card = ModelCard::read(&args.model.with_extension("json"))?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-adapted", card.name));
    let images = radiographs(&args.data)?;
    eprintln!("{} radiographs under {}", images.len(), args.data.display());
    let description = args
        .description
        .clone()
        .unwrap_or_else(|| "site radiographs".to_string());
    let done = adapt(
        &args.model,
        &images,
        &args.out,
        &name,
        &description,
        args.seed,
        &device(&args.device)?,
    )?;
    if done.unreadable > 0 {
        eprintln!(
            "{} images could not be read and were left out",
            done.unreadable
        );
    }
    println!(
        "adapted to {} radiographs: wrote {} (sha256 {}) and {}",
        done.images,
        done.weights.display(),
        &done.sha256[..16],
        done.card.display()
    );
    Ok(ExitCode::SUCCESS)
}
