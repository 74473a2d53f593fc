//! The SCU side: C-ECHO and C-STORE to a remote AE. Used by `osteoscreen echo` / `send`,
//! and by delivery later. Files are sent as they are on disk: each one in its own transfer
//! syntax, its data set bytes untouched (no transcoding).

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_object::FileMetaTable;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use tokio::io::AsyncWriteExt;

use crate::dicom::command::{self, Command, DimseStatus};
use crate::dicom::text::unpad;

/// DICOM TLS towards a peer: whom to trust (and our certificate, in the configuration),
/// and the name its certificate must carry (the host name or IP address).
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub server_name: String,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Peer {
    /// DICOM TLS; None: plain TCP.
    pub tls: Option<TlsClient>,
    pub host: String,
    pub port: u16,
    pub called_ae: String,
    pub calling_ae: String,
    pub max_pdu_length: u32,
    pub timeout: Duration,
}

/// Why talking to the peer failed as a whole (per-file failures are in `FileOutcome`).
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("association with {called_ae} at {addr} failed: {source}")]
    Associate {
        called_ae: String,
        addr: String,
        source: dicom_ul::association::Error,
    },
    #[error("DICOM exchange failed: {0}")]
    Exchange(String),
    #[error("peer did not accept Verification")]
    VerificationRejected,
}

type Plain = dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream>;
type Tls =
    dicom_ul::association::AsyncClientAssociation<dicom_ul::association::client::AsyncTlsStream>;

/// An established association, over plain TCP or TLS.
enum Association {
    Plain(Box<Plain>),
    Tls(Box<Tls>),
}

impl Association {
    fn presentation_contexts(&self) -> &[dicom_ul::pdu::PresentationContextNegotiated] {
        match self {
            Association::Plain(a) => a.presentation_contexts(),
            Association::Tls(a) => a.presentation_contexts(),
        }
    }

    async fn release(self) {
        let _ = match self {
            Association::Plain(a) => a.release().await,
            Association::Tls(a) => a.release().await,
        };
    }
}

impl Peer {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Associate within twice the timeout: dicom-ul bounds each read and write, not a TLS
    /// handshake that never ends.
    async fn associate(&self, contexts: &[(String, String)]) -> Result<Association, ScuError> {
        let limit = self.timeout * 2;
        match tokio::time::timeout(limit, self.associate_unbounded(contexts)).await {
            Ok(associated) => associated,
            Err(_) => Err(ScuError::Exchange(format!(
                "no association with {} at {} within {} s",
                self.called_ae,
                self.addr(),
                limit.as_secs()
            ))),
        }
    }

    async fn associate_unbounded(
        &self,
        contexts: &[(String, String)],
    ) -> Result<Association, ScuError> {
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae.clone())
            .called_ae_title(self.called_ae.clone())
            .max_pdu_length(self.max_pdu_length)
            .read_timeout(self.timeout)
            .write_timeout(self.timeout)
            .connection_timeout(self.timeout);
        for (abstract_syntax, ts) in contexts {
            options = options.with_presentation_context(abstract_syntax.clone(), vec![ts.clone()]);
        }
        let failed = |source| ScuError::Associate {
            called_ae: self.called_ae.clone(),
            addr: self.addr(),
            source,
        };
        // Without set_nodelay every small response waits on Nagle + delayed ACK
        // (REFERENCES.md).
        match &self.tls {
            None => {
                let mut association = options
                    .establish_with_async(&self.addr())
                    .await
                    .map_err(failed)?;
                let _ = association.inner_stream().set_nodelay(true);
                Ok(Association::Plain(Box::new(association)))
            }
            Some(tls) => {
                let mut association = options
                    .tls_config(tls.config.clone())
                    .server_name(&tls.server_name)
                    .establish_tls_async(self.addr())
                    .await
                    .map_err(failed)?;
                let _ = association.inner_stream().get_ref().0.set_nodelay(true);
                Ok(Association::Tls(Box::new(association)))
            }
        }
    }
}

/// What a request must be answered with: the response's command field and the Message
/// ID (and, for a C-STORE, the SOP Instance UID) it responds to.
struct Expected<'a> {
    field: u16,
    message_id: u16,
    sop_instance_uid: Option<&'a str>,
}

/// Send a command set and, if given, its data set; wait for the response command. The
/// whole exchange is bounded: a peer that stops reading our data set or never answers
/// (each PDU within the timeout, but never the end) costs at most `PEER_TIMEOUTS`
/// timeouts, after which the association is dropped.
async fn exchange(
    association: &mut Association,
    timeout: Duration,
    pc_id: u8,
    command_bytes: Vec<u8>,
    data_set: Option<&[u8]>,
    expected: Expected<'_>,
) -> Result<Command, ScuError> {
    let run = async {
        match association {
            Association::Plain(a) => exchange_on(a.as_mut(), pc_id, command_bytes, data_set).await,
            Association::Tls(a) => exchange_on(a.as_mut(), pc_id, command_bytes, data_set).await,
        }
    };
    let rsp = tokio::time::timeout(timeout * super::PEER_TIMEOUTS, run)
        .await
        .map_err(|_| {
            ScuError::Exchange(format!(
                "no complete response within {} s",
                (timeout * super::PEER_TIMEOUTS).as_secs()
            ))
        })??;
    // A response to something else (a duplicate, a stray Pending, another message) would
    // shift every later answer onto the wrong file: the association is given up instead.
    let answers = rsp.field == expected.field
        && rsp.message_id == expected.message_id
        && expected
            .sop_instance_uid
            .is_none_or(|uid| rsp.sop_instance_uid.is_empty() || rsp.sop_instance_uid == uid);
    if !answers {
        return Err(ScuError::Exchange(format!(
            "the response (command field {:#06x}, message {}) does not answer the request (command field {:#06x}, message {})",
            rsp.field, rsp.message_id, expected.field, expected.message_id
        )));
    }
    Ok(rsp)
}

/// P-DATA PDUs a response may come in (a command set is one or two).
const MAX_RESPONSE_PDUS: usize = 64;

async fn exchange_on<S>(
    association: &mut dicom_ul::association::AsyncClientAssociation<S>,
    pc_id: u8,
    command_bytes: Vec<u8>,
    data_set: Option<&[u8]>,
) -> Result<Command, ScuError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let err = |e: &dyn std::fmt::Display| ScuError::Exchange(e.to_string());
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command_bytes,
            }],
        })
        .await
        .map_err(|e| err(&e))?;
    if let Some(data) = data_set {
        // The writer splits into P-DATA PDUs no larger than the peer's maximum.
        let mut writer = association.send_pdata(pc_id);
        writer.write_all(data).await.map_err(|e| err(&e))?;
        writer.finish().await.map_err(|e| err(&e))?;
    }
    // Over TLS a write that meets a full socket leaves its tail in rustls's buffer, and
    // dicom-ul does not flush: without this the peer waits for the rest of the data set
    // while we wait for its response, until the read timeout (a no-op on plain TCP).
    association
        .inner_stream()
        .flush()
        .await
        .map_err(|e| err(&e))?;
    let mut buf = Vec::new();
    for _ in 0..MAX_RESPONSE_PDUS {
        match association.receive().await.map_err(|e| err(&e))? {
            Pdu::PData { data } => {
                for value in data {
                    if value.value_type == PDataValueType::Command {
                        buf.extend_from_slice(&value.data);
                        if buf.len() > command::MAX_COMMAND_BYTES {
                            return Err(ScuError::Exchange(format!(
                                "response command set over {} bytes",
                                command::MAX_COMMAND_BYTES
                            )));
                        }
                        if value.is_last {
                            return Command::decode(&buf).map_err(|e| err(&e));
                        }
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                return Err(ScuError::Exchange(format!("peer aborted: {source:?}")))
            }
            other => {
                return Err(ScuError::Exchange(format!(
                    "unexpected PDU while waiting for a response: {}",
                    other.short_description()
                )))
            }
        }
    }
    Err(ScuError::Exchange(format!(
        "no complete response in {MAX_RESPONSE_PDUS} PDUs"
    )))
}

/// The ID of the first presentation context the peer accepted.
fn first_accepted(association: &Association) -> Option<u8> {
    association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
}

/// C-ECHO: returns the peer's status.
pub async fn echo(peer: &Peer) -> Result<DimseStatus, ScuError> {
    let contexts = [(
        crate::dicom::sop::VERIFICATION.to_string(),
        dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
    )];
    let mut association = peer.associate(&contexts).await?;
    let pc = first_accepted(&association).ok_or(ScuError::VerificationRejected)?;
    let expected = Expected {
        field: command::field::C_ECHO_RSP,
        message_id: 1,
        sop_instance_uid: None,
    };
    let rsp = exchange(
        &mut association,
        peer.timeout,
        pc,
        command::encode_echo_rq(1),
        None,
        expected,
    )
    .await?;
    association.release().await;
    Ok(rsp.status.unwrap_or(DimseStatus(0xFFFF)))
}

/// A Part 10 file read for sending: where its data set starts and what it is.
#[derive(Debug, Clone)]
pub struct OutgoingFile {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    /// Where the data set starts (after preamble and meta group).
    data_offset: u64,
}

impl OutgoingFile {
    /// Read the file meta group only.
    pub fn inspect(path: &Path) -> Result<OutgoingFile, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(file);
        let mut preamble = [0u8; 128];
        reader
            .read_exact(&mut preamble)
            .map_err(|_| "too short to be a DICOM Part 10 file".to_string())?;
        let meta = FileMetaTable::from_reader(&mut reader)
            .map_err(|e| format!("no valid file meta information (not DICOM Part 10?): {e}"))?;
        let data_offset = reader.stream_position().map_err(|e| e.to_string())?;
        Ok(OutgoingFile {
            path: path.to_path_buf(),
            sop_class_uid: unpad(meta.media_storage_sop_class_uid()).to_string(),
            sop_instance_uid: unpad(meta.media_storage_sop_instance_uid()).to_string(),
            transfer_syntax: unpad(meta.transfer_syntax()).to_string(),
            data_offset,
        })
    }

    /// The data set bytes, exactly as stored after the meta group (read once, from the
    /// offset `inspect` found).
    pub fn data_set(&self) -> Result<Vec<u8>, String> {
        let mut file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(self.data_offset))
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

/// What happened to one file given to `send`.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub sop_instance_uid: Option<String>,
    /// The peer's status and comment, or why nothing was sent.
    pub result: Result<(DimseStatus, Option<String>), String>,
    /// The object never reached the peer's turn to answer it: no association, or the
    /// association broke before this object was offered. Delivery retries such objects
    /// without counting an attempt.
    pub not_offered: bool,
}

impl FileOutcome {
    pub fn stored(&self) -> bool {
        matches!(&self.result, Ok((s, _)) if s.is_success() || s.is_warning())
    }
}

/// At most 128 presentation contexts fit one association (odd IDs 1..=255).
const MAX_CONTEXTS: usize = 128;

/// C-STORE every file; one outcome per path, in the order given. Files are grouped into
/// associations of ≤128 contexts. When an association fails, what the peer confirmed
/// before stays confirmed and the files not yet answered carry the failure.
pub async fn send_files(peer: &Peer, paths: &[PathBuf]) -> Vec<FileOutcome> {
    let mut outcomes: Vec<Option<FileOutcome>> = paths.iter().map(|_| None).collect();
    let mut batch: Vec<(usize, OutgoingFile)> = Vec::new();
    let mut contexts: Vec<(String, String)> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match OutgoingFile::inspect(path) {
            Err(reason) => {
                outcomes[i] = Some(FileOutcome {
                    path: path.clone(),
                    sop_instance_uid: None,
                    result: Err(reason),
                    not_offered: false,
                })
            }
            Ok(file) => {
                let key = (file.sop_class_uid.clone(), file.transfer_syntax.clone());
                if !contexts.contains(&key) {
                    if contexts.len() == MAX_CONTEXTS {
                        for (i, o) in send_batch(peer, &contexts, &batch).await {
                            outcomes[i] = Some(o);
                        }
                        batch.clear();
                        contexts.clear();
                    }
                    contexts.push(key);
                }
                batch.push((i, file));
            }
        }
    }
    if !batch.is_empty() {
        for (i, o) in send_batch(peer, &contexts, &batch).await {
            outcomes[i] = Some(o);
        }
    }
    outcomes
        .into_iter()
        .zip(paths)
        .map(|(o, path)| {
            o.unwrap_or_else(|| FileOutcome {
                path: path.clone(),
                sop_instance_uid: None,
                result: Err("not sent".into()),
                not_offered: true,
            })
        })
        .collect()
}

/// One association's files, each outcome with its index in `send_files`' paths.
async fn send_batch(
    peer: &Peer,
    contexts: &[(String, String)],
    files: &[(usize, OutgoingFile)],
) -> Vec<(usize, FileOutcome)> {
    let outcome = |(i, file): &(usize, OutgoingFile), result, not_offered| {
        (
            *i,
            FileOutcome {
                path: file.path.clone(),
                sop_instance_uid: Some(file.sop_instance_uid.clone()),
                result,
                not_offered,
            },
        )
    };
    let mut association = match peer.associate(contexts).await {
        Ok(a) => a,
        Err(e) => {
            let why = e.to_string();
            return files
                .iter()
                .map(|f| outcome(f, Err(why.clone()), true))
                .collect();
        }
    };
    let accepted: Vec<(u8, String, String)> = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .filter_map(|pc| {
            // Context IDs are 1, 3, 5, ... in the order proposed.
            let (class, ts) = contexts.get((pc.id as usize).checked_sub(1)? / 2)?;
            Some((pc.id, class.clone(), ts.clone()))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(files.len());
    for (n, entry) in files.iter().enumerate() {
        let file = &entry.1;
        let pc = accepted
            .iter()
            .find(|(_, c, t)| *c == file.sop_class_uid && *t == file.transfer_syntax)
            .map(|(id, _, _)| *id);
        let result = match pc {
            None => Err(format!(
                "peer refused {} in transfer syntax {}",
                crate::dicom::sop::sop_class_name(&file.sop_class_uid),
                crate::dicom::command::command_text(&file.transfer_syntax, 64)
            )),
            Some(pc) => match file.data_set() {
                Err(e) => Err(e),
                Ok(data) => {
                    let message_id = (n % 0xFFFF) as u16 + 1;
                    let rq = command::encode_store_rq(
                        message_id,
                        &file.sop_class_uid,
                        &file.sop_instance_uid,
                    );
                    let expected = Expected {
                        field: command::field::C_STORE_RSP,
                        message_id,
                        sop_instance_uid: Some(&file.sop_instance_uid),
                    };
                    match exchange(
                        &mut association,
                        peer.timeout,
                        pc,
                        rq,
                        Some(&data),
                        expected,
                    )
                    .await
                    {
                        Ok(rsp) => {
                            Ok((rsp.status.unwrap_or(DimseStatus(0xFFFF)), rsp.error_comment))
                        }
                        Err(e) => {
                            // The association is in an unknown state: drop it (closing
                            // the connection); this file and the rest are not stored.
                            let why = e.to_string();
                            outcomes.push(outcome(entry, Err(why.clone()), false));
                            for rest in &files[n + 1..] {
                                let not_sent = Err(format!("not sent: {why}"));
                                outcomes.push(outcome(rest, not_sent, true));
                            }
                            return outcomes;
                        }
                    }
                }
            },
        };
        outcomes.push(outcome(entry, result, false));
    }
    association.release().await;
    outcomes
}

/// C-STORE one data set given as bytes, announced with the given UIDs in transfer syntax
/// `ts`. Sends whatever it is given: useful to see how a node answers malformed data.
pub async fn store_data_set(
    peer: &Peer,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    ts: &str,
    data_set: &[u8],
) -> Result<(DimseStatus, Option<String>), ScuError> {
    let contexts = [(sop_class_uid.to_string(), ts.to_string())];
    let mut association = peer.associate(&contexts).await?;
    let pc = first_accepted(&association)
        .ok_or_else(|| ScuError::Exchange("presentation context refused".into()))?;
    let rq = command::encode_store_rq(1, sop_class_uid, sop_instance_uid);
    let expected = Expected {
        field: command::field::C_STORE_RSP,
        message_id: 1,
        sop_instance_uid: Some(sop_instance_uid),
    };
    let rsp = exchange(
        &mut association,
        peer.timeout,
        pc,
        rq,
        Some(data_set),
        expected,
    )
    .await?;
    association.release().await;
    Ok((rsp.status.unwrap_or(DimseStatus(0xFFFF)), rsp.error_comment))
}
