//! `osteoscreen polarity`: fit the card's polarity probe (`model::polarity`) on radiographs
//! whose headers are right, say how it does on each set when fitted on the others, and
//! write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::{device, ModelCard, XrayModel};
use osteoscreen::train::data::{self, ColumnOverrides};
use osteoscreen::train::polarity::{fit_polarity, read_set};

#[derive(Args)]
pub struct PolarityArgs {
    /// Weights (.safetensors); the card is the same path with .json.
    #[arg(long)]
    pub model: PathBuf,
    /// Radiograph sets (any layout `train` reads; labels unused), one per look: the more
    /// generators, vendors or sites, the better the probe holds on a look it never saw.
    /// Each is held out in turn to measure that. Their headers are taken to be right: a
    /// set with inverted grey levels would teach the probe the wrong way round.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    /// A study whose summed evidence is below minus this is read with its grey levels
    /// turned over; between that and 0 it is only flagged.
    #[arg(long, default_value_t = 3.0)]
    pub threshold: f32,
    /// Where to write the card with the probe; default: the model's card itself.
    #[arg(long)]
    pub card_out: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: PolarityArgs) -> anyhow::Result<ExitCode> {
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        anyhow::bail!("--threshold must be a number >= 0");
    }
    let card_path = args
        .card_out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("json"));
    let model = XrayModel::load(&args.model, None, device(&args.device)?)?;
    let mut sets = Vec::new();
    for path in &args.data {
        let mut dataset = data::open(path, &ColumnOverrides::default())?;
        eprintln!("{}", dataset.summary());
        super::data_args::frontal_only(&mut dataset, model.input().framing, "");
        let idx: Vec<usize> = (0..dataset.samples.len()).collect();
        let set = read_set(&model, &path.display().to_string(), &dataset, &idx)?;
        if set.pairs.is_empty() {
            anyhow::bail!(
                "{}: no image could be read (or every one gave features that are not numbers): nothing to fit or hold out",
                set.name
            );
        }
        if set.unreadable > 0 {
            eprintln!(
                "{}: {} image(s) could not be read",
                set.name, set.unreadable
            );
        }
        sets.push(set);
    }
    let names: Vec<String> = sets
        .iter()
        .map(|s| format!("{} ({} images)", s.name, s.pairs.len()))
        .collect();
    let fitted = fit_polarity(
        &sets,
        args.threshold,
        &format!(
            "each image as its header says and inverted: {}",
            names.join(", ")
        ),
        &model.card.weights_sha256,
    )?;
    print!("{}", fitted.summary());
    let card = ModelCard {
        polarity: Some(fitted.probe),
        ..model.card.clone()
    };
    card.write(&card_path)?;
    println!("wrote the polarity probe into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}
