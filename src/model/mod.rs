//! The X-ray model: network definition (`net`), weights in `.safetensors` plus a JSON model
//! card checked at load (`card`), and inference on preprocessed radiographs (`preprocess`).
//! Device choice happens here, once: `cpu`, `cuda` (cargo feature), or `auto`.

pub mod card;
pub mod conv;
pub mod error;
pub mod net;
pub mod preprocess;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

pub use card::ModelCard;
pub use error::{CardError, DeviceError, ModelError};

/// The X-ray model to load (`[model]` in the config file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// `.safetensors` weights; empty: no X-ray model (radiograph studies fail, saying so).
    pub weights: PathBuf,
    /// The JSON model card; empty: the weights' path with `.json`.
    pub card: PathBuf,
    /// `auto` (CUDA when built with `--features cuda` and a GPU is present), `cpu`, `cuda`.
    pub device: String,
    /// Radiographs per forward pass.
    pub batch_size: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            weights: PathBuf::new(),
            card: PathBuf::new(),
            device: "auto".into(),
            batch_size: 8,
        }
    }
}

impl ModelSettings {
    pub fn validate(&self) -> Result<(), String> {
        device(&self.device).map_err(|e| e.to_string())?;
        if !(1..=256).contains(&self.batch_size) {
            return Err("batch_size must be 1-256".into());
        }
        Ok(())
    }

    /// The configured model, or None when no weights are configured.
    pub fn load(&self) -> Result<Option<XrayModel>, ModelError> {
        if self.weights.as_os_str().is_empty() {
            return Ok(None);
        }
        let card = (!self.card.as_os_str().is_empty()).then_some(self.card.as_path());
        XrayModel::load(&self.weights, card, device(&self.device)?).map(Some)
    }
}

/// One radiograph's prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Probabilities of normal, osteopenia, osteoporosis (sum to 1).
    pub probabilities: [f32; 3],
    pub t_score: f32,
    /// Estimated areal BMD (g/cm²) from the T-score and the card's reference population.
    pub bmd: f32,
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
        let card = ModelCard::read(&card_path)?;
        card.check_weights(weights)?;
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let net = net::XrayNet::new(vb).map_err(ModelError::Network)?;
        varmap.load(weights).map_err(|source| ModelError::Weights {
            path: weights.to_path_buf(),
            source,
        })?;
        let net = net.fused().map_err(ModelError::Network)?;
        Ok(XrayModel { net, card, device })
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

    /// Predict a batch of preprocessed images (each INPUT_SIZE² values).
    pub fn predict(&self, images: &[Vec<f32>]) -> Result<Vec<Prediction>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let side = net::INPUT_SIZE;
        let err = ModelError::Inference;
        let flat: Vec<f32> = images.iter().flatten().copied().collect();
        if flat.len() != images.len() * side * side {
            return Err(ModelError::InputSize { side });
        }
        let x = Tensor::from_vec(flat, (images.len(), 1, side, side), &self.device).map_err(err)?;
        // On the CPU one image per pass is faster than a batched pass (every candle op
        // allocates its output; batch-sized temporaries cost page faults: BENCHMARKS.md);
        // GPUs get the whole batch.
        let out = if self.device.is_cpu() {
            let parts = (0..images.len())
                .map(|i| self.net.forward(&x.narrow(0, i, 1)?))
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(err)?;
            let logits: Vec<Tensor> = parts.iter().map(|o| o.logits.clone()).collect();
            let t: Vec<Tensor> = parts.iter().map(|o| o.t_score.clone()).collect();
            net::Output {
                logits: Tensor::cat(&logits, 0).map_err(err)?,
                t_score: Tensor::cat(&t, 0).map_err(err)?,
            }
        } else {
            self.net.forward(&x).map_err(err)?
        };
        let probs = candle_nn::ops::softmax(&out.logits, D::Minus1)
            .map_err(err)?
            .to_vec2::<f32>()
            .map_err(err)?;
        let t = out.t_score.to_vec1::<f32>().map_err(err)?;
        let (mean, sd) = (self.card.bmd_reference.mean, self.card.bmd_reference.sd);
        Ok(probs
            .into_iter()
            .zip(t)
            .map(|(p, t)| Prediction {
                probabilities: [p[0], p[1], p[2]],
                t_score: t,
                bmd: (mean + sd * t as f64) as f32,
            })
            .collect())
    }
}
