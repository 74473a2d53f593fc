//! One part of a STOW-RS body while it arrives. A part is a DICOM Part 10 file: its
//! preamble and meta group are collected first (they say what the data set is and how it is
//! encoded), then the data set goes to the spool's incoming file chunk by chunk, exactly as
//! received. When the part ends, the file is fsynced while its data set is checked, as for a
//! C-STORE; it is put in place only once the whole body has been read (see `super`).

use std::sync::Arc;

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::FileMetaTable;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dicom::command::command_text;
use crate::dicom::scan::{scan_bytes, Encoding};
use crate::dicom::text::unpad;
use crate::ingest::c_store::FREE_SPACE_CHECK_BYTES;
use crate::ingest::instance::{inspect_file, Announced, PixelDataEnd, ReceivedInstance, Refusal};
use crate::ingest::spool::{FileHeader, Incoming, Written};
use crate::ingest::Ingest;

/// How STOW-RS clients are recorded: the calling AE of their instance rows, the Source AE
/// of their spooled files, and the `calling_ae` label of the instance metrics.
pub const STOW_AE: &str = "STOW-RS";

/// Preamble length; "DICM" follows it.
const PREAMBLE: usize = 128;
/// A real meta group is a few hundred bytes; anything this large is not one.
const MAX_META: u32 = 64 * 1024;

/// What a part said it was in its meta group (empty when it never said).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartId {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// A part that is not stored, and why.
#[derive(Debug)]
pub struct Failed {
    pub id: PartId,
    pub refusal: Refusal,
}

/// A part checked and fsynced, waiting for the end of the body.
pub struct Staged {
    pub instance: ReceivedInstance,
    pub transfer_syntax: String,
    pub file: TempFile,
}

impl Staged {
    pub fn id(&self) -> PartId {
        PartId {
            sop_class_uid: self.instance.sop_class_uid.clone(),
            sop_instance_uid: self.instance.sop_instance_uid.clone(),
        }
    }
}

/// A complete, fsynced temp file, removed when dropped unless taken to be placed: a body
/// that breaks off later, or a client that goes away, leaves nothing behind.
pub struct TempFile(Option<Written>);

impl TempFile {
    pub fn take(&mut self) -> Option<Written> {
        self.0.take()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(written) = self.0.take() {
            written.discard();
        }
    }
}

/// A part being received.
pub struct PartReceiver {
    ingest: Arc<Ingest>,
    id: PartId,
    state: State,
    /// Set for encapsulated transfer syntaxes: a cut-off pixel data sequence is refused.
    end: Option<PixelDataEnd>,
    pub bytes: u64,
    /// When the free disk space is checked next (as a C-STORE's is, while it arrives).
    next_space_check: u64,
}

enum State {
    /// Collecting the preamble and meta group.
    Head(Vec<u8>),
    /// The data set is going to the spool.
    Body {
        file: Incoming,
        transfer_syntax: String,
    },
    /// Refused already; the rest of the part is read and dropped.
    Refused(Refusal),
}

impl PartReceiver {
    /// A new part with the Content-Type its headers give (None: the request's type).
    pub fn new(ingest: Arc<Ingest>, content_type: Option<&str>) -> PartReceiver {
        let state = match content_type {
            Some(t) if !super::is_dicom_type(t) => State::Refused(Refusal::cannot_understand(
                format!("part is {t}, not application/dicom"),
            )),
            _ => State::Head(Vec::new()),
        };
        PartReceiver {
            ingest,
            id: PartId::default(),
            state,
            end: None,
            bytes: 0,
            next_space_check: FREE_SPACE_CHECK_BYTES,
        }
    }

    /// The next bytes of the part.
    pub fn append(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        match &mut self.state {
            State::Head(head) => {
                head.extend_from_slice(bytes);
                match meta_range(head, false) {
                    Ok(None) => {}
                    Ok(Some((dicm, end))) => {
                        let head = std::mem::take(head);
                        self.open(&head[dicm..end]);
                        self.write(&head[end..]);
                    }
                    Err(refusal) => self.state = State::Refused(refusal),
                }
            }
            State::Body { .. } => self.write(bytes),
            State::Refused(_) => {}
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let cap_mb = self.ingest.settings.max_instance_mb;
        if self.bytes > cap_mb.saturating_mul(1 << 20) {
            // Dropping the incoming file removes it.
            self.state = State::Refused(Refusal::new(
                crate::dicom::DimseStatus::OUT_OF_RESOURCES,
                format!("instance larger than max_instance_mb ({cap_mb} MiB)"),
            ));
            return;
        }
        if self.bytes >= self.next_space_check {
            self.next_space_check = self.bytes + FREE_SPACE_CHECK_BYTES;
            if let Err(reason) = self.ingest.has_room_for(FREE_SPACE_CHECK_BYTES) {
                self.state = State::Refused(Refusal::new(
                    crate::dicom::DimseStatus::OUT_OF_RESOURCES,
                    reason,
                ));
                return;
            }
        }
        if let State::Body { file, .. } = &mut self.state {
            tokio::task::block_in_place(|| file.append(bytes));
            if let Some(end) = self.end.as_mut() {
                end.feed(bytes);
            }
        }
    }

    /// The meta group is complete: check what it announces and open the spool file.
    fn open(&mut self, meta: &[u8]) {
        let opened = read_meta(meta).and_then(|meta| {
            // The client's text, bound for our log and the response: printable, UI-long.
            let uid = |v: &str| command_text(unpad(v), 64);
            self.id = PartId {
                sop_class_uid: uid(meta.media_storage_sop_class_uid()),
                sop_instance_uid: uid(meta.media_storage_sop_instance_uid()),
            };
            self.begin(unpad(meta.transfer_syntax()))
        });
        self.state = match opened {
            Ok(state) => state,
            Err(refusal) => State::Refused(refusal),
        };
    }

    /// The checks a C-STORE gets from its presentation context and command, then the file.
    fn begin(&mut self, ts_uid: &str) -> Result<State, Refusal> {
        let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
            Refusal::cannot_understand(format!(
                "unknown transfer syntax {}",
                command_text(ts_uid, 64)
            ))
        })?;
        let file = self.ingest.admit(&FileHeader {
            sop_class_uid: &self.id.sop_class_uid,
            sop_instance_uid: &self.id.sop_instance_uid,
            transfer_syntax: ts_uid,
            calling_ae: STOW_AE,
        })?;
        self.end = ts.is_encapsulated_pixel_data().then(PixelDataEnd::default);
        Ok(State::Body {
            file,
            transfer_syntax: ts_uid.to_string(),
        })
    }

    /// The part has ended: fsync its file (on a pooled blocking thread) while its data set
    /// is parsed and checked (on another), as a C-STORE's is.
    pub async fn finish(self) -> Result<Staged, Failed> {
        let PartReceiver {
            ingest,
            id,
            state,
            end,
            ..
        } = self;
        let refused = |refusal| Failed {
            id: id.clone(),
            refusal,
        };
        let (file, transfer_syntax) = match state {
            State::Head(head) => {
                let refusal = match meta_range(&head, true) {
                    Err(refusal) => refusal,
                    Ok(_) => Refusal::cannot_understand("not a DICOM Part 10 file"),
                };
                return Err(refused(refusal));
            }
            State::Refused(refusal) => return Err(refused(refusal)),
            State::Body {
                file,
                transfer_syntax,
            } => (file, transfer_syntax),
        };
        if let Some(end) = &end {
            end.check().map_err(refused)?;
        }
        let path = file.path().to_path_buf();
        let fsync = tokio::task::spawn_blocking(move || file.finish().map(|w| TempFile(Some(w))));
        let (class, instance) = (id.sop_class_uid.clone(), id.sop_instance_uid.clone());
        let check = tokio::task::spawn_blocking(move || {
            let announced = Announced {
                sop_class_uid: &class,
                sop_instance_uid: &instance,
                by: "file meta information",
            };
            inspect_file(&path, &announced, &ingest.settings.accepted_modalities)
        });
        let (fsynced, checked) = tokio::join!(fsync, check);
        let out_of_resources =
            |e: &dyn std::fmt::Display| refused(Refusal::out_of_resources("spool write failed", e));
        let file = fsynced
            .map_err(|e| out_of_resources(&e))?
            .map_err(|e| out_of_resources(&e))?;
        let instance = checked
            .map_err(|_| {
                refused(Refusal::cannot_understand(
                    "data set does not parse (parser failure)",
                ))
            })?
            .map_err(refused)?;
        Ok(Staged {
            instance,
            transfer_syntax,
            file,
        })
    }
}

/// Where the meta group lies in `head`, the first bytes of a part: from "DICM" to the end
/// of group 0002. `Ok(None)` while more bytes are needed; `last`: no more will come.
fn meta_range(head: &[u8], last: bool) -> Result<Option<(usize, usize)>, Refusal> {
    let refuse = |why: &str| Refusal::cannot_understand(format!("not a DICOM Part 10 file: {why}"));
    let more = |why: &str| if last { Err(refuse(why)) } else { Ok(None) };
    let dicm = if head.len() >= PREAMBLE + 4 && &head[PREAMBLE..PREAMBLE + 4] == b"DICM" {
        PREAMBLE
    } else if head.starts_with(b"DICM") && (head.len() >= PREAMBLE + 4 || last) {
        0 // no preamble: tolerated, as the file readers do
    } else if head.len() < PREAMBLE + 4 {
        return more("no preamble and DICM prefix");
    } else {
        return Err(refuse("no DICM prefix"));
    };
    let group = dicm + 4;
    let Some(h) = head.get(group..group + 12) else {
        return more("file meta information cut short");
    };
    if h[..4] != [0x02, 0x00, 0x00, 0x00] || &h[4..6] != b"UL" || h[6..8] != [4, 0] {
        return Err(refuse(
            "file meta information does not start with its group length",
        ));
    }
    let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len > MAX_META {
        return Err(refuse("file meta information group length too large"));
    }
    let end = group + 12 + len as usize;
    if head.len() < end {
        return more("file meta information cut short");
    }
    Ok(Some((dicm, end)))
}

/// The meta group, from "DICM" to its end.
fn read_meta(bytes: &[u8]) -> Result<FileMetaTable, Refusal> {
    // Declared lengths must fit in the group before the parser allocates them.
    let group = bytes.get(4..).unwrap_or_default();
    scan_bytes(group, Encoding::EXPLICIT_LE)
        .map_err(|e| Refusal::cannot_understand(format!("file meta information refused: {e}")))?;
    // Third-party parser fed by the network: contain any panic.
    match std::panic::catch_unwind(|| FileMetaTable::from_reader(bytes)) {
        Ok(Ok(meta)) => Ok(meta),
        Ok(Err(e)) => Err(Refusal::cannot_understand(format!(
            "file meta information does not parse: {e}"
        ))),
        Err(_) => Err(Refusal::cannot_understand(
            "file meta information does not parse (parser failure)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(preamble: bool, group_len: u32, rest: usize) -> Vec<u8> {
        let mut head = if preamble { vec![0u8; 128] } else { Vec::new() };
        head.extend_from_slice(b"DICM");
        head.extend_from_slice(&[0x02, 0, 0, 0, b'U', b'L', 4, 0]);
        head.extend_from_slice(&group_len.to_le_bytes());
        head.extend(std::iter::repeat_n(0u8, rest));
        head
    }

    #[test]
    fn the_meta_group_is_found_as_bytes_arrive() {
        let head = head_with(true, 100, 100);
        assert_eq!(meta_range(&head[..50], false).unwrap(), None);
        assert_eq!(meta_range(&head[..140], false).unwrap(), None);
        assert_eq!(meta_range(&head, false).unwrap(), Some((128, 244)));
        assert!(meta_range(&head[..200], true).is_err(), "cut short");
        // Without a preamble (tolerated), once it cannot be one.
        let bare = head_with(false, 100, 150);
        assert_eq!(meta_range(&bare, false).unwrap(), Some((0, 116)));
        assert_eq!(meta_range(&bare[..60], false).unwrap(), None);
        assert!(meta_range(&vec![7u8; 300], false).is_err(), "no DICM");
        assert!(meta_range(b"short", true).is_err());
        assert!(meta_range(&head_with(true, MAX_META + 1, 0), false).is_err());
        // An element of the group declaring more than the group holds.
        let mut bomb = b"DICM".to_vec();
        bomb.extend_from_slice(&[0x02, 0, 0x01, 0, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        let err = read_meta(&bomb).unwrap_err();
        assert!(
            err.reason.contains("file meta information refused"),
            "{err:?}"
        );
    }
}
