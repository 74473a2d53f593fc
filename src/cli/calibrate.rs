//! `osteoscreen calibrate`: fit the card's covariate model (the radiographs' T-score
//! estimate combined with the patient's age) on labelled studies, say how it does there
//! by k-fold cross-validation against the radiographs alone, and write it into the card.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::model::covariates::{CovariateModel, Observation};
use osteoscreen::model::{device, ModelCard, XrayModel};
use osteoscreen::train::evaluate::predict;
use osteoscreen::train::metrics::{argmax, pearson};

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
    let predicted = predict(&model, &dataset.samples, &idx)?;
    let studies: Vec<Observation> = predicted
        .scored
        .iter()
        .filter_map(|s| {
            Some(Observation {
                image_probabilities: s.probabilities.map(f64::from),
                image_t: s.t_pred as f64,
                age_years: *predicted.ages.get(&s.study)?,
                label: s.label,
                t_true: s.t_true? as f64,
            })
        })
        .collect();
    eprintln!(
        "{} of {} studies have an age in their header and a true T-score",
        studies.len(),
        predicted.scored.len()
    );
    let obs = &studies;
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "{} ({} split)",
            args.data.data.display(),
            args.data.split_name()
        )
    });
    let mut fitted =
        CovariateModel::fit(obs, &format!("{} studies of {description}", studies.len()))?;
    let folds = args.folds.clamp(2, studies.len());
    let (combined, alone) = cross_validate(&studies, folds)?;
    let r_age = pearson(
        &obs.iter()
            .map(|o| (o.age_years, o.t_true))
            .collect::<Vec<_>>(),
    );
    fitted.evaluation = serde_json::json!({
        "studies": studies.len(),
        "folds": folds,
        "cross_validated_accuracy": {"with_age": combined, "radiographs_alone": alone},
        "age_t_score_pearson_r": r_age,
    });
    println!(
        "{}, residual sd {:.2}; class by logistic regression on the radiographs' probabilities, T and age ({} studies; age vs T-score r {:.2})",
        fitted.t_score_formula(),
        fitted.residual_sd,
        studies.len(),
        r_age.unwrap_or(f64::NAN)
    );
    println!(
        "{folds}-fold cross-validated accuracy: with the age {combined:.3}, radiographs alone {alone:.3}"
    );
    let card_path = args
        .card_out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("json"));
    let mut card: ModelCard = model.card.clone();
    card.covariates = Some(fitted);
    card.write(&card_path)?;
    println!("wrote the covariate model into {}", card_path.display());
    Ok(ExitCode::SUCCESS)
}

/// Accuracy with the age and of the radiographs alone, each study predicted by a model
/// fitted on the other folds (study i in fold i mod k: the order is the study ids').
fn cross_validate(studies: &[Observation], folds: usize) -> anyhow::Result<(f64, f64)> {
    let (mut with_age, mut alone) = (0usize, 0usize);
    let best = |p: &[f64; 3]| argmax(&p.map(|v| v as f32));
    for f in 0..folds {
        let train: Vec<Observation> = studies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != f)
            .map(|(_, s)| *s)
            .collect();
        let m = CovariateModel::fit_fold(&train, "fold")?;
        for s in studies.iter().skip(f).step_by(folds) {
            let c = m
                .combine(s.image_probabilities, s.image_t, Some(s.age_years))
                .expect("an age is given");
            with_age += usize::from(best(&c.probabilities) == s.label);
            alone += usize::from(best(&s.image_probabilities) == s.label);
        }
    }
    let n = studies.len().max(1) as f64;
    Ok((with_age as f64 / n, alone as f64 / n))
}
