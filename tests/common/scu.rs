//! A hand-driven SCU association (dicom-ul, blocking): the test decides when the command,
//! each piece of the data set and the release go out, so it can hold a store in flight or
//! an association open while something else happens.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};
use osteoscreen::deliver::dimse::OutgoingFile;
use osteoscreen::dicom::command::encode_store_rq;
use osteoscreen::dicom::{Command, DimseStatus as Status};

/// Data set bytes per P-DATA-TF PDU: well under any maximum PDU length.
const CHUNK: usize = 16_000;

pub struct RawAssociation {
    association: ClientAssociation<TcpStream>,
    pc_id: u8,
    message_id: u16,
}

impl RawAssociation {
    /// Propose one presentation context (`sop_class` in `ts`) to the daemon on `port`; it
    /// must be accepted. `Err` when the association itself is rejected or fails.
    pub fn open(
        port: u16,
        calling_ae: &str,
        sop_class: &str,
        ts: &str,
    ) -> Result<RawAssociation, dicom_ul::association::Error> {
        let association = ClientAssociationOptions::new()
            .calling_ae_title(calling_ae)
            .called_ae_title("OSTEOSCREEN")
            .with_presentation_context(sop_class, vec![ts])
            .read_timeout(Duration::from_secs(60))
            .write_timeout(Duration::from_secs(60))
            .establish_with(&format!("127.0.0.1:{port}"))?;
        let pc_id = association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .unwrap_or_else(|| panic!("{sop_class} in {ts} not accepted"))
            .id;
        Ok(RawAssociation {
            association,
            pc_id,
            message_id: 0,
        })
    }

    /// An association for sending `file` (its SOP class, its transfer syntax).
    pub fn for_file(port: u16, calling_ae: &str, file: &OutgoingFile) -> RawAssociation {
        Self::open(port, calling_ae, &file.sop_class_uid, &file.transfer_syntax)
            .unwrap_or_else(|e| panic!("association for {}: {e}", file.path.display()))
    }

    /// Send the C-STORE-RQ command for `file`; the data set is up to the caller.
    pub fn send_store_command(&mut self, file: &OutgoingFile) {
        self.send_store_rq(&file.sop_class_uid, &file.sop_instance_uid);
    }

    /// Send a C-STORE-RQ announcing these UIDs (a data set made by the test follows).
    pub fn send_store_rq(&mut self, sop_class: &str, sop_instance: &str) {
        self.message_id += 1;
        let rq = encode_store_rq(self.message_id, sop_class, sop_instance);
        self.send_pdv(PDataValueType::Command, true, rq);
    }

    /// Send one more (not last) data fragment; `Err` when the link is gone.
    pub fn try_send_data(&mut self, bytes: &[u8]) -> Result<(), dicom_ul::association::Error> {
        self.association.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: self.pc_id,
                value_type: PDataValueType::Data,
                is_last: false,
                data: bytes.to_vec(),
            }],
        })
    }

    /// Send a C-ECHO-RQ and wait for its response's status.
    pub fn echo(&mut self) -> Status {
        self.message_id += 1;
        let rq = osteoscreen::dicom::command::encode_echo_rq(self.message_id);
        self.send_pdv(PDataValueType::Command, true, rq);
        self.response().0
    }

    /// Send `bytes` of the data set, in several PDUs; `last` marks the final fragment.
    pub fn send_data(&mut self, bytes: &[u8], last: bool) {
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let is_last = last && i + 1 == chunks.len();
            self.send_pdv(PDataValueType::Data, is_last, chunk.to_vec());
        }
    }

    fn send_pdv(&mut self, value_type: PDataValueType, is_last: bool, data: Vec<u8>) {
        self.association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: self.pc_id,
                    value_type,
                    is_last,
                    data,
                }],
            })
            .expect("send P-DATA-TF");
    }

    /// Wait for the C-STORE-RSP: its status and Error Comment.
    pub fn response(&mut self) -> (Status, Option<String>) {
        let mut buf = Vec::new();
        loop {
            match self.association.receive().expect("a response") {
                Pdu::PData { data } => {
                    for value in data {
                        assert_eq!(value.value_type, PDataValueType::Command);
                        buf.extend_from_slice(&value.data);
                        if value.is_last {
                            let rsp = Command::decode(&buf).expect("a valid response command");
                            assert_eq!(rsp.message_id, self.message_id, "responds to our request");
                            return (rsp.status.expect("a status"), rsp.error_comment);
                        }
                    }
                }
                other => panic!("expected a C-STORE-RSP, got {other:?}"),
            }
        }
    }

    /// C-STORE `path` whole and return the response.
    pub fn store(&mut self, path: &Path) -> (Status, Option<String>) {
        let file = OutgoingFile::inspect(path).unwrap();
        self.send_store_command(&file);
        self.send_data(&file.data_set().unwrap(), true);
        self.response()
    }

    /// Send bytes as they are, PDU headers included (a malformed or oversized PDU). The
    /// daemon may close the link before they are all taken: that is not an error here.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stream = self.association.inner_stream();
        let _ = stream.write_all(bytes).and_then(|_| stream.flush());
    }

    /// One P-DATA-TF PDU holding a whole C-STORE: its command and its data set, two
    /// values in one PDU.
    pub fn store_in_one_pdu(&mut self, sop_class: &str, sop_instance: &str, data_set: &[u8]) {
        self.message_id += 1;
        let rq = encode_store_rq(self.message_id, sop_class, sop_instance);
        self.association
            .send(&Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: self.pc_id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: rq,
                    },
                    PDataValue {
                        presentation_context_id: self.pc_id,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: data_set.to_vec(),
                    },
                ],
            })
            .expect("send P-DATA-TF");
    }

    /// The presentation context accepted for this association.
    pub fn pc_id(&self) -> u8 {
        self.pc_id
    }

    /// The next PDU from the daemon (e.g. an A-ABORT), or the error that ended the link.
    pub fn receive(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        self.association.receive()
    }

    /// A-RELEASE, waiting for the daemon's A-RELEASE-RP.
    pub fn release(self) {
        self.association.release().expect("A-RELEASE accepted");
    }
}
