//! The Structured Report: a Comprehensive 3D SR (it allows SCOORD regions and requires the
//! Enhanced General Equipment module, which names our software) in the source study, new
//! series, with TID 1500 "Imaging Measurement Report" content in the style of the IHE AI
//! Results profile:
//!
//! ```text
//! CONTAINER Imaging Measurement Report (TID 1500)
//!   language, device observer (TID 1004), procedure reported
//!   Image Library > Image Library Group > IMAGE per source instance
//!   Imaging Measurements
//!     Measurement Group per site (lumbar spine for X-ray; L1..L5 for CT): tracking
//!     identifier + UID, finding site, algorithm (TID 4019), NUM items with UCUM units
//!     inferred from the images (CT: from the ROI polygon on its slice), and the Finding.
//!   Qualitative Evaluations > Finding = the study's class
//! ```

use chrono::{DateTime, Utc};
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::codes::{self, Code};
use super::content::{self as c, coded, Item, Rel};
use super::copy::copy_study;
use super::groups::{class_code, ct_groups, xray_group};
use super::source::Source;
use super::{OutputSettings, MANUFACTURER, MODEL_NAME};
use crate::analysis::finding::Finding;
use crate::dicom::dataset::DatasetBuilder;
use crate::dicom::text;

pub const SERIES_NUMBER: &str = "9901";
/// LO: at most 64 characters.
pub const SERIES_DESCRIPTION: &str =
    "osteoscreen AI bone density SR - not for diagnosis w/o review";

/// UID of the device (this installation's osteoscreen), stable per UID root.
pub fn device_uid(settings: &OutputSettings) -> String {
    settings.uid(&["osteoscreen", "device"])
}

/// A short serial number for this installation (the tail of the device UID).
fn device_serial(settings: &OutputSettings) -> String {
    let uid = device_uid(settings);
    uid[uid.len().saturating_sub(16)..].to_string()
}

/// What makes a result different: method, model, software version and the instances
/// read. A study re-sent as it was gets the same objects (same UIDs); one that gained
/// instances gets new ones, so two versions of a study's result never share a UID.
pub fn result_key(f: &Finding) -> String {
    let model = f
        .xray
        .as_ref()
        .map_or("no-xray-model", |x| x.model.weights_sha256.as_str());
    let methods: Vec<&str> = f.methods.iter().map(|m| m.as_str()).collect();
    let mut used: Vec<&str> = f.instances_used.iter().map(String::as_str).collect();
    used.sort_unstable();
    let inputs = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, used.join("\\").as_bytes());
    format!(
        "{}/{}/{model}/{}",
        f.software,
        methods.join("+"),
        inputs.simple()
    )
}

/// Build the SR data set.
pub fn build(
    f: &Finding,
    src: &Source,
    settings: &OutputSettings,
    now: DateTime<Utc>,
) -> InMemDicomObject {
    let study = src.study_uid();
    let key = result_key(f);
    let sop_uid = settings.uid(&[&study, &key, "sr"]);
    let series_uid = settings.uid(&[&study, "osteoscreen", "sr-series"]);
    let mut h = DatasetBuilder::new();
    h.str(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    copy_study(&mut h, &src.header);
    let version = env!("CARGO_PKG_VERSION");
    h.str(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::COMPREHENSIVE3_DSR_STORAGE,
    )
    .str(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid)
    .str(
        tags::INSTANCE_CREATION_DATE,
        VR::DA,
        &now.format("%Y%m%d").to_string(),
    )
    .str(
        tags::INSTANCE_CREATION_TIME,
        VR::TM,
        &now.format("%H%M%S").to_string(),
    )
    // SR Document Series.
    .str(tags::MODALITY, VR::CS, "SR")
    .str(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
    .str(tags::SERIES_NUMBER, VR::IS, SERIES_NUMBER)
    .str(tags::SERIES_DESCRIPTION, VR::LO, SERIES_DESCRIPTION)
    .seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![])
    // General and Enhanced General Equipment.
    .str(tags::MANUFACTURER, VR::LO, MANUFACTURER)
    .str(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL_NAME)
    .str(tags::DEVICE_SERIAL_NUMBER, VR::LO, &device_serial(settings))
    .str(tags::SOFTWARE_VERSIONS, VR::LO, version)
    // SR Document General.
    .str(tags::INSTANCE_NUMBER, VR::IS, "1")
    .str(tags::COMPLETION_FLAG, VR::CS, "COMPLETE")
    .str(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED")
    .str(
        tags::CONTENT_DATE,
        VR::DA,
        &now.format("%Y%m%d").to_string(),
    )
    .str(
        tags::CONTENT_TIME,
        VR::TM,
        &now.format("%H%M%S").to_string(),
    )
    .seq(
        tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
        procedure_codes(src),
    )
    .seq(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![contributing_equipment(settings)],
    );
    // Type 1C: present when the report references instances (not for a study that was
    // not analysed).
    if !src.instances.is_empty() {
        h.seq(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence(src)],
        );
    }
    // SR Document Content: the root container.
    let mut template = DatasetBuilder::new();
    template.str(tags::MAPPING_RESOURCE, VR::CS, "DCMR").str(
        tags::TEMPLATE_IDENTIFIER,
        VR::CS,
        "1500",
    );
    h.str(tags::VALUE_TYPE, VR::CS, "CONTAINER")
        .seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![coded(codes::IMAGING_MEASUREMENT_REPORT)],
        )
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE")
        .seq(tags::CONTENT_TEMPLATE_SEQUENCE, vec![template.0]);
    let children = content(f, src, settings, &study);
    h.seq(
        tags::CONTENT_SEQUENCE,
        children.into_iter().map(Item::into_inner).collect(),
    );
    h.0
}

/// The source's procedure codes (cleaned), else a generic code for the method's modality.
fn procedure_codes(src: &Source) -> Vec<InMemDicomObject> {
    let codes = super::copy::procedure_codes(&src.header);
    if codes.is_empty() {
        return vec![coded(generic_procedure(src))];
    }
    codes
}

fn generic_procedure(src: &Source) -> Code {
    if text(&src.header, tags::MODALITY) == "CT" {
        codes::CT_PROCEDURE
    } else {
        codes::RADIOGRAPHY_PROCEDURE
    }
}

/// Hierarchical SOP Instance Reference: every instance used, by series.
fn evidence(src: &Source) -> InMemDicomObject {
    let mut series: std::collections::BTreeMap<&str, Vec<InMemDicomObject>> = Default::default();
    for i in &src.instances {
        let mut r = DatasetBuilder::new();
        r.str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &i.sop_class_uid)
            .str(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &i.sop_instance_uid,
            );
        series.entry(&i.series_uid).or_default().push(r.0);
    }
    let mut study = DatasetBuilder::new();
    study
        .str(tags::STUDY_INSTANCE_UID, VR::UI, &src.study_uid())
        .seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            series
                .into_iter()
                .map(|(uid, refs)| {
                    let mut s = DatasetBuilder::new();
                    s.str(tags::SERIES_INSTANCE_UID, VR::UI, uid)
                        .seq(tags::REFERENCED_SOP_SEQUENCE, refs);
                    s.0
                })
                .collect(),
        );
    study.0
}

fn contributing_equipment(settings: &OutputSettings) -> InMemDicomObject {
    let mut e = DatasetBuilder::new();
    e.str(tags::MANUFACTURER, VR::LO, MANUFACTURER)
        .str(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL_NAME)
        .str(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION"))
        // Device UID is not an attribute of this sequence (dciodvfy); the SR's device
        // observer context carries it.
        .str(tags::DEVICE_SERIAL_NUMBER, VR::LO, &device_serial(settings))
        .str(
            tags::CONTRIBUTION_DESCRIPTION,
            VR::ST,
            "Automated bone density screening (AI); results unverified",
        )
        .seq(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![coded(codes::PROCESSING_EQUIPMENT)],
        );
    e.0
}

fn content(f: &Finding, src: &Source, settings: &OutputSettings, study: &str) -> Vec<Item> {
    let mut items = vec![
        c::code(Rel::HasConceptMod, codes::LANGUAGE, codes::ENGLISH_US),
        c::code(Rel::HasObsContext, codes::OBSERVER_TYPE, codes::DEVICE),
        c::uidref(
            Rel::HasObsContext,
            codes::DEVICE_OBSERVER_UID,
            &device_uid(settings),
        ),
        c::text(Rel::HasObsContext, codes::DEVICE_OBSERVER_NAME, MODEL_NAME),
        c::text(
            Rel::HasObsContext,
            codes::DEVICE_OBSERVER_MANUFACTURER,
            MANUFACTURER,
        ),
        c::text(
            Rel::HasObsContext,
            codes::DEVICE_OBSERVER_MODEL_NAME,
            MODEL_NAME,
        ),
        c::code_copied(
            Rel::HasConceptMod,
            codes::PROCEDURE_REPORTED,
            procedure_codes(src).swap_remove(0),
        ),
    ];
    let library: Vec<Item> = src
        .instances
        .iter()
        .map(|i| c::image(Rel::Contains, None, &i.sop_class_uid, &i.sop_instance_uid))
        .collect();
    items.push(c::container(Rel::Contains, codes::IMAGE_LIBRARY).with(vec![
        c::container(Rel::Contains, codes::IMAGE_LIBRARY_GROUP).with(library),
    ]));
    let mut groups = Vec::new();
    if let Some(x) = &f.xray {
        groups.push(xray_group(x, src, settings, study));
    }
    if let Some(ct) = &f.ct {
        groups.extend(ct_groups(ct, src, settings, study));
    }
    if !groups.is_empty() {
        items.push(c::container(Rel::Contains, codes::IMAGING_MEASUREMENTS).with(groups));
    }
    let mut evaluations = Vec::new();
    if let Some(conclusion) = &f.conclusion {
        evaluations.push(c::code(
            Rel::Contains,
            codes::FINDING,
            class_code(conclusion.class),
        ));
    }
    evaluations.extend(
        explanation(f)
            .iter()
            .map(|line| c::text(Rel::Contains, codes::COMMENT, line)),
    );
    items.push(c::container(Rel::Contains, codes::QUALITATIVE_EVALUATIONS).with(evaluations));
    items
}

/// What drove the result, in sentences for the reader: the basis, the inputs used, the
/// flags, and (for studies not analysed) why.
pub fn explanation(f: &Finding) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(r) = &f.reason {
        lines.push(format!("Not analysed: {r}"));
    }
    if let Some(c) = &f.conclusion {
        lines.push(format!("Result rests on: {}", c.basis));
    }
    if let Some(x) = &f.xray {
        let views: Vec<String> = x
            .images
            .iter()
            .map(|i| format!("{:?} {}", i.view, i.sop_instance_uid).to_lowercase())
            .collect();
        lines.push(format!("Radiographs used: {}", views.join(", ")));
    }
    if let Some(ct) = &f.ct {
        let levels: Vec<String> = ct
            .levels
            .iter()
            .map(|l| {
                let name = l.level.as_deref().unwrap_or("unlabelled");
                if l.metal {
                    format!("{name} not measured (metal)")
                } else {
                    format!("{name} median {:.0} HU", l.median_hu)
                }
            })
            .collect();
        lines.push(format!(
            "CT levels measured ({}): {}",
            ct.labelling,
            levels.join(", ")
        ));
    }
    for e in &f.excluded {
        lines.push(format!("Left out: {e}"));
    }
    for flag in &f.flags {
        lines.push(format!("Flag: {flag}"));
    }
    lines
}
