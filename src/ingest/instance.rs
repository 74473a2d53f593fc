//! Checking one received data set before it is spooled: it must parse in its negotiated
//! transfer syntax, match its C-STORE command, carry usable UIDs and an accepted modality.
//! A refusal carries the DIMSE status and a reason the sender's operator can read.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dicom::sop::sop_class_name;
use crate::dicom::text;
use crate::dicom::uid::is_safe_uid;
use crate::dicom::{Command, DimseStatus};

/// The identifying attributes of an accepted instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub modality: String,
}

impl ReceivedInstance {
    /// The identifying attributes as found in `obj` (empty where absent).
    pub fn read_from(obj: &InMemDicomObject) -> ReceivedInstance {
        ReceivedInstance {
            sop_class_uid: text(obj, tags::SOP_CLASS_UID),
            sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID),
            study_uid: text(obj, tags::STUDY_INSTANCE_UID),
            series_uid: text(obj, tags::SERIES_INSTANCE_UID),
            modality: text(obj, tags::MODALITY).to_ascii_uppercase(),
        }
    }
}

/// Why a data set was refused, as sent back in the C-STORE-RSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: DimseStatus,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: DimseStatus, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// Parse `data` (as received, in transfer syntax `ts_uid`) and check it against `command`.
pub fn inspect(
    data: &[u8],
    ts_uid: &str,
    command: &Command,
    accepted_modalities: &[String],
) -> Result<ReceivedInstance, Refusal> {
    let obj = parse(data, ts_uid)?;
    let instance = ReceivedInstance::read_from(&obj);
    check_uids(&instance)?;
    check_against_request(&instance, command)?;
    check_modality(&instance, accepted_modalities)?;
    Ok(instance)
}

fn cannot_understand(reason: impl Into<String>) -> Refusal {
    Refusal::new(DimseStatus::CANNOT_UNDERSTAND, reason)
}

/// The data set, parsed in its transfer syntax; a truncated encapsulated image is refused.
fn parse(data: &[u8], ts_uid: &str) -> Result<InMemDicomObject, Refusal> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| cannot_understand(format!("unknown transfer syntax {ts_uid}")))?;
    // The parser is third-party code fed by the network: contain any panic.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        InMemDicomObject::read_dataset_with_ts(data, ts)
    }));
    let obj = match parsed {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => return Err(cannot_understand(format!("data set does not parse: {e}"))),
        Err(_) => {
            return Err(cannot_understand(
                "data set does not parse (parser failure)",
            ))
        }
    };
    if ts.is_encapsulated_pixel_data() && !encapsulated_pixel_data_is_complete(data) {
        return Err(cannot_understand(
            "truncated: encapsulated pixel data has no end delimiter",
        ));
    }
    Ok(obj)
}

/// The UIDs that name the spool path must be present and safe.
fn check_uids(instance: &ReceivedInstance) -> Result<(), Refusal> {
    for (name, uid) in [
        ("SOP Instance UID", &instance.sop_instance_uid),
        ("Study Instance UID", &instance.study_uid),
        ("Series Instance UID", &instance.series_uid),
    ] {
        if uid.is_empty() {
            return Err(cannot_understand(format!("{name} is missing")));
        }
        if !is_safe_uid(uid) {
            return Err(cannot_understand(format!("{name} is not a valid UID")));
        }
    }
    Ok(())
}

/// The data set must be what its C-STORE request announced.
fn check_against_request(instance: &ReceivedInstance, command: &Command) -> Result<(), Refusal> {
    if instance.sop_class_uid != command.sop_class_uid {
        return Err(Refusal::new(
            DimseStatus::DATA_SET_MISMATCH,
            format!(
                "SOP Class in data set ({}) differs from C-STORE request ({})",
                sop_class_name(&instance.sop_class_uid),
                sop_class_name(&command.sop_class_uid)
            ),
        ));
    }
    if instance.sop_instance_uid != command.sop_instance_uid {
        return Err(Refusal::new(
            DimseStatus::DATA_SET_MISMATCH,
            "SOP Instance UID in data set differs from C-STORE request",
        ));
    }
    Ok(())
}

/// Only the modalities the operator accepts (`[dicom] accepted_modalities`).
fn check_modality(instance: &ReceivedInstance, accepted: &[String]) -> Result<(), Refusal> {
    if accepted.contains(&instance.modality) {
        return Ok(());
    }
    let shown = if instance.modality.is_empty() {
        "(none)"
    } else {
        &instance.modality
    };
    Err(cannot_understand(format!(
        "Modality {shown} not accepted (accepted: {})",
        accepted.join(", ")
    )))
}

/// The parser tolerates an encapsulated Pixel Data sequence cut off at the end of the
/// stream; a truncated image must not be acknowledged, so look for the Sequence
/// Delimitation Item after the (explicit VR little endian) Pixel Data header.
fn encapsulated_pixel_data_is_complete(data: &[u8]) -> bool {
    const DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
    // tag (7FE0,0010), any VR (OB, or OW from some writers), reserved, undefined length
    let is_header =
        |w: &[u8]| w[..4] == [0xE0, 0x7F, 0x10, 0x00] && w[6..8] == [0, 0] && w[8..] == [0xFF; 4];
    let Some(start) = data.windows(12).rposition(is_header) else {
        return true; // no encapsulated Pixel Data (e.g. a header-only object)
    };
    data[start..]
        .windows(DELIMITER.len())
        .any(|w| w == DELIMITER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_encapsulated_pixel_data_is_detected() {
        let mut data = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        assert!(!encapsulated_pixel_data_is_complete(&data));
        data.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(encapsulated_pixel_data_is_complete(&data));
        assert!(encapsulated_pixel_data_is_complete(b"no pixel data here"));
    }
}
