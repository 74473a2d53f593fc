//! One association, from A-ASSOCIATE-RQ to release: negotiation (SOP classes, transfer
//! syntaxes, access), then C-ECHO and C-STORE requests until the peer releases, aborts,
//! times out, or the daemon shuts down between two messages.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::association::server::ServerAssociationOptions;
use dicom_ul::association::{Association as _, AsyncServerAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::Pdu;
use tokio::net::TcpStream;

use super::access::CallerCheck;
use super::instance::{inspect, ReceivedInstance, Refusal};
use super::spool::{SpoolEntry, Spooled};
use super::Ingest;
use crate::dimse::command::{encode_response, field};
use crate::dimse::sop::{self, STORAGE_SOP_CLASSES};
use crate::dimse::{Command, Status};
use crate::pipeline::shutdown::Shutdown;
use crate::store::{now_ms, InstanceRecord};

type Association = AsyncServerAssociation<TcpStream>;

/// Unrecognized operation (PS3.7 C.4.3): a command this SCP does not implement.
const UNRECOGNIZED_OPERATION: Status = Status(0x0211);

/// Counters for the end-of-association log line.
#[derive(Default)]
struct Tally {
    stored: usize,
    refused: usize,
    bytes: u64,
}

/// Run one association to its end. Never panics on peer input; errors are logged.
pub async fn handle(socket: TcpStream, peer: SocketAddr, ingest: Arc<Ingest>, shutdown: Shutdown) {
    let settings = &ingest.settings;
    let timeout = Duration::from_secs(settings.timeout_seconds);
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(CallerCheck {
            rules: &ingest.callers,
            peer,
        })
        .ae_title(settings.ae_title.as_str())
        .max_pdu_length(settings.max_pdu_length)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .with_abstract_syntax(sop::VERIFICATION);
    for (uid, _) in STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(*uid);
    }
    let mut association = match options.establish_async(socket).await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(peer = %peer.ip(), error = %e, "association not established");
            return;
        }
    };
    let calling_ae = association.peer_ae_title().trim().to_string();
    let refused_contexts = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason != PresentationContextResultReason::Acceptance)
        .count();
    tracing::info!(
        calling_ae = %calling_ae,
        peer = %peer.ip(),
        refused_contexts,
        "association accepted"
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut studies = HashSet::new();
    let end = serve(
        &mut association,
        &ingest,
        &calling_ae,
        shutdown,
        &mut tally,
        &mut studies,
    )
    .await;
    for study in &studies {
        ingest.active.leave(study);
    }
    match end {
        End::Released => {
            let _ = association.send(&Pdu::ReleaseRP).await;
        }
        End::Aborted(ref why) => {
            tracing::warn!(calling_ae = %calling_ae, reason = %why, "aborting association");
            let _ = association.abort().await;
        }
        End::PeerGone(_) => {}
    }
    tracing::info!(
        calling_ae = %calling_ae,
        peer = %peer.ip(),
        stored = tally.stored,
        refused = tally.refused,
        bytes = tally.bytes,
        seconds = started.elapsed().as_secs_f64(),
        end = %end,
        "association closed"
    );
}

/// How an association ended.
enum End {
    Released,
    /// We abort (protocol error, shutdown).
    Aborted(String),
    /// The peer aborted, closed, or stalled past the timeout.
    PeerGone(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Released => f.write_str("released"),
            End::Aborted(why) => write!(f, "aborted by us: {why}"),
            End::PeerGone(why) => write!(f, "peer gone: {why}"),
        }
    }
}

/// The message loop: assemble command and data fragments, answer each request.
async fn serve(
    association: &mut Association,
    ingest: &Ingest,
    calling_ae: &str,
    mut shutdown: Shutdown,
    tally: &mut Tally,
    studies: &mut HashSet<String>,
) -> End {
    let mut command_bytes = Vec::new();
    let mut data_bytes = Vec::new();
    let mut pending: Option<(u8, Command)> = None;
    loop {
        // Shut down only between messages, so an in-flight store is always answered.
        let idle = command_bytes.is_empty() && data_bytes.is_empty() && pending.is_none();
        let received = if idle {
            tokio::select! {
                r = association.receive() => r,
                _ = shutdown.recv() => return End::Aborted("daemon shutting down".into()),
            }
        } else {
            association.receive().await
        };
        let values = match received {
            Ok(Pdu::PData { data }) => data,
            Ok(Pdu::ReleaseRQ) => return End::Released,
            Ok(Pdu::AbortRQ { source }) => return End::PeerGone(format!("A-ABORT {source:?}")),
            Ok(other) => return End::Aborted(format!("unexpected PDU {}", pdu_name(&other))),
            Err(e) => return End::PeerGone(e.to_string()),
        };
        for value in values {
            match value.value_type {
                PDataValueType::Command => {
                    command_bytes.extend_from_slice(&value.data);
                    if !value.is_last {
                        continue;
                    }
                    let command = match Command::decode(&std::mem::take(&mut command_bytes)) {
                        Ok(c) => c,
                        Err(e) => return End::Aborted(e.to_string()),
                    };
                    if command.has_data_set {
                        pending = Some((value.presentation_context_id, command));
                        continue;
                    }
                    let status = if command.field == field::C_ECHO_RQ {
                        Status::SUCCESS
                    } else {
                        UNRECOGNIZED_OPERATION
                    };
                    let pc = value.presentation_context_id;
                    if let Err(e) = respond(association, pc, &command, status, None).await {
                        return End::PeerGone(e);
                    }
                }
                PDataValueType::Data => {
                    let Some((pc, _)) = &pending else {
                        return End::Aborted("data set without a command".into());
                    };
                    if *pc != value.presentation_context_id {
                        return End::Aborted("data set on another presentation context".into());
                    }
                    data_bytes.extend_from_slice(&value.data);
                    if !value.is_last {
                        continue;
                    }
                    let (pc, command) = pending.take().expect("checked above");
                    let data = std::mem::take(&mut data_bytes);
                    let (status, comment) = if command.field == field::C_STORE_RQ {
                        store(
                            association,
                            ingest,
                            calling_ae,
                            pc,
                            &command,
                            data,
                            tally,
                            studies,
                        )
                        .await
                    } else {
                        (UNRECOGNIZED_OPERATION, None)
                    };
                    let comment = comment.as_deref();
                    if let Err(e) = respond(association, pc, &command, status, comment).await {
                        return End::PeerGone(e);
                    }
                }
            }
        }
    }
}

async fn respond(
    association: &mut Association,
    pc: u8,
    command: &Command,
    status: Status,
    comment: Option<&str>,
) -> Result<(), String> {
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: encode_response(command, status, comment),
        }],
    };
    association.send(&pdu).await.map_err(|e| e.to_string())
}

/// Handle one C-STORE: check, spool, record; the returned status tells the truth.
#[allow(clippy::too_many_arguments)]
async fn store(
    association: &Association,
    ingest: &Ingest,
    calling_ae: &str,
    pc_id: u8,
    command: &Command,
    data: Vec<u8>,
    tally: &mut Tally,
    studies: &mut HashSet<String>,
) -> (Status, Option<String>) {
    let refused = |tally: &mut Tally, r: Refusal| {
        tally.refused += 1;
        tracing::warn!(
            calling_ae,
            sop_instance_uid = %command.sop_instance_uid,
            status = %r.status,
            reason = %r.reason,
            "C-STORE refused"
        );
        (r.status, Some(r.reason))
    };
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == pc_id && pc.reason == PresentationContextResultReason::Acceptance);
    let Some(context) = context else {
        let r = Refusal {
            status: Status::CANNOT_UNDERSTAND,
            reason: format!("presentation context {pc_id} was not accepted"),
        };
        return refused(tally, r);
    };
    if !sop::is_accepted_storage_class(&command.sop_class_uid)
        || sop::trim_uid(&context.abstract_syntax) != command.sop_class_uid
    {
        let r = Refusal {
            status: Status::SOP_CLASS_NOT_SUPPORTED,
            reason: format!(
                "{} not accepted on this context",
                sop::sop_class_name(&command.sop_class_uid)
            ),
        };
        return refused(tally, r);
    }
    let ts = sop::trim_uid(&context.transfer_syntax).to_string();
    let size = data.len() as u64;
    let has_room = ingest.has_room_for(size);
    let modalities = &ingest.settings.accepted_modalities;
    // Parsing and fsync block: move this worker out of the async pool meanwhile.
    let t0 = Instant::now();
    let outcome = tokio::task::block_in_place(|| {
        check_and_spool(
            &ingest.spool,
            &data,
            &ts,
            command,
            modalities,
            calling_ae,
            has_room,
        )
    });
    let (instance, spooled) = match outcome {
        Ok(pair) => pair,
        Err(r) => return refused(tally, r),
    };
    if studies.insert(instance.study_uid.clone()) {
        ingest.active.enter(&instance.study_uid);
    }
    let record = InstanceRecord {
        sop_instance_uid: instance.sop_instance_uid.clone(),
        sop_class_uid: instance.sop_class_uid.clone(),
        study_uid: instance.study_uid.clone(),
        series_uid: instance.series_uid.clone(),
        modality: instance.modality.clone(),
        transfer_syntax: ts,
        path: spooled.path.clone(),
        size: spooled.size,
        calling_ae: calling_ae.to_string(),
        received_at_ms: now_ms(),
    };
    let t1 = Instant::now();
    if let Err(e) = ingest.writer.record(record, spooled.dir).await {
        let r = Refusal {
            status: Status::OUT_OF_RESOURCES,
            reason: format!("could not record instance: {e}"),
        };
        return refused(tally, r);
    }
    tally.stored += 1;
    tally.bytes += spooled.size;
    tracing::debug!(
        calling_ae,
        sop_instance_uid = %instance.sop_instance_uid,
        study_uid = %instance.study_uid,
        modality = %instance.modality,
        bytes = spooled.size,
        spool_ms = (t1 - t0).as_secs_f64() * 1e3,
        commit_ms = t1.elapsed().as_secs_f64() * 1e3,
        "instance stored"
    );
    (Status::SUCCESS, None)
}

/// The blocking part of a store: parse and check, then write the file durably.
fn check_and_spool(
    spool: &super::spool::Spool,
    data: &[u8],
    ts: &str,
    command: &Command,
    modalities: &[String],
    calling_ae: &str,
    has_room: Result<(), String>,
) -> Result<(ReceivedInstance, Spooled), Refusal> {
    let t = Instant::now();
    let instance = inspect(data, ts, command, modalities)?;
    tracing::trace!(parse_ms = t.elapsed().as_secs_f64() * 1e3, "parsed");
    has_room.map_err(|reason| Refusal {
        status: Status::OUT_OF_RESOURCES,
        reason,
    })?;
    let entry = SpoolEntry {
        study_uid: &instance.study_uid,
        series_uid: &instance.series_uid,
        sop_instance_uid: &instance.sop_instance_uid,
        sop_class_uid: &instance.sop_class_uid,
        transfer_syntax: ts,
        calling_ae,
    };
    let spooled = spool.write(&entry, data).map_err(|e| Refusal {
        status: Status::OUT_OF_RESOURCES,
        reason: format!("spool write failed: {e}"),
    })?;
    Ok((instance, spooled))
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown",
    }
}
