//! The Secondary Capture: the key image (`keyimage`) as an RGB Secondary Capture Image in
//! the source study, new series, with the result burned in (BurnedInAnnotation YES).

use chrono::{DateTime, Utc};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::keyimage::KeyImage;
use super::source::Source;
use super::{OutputSettings, MANUFACTURER, MODEL_NAME};
use crate::dicom::dataset::DatasetBuilder;

pub const SERIES_NUMBER: &str = "9902";
/// LO: at most 64 characters.
pub const SERIES_DESCRIPTION: &str = "osteoscreen AI key image - not for diagnosis w/o review";

/// Build the SC data set for `key`; `result_key` makes the UID change with the result's
/// method, model and software version.
pub fn build(
    key: &KeyImage,
    src: &Source,
    settings: &OutputSettings,
    result_key: &str,
    now: DateTime<Utc>,
) -> InMemDicomObject {
    let study = src.study_uid();
    let mut h = DatasetBuilder::new();
    h.str(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    super::copy::copy_study(&mut h, &src.header);
    let date = now.format("%Y%m%d").to_string();
    let time = now.format("%H%M%S").to_string();
    h.str(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    )
    .str(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        &settings.uid(&[&study, result_key, "sc"]),
    )
    .str(tags::INSTANCE_CREATION_DATE, VR::DA, &date)
    .str(tags::INSTANCE_CREATION_TIME, VR::TM, &time)
    .str(tags::MODALITY, VR::CS, "OT")
    // The key image shows the lumbar spine, an unpaired structure: Laterality (2C)
    // is then absent.
    .str(tags::BODY_PART_EXAMINED, VR::CS, "LSPINE")
    .str(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &settings.uid(&[&study, "osteoscreen", "sc-series"]),
    )
    .str(tags::SERIES_NUMBER, VR::IS, SERIES_NUMBER)
    .str(tags::SERIES_DESCRIPTION, VR::LO, SERIES_DESCRIPTION)
    .str(tags::MANUFACTURER, VR::LO, MANUFACTURER)
    // SC Equipment: a workstation-made image.
    .str(tags::CONVERSION_TYPE, VR::CS, "WSD")
    .str(
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER,
        VR::LO,
        MANUFACTURER,
    )
    .str(
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER_MODEL_NAME,
        VR::LO,
        MODEL_NAME,
    )
    .str(
        tags::SECONDARY_CAPTURE_DEVICE_SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    )
    .str(tags::DATE_OF_SECONDARY_CAPTURE, VR::DA, &date)
    .str(tags::TIME_OF_SECONDARY_CAPTURE, VR::TM, &time)
    // General Image.
    .str(tags::INSTANCE_NUMBER, VR::IS, "1")
    .str(tags::PATIENT_ORIENTATION, VR::CS, &key.orientation)
    .str(tags::CONTENT_DATE, VR::DA, &date)
    .str(tags::CONTENT_TIME, VR::TM, &time)
    .str(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY")
    .str(tags::BURNED_IN_ANNOTATION, VR::CS, "YES")
    .str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
    .str(tags::DERIVATION_DESCRIPTION, VR::ST, &key.description)
    .seq(
        tags::SOURCE_IMAGE_SEQUENCE,
        key.derived_from
            .iter()
            .filter_map(|uid| {
                let class = src.sop_class_of(uid)?;
                let mut r = DatasetBuilder::new();
                r.str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class).str(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    uid,
                );
                Some(r.0)
            })
            .collect(),
    )
    // Image Pixel: 8-bit RGB, interleaved.
    .u16(tags::SAMPLES_PER_PIXEL, 3)
    .str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB")
    .u16(tags::PLANAR_CONFIGURATION, 0)
    .u16(tags::ROWS, key.canvas.height as u16)
    .u16(tags::COLUMNS, key.canvas.width as u16)
    .u16(tags::BITS_ALLOCATED, 8)
    .u16(tags::BITS_STORED, 8)
    .u16(tags::HIGH_BIT, 7)
    .u16(tags::PIXEL_REPRESENTATION, 0);
    if let Some((r, c)) = key.pixel_spacing.filter(|(r, c)| {
        [r, c]
            .iter()
            .all(|v| v.is_finite() && **v > 0.0 && **v < 1e4)
    }) {
        let spacing = format!("{}\\{}", super::content::ds(r), super::content::ds(c));
        h.str(tags::NOMINAL_SCANNED_PIXEL_SPACING, VR::DS, &spacing);
    }
    let mut pixels = key.canvas.rgb.clone();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    h.0.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pixels.into()),
    ));
    h.0
}
