//! The header facts selection decides on, read per instance without loading pixel data.

use std::path::{Path, PathBuf};

use crate::dicom::open;
use dicom_dictionary_std::tags;

/// What selection looks at, per instance. Text values are trimmed; coded strings are
/// upper-cased.
#[derive(Debug, Clone, Default)]
pub struct InstanceInfo {
    pub path: PathBuf,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub modality: String,
    pub image_type: String,
    pub slice_thickness: Option<f64>,
    /// Slice normal mostly along the patient z axis (ImageOrientationPatient).
    pub axial: bool,
    pub body_part: String,
    /// Study, series, protocol, procedure and processing descriptions, space-separated
    /// (free text, any language).
    pub description: String,
    /// Anatomic Region Sequence: code value and meaning, space-separated (the DX IOD's
    /// required anatomy, where BodyPartExamined is optional).
    pub anatomy: String,
    pub view_position: String,
    /// View Code Sequence: code value and meaning, space-separated.
    pub view_code: String,
    /// PatientOrientation, the patient directions of rows and columns ("L\\F").
    pub patient_orientation: String,
    /// PresentationIntentType: "FOR PROCESSING" marks a raw detector image.
    pub presentation_intent: String,
    pub kernel: String,
    /// Whether the instance has pixel data at all (an SR or RT plan has none).
    pub has_pixels: bool,
}

/// Read the headers of `paths`; files that are not DICOM are skipped and counted.
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
    let obj = open::open_header(path, &open::Limits::default()).ok()?;
    let text = |tag| crate::dicom::text(&obj, tag);
    // What reaches our notes, the SR's text and `queue show` comes from the sender:
    // printable and bounded (CS and UI lengths).
    let label = |tag, max| crate::dicom::command::command_text(&text(tag), max);
    let floats = |tag| {
        obj.get(tag)
            .and_then(|e| e.value().to_multi_float64().ok())
            .unwrap_or_default()
    };
    let iop = floats(tags::IMAGE_ORIENTATION_PATIENT);
    let axial = iop.len() == 6 && {
        let n = [
            iop[1] * iop[5] - iop[2] * iop[4],
            iop[2] * iop[3] - iop[0] * iop[5],
            iop[0] * iop[4] - iop[1] * iop[3],
        ];
        n[2].abs() > 0.9
    };
    // `read_until` stops before Pixel Data; Rows tells whether this is an image at all.
    let has_pixels = obj.get(tags::ROWS).is_some();
    Some(InstanceInfo {
        path: path.to_path_buf(),
        study_uid: label(tags::STUDY_INSTANCE_UID, 64),
        series_uid: label(tags::SERIES_INSTANCE_UID, 64),
        sop_class_uid: text(tags::SOP_CLASS_UID),
        sop_instance_uid: label(tags::SOP_INSTANCE_UID, 64),
        modality: label(tags::MODALITY, 16).to_ascii_uppercase(),
        image_type: text(tags::IMAGE_TYPE).to_ascii_uppercase(),
        slice_thickness: floats(tags::SLICE_THICKNESS).first().copied(),
        axial,
        body_part: label(tags::BODY_PART_EXAMINED, 16).to_ascii_uppercase(),
        description: joined(&[
            text(tags::STUDY_DESCRIPTION),
            text(tags::SERIES_DESCRIPTION),
            text(tags::PROTOCOL_NAME),
            text(tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION),
            text(tags::REQUESTED_PROCEDURE_DESCRIPTION),
            // CR readers (Fuji's among them) name the exam menu here: "L-SPINE A-P".
            text(tags::ACQUISITION_DEVICE_PROCESSING_DESCRIPTION),
        ]),
        anatomy: code(&obj, tags::ANATOMIC_REGION_SEQUENCE),
        view_position: text(tags::VIEW_POSITION).to_ascii_uppercase(),
        view_code: code(&obj, tags::VIEW_CODE_SEQUENCE),
        patient_orientation: text(tags::PATIENT_ORIENTATION).to_ascii_uppercase(),
        presentation_intent: text(tags::PRESENTATION_INTENT_TYPE).to_ascii_uppercase(),
        kernel: text(tags::CONVOLUTION_KERNEL).to_ascii_uppercase(),
        has_pixels,
    })
}

/// The first item of a code sequence as "value meaning" (empty when absent).
fn code(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    let Some(item) = obj.get(tag).and_then(|e| e.items()).and_then(|i| i.first()) else {
        return String::new();
    };
    let text = |t| crate::dicom::text(item, t);
    joined(&[text(tags::CODE_VALUE), text(tags::CODE_MEANING)])
}

/// The non-empty texts, space-separated.
fn joined(texts: &[String]) -> String {
    texts
        .iter()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}
