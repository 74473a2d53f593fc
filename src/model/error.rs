//! Why a model could not be loaded or run; each variant keeps its cause.

use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model card {path}: {source}")]
    Card { path: PathBuf, source: CardError },
    #[error(
        "weights {path} do not match their model card (sha256 {actual}, card says {expected})"
    )]
    Mismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("[model] weights: {0}")]
    NotFound(String),
    #[error("weights {path}: {source}")]
    WeightsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights {path}: {source}")]
    Weights {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error("building the network: {0}")]
    Network(#[source] candle_core::Error),
    #[error("device: {0}")]
    Device(#[source] DeviceError),
    #[error("inference: {0}")]
    Inference(#[from] candle_core::Error),
    #[error("inference: images must be {side} x {side} values")]
    InputSize { side: usize },
    #[error("polarity check: {readings} readings but {inverses} inverted images")]
    PolarityMisaligned { readings: usize, inverses: usize },
    #[error("{count} readable radiographs: adaptation needs at least {least}")]
    TooFewImages { count: usize, least: usize },
}

/// What is wrong with a model card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "input {0:?} is not a preprocessing this build knows ({known})",
        known = super::preprocess::InputSpec::known_specs()
    )]
    Input(String),
    #[error("covariates: {0}")]
    Covariates(#[from] super::covariates::CovariateError),
    #[error("readout: {0}")]
    Readout(#[from] super::readout::ReadoutError),
    #[error("{0}")]
    Polarity(#[from] super::polarity::PolarityError),
}

/// Why the configured device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {0:?} (auto, cpu or cuda)")]
    Unknown(String),
    #[error("CUDA: {0}")]
    Cuda(#[source] candle_core::Error),
}
