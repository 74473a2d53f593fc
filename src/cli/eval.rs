//! `osteoscreen eval`: a model's accuracy on a dataset, per study, with published results
//! beside it; metrics.json and PNG plots with `--out`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::card::SITE_SHIFT_WARNING;
use osteoscreen::model::{device, XrayModel};
use osteoscreen::train::adapt::adapt;
use osteoscreen::train::evaluate::{evaluate, EvalReport};

use super::data_args::DataArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// Weights (.safetensors); the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Measure the radiographs alone, without the card's covariate model (the age).
    #[arg(long)]
    pub radiographs_only: bool,
    /// Evaluate the model adapted to the evaluated set, as the daemon reads a site after its
    /// first radiographs (`[model] site_adaptation`): the batch-norm statistics are measured
    /// again on the set's own images (labels unused), then every study is scored. The
    /// images measured are the images scored, which the daemon's first studies are not.
    #[arg(long)]
    pub site_adapt: bool,
    /// Read every image as its header says. By default the card's polarity probe checks
    /// each study's grey levels as the daemon does (`[model] polarity_check`) and a study
    /// that is clearly inverted is scored read turned over; the counts are printed.
    #[arg(long)]
    pub no_polarity_check: bool,
    /// Folder for metrics.json, confusion.png, roc.png, t_scores.png and predictions.csv
    /// (one row per study: truth, probabilities, estimated T-score).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut model = XrayModel::load(&args.model, None, device(&args.device)?)?;
    let (dataset, idx) = args.data.pick(&model)?;
    // Kept until the evaluation is done: the adapted weights live in it.
    let scratch = tempfile::tempdir()?;
    if args.site_adapt {
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
            "evaluated-set",
            "the evaluated images",
            1,
            &device(&args.device)?,
        )?;
        eprintln!(
            "adapted to the {} evaluated radiographs (batch-norm statistics; labels unused)",
            done.images
        );
        model = XrayModel::load(&done.weights, None, device(&args.device)?)?;
    }
    let report = evaluate(
        &model,
        &dataset,
        &idx,
        &args.data.data.display().to_string(),
        !args.radiographs_only,
        !args.no_polarity_check,
        args.out.as_deref(),
    )?;
    print!("{}", table(&report));
    if let Some(out) = &args.out {
        println!(
            "wrote {}/metrics.json, confusion.png, roc.png, t_scores.png, predictions.csv",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn table(r: &EvalReport) -> String {
    let m = &r.metrics;
    let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
    let mut s = format!(
        "model {} ({}), {} images, {} studies{}\n",
        r.model,
        osteoscreen::model::card::short_sha(&r.model_sha256),
        r.images,
        m.studies,
        match r.images_out_of_distribution {
            Some(n) => format!(", {n} images flagged unlike the training data"),
            None => String::new(),
        }
    );
    if let Some(shift) = r.feature_shift {
        s += &format!(
            "  feature shift from the training images {shift:.2} (images like the training's: about {:.2}){}\n",
            1.0 / (r.images.max(1) as f64).sqrt(),
            if shift > SITE_SHIFT_WARNING {
                "; a look the weights did not learn: `osteoscreen adapt` on this site's radiographs may help"
            } else {
                ""
            }
        );
    }
    if let Some(p) = &r.polarity {
        s += &format!("  {}\n", p.line());
    }
    if let Some(c) = &r.covariates {
        s += &format!(
            "  combined with the age for {} of {} studies (card covariate model: {}); radiographs alone: accuracy {:.3}, macro-F1 {:.3}\n",
            c.studies_with_age,
            m.studies,
            c.model,
            c.radiographs_alone.accuracy,
            c.radiographs_alone.macro_f1
        );
    }
    if let Some(n) = &r.network {
        s += &format!(
            "  read out by the card ({}); the network's own result: accuracy {:.3}, macro-F1 {:.3}\n",
            n.readout, n.metrics.accuracy, n.metrics.macro_f1
        );
    }
    s += &format!("  accuracy                 {:.3}\n", m.accuracy);
    s += &format!("  macro-F1                 {:.3}\n", m.macro_f1);
    for c in &m.per_class {
        s += &format!(
            "  {:<13} n={:<5} sensitivity {}  specificity {}\n",
            c.class,
            c.n,
            f(c.sensitivity),
            f(c.specificity)
        );
    }
    s += &format!(
        "  AUC osteoporosis vs rest {}   (published: 0.767 Zhang et al. Bone 2020)\n",
        f(m.auc_osteoporosis)
    );
    s += &format!(
        "  AUC low BMD vs normal    {}   (published: 0.91-0.94 AP + lateral, Mao et al. Front Endocrinol 2022)\n",
        f(m.auc_low_bmd)
    );
    s += &format!(
        "  T-score MAE {}, Pearson r {}\n",
        f(m.t_score_mae),
        f(m.t_score_pearson_r)
    );
    s += "  confusion (rows truth, columns predicted: normal, osteopenia, osteoporosis)\n";
    for row in &m.confusion {
        s += &format!("    {:>6} {:>6} {:>6}\n", row[0], row[1], row[2]);
    }
    s
}
