//! Checking one received data set before it is spooled: it must parse in its negotiated
//! transfer syntax, match its C-STORE command, carry usable UIDs and an accepted modality.
//! A refusal carries the DIMSE status and a reason the sender's operator can read.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dimse::sop::{is_safe_uid, sop_class_name, trim_uid};
use crate::dimse::{Command, Status};

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
        let text = |tag| -> String {
            obj.get(tag)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| trim_uid(s.trim()).to_string())
                .unwrap_or_default()
        };
        ReceivedInstance {
            sop_class_uid: text(tags::SOP_CLASS_UID),
            sop_instance_uid: text(tags::SOP_INSTANCE_UID),
            study_uid: text(tags::STUDY_INSTANCE_UID),
            series_uid: text(tags::SERIES_INSTANCE_UID),
            modality: text(tags::MODALITY).to_ascii_uppercase(),
        }
    }
}

/// Why a data set was refused, as sent back in the C-STORE-RSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub reason: String,
}

fn refuse(status: Status, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// Parse `data` (as received, in transfer syntax `ts_uid`) and check it against `command`.
pub fn inspect(
    data: &[u8],
    ts_uid: &str,
    command: &Command,
    accepted_modalities: &[String],
) -> Result<ReceivedInstance, Refusal> {
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        refuse(
            Status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {ts_uid}"),
        )
    })?;
    // The parser is third-party code fed by the network: contain any panic.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        InMemDicomObject::read_dataset_with_ts(data, ts)
    }));
    let obj = match parsed {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => {
            return Err(refuse(
                Status::CANNOT_UNDERSTAND,
                format!("data set does not parse: {e}"),
            ))
        }
        Err(_) => {
            return Err(refuse(
                Status::CANNOT_UNDERSTAND,
                "data set does not parse (parser failure)",
            ))
        }
    };
    if ts.is_encapsulated_pixel_data() && !encapsulated_pixel_data_is_complete(data) {
        return Err(refuse(
            Status::CANNOT_UNDERSTAND,
            "truncated: encapsulated pixel data has no end delimiter",
        ));
    }
    let instance = ReceivedInstance::read_from(&obj);
    for (name, uid) in [
        ("SOP Instance UID", &instance.sop_instance_uid),
        ("Study Instance UID", &instance.study_uid),
        ("Series Instance UID", &instance.series_uid),
    ] {
        if uid.is_empty() {
            return Err(refuse(
                Status::CANNOT_UNDERSTAND,
                format!("{name} is missing"),
            ));
        }
        if !is_safe_uid(uid) {
            return Err(refuse(
                Status::CANNOT_UNDERSTAND,
                format!("{name} is not a valid UID"),
            ));
        }
    }
    if instance.sop_class_uid != command.sop_class_uid {
        return Err(refuse(
            Status::DATA_SET_MISMATCH,
            format!(
                "SOP Class in data set ({}) differs from C-STORE request ({})",
                sop_class_name(&instance.sop_class_uid),
                sop_class_name(&command.sop_class_uid)
            ),
        ));
    }
    if instance.sop_instance_uid != command.sop_instance_uid {
        return Err(refuse(
            Status::DATA_SET_MISMATCH,
            "SOP Instance UID in data set differs from C-STORE request",
        ));
    }
    if !accepted_modalities.contains(&instance.modality) {
        let shown = if instance.modality.is_empty() {
            "(none)"
        } else {
            &instance.modality
        };
        return Err(refuse(
            Status::CANNOT_UNDERSTAND,
            format!(
                "Modality {shown} not accepted (accepted: {})",
                accepted_modalities.join(", ")
            ),
        ));
    }
    Ok(instance)
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
