//! The Finding: one typed, serialisable result per study — the contract between analysis
//! and everything after it (reports, the queue, `osteoscreen analyze --json`). This file
//! holds every type a Finding carries and imports nothing else of the crate, so `report/`
//! depends on it alone.

use std::collections::BTreeMap;

use serde::Serialize;

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

/// An analysis method; serialised as `xray_model` / `ct_trabecular_attenuation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The X-ray network on lumbar radiographs.
    XrayModel,
    /// Trabecular attenuation of the vertebral bodies in a CT.
    CtTrabecularAttenuation,
}

impl Method {
    /// The name in JSON, logs and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::XrayModel => "xray_model",
            Method::CtTrabecularAttenuation => "ct_trabecular_attenuation",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The study-level answer and the method it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct Conclusion {
    pub class: BoneClass,
    pub method: Method,
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

impl CtClass {
    /// The class in words, as the banner and the basis sentence say it.
    pub fn words(self) -> &'static str {
        match self {
            CtClass::OsteoporosisLikely => "osteoporosis likely",
            CtClass::Indeterminate => "osteopenia or indeterminate",
            CtClass::NormalLikely => "normal density likely",
        }
    }
}

/// The WHO class a CT class is reported as (indeterminate counts as osteopenia).
impl From<CtClass> for BoneClass {
    fn from(class: CtClass) -> BoneClass {
        match class {
            CtClass::OsteoporosisLikely => BoneClass::Osteoporosis,
            CtClass::Indeterminate => BoneClass::Osteopenia,
            CtClass::NormalLikely => BoneClass::Normal,
        }
    }
}

/// Where the trabecular ROI lies in one slice, in pixel coordinates (column, row; the
/// DICOM SCOORD convention): an ellipse cut off posteriorly at `posterior_row`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoiOutline {
    pub centre: (f64, f64),
    pub radii: (f64, f64),
    pub posterior_row: f64,
}

impl RoiOutline {
    /// The outline as a polygon of 36 points: the ellipse, cut at the posterior row.
    pub fn polygon(&self) -> Vec<(f32, f32)> {
        let (cx, cy) = self.centre;
        let (ax, ay) = self.radii;
        (0..36)
            .map(|k| {
                let t = k as f64 * std::f64::consts::TAU / 36.0;
                let (x, y) = (
                    cx + ax * t.cos(),
                    (cy + ay * t.sin()).min(self.posterior_row),
                );
                (x as f32, y as f32)
            })
            .collect()
    }
}

/// One measured vertebra.
#[derive(Debug, Clone, Serialize)]
pub struct LevelMeasure {
    /// "T12", "L1", ... or None when the level could not be determined.
    pub level: Option<String>,
    pub slices: Vec<usize>,
    pub mean_hu: f64,
    pub median_hu: f64,
    pub roi_pixels: usize,
    pub roi_mm2: f64,
    pub ribs: bool,
    /// The ilium is beside it (L5 / sacrum level).
    pub pelvis: bool,
    /// Lung is beside it: a thoracic vertebra.
    pub lung: bool,
    /// On how many sides (0-2) a transverse process starts beside it: bone that ends
    /// 30-70 mm out and is not a rib (`ct::ribs`).
    pub transverse_processes: u8,
    /// Cranio-caudal extent of the slices with a body (mm).
    pub height_mm: f64,
    /// The ROI on the middle slice of the vertebra, and that slice's SOP Instance UID.
    pub roi: RoiOutline,
    pub roi_sop_instance_uid: String,
    /// Much lower than its neighbours (< 75 % of their mean height): possibly a compression
    /// fracture. Its HU is reported but should not drive a classification.
    pub compressed: bool,
    /// Metal in or beside it (spinal hardware, `ct::hardware`): its HU is reported in
    /// nothing and drives no class.
    pub metal: bool,
}

/// How sure the class is of the level it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelConfidence {
    /// L1 (or L2, L3) was labelled from the ribs of T12, the pelvis agreeing or not in view.
    Labelled,
    /// Labelled, but from the pelvis alone or with anchors that disagree: see the flags.
    Low,
    /// No lumbar level was labelled: the class rests on the mean of the unlabelled bodies
    /// that look lumbar.
    Unlabelled,
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
    /// Whether that level was labelled from the anatomy; None without a class.
    pub level_confidence: Option<LevelConfidence>,
    pub thresholds_hu: (f64, f64),
    pub contrast_offset_hu: f64,
}

/// Radiograph projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// AP or PA.
    Frontal,
    Lateral,
    /// Neither header nor description says; analysed, and flagged.
    Unknown,
}

/// Which model produced a result: enough to find the weights and their card again.
#[derive(Debug, Clone, Serialize)]
pub struct ModelIdentity {
    pub name: String,
    pub version: String,
    pub weights_sha256: String,
    pub training_data: String,
    pub intended_use: String,
}

/// One radiograph's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePrediction {
    pub sop_instance_uid: String,
    pub view: View,
    /// Normal, osteopenia, osteoporosis.
    pub probabilities: [f32; 3],
    pub t_score: f32,
    pub bmd_g_cm2: f32,
    /// How unlike the model's training images this one looks (RMS z-score of the
    /// network's features; the card's threshold marks "out of distribution").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_distance: Option<f32>,
}

/// What the X-ray model concluded for the study.
#[derive(Debug, Clone, Serialize)]
pub struct XrayFinding {
    pub model: ModelIdentity,
    pub images: Vec<ImagePrediction>,
    /// Fused over views: normal, osteopenia, osteoporosis.
    pub probabilities: [f32; 3],
    pub t_score: f32,
    pub bmd_g_cm2: f32,
    /// The most probable class.
    pub class: BoneClass,
    /// The WHO class of `t_score`; differs from `class` only when flagged.
    pub class_from_t_score: BoneClass,
    pub fusion: String,
    /// Present when the card's covariate model combined the radiographs with the age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covariates: Option<CovariateUse>,
    /// The network's own fused result, present when the card's read-out turned it into
    /// the one reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkReading>,
}

/// The network's fused result before the card's read-out.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkReading {
    /// Normal, osteopenia, osteoporosis.
    pub probabilities: [f32; 3],
    pub t_score: f32,
    pub class: BoneClass,
}

/// How the patient's age entered the result, and what the radiographs alone said.
#[derive(Debug, Clone, Serialize)]
pub struct CovariateUse {
    pub age_years: f64,
    /// The radiographs alone (fused over views): normal, osteopenia, osteoporosis.
    pub image_probabilities: [f32; 3],
    pub image_t_score: f32,
    pub image_class: BoneClass,
}

/// OST risk band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    High,
    Moderate,
    Low,
}

/// The OST result, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Risk {
    Known {
        index: i32,
        band: RiskBand,
        age_years: f64,
        weight_kg: f64,
        /// The fitted risk model's estimate, when `[analysis] risk_model` names one.
        #[serde(skip_serializing_if = "Option::is_none")]
        fitted: Option<FittedRisk>,
    },
    Unknown {
        reason: String,
    },
}

/// A fitted clinical risk model's class probabilities (normal, osteopenia, osteoporosis).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedRisk {
    /// The model's name and file sha256 prefix, so the result can be traced.
    pub model: String,
    pub probabilities: [f64; 3],
    /// Inputs the header lacked, replaced by the training mean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imputed: Vec<String>,
}

/// The pixels the key image is drawn from, kept from analysis so that reporting decodes
/// nothing a second time. Not serialised.
#[derive(Debug, Clone)]
pub enum KeyPixels {
    Radiograph(RadiographPixels),
    CtSagittal(SagittalPixels),
    CtAxial(AxialPixels),
}

/// The radiograph as the model saw it before resizing: display values 0..1.
#[derive(Debug, Clone)]
pub struct RadiographPixels {
    pub sop_instance_uid: String,
    pub grey: Vec<f32>,
    pub rows: usize,
    pub columns: usize,
    /// (row, column) spacing in mm, when the header gives one.
    pub pixel_spacing: Option<(f64, f64)>,
    /// PatientOrientation as given (validated direction letters), or empty.
    pub patient_orientation: String,
}

/// A sagittal slab through the vertebral bodies: HU, `slices x rows` (slice k's values
/// at `k * rows ..`), slices head to feet, rows anterior to posterior.
#[derive(Debug, Clone)]
pub struct SagittalPixels {
    pub hu: Vec<f32>,
    pub rows: usize,
    pub slices: usize,
    /// mm per axial row, mm between slices.
    pub row_mm: f64,
    pub slice_mm: f64,
    /// ImageOrientationPatient of the series (six cosines), or empty.
    pub orientation: Vec<f64>,
    pub sop_uids: Vec<String>,
}

/// One axial slice in HU (volumes too short for a useful reformat), with the index of
/// the level in `CtFinding::levels` whose ROI lies in it.
#[derive(Debug, Clone)]
pub struct AxialPixels {
    pub hu: Vec<f32>,
    pub rows: usize,
    pub columns: usize,
    /// (row, column) spacing in mm.
    pub spacing: (f64, f64),
    pub orientation: Vec<f64>,
    pub sop_instance_uid: String,
    pub level: usize,
}

/// One study's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub study_uid: String,
    pub status: Status,
    /// Why not analysed (or failed), in words for a person.
    pub reason: Option<String>,
    pub methods: Vec<Method>,
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
    /// What the key image shows, when analysis got that far.
    #[serde(skip)]
    pub key_pixels: Option<KeyPixels>,
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
            key_pixels: None,
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
                    if l.metal {
                        "  (metal: HU not used)"
                    } else if l.compressed {
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
