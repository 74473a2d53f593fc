//! `osteoscreen readout`: fit the card's read-out (how the network's T-score becomes the
//! reported T-score and class, `model::readout`) on labelled studies of a look the weights
//! did not learn, say how it does there by k-fold cross-validation against the network's
//! own classes, and write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, ModelCard, XrayModel};
use osteoscreen::train::adapt::adapt;
use osteoscreen::train::readout::fit_readout;

use super::data_args::{DataArgs, Part};

#[derive(Args)]
pub struct ReadoutArgs {
    /// Weights (.safetensors); the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Also read the studies with the weights adapted to them (batch-norm statistics,
    /// labels unused), as the daemon reads a site after its first radiographs, and fit on
    /// both readings.
    #[arg(long)]
    pub site_adapt: bool,
    /// Folds for the cross-validated comparison with the network's own classes.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Where to write the card with the read-out; default: the model's card itself.
    #[arg(long)]
    pub card_out: Option<PathBuf>,
    /// What the studies are, for the card (default: the data path and split).
    #[arg(long)]
    pub description: Option<String>,
    /// Write the read-out even when it did not beat the network's own classes in
    /// cross-validation (without it the card is left as it was).
    #[arg(long)]
    pub force: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: ReadoutArgs) -> anyhow::Result<ExitCode> {
    let card_path = args
        .card_out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("json"));
    let model = XrayModel::load(&args.model, None, device(&args.device)?)?;
    let data = &args.data;
    if data.split == Part::All && model.card.trained_on(&data.data) {
        anyhow::bail!(
            "{} is the data the model was trained on: a read-out is fitted on studies of a look the weights did not learn",
            data.data.display()
        );
    }
    let (dataset, idx) = data.pick(&model)?;
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "{} ({} split{})",
            data.data.display(),
            data.split_name(),
            if args.site_adapt {
                "; as given and adapted to them"
            } else {
                ""
            }
        )
    });
    // Kept until the fit is done: the adapted weights live in it.
    let scratch = tempfile::tempdir()?;
    let adapted = if args.site_adapt {
        let mut images: Vec<PathBuf> = idx
            .iter()
            .map(|&i| dataset.samples[i].image.clone())
            .collect();
        images.sort();
        images.dedup();
        let done = adapt(
            &args.model,
            &images,
            scratch.path(),
            "readout-set",
            "the studies the read-out is fitted on",
            1,
            &device(&args.device)?,
        )?;
        eprintln!(
            "adapted to the {} radiographs (batch-norm statistics; labels unused)",
            done.images
        );
        Some(XrayModel::load(&done.weights, None, device(&args.device)?)?)
    } else {
        None
    };
    let models: Vec<&XrayModel> = std::iter::once(&model).chain(adapted.as_ref()).collect();
    let fitted = fit_readout(&models, &dataset, &idx, args.folds, &description)?;
    println!("{}", fitted.summary());
    if !fitted.helps() && !args.force {
        eprintln!(
            "the read-out did not beat the network's own classes on these studies, so the card is left as it was (--force writes it anyway)"
        );
        return Ok(ExitCode::FAILURE);
    }
    ModelCard {
        readout: Some(fitted.readout),
        ..model.card.clone()
    }
    .write(&card_path)?;
    println!("wrote the read-out into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}
