//! The Finding: one typed, serialisable result per study — the contract between analysis
//! and reports, and what `osteoscreen analyze --json` prints.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ct::LevelMeasure;
use super::risk::Risk;

/// Whether the study was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Analysed,
    NotApplicable,
    Failed,
}

/// CT opportunistic screening class (by the trabecular HU of the basis level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtClass {
    /// At or below the osteoporosis threshold (default 110 HU).
    OsteoporosisLikely,
    /// Between the thresholds: osteopenia or indeterminate.
    Indeterminate,
    /// At or above the normal threshold (default 160 HU).
    NormalLikely,
}

/// What the CT attenuation method measured and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct CtFinding {
    pub series_uid: String,
    pub levels: Vec<LevelMeasure>,
    pub labelling: String,
    /// None when no usable lumbar level was identified; see `class_basis`.
    pub class: Option<CtClass>,
    /// Which level and HU the class rests on, or why there is no class.
    pub class_basis: String,
    pub thresholds_hu: (f64, f64),
    pub contrast_offset_hu: f64,
}

/// One study's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub study_uid: String,
    pub status: Status,
    /// Why not analysed (or failed), in words for a person.
    pub reason: Option<String>,
    pub methods: Vec<String>,
    pub instances_used: Vec<String>,
    pub ct: Option<CtFinding>,
    pub risk: Risk,
    pub flags: Vec<String>,
    pub timings_ms: BTreeMap<String, f64>,
    pub software: String,
}

impl Finding {
    pub fn not_applicable(study_uid: String, reason: String, risk: Risk) -> Finding {
        Finding {
            study_uid,
            status: Status::NotApplicable,
            reason: Some(reason),
            methods: Vec::new(),
            instances_used: Vec::new(),
            ct: None,
            risk,
            flags: Vec::new(),
            timings_ms: BTreeMap::new(),
            software: concat!("osteoscreen ", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut s = format!("study {}: {:?}", self.study_uid, self.status);
        if let Some(r) = &self.reason {
            s.push_str(&format!(" - {r}"));
        }
        if let Some(ct) = &self.ct {
            s.push_str(&format!("\nCT series {} ({})", ct.series_uid, ct.labelling));
            for l in &ct.levels {
                s.push_str(&format!(
                    "\n  {:<4} mean {:6.1} HU  median {:6.1} HU  ROI {:5.0} mm2{}",
                    l.level.as_deref().unwrap_or("?"),
                    l.mean_hu,
                    l.median_hu,
                    l.roi_mm2,
                    if l.compressed {
                        "  (height reduced: possible fracture)"
                    } else {
                        ""
                    }
                ));
            }
            s.push_str(&format!("\nclass: {:?} ({})", ct.class, ct.class_basis));
        }
        s.push_str(&format!("\nOST risk: {:?}", self.risk));
        if !self.flags.is_empty() {
            s.push_str(&format!("\nflags: {}", self.flags.join(", ")));
        }
        s
    }
}
