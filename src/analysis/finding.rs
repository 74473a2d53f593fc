//! The Finding: one typed, serialisable result per study — the contract between analysis
//! and reports, and what `osteoscreen analyze --json` prints.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ct::LevelMeasure;
use super::risk::Risk;
use super::xray::XrayFinding;

/// Whether the study was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Analysed,
    NotApplicable,
    Failed,
}

/// WHO bone-density class: normal T >= -1.0, osteopenia -2.5 < T < -1.0, osteoporosis
/// T <= -2.5. Also the order of the X-ray model's probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoneClass {
    Normal,
    Osteopenia,
    Osteoporosis,
}

impl BoneClass {
    pub const ALL: [BoneClass; 3] = [
        BoneClass::Normal,
        BoneClass::Osteopenia,
        BoneClass::Osteoporosis,
    ];

    pub fn from_t_score(t: f64) -> BoneClass {
        if t <= -2.5 {
            BoneClass::Osteoporosis
        } else if t < -1.0 {
            BoneClass::Osteopenia
        } else {
            BoneClass::Normal
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            BoneClass::Normal => "normal bone density",
            BoneClass::Osteopenia => "osteopenia",
            BoneClass::Osteoporosis => "osteoporosis",
        }
    }
}

/// The study-level answer and the method it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct Conclusion {
    pub class: BoneClass,
    /// "xray_model" or "ct_trabecular_attenuation".
    pub method: String,
    /// The model's probability of `class` (X-ray only).
    pub probability: Option<f32>,
    pub t_score: Option<f32>,
    pub bmd_g_cm2: Option<f32>,
    /// The sentence a reader sees: what the class rests on.
    pub basis: String,
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
    /// The study-level class, when a method produced one.
    pub conclusion: Option<Conclusion>,
    pub xray: Option<XrayFinding>,
    pub ct: Option<CtFinding>,
    pub risk: Risk,
    /// Series and instances left out, and why.
    pub excluded: Vec<String>,
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
            conclusion: None,
            xray: None,
            ct: None,
            risk,
            excluded: Vec::new(),
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
        if let Some(c) = &self.conclusion {
            s.push_str(&format!("\nresult: {} ({})", c.class.words(), c.basis));
        }
        if let Some(x) = &self.xray {
            s.push_str(&format!(
                "\nX-ray model {} {} (trained on: {})",
                x.model.name, x.model.version, x.model.training_data
            ));
            for v in &x.images {
                s.push_str(&format!(
                    "\n  {:<8} P(normal/osteopenia/osteoporosis) {:.2}/{:.2}/{:.2}  T {:+.1}  {}",
                    format!("{:?}", v.view),
                    v.probabilities[0],
                    v.probabilities[1],
                    v.probabilities[2],
                    v.t_score,
                    v.sop_instance_uid
                ));
            }
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
        for e in &self.excluded {
            s.push_str(&format!("\nleft out: {e}"));
        }
        if !self.flags.is_empty() {
            s.push_str(&format!("\nflags: {}", self.flags.join(", ")));
        }
        s
    }
}
