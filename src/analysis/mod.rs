//! Analysis: the files of one study in, one typed `Finding` out. `header` and `select`
//! decide what can be analysed, `image` decodes pixels to modality values, `xray` runs the
//! radiograph model (`crate::model`), `ct` measures trabecular attenuation per vertebra,
//! `risk` computes the OST clinical index. `Engine` holds what stays loaded between studies.

pub mod codestream;
pub mod ct;
pub mod finding;
pub mod header;
pub mod image;
pub mod jpeg12;
pub mod risk;
pub mod select;
pub mod site_adapt;
pub mod site_shift;
pub mod xray;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use finding::{BoneClass, Conclusion, CtFinding, Finding, Method, Status};
use select::{InstanceInfo, Selection};

use crate::model::{ModelError, ModelSettings};

/// Thresholds of the analysis methods and the optional fitted risk model (`[analysis]`
/// in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// L1 trabecular HU at or below which osteoporosis is likely (Pickhardt 2013: 110).
    pub ct_osteoporosis_hu: f64,
    /// L1 trabecular HU at or above which bone density is likely normal (160).
    pub ct_normal_hu: f64,
    /// Subtracted from measured HU for contrast-enhanced series (e.g. 14.75 portal venous).
    pub ct_contrast_offset_hu: f64,
    /// A clinical risk model from `osteoscreen train-risk` (JSON); empty: OST only.
    pub risk_model: PathBuf,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            ct_osteoporosis_hu: 110.0,
            ct_normal_hu: 160.0,
            ct_contrast_offset_hu: 0.0,
            risk_model: PathBuf::new(),
        }
    }
}

/// Why a method that had something to analyse gave no result. The Finding carries the
/// message; a study can still be analysed by its other method.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("CT decode failed: {0}")]
    CtDecode(#[from] ct::VolumeError),
    #[error("no vertebral body found in the CT")]
    NoVertebra,
    #[error("lumbar radiographs found, but no X-ray model is configured ([model] weights)")]
    NoXrayModel,
    #[error("X-ray model: {0}")]
    Xray(#[from] xray::XrayError),
}

/// Why the engine could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("risk model: {0}")]
    Risk(#[from] risk::RiskModelError),
}

/// Everything the engine needs, loaded once: thresholds, selection rules, the X-ray model
/// (None when `[model] weights` is empty: radiograph studies then fail with that reason).
pub struct Engine {
    pub thresholds: Thresholds,
    pub rules: select::Rules,
    pub xray: site_adapt::ModelSlot,
    /// The daemon's own adaptation to the site (`[model] site_adaptation`); None in the
    /// command-line tools, which read with the weights as given.
    pub adaptation: Option<site_adapt::SiteAdaptation>,
    pub batch_size: usize,
    /// Combine the radiographs with the age when the card has a covariate model.
    pub covariates: bool,
    /// The fitted risk model named in `[analysis] risk_model`, if any.
    pub risk_model: Option<risk::RiskModel>,
    /// How the radiographs analysed so far look against the model's training images.
    pub site: site_shift::SiteShift,
}

impl Engine {
    /// Load the model named in `model` (card and sha256 checked).
    pub fn load(
        thresholds: Thresholds,
        rules: select::Rules,
        model: &ModelSettings,
    ) -> Result<Engine, EngineError> {
        let xray = model.load()?;
        let risk_model = if thresholds.risk_model.as_os_str().is_empty() {
            None
        } else {
            Some(risk::RiskModel::load(&thresholds.risk_model)?)
        };
        Ok(Engine {
            thresholds,
            rules,
            xray: site_adapt::ModelSlot::new(xray),
            batch_size: model.batch_size,
            covariates: model.covariates,
            risk_model,
            site: Default::default(),
            adaptation: None,
        })
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Run the engine on the files of one study: read headers, select, run each method that
/// has input, conclude.
pub fn analyze(paths: &[PathBuf], engine: &Engine) -> Finding {
    let started = Instant::now();
    let (instances, skipped) = select::read_headers(paths);
    analyze_instances(instances, skipped, started, engine)
}

/// `analyze` on headers already read: `skipped` files were not DICOM, and `started` is
/// when reading them began (the "select" and "total" timings count from it).
pub fn analyze_instances(
    mut instances: Vec<InstanceInfo>,
    skipped: usize,
    started: Instant,
    engine: &Engine,
) -> Finding {
    // The same instance given twice (two copies of one export) counts once everywhere:
    // in the volume, the radiographs fused and the instances the report references.
    let mut seen = std::collections::HashSet::new();
    instances.retain(|i| i.sop_instance_uid.is_empty() || seen.insert(i.sop_instance_uid.clone()));
    let (risk, age_years) = patient(&instances, engine.risk_model.as_ref());
    let mut f = Finding::not_applicable(
        instances
            .first()
            .map(|i| i.study_uid.clone())
            .unwrap_or_default(),
        String::new(),
        risk,
    );
    if skipped > 0 {
        f.flags
            .push(format!("{skipped} file(s) not readable as DICOM"));
    }
    let studies: std::collections::BTreeSet<&str> =
        instances.iter().map(|i| i.study_uid.as_str()).collect();
    if studies.len() > 1 {
        f.reason = Some(format!(
            "{} studies given; analyse one study at a time",
            studies.len()
        ));
        return f;
    }
    let sel = select::select(&instances, &engine.rules);
    f.excluded = sel.excluded.clone();
    f.flags.extend(sel.notes.iter().cloned());
    f.timings_ms.insert("select".into(), ms(started));
    if sel.is_empty() {
        f.reason = Some(sel.reason());
        return f;
    }
    let failures = run_methods(&sel, engine, age_years, &mut f);
    f.conclusion = conclude(&f);
    if let (Some(c), Some(x)) = (&f.conclusion, &f.xray) {
        if c.method != Method::XrayModel && x.class != c.class {
            f.flags.push(format!(
                "X-ray model says {}, CT says {}",
                x.class.words(),
                c.class.words()
            ));
        }
    }
    f.status = if f.methods.is_empty() {
        Status::Failed
    } else {
        Status::Analysed
    };
    f.reason = (!failures.is_empty()).then(|| {
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    });
    f.timings_ms.insert("total".into(), ms(started));
    f
}

/// What the first instance's header says of the patient: the OST risk (and the fitted
/// model's, when given), and the age for the X-ray model's covariates.
fn patient(
    instances: &[InstanceInfo],
    model: Option<&risk::RiskModel>,
) -> (risk::Risk, Option<f64>) {
    let header = instances.first().and_then(|i| {
        crate::dicom::open::open_header(&i.path, &crate::dicom::open::Limits::default()).ok()
    });
    match header {
        Some(obj) => (risk::from_header_with(&obj, model), risk::age_years(&obj)),
        None => (
            risk::Risk::Unknown {
                reason: "no header".into(),
            },
            None,
        ),
    }
}

/// Run CT and X-ray on what was selected; each result goes into `f`, each failure is
/// returned. The key image's pixels come from the CT when there is one.
fn run_methods(
    sel: &Selection,
    engine: &Engine,
    age_years: Option<f64>,
    f: &mut Finding,
) -> Vec<MethodError> {
    let mut failures = Vec::new();
    if let Some((series_uid, chosen)) = &sel.ct {
        let t0 = Instant::now();
        match run_ct(series_uid, chosen, &engine.thresholds, f) {
            Ok(ct) => {
                f.methods.push(Method::CtTrabecularAttenuation);
                f.instances_used
                    .extend(chosen.iter().map(|i| i.sop_instance_uid.clone()));
                f.ct = Some(ct);
            }
            Err(e) => failures.push(e),
        }
        f.timings_ms.insert("ct".into(), ms(t0));
    }
    if !sel.radiographs.is_empty() {
        let t0 = Instant::now();
        if let Some(adaptation) = &engine.adaptation {
            adaptation.wait_while_adapting();
        }
        let model = engine.xray.get();
        let result = match &model {
            None => Err(MethodError::NoXrayModel),
            Some(model) => xray::run(
                model,
                &sel.radiographs,
                engine.batch_size,
                engine.covariates,
                age_years,
                &mut f.flags,
            )
            .map_err(MethodError::from),
        };
        let mut inputs = Vec::new();
        match result {
            Ok(run) => {
                if let Some(profile) = model.as_ref().and_then(|m| m.card.feature_profile.as_ref())
                {
                    engine.site.observe(profile, &run.features);
                }
                inputs = run.inputs;
                f.methods.push(Method::XrayModel);
                f.instances_used.extend(
                    run.finding
                        .images
                        .iter()
                        .map(|i| i.sop_instance_uid.clone()),
                );
                f.xray = Some(run.finding);
                f.timings_ms.insert("inference".into(), run.inference_ms);
                if f.key_pixels.is_none() {
                    f.key_pixels = run.key;
                }
            }
            Err(e) => failures.push(e),
        }
        f.timings_ms.insert("xray".into(), ms(t0));
        if let Some(adaptation) = &engine.adaptation {
            adaptation.offer(inputs, &engine.xray, &engine.site);
        }
    }
    failures
}

fn run_ct(
    series_uid: &str,
    chosen: &[InstanceInfo],
    t: &Thresholds,
    f: &mut Finding,
) -> Result<CtFinding, MethodError> {
    let t0 = Instant::now();
    let paths: Vec<PathBuf> = chosen.iter().map(|i| i.path.clone()).collect();
    let volume = ct::Volume::from_files(&paths)?;
    f.timings_ms.insert("ct_decode".into(), ms(t0));
    let measurement = ct::measure(&volume);
    if measurement.vertebrae.is_empty() {
        return Err(MethodError::NoVertebra);
    }
    if measurement.vertebrae.iter().any(|v| v.compressed) {
        f.flags
            .push("vertebra with reduced height (possible fracture)".into());
    }
    let instrumented: Vec<&str> = measurement
        .vertebrae
        .iter()
        .filter(|v| v.metal)
        .map(|v| v.level.as_deref().unwrap_or("unlabelled body"))
        .collect();
    if !instrumented.is_empty() {
        f.flags.push(format!(
            "metal (spinal hardware) at {}: HU not measured there, class from other levels",
            instrumented.join(", ")
        ));
    }
    f.key_pixels = ct::keyview::key_pixels(&volume, &measurement.vertebrae);
    let (class, class_basis, level_confidence) = ct::classify(
        &measurement,
        (t.ct_osteoporosis_hu, t.ct_normal_hu),
        t.ct_contrast_offset_hu,
    );
    if let Some(caution) = &measurement.labels_caution {
        f.flags.push(caution.clone());
    }
    if level_confidence == Some(finding::LevelConfidence::Unlabelled) {
        f.flags.push(format!(
            "CT levels not identified ({}): class from the mean of the lumbar-looking bodies, lower confidence",
            measurement.labelling
        ));
    }
    Ok(CtFinding {
        series_uid: series_uid.to_string(),
        levels: measurement.vertebrae,
        labelling: measurement.labelling,
        class,
        class_basis,
        level_confidence,
        thresholds_hu: (t.ct_osteoporosis_hu, t.ct_normal_hu),
        contrast_offset_hu: t.ct_contrast_offset_hu,
    })
}

/// The study-level class: CT attenuation when it gave one (a direct measurement), else
/// the X-ray model.
fn conclude(f: &Finding) -> Option<Conclusion> {
    if let Some(ct) = &f.ct {
        if let Some(class) = ct.class {
            return Some(Conclusion {
                class: BoneClass::from(class),
                method: Method::CtTrabecularAttenuation,
                probability: None,
                t_score: None,
                bmd_g_cm2: None,
                basis: format!(
                    "CT {}: {} (thresholds {} / {} HU)",
                    ct.class_basis,
                    class.words(),
                    ct.thresholds_hu.0,
                    ct.thresholds_hu.1
                ),
            });
        }
    }
    let x = f.xray.as_ref()?;
    let k = BoneClass::ALL
        .iter()
        .position(|c| *c == x.class)
        .expect("class is one of ALL");
    Some(Conclusion {
        class: x.class,
        method: Method::XrayModel,
        probability: Some(x.probabilities[k]),
        t_score: Some(x.t_score),
        bmd_g_cm2: Some(x.bmd_g_cm2),
        basis: format!(
            "X-ray model on {} image(s){}: probability {:.2}, estimated T-score {:+.1}, BMD {:.3} g/cm2",
            x.images.len(),
            // The age itself stays out: the basis is stored in the job summary (`queue show`).
            x.covariates.as_ref().map_or(String::new(), |c| format!(
                " with the patient's age (radiographs alone T {:+.1}, {})",
                c.image_t_score,
                c.image_class.words()
            )),
            x.probabilities[k],
            x.t_score,
            x.bmd_g_cm2
        ),
    })
}
