//! The X-ray model: network definition (`net`), weights in `.safetensors` plus a JSON model
//! card checked at load (`card`), and inference on preprocessed radiographs (`preprocess`).
//! Device choice happens here, once: `cpu`, `cuda` (cargo feature), or `auto`.

pub mod adabn;
pub mod card;
pub mod conv;
pub mod covariates;
pub mod error;
pub mod field;
pub mod framing;
mod framing_lateral;
pub mod logistic;
pub mod net;
pub mod plain;
pub mod plan;
pub mod polarity;
pub mod preprocess;
pub mod readout;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

pub use card::ModelCard;
pub use error::{CardError, DeviceError, ModelError};

/// The demo weights shipped with osteoscreen (trained on synthetic data), the default.
pub const BUNDLED_WEIGHTS: &str = "models/osteoscreen-xray-demo.safetensors";

/// The X-ray model to load (`[model]` in the config file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// `.safetensors` weights; empty: no X-ray model (radiograph studies fail, saying so).
    /// A relative path is looked up beside the config file, beside the binary (and in
    /// `../share/osteoscreen`), in the working directory and in the source tree it was
    /// built from (`resolve`).
    pub weights: PathBuf,
    /// The JSON model card; empty: the weights' path with `.json`.
    pub card: PathBuf,
    /// `auto` (CUDA when built with `--features cuda` and a GPU is present), `cpu`, `cuda`.
    pub device: String,
    /// Radiographs per forward pass.
    pub batch_size: usize,
    /// Combine the radiographs' estimate with the patient's age when the card has a
    /// covariate model (`osteoscreen calibrate`); false: the radiographs alone.
    pub covariates: bool,
    /// Report through the card's read-out when it has one (`osteoscreen readout`: the
    /// network's T-score mapped, class probabilities at the WHO cut-offs); false: the
    /// network's own result.
    pub readout: bool,
    /// Check each radiograph study's grey levels against its header with the card's
    /// polarity probe (`osteoscreen polarity`), and read a clearly inverted study turned
    /// over (flagged); false: read as the header says, unchecked.
    pub polarity_check: bool,
    /// The daemon adapts the model to the site by itself: after the first
    /// `site_adaptation_images` radiographs it received, it measures the weights'
    /// batch-norm statistics again on them (as `osteoscreen adapt` does) and reads later
    /// studies with the result, kept under the storage dir. false: the weights as given.
    pub site_adaptation: bool,
    /// Radiographs to adapt on (32-1024).
    pub site_adaptation_images: usize,
    /// Set by `resolve` when a relative path was found nowhere.
    #[serde(skip)]
    pub unresolved: Option<String>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            weights: PathBuf::from(BUNDLED_WEIGHTS),
            card: PathBuf::new(),
            device: "auto".into(),
            batch_size: 8,
            covariates: true,
            readout: true,
            polarity_check: true,
            site_adaptation: true,
            site_adaptation_images: 32,
            unresolved: None,
        }
    }
}

impl ModelSettings {
    pub fn validate(&self) -> Result<(), String> {
        device(&self.device).map_err(|e| e.to_string())?;
        if !(1..=256).contains(&self.batch_size) {
            return Err("batch_size must be 1-256".into());
        }
        if !(adabn::MIN_IMAGES..=adabn::MAX_IMAGES).contains(&self.site_adaptation_images) {
            return Err(format!(
                "site_adaptation_images must be {}-{}",
                adabn::MIN_IMAGES,
                adabn::MAX_IMAGES
            ));
        }
        Ok(())
    }

    /// Make relative `weights` and `card` paths absolute: the first of the places listed
    /// on `weights` where the file exists. When none has it the path stays relative and
    /// `unresolved` says where it was looked for (loading then fails with that message;
    /// commands that load no model, such as `synth` and `train`, are unaffected).
    pub fn resolve(&mut self, config_dir: Option<&Path>) {
        for path in [&mut self.weights, &mut self.card] {
            if path.as_os_str().is_empty() || path.is_absolute() {
                continue;
            }
            let places = search_places(config_dir);
            match places.iter().map(|d| d.join(&*path)).find(|p| p.is_file()) {
                Some(found) => *path = found,
                None => {
                    self.unresolved = Some(format!(
                        "{} not found in {}; set [model] weights = \"\" to run without an X-ray model",
                        path.display(),
                        places
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    return;
                }
            }
        }
    }

    /// The configured model, or None when no weights are configured.
    pub fn load(&self) -> Result<Option<XrayModel>, ModelError> {
        if self.weights.as_os_str().is_empty() {
            return Ok(None);
        }
        if let Some(why) = &self.unresolved {
            return Err(ModelError::NotFound(why.clone()));
        }
        let card = (!self.card.as_os_str().is_empty()).then_some(self.card.as_path());
        let mut model = XrayModel::load(&self.weights, card, device(&self.device)?)?;
        if !self.readout {
            // Dropped here, so that the site adaptation's cards leave it out too.
            model.card.drop_readout();
        }
        if !self.polarity_check {
            model.card.polarity = None;
        }
        Ok(Some(model))
    }
}

/// Where relative model paths are looked for, in order.
fn search_places(config_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(dir) = config_dir {
        places.push(dir.to_path_buf());
        if let Some(parent) = dir.parent() {
            places.push(parent.to_path_buf());
        }
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        places.push(exe_dir.join("../share/osteoscreen"));
        places.push(exe_dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        places.push(cwd);
    }
    places.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut seen = std::collections::HashSet::new();
    places.retain(|p| seen.insert(p.clone()));
    places
}

/// One radiograph's prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Probabilities of normal, osteopenia, osteoporosis (sum to 1).
    pub probabilities: [f32; 3],
    pub t_score: f32,
    /// Estimated areal BMD (g/cm²) from the T-score and the card's reference population.
    pub bmd: f32,
    /// How unlike the training images this input looks to the network (RMS z-score of its
    /// features), when the card has a feature profile.
    pub feature_distance: Option<f32>,
    /// The pooled features both heads read (`net::FEATURES` of them), for a set's shift
    /// (`FeatureProfile::shift`).
    pub features: Vec<f32>,
}

/// `auto` picks CUDA when compiled in and a GPU is present.
pub fn device(choice: &str) -> Result<Device, ModelError> {
    match choice {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| ModelError::Device(DeviceError::Cuda(e))),
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        other => Err(ModelError::Device(DeviceError::Unknown(other.into()))),
    }
}

/// A loaded network and its card.
pub struct XrayModel {
    net: net::FusedNet,
    pub card: ModelCard,
    /// The card's `input`, parsed once at load.
    input: preprocess::InputSpec,
    device: Device,
}

impl XrayModel {
    /// Load `weights` (.safetensors) after checking it against the card beside it
    /// (`<weights>.json`, or `card` when given).
    pub fn load(
        weights: &Path,
        card: Option<&Path>,
        device: Device,
    ) -> Result<XrayModel, ModelError> {
        let card_path = card
            .map(Path::to_path_buf)
            .unwrap_or_else(|| weights.with_extension("json"));
        let mut card = ModelCard::read(&card_path)?;
        card.check_weights(weights)?;
        if let Some(why) = card.drop_stale_covariates() {
            tracing::warn!("{why}");
        }
        if let Some(probe) = &card.polarity {
            let fitted_on = probe.weights_sha256.as_str();
            let ours = fitted_on == card.weights_sha256
                || Some(fitted_on) == adabn::adapted_from(&card)
                || Some(fitted_on) == adabn::adapted_origin(&card);
            if !ours {
                let whose = if fitted_on.is_empty() {
                    "weights it does not record (written before probes named them)".to_string()
                } else {
                    format!("other weights (sha256 {})", card::short_sha(fitted_on))
                };
                tracing::warn!(
                    "the card's polarity probe was fitted on the features of {whose}: grey levels are not checked (fit it again with `osteoscreen polarity`)"
                );
                card.polarity = None;
            }
        }
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let net = net::XrayNet::new(vb).map_err(ModelError::Network)?;
        varmap.load(weights).map_err(|source| ModelError::Weights {
            path: weights.to_path_buf(),
            source,
        })?;
        let net = net.fused().map_err(ModelError::Network)?;
        let input = card.input_spec();
        Ok(XrayModel {
            net,
            card,
            input,
            device,
        })
    }

    /// The input the weights were trained with: every image is prepared this way.
    pub fn input(&self) -> preprocess::InputSpec {
        self.input
    }

    /// Build a randomly initialised model (for tests and as a training start) and save it
    /// with a card. Not a result to trust: the card says so.
    pub fn create_untrained(weights: &Path) -> Result<ModelCard, ModelError> {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        net::XrayNet::new(vb).map_err(ModelError::Network)?;
        varmap.save(weights).map_err(|source| ModelError::Weights {
            path: weights.to_path_buf(),
            source,
        })?;
        let card = ModelCard::untrained(weights)?;
        card.write(&weights.with_extension("json"))?;
        Ok(card)
    }

    /// `predict`, each image also read mirrored left to right and the two predictions
    /// averaged, as the daemon and `eval` read radiographs. AP and lateral views occur both
    /// ways round (training mirrors them too), and the average is steadier than either
    /// pass: accuracy +0.00 to +0.05 on five held-out synthetic sets, never lower
    /// (BENCHMARKS.md, tenth session). The out-of-distribution distance is the image's as
    /// taken. Both readings of a batch go through the network as one batch.
    pub fn predict_mirrored(&self, images: &[Vec<f32>]) -> Result<Vec<Prediction>, ModelError> {
        let side = self.input.side;
        let mirrored = images.iter().map(|x| {
            x.chunks(side)
                .flat_map(|row| row.iter().rev().copied())
                .collect::<Vec<f32>>()
        });
        let both: Vec<Vec<f32>> = images.iter().cloned().chain(mirrored).collect();
        let mut taken = self.predict(&both)?;
        let mirror = taken.split_off(images.len());
        Ok(taken
            .into_iter()
            .zip(mirror)
            .map(|(p, m)| Prediction {
                probabilities: std::array::from_fn(|k| {
                    (p.probabilities[k] + m.probabilities[k]) / 2.0
                }),
                t_score: (p.t_score + m.t_score) / 2.0,
                bmd: (p.bmd + m.bmd) / 2.0,
                feature_distance: p.feature_distance,
                features: p.features,
            })
            .collect())
    }

    /// Each image's polarity evidence (`PolarityProbe::evidence`): `taken` are its readings
    /// as shown (mirrored, as the daemon reads), `inverse` its inverse inputs, read once
    /// unmirrored. Used by the daemon and by `eval` alike.
    pub fn polarity_evidence(
        &self,
        probe: &polarity::PolarityProbe,
        taken: &[Prediction],
        inverse: &[Vec<f32>],
    ) -> Result<Vec<f32>, ModelError> {
        if inverse.len() != taken.len() {
            return Err(ModelError::PolarityMisaligned {
                readings: taken.len(),
                inverses: inverse.len(),
            });
        }
        let turned = self.predict(inverse)?;
        Ok(taken
            .iter()
            .zip(&turned)
            .map(|(r, t)| probe.evidence(&r.features, &t.features))
            .collect())
    }

    /// Predict a batch of preprocessed images (each side² values, the card's input side),
    /// one pass each.
    pub fn predict(&self, images: &[Vec<f32>]) -> Result<Vec<Prediction>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.input.side;
        let err = ModelError::Inference;
        let flat: Vec<f32> = images.iter().flatten().copied().collect();
        if flat.len() != images.len() * side * side {
            return Err(ModelError::InputSize { side });
        }
        let x = Tensor::from_vec(flat, (images.len(), 1, side, side), &self.device).map_err(err)?;
        // One pass for the batch: on the CPU the plain pass (`plain`) keeps one set of
        // buffers for it; GPUs get the whole batch anyway.
        let out = self.net.forward(&x).map_err(err)?;
        let probs = candle_nn::ops::softmax(&out.logits, D::Minus1)
            .map_err(err)?
            .to_vec2::<f32>()
            .map_err(err)?;
        let t = out.t_score.to_vec1::<f32>().map_err(err)?;
        let features = out.features.to_vec2::<f32>().map_err(err)?;
        let profile = self.card.feature_profile.as_ref();
        Ok(probs
            .into_iter()
            .zip(t)
            .zip(features)
            .map(|((p, t), f)| Prediction {
                probabilities: [p[0], p[1], p[2]],
                t_score: t,
                bmd: self.card.bmd(t as f64),
                feature_distance: profile.map(|pr| pr.distance(&f)),
                features: f,
            })
            .collect())
    }
}
