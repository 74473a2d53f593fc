//! `osteoscreen average`: networks fine-tuned from one set of weights, averaged parameter
//! by parameter into one network (a "model soup", Wortsman et al., ICML 2022). Fine-tunes
//! of one start stay in one basin of the loss, so their mean is a network too, at one
//! network's cost; it is measured beside each member, since it is not always better.
//! Networks trained apart (other starts) have no such mean: they are refused.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::data::Dataset;
use super::evaluate::evaluate;
use super::images::{self, Grey};
use super::metrics::Metrics;
use super::split::{split, Split};
use super::TrainError;
use crate::fsutil::same_file;
use crate::model::card::{sha256_file, short_sha as short, ModelCard};
use crate::model::net::XrayNet;
use crate::model::XrayModel;

/// What `average` is given besides the members.
pub struct AverageOptions<'a> {
    /// Folder for `<name>.safetensors` and `<name>.json`.
    pub out: &'a Path,
    pub name: &'a str,
    /// Labelled studies none of the members was trained on: the card's held-out metrics.
    pub held_out: &'a Dataset,
    /// What the held-out studies are, for the card.
    pub held_out_description: &'a str,
    /// Images like the members' training images: the card's feature profile (the
    /// out-of-distribution flag and the site-shift gauge read the averaged network's
    /// features, which no member's profile describes).
    pub profile: &'a Dataset,
    /// The card's `training_data`.
    pub data_description: &'a str,
    /// The card's `limitations` (None: the first member's).
    pub limitations: Option<&'a str>,
    /// Seed of the profile's sample (as `train`'s split seed).
    pub seed: u64,
    pub device: &'a Device,
}

/// One member measured on the held-out studies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberResult {
    /// The weights' file name (members often share a card name).
    pub file: String,
    pub name: String,
    pub weights_sha256: String,
    pub metrics: Metrics,
}

/// The averaged model written, and how it and each member did on the held-out studies.
pub struct Averaged {
    pub weights: PathBuf,
    pub card: PathBuf,
    pub sha256: String,
    pub metrics: Metrics,
    pub members: Vec<MemberResult>,
}

/// Images sampled for the feature profile (as `train`'s: up to 400 of the training part,
/// and validation images for its threshold).
const PROFILE_IMAGES: usize = 400;

pub fn average(members: &[PathBuf], opts: &AverageOptions) -> Result<Averaged, TrainError> {
    let cards = member_cards(members)?;
    let first = &cards[0];
    let weights_out = opts.out.join(format!("{}.safetensors", opts.name));
    if let Some(m) = members.iter().find(|m| same_file(m, &weights_out)) {
        return Err(TrainError::Invalid(format!(
            "{} is one of the members: give another --out or --name",
            m.display()
        )));
    }

    let varmap = VarMap::new();
    let net = XrayNet::new(VarBuilder::from_varmap(&varmap, DType::F32, opts.device))?;
    mean_into(&varmap, members, opts.device)?;
    std::fs::create_dir_all(opts.out).map_err(|e| TrainError::io(opts.out, e))?;
    varmap.save(&weights_out)?;
    let sha = sha256_file(&weights_out)?;

    let input = first.input_spec();
    let profile = {
        let (cache, parts) = profile_sample(opts.profile, opts.seed, input);
        super::checkpoint::feature_profile(&net, &cache, &parts, opts.device, input)?
    };
    let mut card = ModelCard {
        name: opts.name.to_string(),
        version: format!("{}+averaged", first.version),
        training_data: opts.data_description.to_string(),
        metrics: serde_json::json!({}),
        weights_sha256: sha.clone(),
        training: Some(serde_json::json!({
            "averaged": {
                "method": "parameters (and batch-norm statistics) averaged with equal weights over networks fine-tuned from one start (model soup)",
                "members": cards.iter().map(|c| serde_json::json!({
                    "name": c.name,
                    "weights_sha256": c.weights_sha256,
                    "training_data": c.training_data,
                    "init_sha256": c.init_sha256(),
                    "split_seed": c.training.as_ref().and_then(|t| t.get("split_seed")).cloned(),
                    "held_out_test": c.metrics.get("held_out_test").cloned(),
                })).collect::<Vec<_>>(),
                "profile_data": opts.profile.source,
                "profile_seed": opts.seed,
            }
        })),
        feature_profile: Some(profile),
        // A covariate model was fitted to one member's outputs; `calibrate` fits the mean's.
        covariates: None,
        readout: None,
        polarity: None,
        limitations: opts
            .limitations
            .map_or_else(|| first.limitations.clone(), str::to_string),
        ..first.clone()
    };
    let card_out = weights_out.with_extension("json");
    card.write(&card_out)?;

    // Measured with the written card, exactly as `eval` and the daemon load it; members
    // without their read-out and polarity check, as the average has neither (a fair
    // comparison).
    let all: Vec<usize> = (0..opts.held_out.samples.len()).collect();
    let held_out_name = opts.held_out.source.display().to_string();
    let measure = |weights: &Path| -> Result<Metrics, TrainError> {
        let mut model = XrayModel::load(weights, None, opts.device.clone())?;
        model.card.drop_readout();
        Ok(evaluate(
            &model,
            opts.held_out,
            &all,
            &held_out_name,
            false,
            false,
            None,
        )?
        .metrics)
    };
    let metrics = measure(&weights_out)?;
    let mut results = Vec::new();
    for (m, c) in members.iter().zip(&cards) {
        results.push(MemberResult {
            file: m
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            name: c.name.clone(),
            weights_sha256: c.weights_sha256.clone(),
            metrics: measure(m)?,
        });
    }
    card.metrics = serde_json::json!({
        "held_out_test": metrics,
        "held_out_data": opts.held_out_description,
        "members_on_held_out_data": results,
        "unit": "per study (views averaged)",
    });
    card.write(&card_out)?;
    Ok(Averaged {
        weights: weights_out,
        card: card_out,
        sha256: sha,
        metrics,
        members: results,
    })
}

/// The members' cards, each checked against its weights, all of one input and one
/// reference population, all fine-tuned from one start (or that start itself).
fn member_cards(members: &[PathBuf]) -> Result<Vec<ModelCard>, TrainError> {
    if members.len() < 2 {
        return Err(TrainError::Invalid(
            "averaging needs at least two networks".into(),
        ));
    }
    let mut cards = Vec::new();
    for m in members {
        let card = ModelCard::read(&m.with_extension("json"))?;
        card.check_weights(m)?;
        cards.push(card);
    }
    let first = &cards[0];
    for (m, c) in members.iter().zip(&cards).skip(1) {
        if c.input != first.input || c.architecture != first.architecture {
            return Err(TrainError::Invalid(format!(
                "{} reads \"{}\" with \"{}\", {} \"{}\" with \"{}\": only networks of one input and architecture can be averaged",
                m.display(),
                c.input,
                c.architecture,
                members[0].display(),
                first.input,
                first.architecture
            )));
        }
        if c.bmd_reference != first.bmd_reference {
            return Err(TrainError::Invalid(format!(
                "{} has another BMD reference population than {}",
                m.display(),
                members[0].display()
            )));
        }
    }
    // Members that another member was fine-tuned from are the start; every other member
    // must have been fine-tuned from that one start.
    let is_start = |i: usize| {
        let sha = cards[i].weights_sha256.as_str();
        cards.iter().any(|c| c.init_sha256() == Some(sha))
    };
    let tuned: Vec<usize> = (0..cards.len()).filter(|&i| !is_start(i)).collect();
    let start = cards[tuned[0]].init_sha256();
    let Some(start) = start else {
        return Err(TrainError::Invalid(format!(
            "{} was trained from scratch: only networks fine-tuned from one start (`train --init`), and that start, can be averaged",
            members[tuned[0]].display()
        )));
    };
    let from = |i: usize| cards[i].init_sha256().unwrap_or("scratch");
    if let Some(&i) = tuned
        .iter()
        .find(|&&i| cards[i].init_sha256() != Some(start))
    {
        return Err(TrainError::Invalid(format!(
            "{} started from {} and {} from {}: only networks fine-tuned from one start (`train --init`), and that start, can be averaged",
            members[i].display(),
            short(from(i)),
            members[tuned[0]].display(),
            short(start),
        )));
    }
    if let Some(i) = (0..cards.len()).find(|&i| is_start(i) && cards[i].weights_sha256 != start) {
        return Err(TrainError::Invalid(format!(
            "{} is the start of another member but not of the rest: only networks fine-tuned from one start, and that start, can be averaged",
            members[i].display()
        )));
    }
    Ok(cards)
}

/// Each variable of `varmap` set to the mean of that variable over `members`.
fn mean_into(varmap: &VarMap, members: &[PathBuf], device: &Device) -> Result<(), TrainError> {
    let loaded = members
        .iter()
        .map(|m| Ok((m, candle_core::safetensors::load(m, device)?)))
        .collect::<Result<Vec<_>, TrainError>>()?;
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        let mut sum = var.zeros_like()?;
        for (m, tensors) in &loaded {
            let t = tensors.get(name).ok_or_else(|| {
                TrainError::Invalid(format!(
                    "{}: no tensor {name}: not weights of this network",
                    m.display()
                ))
            })?;
            if t.dims() != var.dims() {
                return Err(TrainError::Invalid(format!(
                    "{}: {name} is {:?}, the network's {:?}",
                    m.display(),
                    t.dims(),
                    var.dims()
                )));
            }
            sum = sum.add(&t.to_dtype(DType::F32)?)?;
        }
        var.set(&(sum / members.len() as f64)?)?;
    }
    Ok(())
}

/// A seeded sample of `profile`'s images, decoded, split like `train`'s data: up to
/// `PROFILE_IMAGES` of the training part and half as many validation images.
fn profile_sample(
    profile: &Dataset,
    seed: u64,
    input: crate::model::preprocess::InputSpec,
) -> (Vec<Option<Grey>>, Split) {
    use rayon::prelude::*;
    let parts = split(&profile.samples, 0.15, 0.15, seed);
    let thin = |idx: &[usize], n: usize| -> Vec<usize> {
        idx.iter()
            .step_by((idx.len() / n).max(1))
            .copied()
            .collect()
    };
    let train = thin(&parts.train, PROFILE_IMAGES);
    let val = thin(&parts.val, PROFILE_IMAGES / 2);
    let mut cache: Vec<Option<Grey>> = vec![None; profile.samples.len()];
    let wanted: Vec<usize> = train.iter().chain(&val).copied().collect();
    let loaded: Vec<(usize, Option<Grey>)> = wanted
        .par_iter()
        .map(|&i| {
            (
                i,
                images::load(&profile.samples[i].image, profile.samples[i].view, input).ok(),
            )
        })
        .collect();
    for (i, g) in loaded {
        cache[i] = g;
    }
    let readable = |idx: Vec<usize>| idx.into_iter().filter(|&i| cache[i].is_some()).collect();
    let parts = Split {
        train: readable(train),
        val: readable(val),
        test: Vec::new(),
    };
    (cache, parts)
}
