//! `osteoscreen train-risk`: fit the clinical risk model on a tabular DXA dataset and
//! compare it with OST on held-out rows.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::train::data::{self, ColumnOverrides};
use osteoscreen::train::risk::fit;

#[derive(Args)]
pub struct TrainRiskArgs {
    /// Dataset with clinical rows: a DXA CSV with IDENTIFIER1 (or its folder), or LUMOS.
    #[arg(long)]
    pub data: PathBuf,
    /// The model file to write (JSON); name it in `[analysis] risk_model` to use it.
    #[arg(long, default_value = "models/osteoscreen-risk.json")]
    pub out: PathBuf,
    #[arg(long, default_value = "osteoscreen-risk")]
    pub name: String,
    #[arg(long = "column", value_name = "ROLE=HEADER")]
    pub columns: Vec<String>,
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: TrainRiskArgs) -> anyhow::Result<ExitCode> {
    let dataset = data::open(&args.data, &ColumnOverrides::parse(&args.columns)?)?;
    eprintln!("{}", dataset.summary());
    for note in &dataset.notes {
        eprintln!("  {note}");
    }
    let (model, eval) = fit(
        &dataset.records,
        &args.name,
        &format!("{} ({})", dataset.layout, args.data.display()),
        args.test_fraction,
        args.seed,
    )?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&model)?)?;
    let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
    println!(
        "held-out rows: {} (fitted on {})",
        eval.test_rows, eval.train_rows
    );
    println!("                         fitted model   OST index");
    println!(
        "AUC osteoporosis vs rest {:>12}   {:>9}",
        f(eval.fitted_auc_osteoporosis),
        f(eval.ost_auc_osteoporosis)
    );
    println!(
        "AUC low BMD vs normal    {:>12}   {:>9}",
        f(eval.fitted_auc_low_bmd),
        f(eval.ost_auc_low_bmd)
    );
    println!("fitted accuracy (3 classes) {:.3}", eval.fitted_accuracy);
    println!(
        "wrote {}; use it with [analysis] risk_model = \"{}\"",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
