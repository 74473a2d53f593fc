//! `osteoscreen calibrate`: fit the card's covariate model (the radiographs' result
//! combined with the patient's age) on labelled studies, say how it does there by k-fold
//! cross-validation against the radiographs alone, and write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, XrayModel};
use osteoscreen::train::calibrate::calibrate;

use super::eval::DataArgs;

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
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let model = XrayModel::load(&args.model, None, device(&args.device)?)?;
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
    if !fitted.helps() {
        println!(
            "note: the age did not help here; [model] covariates = false keeps the radiographs alone"
        );
    }
    let card_path = args
        .card_out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("json"));
    let mut card = model.card.clone();
    card.covariates = Some(fitted.model);
    card.write(&card_path)?;
    println!("wrote the covariate model into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}
