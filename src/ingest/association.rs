//! One association, from A-ASSOCIATE-RQ to release: negotiation (SOP classes, transfer
//! syntaxes, access), then C-ECHO and C-STORE requests until the peer releases, aborts,
//! goes silent (`timeout_seconds`), stores nothing for `idle_seconds`, outlives
//! `max_association_seconds`, or the daemon shuts down: at once between two messages,
//! after `shutdown_grace_seconds` when a data set is still arriving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::association::server::ServerAssociationOptions;
use dicom_ul::association::{Association as _, AsyncServerAssociation};
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, PresentationContextResultReason,
};
use dicom_ul::Pdu;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::access::CallerCheck;
use super::active::Entered;
use super::c_store::{PendingStore, Tally, UNRECOGNIZED_OPERATION};
use super::wire::{self, Arrived, WireError};
use super::Ingest;
use crate::dicom::command::{encode_response, field, MAX_COMMAND_BYTES};
use crate::dicom::sop::{self, STORAGE_SOP_CLASSES};
use crate::dicom::{Command, DimseStatus};
use crate::ops::metrics::metrics;
use crate::shutdown::Shutdown;

/// What an association runs over: a plain TCP stream or a TLS stream.
pub trait Link: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Link for T {}

/// Run one association to its end, over TLS when `tls` is given. Never panics on peer
/// input; errors are logged.
pub async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    ingest: Arc<Ingest>,
    shutdown: Shutdown,
    tls: Option<Arc<rustls::ServerConfig>>,
    refused: Option<AssociationRJServiceUserReason>,
) {
    let settings = &ingest.settings;
    let timeout = Duration::from_secs(settings.timeout_seconds);
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(CallerCheck {
            rules: &ingest.callers,
            peer,
            ae_title: &settings.ae_title,
            accept_any_called_ae: settings.accept_any_called_ae,
            refused,
        })
        .ae_title(settings.ae_title.as_str())
        .max_pdu_length(settings.max_pdu_length)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .with_abstract_syntax(sop::VERIFICATION);
    for (uid, _) in STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(*uid);
    }
    let not_established = |why: String| {
        tracing::info!(peer = %peer.ip(), error = %why, "association not established");
        metrics()
            .associations
            .with_label_values(&["rejected"])
            .inc();
    };
    // dicom-ul bounds each read, not a TLS handshake nor a peer that drips its request:
    // the whole negotiation gets twice the timeout. Its errors may quote a whole PDU the
    // peer sent: a bounded excerpt is logged.
    let limit = timeout * 2;
    let late = || format!("negotiation not finished within {}s", limit.as_secs());
    let error = |e: dicom_ul::association::Error| e.to_string().chars().take(200).collect();
    match tls {
        None => match tokio::time::timeout(limit, options.establish_async(socket)).await {
            Ok(Ok(association)) => run(association, peer, &ingest, shutdown, "plain").await,
            Ok(Err(e)) => not_established(error(e)),
            Err(_) => not_established(late()),
        },
        Some(config) => {
            let options = options.tls_config(config);
            match tokio::time::timeout(limit, options.establish_tls_async(socket)).await {
                Ok(Ok(association)) => run(association, peer, &ingest, shutdown, "TLS").await,
                Ok(Err(e)) => not_established(error(e)),
                Err(_) => not_established(late()),
            }
        }
    }
}

/// An established association, from its first message to its end.
async fn run<S: Link>(
    mut association: AsyncServerAssociation<S>,
    peer: SocketAddr,
    ingest: &Ingest,
    shutdown: Shutdown,
    transport: &'static str,
) {
    metrics()
        .associations
        .with_label_values(&["accepted"])
        .inc();
    // The peer chooses these bytes: no control characters into the text log.
    let calling_ae: String = association
        .peer_ae_title()
        .trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let refused_contexts = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason != PresentationContextResultReason::Acceptance)
        .count();
    tracing::info!(
        calling_ae = %calling_ae,
        peer = %peer.ip(),
        refused_contexts,
        transport = %transport,
        "association accepted"
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    // Leaves its studies when dropped, even if this task panics.
    let mut studies = Entered::new(&ingest.active);
    let end = serve(
        &mut association,
        ingest,
        &calling_ae,
        shutdown,
        &mut tally,
        &mut studies,
    )
    .await;
    drop(studies);
    let write_limit = Duration::from_secs(ingest.settings.timeout_seconds);
    match end {
        End::Released => {
            let _ = send(&mut association, &Pdu::ReleaseRP, write_limit).await;
        }
        End::Aborted(ref why) => {
            tracing::warn!(calling_ae = %calling_ae, reason = %why, "aborting association");
            let _ = tokio::time::timeout(write_limit, association.abort()).await;
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
async fn serve<S: Link>(
    association: &mut AsyncServerAssociation<S>,
    ingest: &Ingest,
    calling_ae: &str,
    mut shutdown: Shutdown,
    tally: &mut Tally,
    studies: &mut Entered,
) -> End {
    let settings = &ingest.settings;
    let mut session = Session {
        ingest,
        calling_ae,
        tally,
        studies,
        command_bytes: Vec::new(),
        pending: None,
        lane: Default::default(),
        last_store: Instant::now(),
    };
    let lifetime = Duration::from_secs(settings.max_association_seconds);
    let deadline = Instant::now() + lifetime;
    let idle_limit = Duration::from_secs(settings.idle_seconds);
    let grace = Duration::from_secs(settings.shutdown_grace_seconds);
    let read_timeout = Duration::from_secs(settings.timeout_seconds);
    // Set once shutdown began while a data set was arriving.
    let mut grace_ends: Option<Instant> = None;
    loop {
        let between_messages = session.command_bytes.is_empty() && session.pending.is_none();
        if grace_ends.is_some() && between_messages {
            return End::Aborted("daemon shutting down".into());
        }
        let (wake, why) = next_limit(
            deadline,
            between_messages.then_some(session.last_store + idle_limit),
            grace_ends,
        );
        let received = tokio::select! {
            r = wire::receive(association, settings.max_pdu_length, read_timeout) => r,
            _ = tokio::time::sleep_until(wake.into()) => {
                return End::Aborted(why.describe(settings));
            }
            _ = shutdown.recv(), if grace_ends.is_none() => {
                if between_messages {
                    return End::Aborted("daemon shutting down".into());
                }
                // An in-flight store gets a bounded time to finish and be answered.
                grace_ends = Some(Instant::now() + grace);
                continue;
            }
        };
        let values = match received {
            Ok(Arrived::PData(values)) => values,
            Ok(Arrived::Other(Pdu::ReleaseRQ)) => return End::Released,
            Ok(Arrived::Other(Pdu::AbortRQ { source })) => {
                return End::PeerGone(format!("A-ABORT {source:?}"))
            }
            Ok(Arrived::Other(other)) => {
                return End::Aborted(format!("unexpected PDU {}", pdu_name(&other)))
            }
            Err(e @ (WireError::Closed | WireError::TimedOut(_) | WireError::Io(_))) => {
                return End::PeerGone(e.to_string())
            }
            Err(e) => return End::Aborted(e.to_string()),
        };
        for value in values {
            let handled = if value.command {
                session.on_command(association, value).await
            } else {
                session.on_data(association, value).await
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }
}

/// Which limit ends the association if nothing else happens first.
#[derive(Clone, Copy)]
enum Limit {
    Lifetime,
    Idle,
    ShutdownGrace,
}

impl Limit {
    fn describe(self, settings: &super::settings::DicomSettings) -> String {
        match self {
            Limit::Lifetime => format!(
                "open longer than max_association_seconds ({} s)",
                settings.max_association_seconds
            ),
            Limit::Idle => format!("no C-STORE for idle_seconds ({} s)", settings.idle_seconds),
            Limit::ShutdownGrace => format!(
                "daemon shutting down; store unfinished after shutdown_grace_seconds ({} s)",
                settings.shutdown_grace_seconds
            ),
        }
    }
}

/// The earliest of the limits that apply now.
fn next_limit(
    deadline: Instant,
    idle_until: Option<Instant>,
    grace_ends: Option<Instant>,
) -> (Instant, Limit) {
    let mut next = (deadline, Limit::Lifetime);
    for (at, limit) in [
        (idle_until, Limit::Idle),
        (grace_ends, Limit::ShutdownGrace),
    ] {
        if let Some(at) = at {
            if at < next.0 {
                next = (at, limit);
            }
        }
    }
    next
}

/// One association's state between messages: the command being assembled and the store
/// whose data set is arriving.
struct Session<'a> {
    ingest: &'a Ingest,
    calling_ae: &'a str,
    tally: &'a mut Tally,
    studies: &'a mut Entered,
    command_bytes: Vec<u8>,
    pending: Option<PendingStore>,
    /// This association's journal segment (let go when the association ends).
    lane: super::journal::Lane,
    /// When the last C-STORE began or ended: what the idle limit counts from.
    last_store: Instant,
}

impl Session<'_> {
    /// How long one response may take to leave.
    fn write_limit(&self) -> Duration {
        Duration::from_secs(self.ingest.settings.timeout_seconds)
    }

    /// A command fragment: once complete, a C-STORE starts its pending store; anything
    /// else is answered at once (C-ECHO success, other commands unrecognised).
    async fn on_command<S: Link>(
        &mut self,
        association: &mut AsyncServerAssociation<S>,
        value: wire::Value,
    ) -> Result<(), End> {
        self.command_bytes.extend_from_slice(&value.data);
        if self.command_bytes.len() > MAX_COMMAND_BYTES {
            return Err(End::Aborted(format!(
                "command set over {MAX_COMMAND_BYTES} bytes"
            )));
        }
        if !value.is_last {
            return Ok(());
        }
        let command = Command::decode(&std::mem::take(&mut self.command_bytes))
            .map_err(|e| End::Aborted(e.to_string()))?;
        let pc = value.presentation_context_id;
        let accepted = association
            .presentation_contexts()
            .iter()
            .any(|c| c.id == pc && c.reason == PresentationContextResultReason::Acceptance);
        if !accepted {
            // PS3.8 9.3.1: a PDV on a context not accepted is a protocol error.
            return Err(End::Aborted(format!(
                "command on presentation context {pc}, which was not accepted"
            )));
        }
        if command.field & 0x8000 != 0 {
            return Err(End::Aborted(format!(
                "a response (command field {:#06x}) sent to us, the SCP",
                command.field
            )));
        }
        if command.field == field::C_CANCEL_RQ {
            // Nothing of ours can be cancelled: each C-STORE is answered when it ends.
            return Ok(());
        }
        if command.has_data_set {
            if self.pending.is_some() {
                return Err(End::Aborted("new command before the data set ended".into()));
            }
            self.last_store = Instant::now();
            let contexts = association.presentation_contexts();
            self.pending = Some(PendingStore::begin(
                self.ingest,
                &mut self.lane,
                contexts,
                self.calling_ae,
                pc,
                command,
            ));
            return Ok(());
        }
        let status = if command.field == field::C_ECHO_RQ {
            DimseStatus::SUCCESS
        } else {
            UNRECOGNIZED_OPERATION
        };
        respond(association, self.write_limit(), pc, &command, status, None)
            .await
            .map_err(End::PeerGone)
    }

    /// A data fragment of the pending store: once complete, the store is finished and
    /// answered.
    async fn on_data<S: Link>(
        &mut self,
        association: &mut AsyncServerAssociation<S>,
        value: wire::Value,
    ) -> Result<(), End> {
        let Some(store) = self.pending.as_mut() else {
            return Err(End::Aborted("data set without a command".into()));
        };
        if store.pc_id != value.presentation_context_id {
            return Err(End::Aborted(
                "data set on another presentation context".into(),
            ));
        }
        if !value.is_last {
            // An empty fragment adds nothing: no write for it.
            if !value.data.is_empty() {
                store.append(self.ingest, &mut self.lane, &value.data);
            }
            return Ok(());
        }
        store.append(self.ingest, &mut self.lane, &value.data);
        let Some(store) = self.pending.take() else {
            return Err(End::Aborted("data set without a command".into()));
        };
        let (pc, command) = (store.pc_id, store.command.clone());
        let (status, comment) = store
            .complete(
                self.ingest,
                &mut self.lane,
                self.calling_ae,
                self.tally,
                self.studies,
            )
            .await;
        self.last_store = Instant::now();
        respond(
            association,
            self.write_limit(),
            pc,
            &command,
            status,
            comment.as_deref(),
        )
        .await
        .map_err(End::PeerGone)
    }
}

async fn respond<S: Link>(
    association: &mut AsyncServerAssociation<S>,
    limit: Duration,
    pc: u8,
    command: &Command,
    status: DimseStatus,
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
    send(association, &pdu, limit).await
}

/// Send one PDU and flush: dicom-ul does not, and over TLS its tail could stay in rustls's
/// buffer while the peer waits for it. Bounded by `limit`: over TLS a peer that stops
/// reading would otherwise hold the flush (and its slot) for ever.
async fn send<S: Link>(
    association: &mut AsyncServerAssociation<S>,
    pdu: &Pdu,
    limit: Duration,
) -> Result<(), String> {
    let exchange = async {
        association.send(pdu).await.map_err(|e| e.to_string())?;
        association
            .inner_stream()
            .flush()
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("peer not reading for {}s", limit.as_secs())))
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
