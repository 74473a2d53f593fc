//! DIMSE command sets (PS3.7 §9, §E): decode what a peer sent, encode what we answer or request.
//! Command sets are always Implicit VR Little Endian, whatever the presentation context says.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::text::text_opt;

/// Command Field values we use (PS3.7 Annex E).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// A command set is a few hundred bytes; a peer sending more is refused before parsing.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;

/// Command Data Set Type meaning "no data set follows" (any other value means one does).
const NO_DATA_SET: u16 = 0x0101;

/// A DIMSE status code (PS3.7 §C) with the meanings PS3.4 Annex B gives the storage service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimseStatus(pub u16);

impl DimseStatus {
    pub const SUCCESS: DimseStatus = DimseStatus(0x0000);
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: DimseStatus = DimseStatus(0x0122);
    /// Refused: out of resources (disk full, write failed).
    pub const OUT_OF_RESOURCES: DimseStatus = DimseStatus(0xA700);
    /// Error: data set does not match SOP class.
    pub const DATA_SET_MISMATCH: DimseStatus = DimseStatus(0xA900);
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: DimseStatus = DimseStatus(0xC000);

    pub fn is_success(self) -> bool {
        self.0 == 0
    }

    /// Warnings (0x0001, 0xB000-0xBFFF) still mean the instance was stored.
    pub fn is_warning(self) -> bool {
        self.0 == 0x0001 || (0xB000..=0xBFFF).contains(&self.0)
    }

    pub fn is_pending(self) -> bool {
        self.0 == 0xFF00 || self.0 == 0xFF01
    }
}

impl std::fmt::Display for DimseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meaning = match self.0 {
            0x0000 => "Success",
            0x0001 | 0xB000..=0xBFFF => "Warning",
            0x0122 => "Refused: SOP class not supported",
            0xA700..=0xA7FF => "Refused: out of resources",
            0xA900..=0xA9FF => "Error: data set does not match SOP class",
            0xC000..=0xCFFF => "Error: cannot understand",
            _ => "Failure",
        };
        write!(f, "0x{:04X} ({meaning})", self.0)
    }
}

/// A command set that could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("command set is not valid Implicit VR Little Endian: {0}")]
    Parse(String),
    #[error("command set lacks {0}")]
    Missing(&'static str),
}

/// The parts of a received command set that the services here use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    /// Message ID (requests) or Message ID Being Responded To (responses).
    pub message_id: u16,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub has_data_set: bool,
    /// DimseStatus, for responses.
    pub status: Option<DimseStatus>,
    /// Error Comment (0000,0902), for responses that carry one.
    pub error_comment: Option<String>,
}

fn implicit_le() -> &'static dicom_encoding::TransferSyntax {
    TransferSyntaxRegistry
        .get(dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .expect("Implicit VR LE is built into the registry")
}

impl Command {
    /// Parse a command set received in P-DATA command fragments.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::Parse(format!(
                "{} bytes, over the {MAX_COMMAND_BYTES}-byte cap",
                bytes.len()
            )));
        }
        super::scan::scan_bytes(bytes, super::scan::Encoding::IMPLICIT_LE)
            .map_err(|e| CommandError::Parse(e.to_string()))?;
        // Third-party parser fed by the network: contain any panic.
        let parsed = std::panic::catch_unwind(|| {
            InMemDicomObject::read_dataset_with_ts(bytes, implicit_le())
        })
        .map_err(|_| CommandError::Parse("parser failure".into()))?;
        let obj = parsed.map_err(|e| CommandError::Parse(e.to_string()))?;
        let u16_of = |tag| obj.get(tag).and_then(|e| e.value().to_int::<u16>().ok());
        let str_of = |tag| text_opt(&obj, tag);
        let field = u16_of(tags::COMMAND_FIELD).ok_or(CommandError::Missing("Command Field"))?;
        let message_id = u16_of(tags::MESSAGE_ID)
            .or_else(|| u16_of(tags::MESSAGE_ID_BEING_RESPONDED_TO))
            .ok_or(CommandError::Missing("Message ID"))?;
        let has_data_set = u16_of(tags::COMMAND_DATA_SET_TYPE)
            .ok_or(CommandError::Missing("Command Data Set Type"))?
            != NO_DATA_SET;
        Ok(Command {
            field,
            message_id,
            sop_class_uid: str_of(tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default(),
            sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default(),
            has_data_set,
            status: u16_of(tags::STATUS).map(DimseStatus),
            error_comment: str_of(tags::ERROR_COMMENT),
        })
    }
}

/// A UID for a command set: echoed from the peer, so anything the default character
/// repertoire cannot carry (or a UI value cannot hold) becomes '?', never an encoding error.
fn uid_value(uid: &str) -> PrimitiveValue {
    PrimitiveValue::from(command_text(uid, 64))
}

/// `text` restricted to printable ASCII without backslash (the repertoire of a command
/// set, which has no Specific Character Set), at most `max` characters.
pub fn command_text(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    // command_from_element_iter computes CommandGroupLength for us.
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    // Every text in it went through `command_text`, so encoding cannot fail; should it
    // anyway, an empty command set makes the peer abort rather than this task panic.
    if let Err(e) = obj.write_dataset_with_ts(&mut out, implicit_le()) {
        tracing::error!(error = %e, "could not encode a command set");
        out.clear();
    }
    out
}

/// A response (C-ECHO-RSP, C-STORE-RSP) to `request`, with an optional Error Comment.
pub fn encode_response(request: &Command, status: DimseStatus, comment: Option<&str>) -> Vec<u8> {
    let rsp_field = request.field | 0x8000;
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            uid_value(&request.sop_class_uid),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(rsp_field)),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(request.message_id),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATA_SET),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status.0)),
    ];
    if !request.sop_instance_uid.is_empty() {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            uid_value(&request.sop_instance_uid),
        ));
    }
    if let Some(comment) = comment {
        // Error Comment is LO: at most 64 characters.
        let text = command_text(comment, 64);
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(text),
        ));
    }
    encode(elements)
}

/// A C-ECHO-RQ.
pub fn encode_echo_rq(message_id: u16) -> Vec<u8> {
    encode(vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            uid_value(super::sop::VERIFICATION),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::C_ECHO_RQ),
        ),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATA_SET),
        ),
    ])
}

/// A C-STORE-RQ (medium priority) announcing a data set.
pub fn encode_store_rq(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode(vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            uid_value(sop_class_uid),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::C_STORE_RQ),
        ),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            uid_value(sop_instance_uid),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_request_round_trips() {
        let bytes = encode_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4");
        let cmd = Command::decode(&bytes).unwrap();
        assert_eq!(cmd.field, field::C_STORE_RQ);
        assert_eq!(cmd.message_id, 7);
        assert_eq!(cmd.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(cmd.sop_instance_uid, "1.2.3.4");
        assert!(cmd.has_data_set);

        let rsp = encode_response(&cmd, DimseStatus::OUT_OF_RESOURCES, Some("disk full"));
        let rsp = Command::decode(&rsp).unwrap();
        assert_eq!(rsp.field, field::C_STORE_RSP);
        assert_eq!(rsp.message_id, 7);
        assert_eq!(rsp.status, Some(DimseStatus::OUT_OF_RESOURCES));
        assert_eq!(rsp.error_comment.as_deref(), Some("disk full"));
        assert!(!rsp.has_data_set);
    }

    #[test]
    fn unrepresentable_text_is_replaced_not_a_panic() {
        let cmd = Command {
            field: field::C_STORE_RQ,
            message_id: 1,
            sop_class_uid: "1.2€".into(),
            sop_instance_uid: "1.2.3\\é".into(),
            has_data_set: true,
            status: None,
            error_comment: None,
        };
        let comment = "SOP Class in data set (1.2€) differs: ünïcödé\\x";
        let rsp = Command::decode(&encode_response(
            &cmd,
            DimseStatus::DATA_SET_MISMATCH,
            Some(comment),
        ))
        .unwrap();
        assert_eq!(rsp.sop_class_uid, "1.2?");
        assert_eq!(rsp.sop_instance_uid, "1.2.3??");
        assert_eq!(
            rsp.error_comment.as_deref(),
            Some("SOP Class in data set (1.2?) differs: ?n?c?d??x")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // Error Comment declaring 4 GiB in a 20-byte command set.
        let mut bomb = encode_echo_rq(1);
        bomb.extend_from_slice(&[0x00, 0x00, 0x02, 0x09, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
        assert!(matches!(
            Command::decode(&bomb),
            Err(CommandError::Parse(_))
        ));
        assert!(Command::decode(&vec![0u8; MAX_COMMAND_BYTES + 1]).is_err());
        assert!(Command::decode(&[0xff; 7]).is_err());
        assert!(Command::decode(&[]).is_err());
    }
}
