//! Analysis: the files of one study in, one typed `Finding` out. `select` decides what can
//! be analysed, `image` decodes pixels to modality values, `ct` measures trabecular
//! attenuation per vertebra, `risk` computes the OST clinical index. (The radiograph model
//! is not part of this version yet: radiographs are reported as not applicable, saying so.)

pub mod ct;
pub mod finding;
pub mod image;
pub mod risk;
pub mod select;

use std::path::PathBuf;
use std::time::Instant;

use finding::{CtFinding, Finding, Status};

/// Analysis settings (`[analysis]` in the config file).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub ct_osteoporosis_hu: f64,
    pub ct_normal_hu: f64,
    pub ct_contrast_offset_hu: f64,
}

/// Run the engine on the files of one study.
pub fn analyze(paths: &[PathBuf], t: Thresholds) -> Finding {
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
    let mut flags = Vec::new();
    if skipped > 0 {
        flags.push(format!("{skipped} file(s) not readable as DICOM"));
    }
    let studies: std::collections::BTreeSet<&str> =
        instances.iter().map(|i| i.study_uid.as_str()).collect();
    if studies.len() > 1 {
        return Finding::not_applicable(
            study_uid,
            format!(
                "{} studies given; analyse one study at a time",
                studies.len()
            ),
            risk,
        );
    }
    let (series_uid, chosen) = match select::select(&instances) {
        select::Selection::NotApplicable { reason } => {
            let mut f = Finding::not_applicable(study_uid, reason, risk);
            f.flags = flags;
            return f;
        }
        select::Selection::Ct {
            series_uid,
            instances,
        } => (series_uid, instances),
    };
    let select_ms = started.elapsed().as_secs_f64() * 1e3;
    let paths: Vec<PathBuf> = chosen.iter().map(|i| i.path.clone()).collect();
    let volume = match ct::Volume::from_files(&paths) {
        Ok(v) => v,
        Err(e) => {
            let mut f = Finding::not_applicable(study_uid, format!("CT decode failed: {e}"), risk);
            f.status = Status::Failed;
            return f;
        }
    };
    let decode_ms = started.elapsed().as_secs_f64() * 1e3 - select_ms;
    let measurement = ct::measure(&volume);
    let (class, class_basis) = ct::classify(
        &measurement,
        (t.ct_osteoporosis_hu, t.ct_normal_hu),
        t.ct_contrast_offset_hu,
    );
    if measurement.vertebrae.is_empty() {
        flags.push("no vertebral body found".into());
    }
    if measurement.vertebrae.iter().any(|v| v.compressed) {
        flags.push("vertebra with reduced height (possible fracture)".into());
    }
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = if measurement.vertebrae.is_empty() {
        Status::Failed
    } else {
        Status::Analysed
    };
    Finding {
        study_uid,
        status,
        reason: (status == Status::Failed).then(|| "no vertebral body found in the CT".into()),
        methods: vec!["ct_trabecular_attenuation".into()],
        instances_used: chosen.iter().map(|i| i.sop_instance_uid.clone()).collect(),
        ct: Some(CtFinding {
            series_uid,
            levels: measurement.vertebrae,
            labelling: measurement.labelling,
            class,
            class_basis,
            thresholds_hu: (t.ct_osteoporosis_hu, t.ct_normal_hu),
            contrast_offset_hu: t.ct_contrast_offset_hu,
        }),
        risk,
        flags,
        timings_ms: [
            ("select".to_string(), select_ms),
            ("decode".to_string(), decode_ms),
            ("total".to_string(), total_ms),
        ]
        .into_iter()
        .collect(),
        software: concat!("osteoscreen ", env!("CARGO_PKG_VERSION")).into(),
    }
}
