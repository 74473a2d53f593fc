//! `osteoscreen calibrate`: fit the card's covariate model (the radiographs' result
//! combined with the patient's age) on labelled studies, say how it does there by k-fold
//! cross-validation against the radiographs alone, and write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, ModelCard, XrayModel};
use osteoscreen::train::calibrate::calibrate;

use super::data_args::{DataArgs, Part};

#[derive(Args)]
pub struct CalibrateArgs {
    /// Weights (.safetensors); the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Folds for the cross-validated comparison with the radiographs alone.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Where to write the card with the covariate model; default: the model's card itself.
    #[arg(long)]
    pub card_out: Option<PathBuf>,
    /// What the studies are, for the card (default: the data path and split).
    #[arg(long)]
    pub description: Option<String>,
    /// Write the covariate model even when the age did not help in cross-validation.
    /// Without it, a card's earlier covariate model that these studies do not bear out is
    /// removed (the radiographs alone are then used).
    #[arg(long)]
    pub force: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let model = XrayModel::load(&args.model, None, device(&args.device)?)?;
    if args.data.split == Part::All && model.card.trained_on(&args.data.data) {
        anyhow::bail!(
            "{} is the data the model was trained on: calibrate on its validation patients (--split val), not on the ones it learned from or the held-out test",
            args.data.data.display()
        );
    }
    let (dataset, idx) = args.data.pick(&model)?;
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "{} ({} split)",
            args.data.data.display(),
            args.data.split_name()
        )
    });
    let fitted = calibrate(&model, &dataset, &idx, args.folds, &description)?;
    println!("{}", fitted.summary());
    let card_path = args
        .card_out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("json"));
    if !fitted.helps() && !args.force {
        if model.card.covariates.is_none() {
            eprintln!(
                "the age did not help on these studies, so the card is left as it was (--force writes it anyway)"
            );
            return Ok(ExitCode::FAILURE);
        }
        // A combination fitted on other studies (the demo card's, on synthetic patients
        // whose ages track T) that the local ones do not bear out is worse than none.
        ModelCard {
            covariates: None,
            ..model.card.clone()
        }
        .write(&card_path)?;
        println!(
            "the age did not help on these studies: removed the card's covariate model from {} (the radiographs alone are used; --force writes the new fit instead)",
            card_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    fitted.write_into(&model.card, &card_path)?;
    println!("wrote the covariate model into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}
