//! Training data: one `Layout` trait, several folder layouts (LUMOS, a tabular DXA CSV like
//! the Arak dataset, a manifest CSV, `osteoscreen synth`'s output), all read into one
//! `Dataset` of labelled images joined to their patient. `open` finds the layout.

pub mod columns;
pub mod lumos;
pub mod manifest;
pub mod tabular;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::finding::View;

/// One labelled radiograph.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// A DICOM file or a PNG.
    pub image: PathBuf,
    /// Splits are made by patient, so a patient's images never straddle train and test.
    pub patient: String,
    /// The images of one study are fused (averaged) into one result, as the daemon does.
    pub study: String,
    /// 0 normal, 1 osteopenia, 2 osteoporosis.
    pub label: u8,
    pub t_score: Option<f32>,
    pub bmd: Option<f32>,
    pub view: Option<View>,
}

/// Clinical values of one patient (for `train-risk`); any may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClinicalRecord {
    pub patient: String,
    pub label: Option<u8>,
    pub t_score: Option<f64>,
    /// 'F' or 'M'.
    pub sex: Option<char>,
    pub age_years: Option<f64>,
    pub weight_kg: Option<f64>,
    pub height_m: Option<f64>,
    pub bmi: Option<f64>,
    /// Years since menopause (0 when not, or male).
    pub menopause_years: Option<f64>,
}

/// What a loader read: images, clinical rows, and what it matched or skipped (printed).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub layout: &'static str,
    pub source: PathBuf,
    pub samples: Vec<Sample>,
    pub records: Vec<ClinicalRecord>,
    pub notes: Vec<String>,
}

impl Dataset {
    /// Drop the images a model of `framing` does not read (lateral views, for the spine
    /// framing; an image of unknown view is kept, as the daemon reads it). The split is
    /// drawn after this, in `train` and in the commands that score a model alike. Says
    /// how many were dropped.
    pub fn keep_framed(&mut self, framing: crate::model::framing::Framing) -> usize {
        let before = self.samples.len();
        if !framing.reads_laterals() {
            self.samples.retain(|s| s.view != Some(View::Lateral));
        }
        before - self.samples.len()
    }

    /// Images per class.
    pub fn class_counts(&self) -> [usize; 3] {
        self.class_counts_of(0..self.samples.len())
    }

    /// Images per class among the samples `idx`.
    pub fn class_counts_of(&self, idx: impl IntoIterator<Item = usize>) -> [usize; 3] {
        let mut c = [0; 3];
        for i in idx {
            c[self.samples[i].label as usize] += 1;
        }
        c
    }

    /// Distinct patients.
    pub fn patients(&self) -> usize {
        let set: std::collections::BTreeSet<&str> =
            self.samples.iter().map(|s| s.patient.as_str()).collect();
        set.len()
    }

    /// One line: layout, counts, per class.
    pub fn summary(&self) -> String {
        let c = self.class_counts();
        format!(
            "{} layout at {}: {} images of {} patients (normal {}, osteopenia {}, osteoporosis {}), {} clinical rows",
            self.layout,
            self.source.display(),
            self.samples.len(),
            self.patients(),
            c[0],
            c[1],
            c[2],
            self.records.len()
        )
    }
}

/// `--column role=header` overrides of the detected columns.
#[derive(Debug, Clone, Default)]
pub struct ColumnOverrides(pub BTreeMap<String, String>);

impl ColumnOverrides {
    /// Parse `role=header` pairs; roles are checked by the loader that uses them.
    pub fn parse(pairs: &[String]) -> Result<ColumnOverrides, DataError> {
        let mut map = BTreeMap::new();
        for p in pairs {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| DataError::Invalid(format!("--column {p:?} is not role=header")))?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(ColumnOverrides(map))
    }

    pub fn get(&self, role: &str) -> Option<&str> {
        self.0.get(role).map(String::as_str)
    }
}

/// Why a dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {message}")]
    Xlsx { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: no known dataset layout (a LUMOS folder, a DXA CSV with IDENTIFIER1, a manifest.csv with path,label or synth's columns)")]
    Unknown(PathBuf),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A folder layout the trainer can read.
pub trait Layout {
    fn name(&self) -> &'static str;
    /// Whether `root` looks like this layout (cheap: names only).
    fn detect(&self, root: &Path) -> bool;
    fn load(&self, root: &Path, columns: &ColumnOverrides) -> Result<Dataset, DataError>;
}

/// Every layout, most specific first.
pub fn layouts() -> Vec<Box<dyn Layout>> {
    vec![
        Box::new(lumos::Lumos),
        Box::new(tabular::Tabular),
        Box::new(manifest::Manifest),
    ]
}

/// Read `root` with the first layout that recognises it.
pub fn open(root: &Path, columns: &ColumnOverrides) -> Result<Dataset, DataError> {
    for layout in layouts() {
        if layout.detect(root) {
            let mut data = layout.load(root, columns)?;
            data.layout = layout.name();
            data.source = root.to_path_buf();
            return Ok(data);
        }
    }
    Err(DataError::Unknown(root.to_path_buf()))
}

/// WHO class of a T-score (0 normal T >= -1.0, 1 osteopenia, 2 osteoporosis T <= -2.5).
pub use crate::synth::subject::who_class;

/// Files under `dir` (recursively, sorted) whose extension is one of `exts`.
pub(crate) fn files_with(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, DataError> {
    let all = crate::dicom::files::collect_files(&[dir.to_path_buf()]).map_err(io_err(dir))?;
    Ok(all
        .into_iter()
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
        })
        .collect())
}
