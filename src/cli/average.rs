//! `osteoscreen average`: networks fine-tuned from one start averaged into one
//! (`train::average`), measured with each member on held-out studies.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, ModelCard};
use osteoscreen::train::average::{average, AverageOptions};
use osteoscreen::train::data::{self, ColumnOverrides};

#[derive(Args)]
pub struct AverageArgs {
    /// Weights (.safetensors, each with its card beside it) fine-tuned from one start
    /// (`train --init`), and that start itself if wanted; at least two.
    #[arg(required = true, num_args = 2..)]
    pub members: Vec<PathBuf>,
    /// Folder for `<name>.safetensors` and `<name>.json`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub name: String,
    /// Labelled studies (any layout `train` reads) that none of the members was trained
    /// on: the card's held-out metrics, the average's beside each member's.
    #[arg(long)]
    pub data: PathBuf,
    /// What those studies are, for the card (default: their path).
    #[arg(long)]
    pub data_label: Option<String>,
    /// Images like the members' training images, for the feature profile behind the
    /// out-of-distribution flag (default: the first member's training data).
    #[arg(long)]
    pub profile_data: Option<PathBuf>,
    /// The card's training_data (default: the members' names).
    #[arg(long)]
    pub data_description: Option<String>,
    /// The card's limitations (default: the first member's).
    #[arg(long)]
    pub limitations: Option<String>,
    /// Seed of the profile's image sample.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: AverageArgs) -> anyhow::Result<ExitCode> {
    let cards: Vec<ModelCard> = args
        .members
        .iter()
        .map(|m| ModelCard::read(&m.with_extension("json")))
        .collect::<Result<_, _>>()?;
    if let Some(c) = cards.iter().find(|c| c.trained_on(&args.data)) {
        anyhow::bail!(
            "{} is the data {} was trained on: measure the average on studies none of the members saw",
            args.data.display(),
            c.name
        );
    }
    let profile_path = match &args.profile_data {
        Some(p) => p.clone(),
        None => cards[0]
            .training_data_source()
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}'s card names no training data: give --profile-data",
                    args.members[0].display()
                )
            })?,
    };
    let overrides = ColumnOverrides::default();
    let framing = cards[0].input_spec().framing;
    let mut held_out = data::open(&args.data, &overrides)?;
    eprintln!("held out: {}", held_out.summary());
    super::data_args::frontal_only(&mut held_out, framing, "held out: ");
    let mut profile = data::open(&profile_path, &overrides)?;
    eprintln!("profile: {}", profile.summary());
    super::data_args::frontal_only(&mut profile, framing, "profile: ");
    let label = args
        .data_label
        .clone()
        .unwrap_or_else(|| args.data.display().to_string());
    let description = args.data_description.clone().unwrap_or_else(|| {
        let names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
        format!("the average of {}", names.join(", "))
    });
    let done = average(
        &args.members,
        &AverageOptions {
            out: &args.out,
            name: &args.name,
            held_out: &held_out,
            held_out_description: &label,
            profile: &profile,
            data_description: &description,
            limitations: args.limitations.as_deref(),
            seed: args.seed,
            device: &device(&args.device)?,
        },
    )?;
    println!(
        "on {} held-out studies ({label}): accuracy, macro-F1, T-score r",
        done.metrics.studies
    );
    let r = |m: &osteoscreen::train::metrics::Metrics| {
        m.t_score_pearson_r
            .map_or("n/a".into(), |r| format!("{r:.3}"))
    };
    for m in &done.members {
        println!(
            "  member {:<40} {:.3}  {:.3}  {}",
            m.file,
            m.metrics.accuracy,
            m.metrics.macro_f1,
            r(&m.metrics)
        );
    }
    println!(
        "  average {:<39} {:.3}  {:.3}  {}",
        args.name,
        done.metrics.accuracy,
        done.metrics.macro_f1,
        r(&done.metrics)
    );
    println!(
        "wrote {} (sha256 {}) and {}; no covariate model (osteoscreen calibrate fits one)",
        done.weights.display(),
        &done.sha256[..16],
        done.card.display()
    );
    Ok(ExitCode::SUCCESS)
}
