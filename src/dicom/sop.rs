//! The SOP classes and transfer syntaxes osteoscreen accepts, with their names for messages.

use dicom_dictionary_std::uids;

/// Verification (C-ECHO).
pub const VERIFICATION: &str = uids::VERIFICATION;

/// Storage SOP classes the SCP accepts: lumbar radiographs, CT, and secondary captures.
pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[
    (uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE, "CR Image"),
    (
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        "Digital X-Ray Image (For Presentation)",
    ),
    (
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
        "Digital X-Ray Image (For Processing)",
    ),
    (uids::CT_IMAGE_STORAGE, "CT Image"),
    (uids::ENHANCED_CT_IMAGE_STORAGE, "Enhanced CT Image"),
    (
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Secondary Capture Image",
    ),
];

pub fn is_accepted_storage_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// A printable name for a SOP class UID, falling back to the UID itself.
pub fn sop_class_name(uid: &str) -> String {
    STORAGE_SOP_CLASSES
        .iter()
        .find(|(u, _)| *u == uid)
        .map(|(_, n)| n.to_string())
        .or_else(|| {
            use dicom_core::dictionary::{UidDictionary, UidDictionaryEntry};
            dicom_dictionary_std::StandardSopClassDictionary
                .by_uid(uid)
                .map(|entry| entry.name().to_string())
        })
        // An unknown UID may be anything a peer sent: shown printable and bounded.
        .unwrap_or_else(|| super::command::command_text(uid, 64))
}
