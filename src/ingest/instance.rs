//! Checking one received data set before it is acknowledged: it must parse in its
//! transfer syntax, match what its sender announced (the C-STORE command, or the meta group
//! of a STOW-RS part), carry usable UIDs and an accepted modality. A refusal carries the
//! DIMSE status and a reason the sender's operator can read; STOW-RS reports the same
//! status as its Failure Reason.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DicomCollectorOptions, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dicom::open;
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

    /// 0xC000: the data set or its framing cannot be understood.
    pub fn cannot_understand(reason: impl Into<String>) -> Refusal {
        Refusal::new(DimseStatus::CANNOT_UNDERSTAND, reason)
    }

    /// 0xA700: disk, spool or database; `what` failed because of `cause`.
    pub fn out_of_resources(what: &str, cause: impl std::fmt::Display) -> Refusal {
        Refusal::new(DimseStatus::OUT_OF_RESOURCES, format!("{what}: {cause}"))
    }
}

/// What the sender said an instance is before its data set was read: the C-STORE
/// request's Affected SOP Class / Instance UIDs, or a Part 10 file's meta group.
pub struct Announced<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    /// Where the announcement came from, for the refusal's reason.
    pub by: &'static str,
}

impl<'a> Announced<'a> {
    pub fn by_command(command: &'a Command) -> Announced<'a> {
        Announced {
            sop_class_uid: &command.sop_class_uid,
            sop_instance_uid: &command.sop_instance_uid,
            by: "C-STORE request",
        }
    }
}

/// The checks every transport shares, on a parsed data set (the header is enough):
/// usable UIDs, the announced identity, an accepted modality.
pub fn check(
    obj: &InMemDicomObject,
    announced: &Announced,
    accepted_modalities: &[String],
) -> Result<ReceivedInstance, Refusal> {
    let instance = ReceivedInstance::read_from(obj);
    check_uids(&instance)?;
    check_against_announced(&instance, announced)?;
    check_modality(&instance, accepted_modalities)?;
    Ok(instance)
}

/// Parse a Part 10 file (a spooled STOW-RS part: our meta group, the data set as received)
/// and check it against what its sender announced. Only the header is parsed; Pixel Data
/// is checked by the length pre-scan alone, so memory stays small whatever the
/// instance's size.
pub fn inspect_file(
    path: &Path,
    announced: &Announced,
    accepted_modalities: &[String],
) -> Result<ReceivedInstance, Refusal> {
    let open = || {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    };
    inspect(open, announced, accepted_modalities)
}

/// `inspect_file` on a data set that `open` gives as a reader and its size (a spooled file,
/// or a journal record's window into its segment).
pub fn inspect<R: Read + Seek>(
    open: impl Fn() -> std::io::Result<(R, u64)>,
    announced: &Announced,
    accepted_modalities: &[String],
) -> Result<ReceivedInstance, Refusal> {
    // The parser is third-party code fed by the network: contain any panic.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_header(&open)));
    let header = match parsed {
        Ok(Ok(header)) => header,
        Ok(Err(reason)) => return Err(Refusal::cannot_understand(reason)),
        Err(_) => {
            return Err(Refusal::cannot_understand(
                "data set does not parse (parser failure)",
            ))
        }
    };
    check(&header, announced, accepted_modalities)
}

/// The data set up to its Pixel Data, after making sure the rest of it is all there.
/// The length pre-scan runs first: no declared length reaches the parser unchecked.
fn read_header<R: Read + Seek>(
    open: &impl Fn() -> std::io::Result<(R, u64)>,
) -> Result<InMemDicomObject, String> {
    let fail = |e: &dyn std::fmt::Display| format!("data set does not parse: {e}");
    let (reader, size) = open().map_err(|e| fail(&e))?;
    open::check_reader(reader, size, &open::Limits::default()).map_err(|e| match e {
        open::OpenError::DataSet(e) => format!("data set refused: {e}"),
        e => e.to_string(),
    })?;
    // Every spooled data set (either transport) starts with our own preamble.
    let (reader, _) = open().map_err(|e| fail(&e))?;
    let mut collector = DicomCollectorOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(BufReader::new(reader));
    let ts_uid = collector
        .read_file_meta()
        .map_err(|e| fail(&e))?
        .transfer_syntax()
        .to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    if matches!(ts.codec(), Codec::Dataset(_)) {
        // A deflated data set cannot be walked lazily; these are small, parse it whole.
        let (reader, _) = open().map_err(|e| fail(&e))?;
        let obj = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .from_reader(reader)
            .map_err(|e| fail(&e))?;
        return Ok(obj.into_inner());
    }
    let mut header = InMemDicomObject::new_empty();
    collector
        .read_dataset_up_to_pixeldata(&mut header)
        .map_err(|e| fail(&e))?;
    // Pixel Data, native or encapsulated, is not read: the pre-scan has already held every
    // declared length (each fragment's too) against the file's size and found the
    // fragments' delimiter. Reading it back would prove nothing more, cost about as much
    // as receiving it, and hold a whole fragment (up to the instance cap) in memory.
    Ok(header)
}

/// The UIDs that name the spool path must be present and safe.
fn check_uids(instance: &ReceivedInstance) -> Result<(), Refusal> {
    for (name, uid) in [
        ("SOP Instance UID", &instance.sop_instance_uid),
        ("Study Instance UID", &instance.study_uid),
        ("Series Instance UID", &instance.series_uid),
    ] {
        if uid.is_empty() {
            return Err(Refusal::cannot_understand(format!("{name} is missing")));
        }
        if !is_safe_uid(uid) {
            return Err(Refusal::cannot_understand(format!(
                "{name} is not a valid UID"
            )));
        }
    }
    Ok(())
}

/// The data set must be what its sender announced.
fn check_against_announced(
    instance: &ReceivedInstance,
    announced: &Announced,
) -> Result<(), Refusal> {
    if instance.sop_class_uid != announced.sop_class_uid {
        return Err(Refusal::new(
            DimseStatus::DATA_SET_MISMATCH,
            format!(
                "SOP Class in data set ({}) differs from {} ({})",
                sop_class_name(&instance.sop_class_uid),
                announced.by,
                sop_class_name(announced.sop_class_uid)
            ),
        ));
    }
    if instance.sop_instance_uid != announced.sop_instance_uid {
        return Err(Refusal::new(
            DimseStatus::DATA_SET_MISMATCH,
            format!("SOP Instance UID in data set differs from {}", announced.by),
        ));
    }
    Ok(())
}

/// Only the modalities the operator accepts (`[dicom] accepted_modalities`).
fn check_modality(instance: &ReceivedInstance, accepted: &[String]) -> Result<(), Refusal> {
    if accepted.contains(&instance.modality) {
        return Ok(());
    }
    // The sender's own text, on its way to our log and its operator's.
    let shown = if instance.modality.is_empty() {
        "(none)".to_string()
    } else {
        crate::dicom::command::command_text(&instance.modality, 16)
    };
    Err(Refusal::cannot_understand(format!(
        "Modality {shown} not accepted (accepted: {})",
        accepted.join(", ")
    )))
}

/// Follows a data set as it streams in and tells whether its last encapsulated Pixel Data
/// element was closed by a Sequence Delimitation Item: the parser tolerates a sequence cut
/// off at the end of the stream, and a truncated image must not be acknowledged. Only the
/// last few bytes are kept between chunks, so a data set of any size is checked in
/// constant memory.
#[derive(Default)]
pub struct PixelDataEnd {
    /// The end of the previous chunk: a pattern may straddle two chunks.
    carry: Vec<u8>,
    /// A Pixel Data header was seen and no delimiter after it yet.
    open: bool,
}

/// (7FE0,0010) with any VR (OB, or OW from some writers), reserved, undefined length.
const PIXEL_DATA_HEADER: usize = 12;
const SEQUENCE_DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];

impl PixelDataEnd {
    /// The next bytes of the data set.
    pub fn feed(&mut self, bytes: &[u8]) {
        let carried = self.carry.len();
        if carried > 0 {
            let mut joint = std::mem::take(&mut self.carry);
            joint.extend_from_slice(&bytes[..bytes.len().min(PIXEL_DATA_HEADER - 1)]);
            self.scan(&joint, carried);
            joint.truncate(carried);
            self.carry = joint;
        }
        self.scan(bytes, bytes.len());
        // Keep what a pattern starting in this chunk may still need.
        self.carry.extend_from_slice(bytes);
        let keep = self.carry.len().min(PIXEL_DATA_HEADER - 1);
        self.carry.drain(..self.carry.len() - keep);
    }

    /// Whether every encapsulated Pixel Data element seen so far has ended.
    pub fn is_complete(&self) -> bool {
        !self.open
    }

    /// `is_complete`, as the refusal a sender gets when it is not.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.is_complete() {
            return Ok(());
        }
        Err(Refusal::cannot_understand(
            "truncated: encapsulated pixel data has no end delimiter",
        ))
    }

    /// Look at the patterns that start in `data[..starts]`, in order.
    fn scan(&mut self, data: &[u8], starts: usize) {
        let is_header = |w: &[u8]| {
            w.len() >= PIXEL_DATA_HEADER
                && w[..4] == [0xE0, 0x7F, 0x10, 0x00]
                && w[6..8] == [0, 0]
                && w[8..12] == [0xFF; 4]
        };
        for i in 0..starts.min(data.len()) {
            let rest = &data[i..];
            if is_header(rest) {
                self.open = true;
            } else if rest.starts_with(&SEQUENCE_DELIMITER) {
                self.open = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encapsulated_pixel_data_is_complete(data: &[u8]) -> bool {
        let mut end = PixelDataEnd::default();
        end.feed(data);
        end.is_complete()
    }

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
        // Fed in pieces of every size, patterns straddling the pieces.
        for piece in 1..data.len() {
            let mut end = PixelDataEnd::default();
            for chunk in data.chunks(piece) {
                end.feed(chunk);
            }
            assert!(end.is_complete(), "pieces of {piece}");
            let mut end = PixelDataEnd::default();
            for chunk in data[..data.len() - 1].chunks(piece) {
                end.feed(chunk);
            }
            assert!(!end.is_complete(), "pieces of {piece}, delimiter cut");
        }
    }
}
