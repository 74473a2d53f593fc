//! Selection: which instances of a study can be analysed, or why none can. Reads headers
//! only (pixel data is not loaded). CT: the axial, non-localizer series with 1-5 mm
//! slices and the most slices. Radiographs are recognised but not yet analysed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

/// The header facts selection looks at, per instance.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub path: PathBuf,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub modality: String,
    pub image_type: String,
    pub slice_thickness: Option<f64>,
    pub axial: bool,
    pub body_part: String,
    pub description: String,
}

/// What selection decided.
#[derive(Debug, Clone)]
pub enum Selection {
    Ct {
        series_uid: String,
        instances: Vec<InstanceInfo>,
    },
    NotApplicable {
        reason: String,
    },
}

/// Read the headers of `paths` (files that are not DICOM are skipped and counted).
pub fn read_headers(paths: &[PathBuf]) -> (Vec<InstanceInfo>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for path in paths {
        match read_one(path) {
            Some(info) => out.push(info),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

fn read_one(path: &Path) -> Option<InstanceInfo> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .ok()?;
    let text = |tag| {
        obj.get(tag)
            .and_then(|e| e.value().to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
            .unwrap_or_default()
    };
    let floats = |tag| {
        obj.get(tag)
            .and_then(|e| e.value().to_multi_float64().ok())
            .unwrap_or_default()
    };
    let iop = floats(tags::IMAGE_ORIENTATION_PATIENT);
    // Axial: the slice normal (row x column direction) points mostly along z.
    let axial = iop.len() == 6 && {
        let n = [
            iop[1] * iop[5] - iop[2] * iop[4],
            iop[2] * iop[3] - iop[0] * iop[5],
            iop[0] * iop[4] - iop[1] * iop[3],
        ];
        n[2].abs() > 0.9
    };
    Some(InstanceInfo {
        path: path.to_path_buf(),
        study_uid: text(tags::STUDY_INSTANCE_UID),
        series_uid: text(tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(tags::SOP_INSTANCE_UID),
        modality: text(tags::MODALITY).to_ascii_uppercase(),
        image_type: text(tags::IMAGE_TYPE).to_ascii_uppercase(),
        slice_thickness: floats(tags::SLICE_THICKNESS).first().copied(),
        axial,
        body_part: text(tags::BODY_PART_EXAMINED).to_ascii_uppercase(),
        description: format!(
            "{} {}",
            text(tags::STUDY_DESCRIPTION),
            text(tags::SERIES_DESCRIPTION)
        ),
    })
}

/// Decide what to analyse.
pub fn select(instances: &[InstanceInfo]) -> Selection {
    if instances.is_empty() {
        return Selection::NotApplicable {
            reason: "no readable DICOM instance".into(),
        };
    }
    let mut series: BTreeMap<&str, Vec<&InstanceInfo>> = BTreeMap::new();
    for i in instances.iter().filter(|i| i.modality == "CT") {
        series.entry(i.series_uid.as_str()).or_default().push(i);
    }
    let mut reasons = Vec::new();
    let mut best: Option<(&str, Vec<&InstanceInfo>)> = None;
    for (uid, items) in series {
        let thick = items[0].slice_thickness;
        if items.iter().any(|i| i.image_type.contains("LOCALIZER")) {
            reasons.push("CT localizer series".to_string());
        } else if !items.iter().all(|i| i.axial) {
            reasons.push("CT series not axial".to_string());
        } else if thick.is_some_and(|t| !(1.0..=5.0).contains(&t)) {
            reasons.push(format!(
                "CT slices {:.1} mm (need 1-5 mm)",
                thick.unwrap_or(0.0)
            ));
        } else if items.len() < 5 {
            reasons.push(format!("CT series of {} slices", items.len()));
        } else if best.as_ref().is_none_or(|(_, b)| items.len() > b.len()) {
            best = Some((uid, items));
        }
    }
    if let Some((uid, items)) = best {
        return Selection::Ct {
            series_uid: uid.to_string(),
            instances: items.into_iter().cloned().collect(),
        };
    }
    let modalities: Vec<&str> = {
        let mut m: Vec<&str> = instances.iter().map(|i| i.modality.as_str()).collect();
        m.sort();
        m.dedup();
        m
    };
    if modalities.iter().any(|m| *m == "CR" || *m == "DX") {
        reasons.push(
            "radiograph (CR/DX): X-ray model analysis is not available in this version".into(),
        );
    }
    if reasons.is_empty() {
        reasons.push(format!(
            "{}: not a lumbar CT or radiograph",
            modalities.join("/")
        ));
    }
    Selection::NotApplicable {
        reason: reasons.join("; "),
    }
}
