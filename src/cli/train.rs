//! `osteoscreen train`: fit the X-ray model on a dataset folder (LUMOS, tabular DXA with
//! images, a manifest CSV, or `osteoscreen synth` output) and write weights + card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, XrayModel};
use osteoscreen::train::augment::Processing;
use osteoscreen::train::calibrate::calibrate;
use osteoscreen::train::data::{self, ColumnOverrides};
use osteoscreen::train::split::split;
use osteoscreen::train::trainer::default_checkpoint_dir;
use osteoscreen::train::{train, TrainOptions};

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset: a LUMOS folder, a DXA CSV (or its folder), a manifest CSV, or a synth folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder for <NAME>.safetensors and <NAME>.json (the model card).
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Model name (file names and card).
    #[arg(long, default_value = "osteoscreen-xray")]
    pub name: String,
    /// Override a detected column: role=header (roles: patient, label, t_score, bmd, sex,
    /// age, weight, height, bmi, menopause). Repeatable.
    #[arg(long = "column", value_name = "ROLE=HEADER")]
    pub columns: Vec<String>,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW, after warm-up, cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Stop after this many epochs without a better validation macro-F1.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Split, initialisation, shuffling and augmentation all derive from it.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    /// At most this many training images per epoch (default: all).
    #[arg(long)]
    pub images_per_epoch: Option<usize>,
    /// cpu, cuda (built with --features cuda), or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Continue from the checkpoint (same data, seed and batch size).
    #[arg(long)]
    pub resume: bool,
    /// Checkpoint folder (default: OUT/NAME-checkpoint).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// What the card says the training data was.
    #[arg(long)]
    pub data_description: Option<String>,
    /// The card's intended use.
    #[arg(
        long,
        default_value = "research: opportunistic osteoporosis screening on lumbar radiographs; not a diagnosis, DXA confirms"
    )]
    pub intended_use: String,
    /// Input grey-level normalisation: robust (linear, median and 5-95 % range) or
    /// equalised (pixel ranks: the same under any vendor's monotone grey-level curve).
    /// The card records it and the daemon applies it. `--resume` needs the same value.
    #[arg(long, default_value = "robust")]
    pub normalisation: osteoscreen::model::preprocess::Normalisation,
    /// The network's input side in pixels: a multiple of 32 from 128 to 512. A larger
    /// input shows each vertebra with more pixels and costs about (N/256)² the compute,
    /// in training and in the daemon. The card records it and the daemon reads at that
    /// size; `--init` weights of another size are fine (the network takes any size).
    /// `--resume` needs the same value.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub input_size: usize,
    /// Augmentation of vendor image processing: mild (one gentle unsharp mask) or
    /// multiscale (also band gains, dynamic range compression and tone curves as DR
    /// vendors apply them). `--resume` needs the same value.
    #[arg(long, value_enum, default_value_t = Processing::Mild)]
    pub processing: Processing,
    /// Start from these weights (a model of the same architecture, e.g. the bundled demo
    /// weights) instead of a random initialisation: fine-tuning. The card records their
    /// sha256.
    #[arg(long, value_name = "WEIGHTS")]
    pub init: Option<PathBuf>,
    /// What part of each radiograph the network reads: whole (the exposed field, fitted
    /// into the input); spine (a 150 mm square centred on the lumbar spine, found by its
    /// column profile, on a lateral view with the endplates' edges too: ~0.6 mm a pixel at
    /// 256 px instead of ~1.7, so the cortex and trabecular texture show); or
    /// spine-frontal (that square on frontal views only: lateral views are left out of
    /// training and not read by the daemon). The card records it. `--resume` needs the
    /// same value.
    #[arg(long, default_value = "whole")]
    pub framing: osteoscreen::model::framing::Framing,
    /// The card's limitations.
    #[arg(
        long,
        default_value = "validated only on the held-out part of its own training data"
    )]
    pub limitations: String,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let columns = ColumnOverrides::parse(&args.columns)?;
    let mut dataset = data::open(&args.data, &columns)?;
    eprintln!("{}", dataset.summary());
    super::data_args::frontal_only(&mut dataset, args.framing, "");
    for note in &dataset.notes {
        eprintln!("  {note}");
    }
    if dataset.samples.is_empty() {
        anyhow::bail!("{}: no labelled images to train on", args.data.display());
    }
    let opts = TrainOptions {
        checkpoint_dir: args
            .checkpoint_dir
            .unwrap_or_else(|| default_checkpoint_dir(&args.out, &args.name)),
        out: args.out,
        name: args.name,
        epochs: args.epochs,
        batch_size: args.batch_size.max(2),
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        warmup_epochs: args.warmup_epochs,
        patience: args.patience.max(1),
        seed: args.seed,
        val_fraction: args.val_fraction,
        test_fraction: args.test_fraction,
        images_per_epoch: args.images_per_epoch,
        device: args.device,
        resume: args.resume,
        data_description: args
            .data_description
            .unwrap_or_else(|| format!("{} ({})", dataset.layout, args.data.display())),
        intended_use: args.intended_use,
        limitations: args.limitations,
        normalisation: args.normalisation,
        input_size: args.input_size,
        processing: args.processing,
        init: args.init,
        framing: args.framing,
    };
    let report = train(&dataset, &opts)?;
    println!("wrote {} and its card", report.weights.display());
    println!("validation (per study): {}", brief(&report.validation));
    if let Some(t) = &report.test {
        println!("held-out test (per study): {}", brief(t));
    }
    covariates_from_validation(&dataset, &opts, &report.weights)?;
    Ok(ExitCode::SUCCESS)
}

/// Fit the card's covariate model on the validation patients when their studies carry
/// ages, and keep it when it does at least as well as the radiographs alone there
/// (cross-validated); either way say what happened.
fn covariates_from_validation(
    dataset: &data::Dataset,
    opts: &TrainOptions,
    weights: &std::path::Path,
) -> anyhow::Result<()> {
    let model = XrayModel::load(weights, None, device(&opts.device)?)?;
    let val = split(
        &dataset.samples,
        opts.val_fraction,
        opts.test_fraction,
        opts.seed,
    )
    .val;
    let description = format!(
        "the validation patients of {} (split seed {})",
        dataset.source.display(),
        opts.seed
    );
    let fitted = match calibrate(&model, dataset, &val, 5, &description) {
        Ok(f) => f,
        Err(e) => {
            println!("no covariate model (the radiographs alone decide): {e}");
            return Ok(());
        }
    };
    println!("{}", fitted.summary());
    if !fitted.helps() {
        println!("no covariate model: the age did not help on the validation patients");
        return Ok(());
    }
    fitted.write_into(&model.card, &weights.with_extension("json"))?;
    println!("the card combines the radiographs with the age (osteoscreen calibrate refits it)");
    Ok(())
}

fn brief(m: &osteoscreen::train::metrics::Metrics) -> String {
    let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
    format!(
        "{} studies, accuracy {:.3}, macro-F1 {:.3}, AUC osteoporosis {}, AUC low BMD {}, T-score MAE {}",
        m.studies,
        m.accuracy,
        m.macro_f1,
        f(m.auc_osteoporosis),
        f(m.auc_low_bmd),
        f(m.t_score_mae)
    )
}
