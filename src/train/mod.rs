//! Training and evaluation of the X-ray model, and the clinical risk model: `osteoscreen
//! train`, `eval` and `train-risk`. `data` reads the dataset layouts, `images` decodes
//! once, `augment` varies, `split` separates patients, `optim` and `trainer` fit,
//! `checkpoint` saves and resumes, `evaluate` + `metrics` + `plots` measure, `risk` fits
//! the tabular model.

pub mod adapt;
pub mod augment;
pub mod average;
pub mod calibrate;
pub mod checkpoint;
pub mod data;
pub mod evaluate;
pub mod images;
pub mod metrics;
pub mod optim;
pub mod plots;

pub mod polarity;
pub mod progress;
pub mod readout;
pub mod risk;

pub mod split;
pub mod trainer;
pub mod turn;

use std::path::{Path, PathBuf};

pub use trainer::{train, TrainOptions, TrainReport};

/// Why training or evaluation stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plot: {0}")]
    Plot(String),
    #[error("{0}")]
    Invalid(String),
    #[error("covariate model: {0}")]
    Covariates(#[from] crate::model::covariates::CovariateError),
    #[error("read-out: {0}")]
    Readout(#[from] crate::model::readout::ReadoutError),
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
