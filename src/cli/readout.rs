//! `osteoscreen readout`: fit the card's read-out (how the network's T-score becomes the
//! reported T-score and class, `model::readout`) on labelled studies of a look the weights
//! did not learn, say how it does there by k-fold cross-validation against the network's
//! own classes, and write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, ModelCard, XrayModel};
use osteoscreen::train::adapt::adapt;
use osteoscreen::train::readout::{fit_readout, ReadoutSet};

use super::data_args::{DataArgs, Part};

#[derive(Args)]
pub struct ReadoutArgs {
    /// Weights (.safetensors); the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// More labelled studies of other looks (any layout `train` reads, all of each), fitted
    /// on together with --data; with --site-adapt each is adapted to on its own, as a site.
    #[arg(long = "more-data", value_name = "DATA")]
    pub more_data: Vec<PathBuf>,
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
    let mut picked = vec![data.pick(&model)?];
    for more in &args.more_data {
        if model.card.trained_on(more) {
            anyhow::bail!(
                "{} is the data the model was trained on: a read-out is fitted on studies of a look the weights did not learn",
                more.display()
            );
        }
        let all = DataArgs {
            data: more.clone(),
            split: Part::All,
            seed: None,
            val_fraction: data.val_fraction,
            test_fraction: data.test_fraction,
            columns: data.columns.clone(),
        };
        picked.push(all.pick(&model)?);
    }
    let mut description = args.description.clone().unwrap_or_else(|| {
        let mut named = format!("{} ({} split)", data.data.display(), data.split_name());
        for more in &args.more_data {
            named += &format!(", {}", more.display());
        }
        named
    });
    if args.site_adapt {
        description += "; each set as given and adapted to it";
    }
    // Kept until the fit is done: the adapted weights live in them.
    let scratch = tempfile::tempdir()?;
    let mut adapted = Vec::new();
    if args.site_adapt {
        for (k, (dataset, idx)) in picked.iter().enumerate() {
            let mut images: Vec<PathBuf> = idx
                .iter()
                .map(|&i| dataset.samples[i].image.clone())
                .collect();
            images.sort();
            images.dedup();
            let dir = scratch.path().join(k.to_string());
            std::fs::create_dir_all(&dir)?;
            let done = adapt(
                &args.model,
                &images,
                &dir,
                "readout-set",
                "the studies the read-out is fitted on",
                1,
                &device(&args.device)?,
            )?;
            eprintln!(
                "adapted to the {} radiographs of set {} (batch-norm statistics; labels unused)",
                done.images,
                k + 1
            );
            adapted.push(XrayModel::load(&done.weights, None, device(&args.device)?)?);
        }
    }
    let sets: Vec<ReadoutSet> = picked
        .iter()
        .enumerate()
        .map(|(k, (dataset, idx))| ReadoutSet {
            models: std::iter::once(&model).chain(adapted.get(k)).collect(),
            dataset,
            idx,
        })
        .collect();
    let fitted = fit_readout(&sets, args.folds, &description)?;
    println!("{}", fitted.summary());
    if !fitted.helps() && !args.force {
        eprintln!(
            "the read-out did not beat the network's own classes on these studies, so the card is left as it was (--force writes it anyway)"
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut card = ModelCard {
        readout: Some(fitted.readout),
        ..model.card.clone()
    };
    if let Some(why) = card.drop_stale_covariates() {
        eprintln!("{why}; the card is written without it");
    }
    card.write(&card_path)?;
    println!("wrote the read-out into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}
