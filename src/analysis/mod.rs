//! Analysis: the files of one study in, one typed `Finding` out. `header` and `select`
//! decide what can be analysed, `image` decodes pixels to modality values, `xray` runs the
//! radiograph model (`crate::model`), `ct` measures trabecular attenuation per vertebra,
//! `risk` computes the OST clinical index. `Engine` holds what stays loaded between studies.

pub mod ct;
pub mod finding;
pub mod header;
pub mod image;
pub mod risk;
pub mod select;
pub mod xray;

use std::path::PathBuf;
use std::time::Instant;

use finding::{BoneClass, Conclusion, CtClass, CtFinding, Finding, Status};

use crate::model::{ModelError, ModelSettings, XrayModel};

/// Analysis settings (`[analysis]` in the config file).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub ct_osteoporosis_hu: f64,
    pub ct_normal_hu: f64,
    pub ct_contrast_offset_hu: f64,
}

/// Everything the engine needs, loaded once: thresholds, selection rules, the X-ray model
/// (None when `[model] weights` is empty: radiograph studies then fail with that reason).
pub struct Engine {
    pub thresholds: Thresholds,
    pub rules: select::Rules,
    pub xray: Option<XrayModel>,
    pub batch_size: usize,
}

impl Engine {
    /// Load the model named in `model` (card and sha256 checked).
    pub fn load(
        thresholds: Thresholds,
        rules: select::Rules,
        model: &ModelSettings,
    ) -> Result<Engine, ModelError> {
        let xray = model.load()?;
        Ok(Engine {
            thresholds,
            rules,
            xray,
            batch_size: model.batch_size,
        })
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Run the engine on the files of one study.
pub fn analyze(paths: &[PathBuf], engine: &Engine) -> Finding {
    let started = Instant::now();
    let (instances, skipped) = select::read_headers(paths);
    let study_uid = instances
        .first()
        .map(|i| i.study_uid.clone())
        .unwrap_or_default();
    let risk = instances
        .first()
        .and_then(|i| {
            dicom_object::OpenFileOptions::new()
                .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
                .open_file(&i.path)
                .ok()
        })
        .map(|obj| risk::from_header(&obj))
        .unwrap_or(risk::Risk::Unknown {
            reason: "no header".into(),
        });
    let mut f = Finding::not_applicable(study_uid, String::new(), risk);
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
    f.timings_ms.insert("select".into(), ms(started));
    if sel.is_empty() {
        f.reason = Some(sel.reason());
        return f;
    }
    let mut failures = Vec::new();
    if let Some((series_uid, chosen)) = &sel.ct {
        let t0 = Instant::now();
        match run_ct(series_uid, chosen, engine.thresholds, &mut f) {
            Ok(ct) => {
                f.methods.push("ct_trabecular_attenuation".into());
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
        match &engine.xray {
            None => failures.push(
                "lumbar radiographs found, but no X-ray model is configured ([model] weights)"
                    .into(),
            ),
            Some(model) => {
                match xray::run(model, &sel.radiographs, engine.batch_size, &mut f.flags) {
                    Ok(x) => {
                        f.methods.push("xray_model".into());
                        f.instances_used
                            .extend(x.images.iter().map(|i| i.sop_instance_uid.clone()));
                        f.xray = Some(x);
                    }
                    Err(e) => failures.push(format!("X-ray model: {e}")),
                }
            }
        }
        f.timings_ms.insert("xray".into(), ms(t0));
    }
    f.conclusion = conclude(&f);
    if let (Some(c), Some(x)) = (&f.conclusion, &f.xray) {
        if c.method != "xray_model" && x.class != c.class {
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
    f.reason = (!failures.is_empty()).then(|| failures.join("; "));
    f.timings_ms.insert("total".into(), ms(started));
    f
}

fn run_ct(
    series_uid: &str,
    chosen: &[select::InstanceInfo],
    t: Thresholds,
    f: &mut Finding,
) -> Result<CtFinding, String> {
    let t0 = Instant::now();
    let paths: Vec<PathBuf> = chosen.iter().map(|i| i.path.clone()).collect();
    let volume = ct::Volume::from_files(&paths).map_err(|e| format!("CT decode failed: {e}"))?;
    f.timings_ms.insert("ct_decode".into(), ms(t0));
    let measurement = ct::measure(&volume);
    let flags = &mut f.flags;
    if measurement.vertebrae.is_empty() {
        return Err("no vertebral body found in the CT".into());
    }
    if measurement.vertebrae.iter().any(|v| v.compressed) {
        flags.push("vertebra with reduced height (possible fracture)".into());
    }
    let (class, class_basis) = ct::classify(
        &measurement,
        (t.ct_osteoporosis_hu, t.ct_normal_hu),
        t.ct_contrast_offset_hu,
    );
    Ok(CtFinding {
        series_uid: series_uid.to_string(),
        levels: measurement.vertebrae,
        labelling: measurement.labelling,
        class,
        class_basis,
        thresholds_hu: (t.ct_osteoporosis_hu, t.ct_normal_hu),
        contrast_offset_hu: t.ct_contrast_offset_hu,
    })
}

/// The study-level class: CT attenuation when it gave one (a direct measurement), else
/// the X-ray model.
fn conclude(f: &Finding) -> Option<Conclusion> {
    if let Some(ct) = &f.ct {
        if let Some(class) = ct.class {
            let (bone, words) = match class {
                CtClass::OsteoporosisLikely => (BoneClass::Osteoporosis, "osteoporosis likely"),
                CtClass::Indeterminate => (BoneClass::Osteopenia, "osteopenia or indeterminate"),
                CtClass::NormalLikely => (BoneClass::Normal, "normal density likely"),
            };
            return Some(Conclusion {
                class: bone,
                method: "ct_trabecular_attenuation".into(),
                probability: None,
                t_score: None,
                bmd_g_cm2: None,
                basis: format!(
                    "CT {}: {words} (thresholds {} / {} HU)",
                    ct.class_basis, ct.thresholds_hu.0, ct.thresholds_hu.1
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
        method: "xray_model".into(),
        probability: Some(x.probabilities[k]),
        t_score: Some(x.t_score),
        bmd_g_cm2: Some(x.bmd_g_cm2),
        basis: format!(
            "X-ray model on {} image(s): probability {:.2}, estimated T-score {:+.1}, BMD {:.3} g/cm2",
            x.images.len(),
            x.probabilities[k],
            x.t_score,
            x.bmd_g_cm2
        ),
    })
}
