//! The accept loop. Each connection first passes the access check on its peeked
//! A-ASSOCIATE-RQ, then takes an association slot (`slots`): a caller over
//! `max_associations` or `max_associations_per_peer`, or arriving while the disk is below
//! its watermark, gets an A-ASSOCIATE-RJ (transient) at once instead of hanging. Open
//! sockets are capped too, in all and per address (`CONNECTIONS_PER_SLOT` for each slot),
//! and each is bounded in time by the negotiation's timeout. A plain A-ASSOCIATE-RQ on the
//! TLS port gets a permanent A-ASSOCIATE-RJ, so the caller's log says it was refused
//! rather than that the connection dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource,
};
use dicom_ul::Pdu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::access::CallerCheck;
use super::slots::{peek_ae_titles, Full, Peeked, Slot, Slots};
use super::Ingest;
use crate::ops::metrics::metrics;
use crate::shutdown::{Done, Shutdown};

/// How often a listener proves it is alive (health reports).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Sockets allowed per association slot, counting those still negotiating.
const CONNECTIONS_PER_SLOT: usize = 2;

/// One listening socket: plain DICOM, or DICOM over TLS with this configuration.
pub struct Endpoint {
    pub listener: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Endpoint {
    /// The listener's name in health reports and logs.
    fn part(&self) -> &'static str {
        if self.tls.is_some() {
            "DICOM TLS listener"
        } else {
            "DICOM listener"
        }
    }
}

/// Accept connections until shutdown; each association runs in its own task. `slots`
/// is shared by every endpoint of the daemon.
pub async fn run(
    endpoint: Endpoint,
    ingest: Arc<Ingest>,
    slots: Arc<Slots>,
    mut shutdown: Shutdown,
    done: Done,
) {
    let settings = &ingest.settings;
    let part = endpoint.part();
    let listener = &endpoint.listener;
    // Open connections, counted per address too: one address's silent sockets must not
    // take every place in the negotiation queue.
    let connections = Slots::new(
        settings.max_associations * CONNECTIONS_PER_SLOT + 8,
        settings.max_associations_per_peer * CONNECTIONS_PER_SLOT,
    );
    ingest.health.register(part, HEARTBEAT * 5);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = heartbeat.tick() => {
                ingest.health.beat(part);
                continue;
            }
            _ = shutdown.recv() => break,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if listening_socket_broken(&e) => {
                // Nothing will ever be accepted again: end, so that the supervisor stops
                // the process and systemd restarts it with a fresh socket.
                tracing::error!(error = %e, "{part}: the listening socket is broken");
                return;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let timeout = Duration::from_secs(ingest.settings.timeout_seconds);
        let connection = match connections.try_take(peer.ip()) {
            Ok(connection) => connection,
            Err(full) => {
                let why = match full {
                    Full::Total(_) => "too many connections negotiating",
                    Full::Peer(_) => "too many connections from this address",
                };
                refuse(socket, peer, why, Refusal::Limit, timeout);
                continue;
            }
        };
        if let Err(reason) = ingest.has_room_for(0) {
            let why = format!("disk space: {reason}");
            refuse(socket, peer, &why, Refusal::Disk, timeout);
            continue;
        }
        let (ingest, shutdown, done) = (ingest.clone(), shutdown.clone(), done.clone());
        let slots = slots.clone();
        let tls = endpoint.tls.clone();
        tokio::spawn(async move {
            let _connection = connection;
            let _done = done;
            // Inside TLS the request cannot be peeked: the handshake authenticates the
            // peer, and the slot goes by address alone.
            let taken = match tls {
                None => take_slot(&socket, peer, &ingest, &slots).await,
                Some(_) if plain_request(&socket, timeout).await => {
                    let why = "a plain DICOM association request on the TLS port (the caller must use TLS)";
                    refuse(socket, peer, why, Refusal::PlainOnTls, timeout);
                    return;
                }
                Some(_) => slots.try_take(peer.ip()).map(Taken::Slot),
            };
            let (slot, refused) = match taken {
                Ok(Taken::Slot(slot)) => (Some(slot), None),
                Ok(Taken::Refused(reason)) => (None, reason),
                Ok(Taken::Silent) => {
                    tracing::warn!(%peer, "no association request within [dicom] timeout_seconds: connection closed");
                    return;
                }
                Err(full) => {
                    refuse(socket, peer, &full.to_string(), Refusal::Limit, timeout);
                    return;
                }
            };
            // Dropped when the association ends, a panic included.
            let _slot = slot;
            super::association::handle(socket, peer, ingest, shutdown, tls, refused).await;
        });
    }
    ingest.health.retire(part);
    tracing::info!("{part} stopped accepting");
}

/// accept(2) errors that are about the listening socket itself rather than one connection
/// or a passing shortage (EMFILE, ENOBUFS, ECONNABORTED, pending network errors).
fn listening_socket_broken(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
}

/// What the slot check decided for one connection.
enum Taken {
    /// An allowed caller's slot, held for the association.
    Slot(Slot),
    /// A request the negotiation must reject (wrong called AE, caller not allowed: the
    /// reason), or not an A-ASSOCIATE-RQ (none): no slot, dicom-ul answers it.
    Refused(Option<AssociationRJServiceUserReason>),
    /// No request within the timeout: the connection is closed.
    Silent,
}

/// The slot for an allowed caller.
async fn take_slot(
    socket: &TcpStream,
    peer: SocketAddr,
    ingest: &Ingest,
    slots: &Arc<Slots>,
) -> Result<Taken, Full> {
    let settings = &ingest.settings;
    let timeout = Duration::from_secs(settings.timeout_seconds);
    let (called, calling) = match peek_ae_titles(socket, timeout).await {
        Peeked::Request(called, calling) => (called, calling),
        Peeked::Other => return Ok(Taken::Refused(None)),
        Peeked::Silent => return Ok(Taken::Silent),
    };
    let check = CallerCheck {
        rules: &ingest.callers,
        peer,
        ae_title: &settings.ae_title,
        accept_any_called_ae: settings.accept_any_called_ae,
        refused: None,
    };
    if let Err(reason) = check.decide(&calling, &called) {
        return Ok(Taken::Refused(Some(reason)));
    }
    slots.try_take(peer.ip()).map(Taken::Slot)
}

/// Whether the connection's first byte opens an A-ASSOCIATE-RQ (PDU type 1) where a TLS
/// ClientHello (record type 22) was due. Waits for it no longer than `timeout`; a silent
/// connection goes on to the handshake, which has its own bound.
async fn plain_request(socket: &TcpStream, timeout: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(timeout, socket.peek(&mut first)).await,
        Ok(Ok(1))
    ) && first[0] == 0x01
}

/// Why a connection is turned away before negotiation.
enum Refusal {
    /// A connection or association limit: transient, "local limit exceeded".
    Limit,
    /// The disk is below its watermark: transient, "temporary congestion".
    Disk,
    /// Plain DICOM on the TLS port: permanent (retrying will not help), service user, no
    /// reason given (the standard has none for "use TLS").
    PlainOnTls,
}

/// Log, count and send an A-ASSOCIATE-RJ.
fn refuse(socket: TcpStream, peer: SocketAddr, why: &str, kind: Refusal, timeout: Duration) {
    let transient = |reason| AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(reason),
    };
    let answer = match kind {
        Refusal::Limit => {
            tracing::warn!(peer = %peer.ip().to_canonical(), "association rejected: {why}");
            transient(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded)
        }
        Refusal::Disk => {
            tracing::error!(peer = %peer.ip().to_canonical(), "association rejected: {why}");
            transient(AssociationRJServiceProviderPresentationReason::TemporaryCongestion)
        }
        Refusal::PlainOnTls => {
            tracing::warn!(peer = %peer.ip().to_canonical(), "association rejected: {why}");
            AssociationRJ {
                result: AssociationRJResult::Permanent,
                source: AssociationRJSource::ServiceUser(
                    AssociationRJServiceUserReason::NoReasonGiven,
                ),
            }
        }
    };
    metrics()
        .associations
        .with_label_values(&["rejected"])
        .inc();
    // A flood of connections must not become a flood of tasks holding sockets: past
    // MAX_REJECTING the connection is closed without an answer.
    let Ok(rejecting) = REJECTING.try_acquire() else {
        return;
    };
    tokio::spawn(async move {
        let _rejecting = rejecting;
        reject(socket, peer, answer, timeout).await
    });
}

/// Rejections being answered at once, at most.
const MAX_REJECTING: usize = 64;
static REJECTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_REJECTING);

/// Read the A-ASSOCIATE-RQ and answer it with `answer`.
async fn reject(mut socket: TcpStream, peer: SocketAddr, answer: AssociationRJ, timeout: Duration) {
    let exchange = async {
        // PDU header: type (1), reserved (1), length (4, big endian).
        let mut header = [0u8; 6];
        socket.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as u64;
        if header[0] != 0x01 || len > 1 << 20 {
            return Ok(()); // not an association request: just close
        }
        tokio::io::copy(&mut (&mut socket).take(len), &mut tokio::io::sink()).await?;
        let mut out = Vec::with_capacity(10);
        let pdu = Pdu::AssociationRJ(answer);
        dicom_ul::write_pdu(&mut out, &pdu).map_err(std::io::Error::other)?;
        socket.write_all(&out).await?;
        socket.shutdown().await
    };
    if let Ok(Err(e)) = tokio::time::timeout(timeout, exchange).await {
        tracing::debug!(peer = %peer.ip(), error = %e, "rejecting association failed");
    }
}
