//! Delivery: result objects out to the PACS. Each destination has its own task, so a
//! failing destination never holds up another; within one, each object retries on its
//! own schedule (exponential backoff with jitter), so one bad object never holds up the
//! others. The delivery rows in the store are the queue: a restart resumes them.
//!
//! `dimse` is the C-ECHO / C-STORE SCU (also behind `osteoscreen echo` / `send`), `stow`
//! the STOW-RS client, `folder` the folder writer, `settings` what the operator sets.

pub mod dimse;
pub mod folder;
pub mod routes;
pub mod settings;
pub mod stow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

use crate::ops::health::Health;
use crate::ops::metrics::metrics;
use crate::shutdown::{Done, Shutdown, ShutdownTrigger};
use crate::store::{Delivery, JobState, Store};
use crate::wake::Wake;
pub use routes::Routes;
pub use settings::{DeliverySettings, Destination, DestinationKind, PeerNode};

/// Deliveries taken from the store per round.
const BATCH: usize = 32;
/// Timeouts one object's exchange with a peer may take in all (C-STORE request, data set
/// and response; or a STOW-RS request and its response).
pub(crate) const PEER_TIMEOUTS: u32 = 4;
/// How often an idle destination looks for due deliveries without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Pause after a round whose outcomes could not be recorded.
const RECORD_FAILURE_PAUSE: Duration = Duration::from_secs(10);

/// A destination ready to send to.
enum Client {
    Dimse(dimse::Peer),
    Stow(stow::StowClient),
    Folder(std::path::PathBuf),
}

/// DICOM TLS towards `host` when `ca` is set; our certificate when `certificate` is.
pub fn tls_client(
    ca: &std::path::Path,
    certificate: &std::path::Path,
    key: &std::path::Path,
    host: &str,
) -> Result<Option<dimse::TlsClient>, crate::dicom::tls::TlsError> {
    if ca.as_os_str().is_empty() {
        return Ok(None);
    }
    let identity = (!certificate.as_os_str().is_empty()).then_some((certificate, key));
    Ok(Some(dimse::TlsClient {
        config: crate::dicom::tls::client_config(ca, identity)?,
        server_name: host.to_string(),
    }))
}

impl Client {
    fn new(
        d: &Destination,
        our_ae: &str,
        timeout: Duration,
        max_pdu: u32,
    ) -> Result<Client, String> {
        Ok(match d.kind {
            DestinationKind::Dimse => Client::Dimse(dimse::Peer {
                tls: tls_client(&d.tls_ca, &d.tls_certificate, &d.tls_private_key, &d.host)
                    .map_err(|e| format!("{}: {e}", d.name))?,
                host: d.host.clone(),
                port: d.port,
                called_ae: d.ae_title.clone(),
                calling_ae: if d.calling_ae.is_empty() {
                    our_ae.to_string()
                } else {
                    d.calling_ae.clone()
                },
                max_pdu_length: max_pdu,
                timeout,
            }),
            DestinationKind::Stow => {
                Client::Stow(stow::StowClient::new(d, timeout).map_err(|e| e.to_string())?)
            }
            DestinationKind::Folder => Client::Folder(d.path.clone()),
        })
    }

    /// Send a batch; one result per delivery, in order.
    async fn send(&self, batch: &[Delivery]) -> Vec<Result<(), Failure>> {
        match self {
            Client::Dimse(peer) => {
                let paths: Vec<_> = batch.iter().map(|d| d.path.clone()).collect();
                dimse::send_files(peer, &paths)
                    .await
                    .iter()
                    .map(|o| match &o.result {
                        _ if o.stored() => Ok(()),
                        Ok((status, comment)) => Err(Failure::counted(format!(
                            "C-STORE status {status}{}",
                            peer_said(comment.as_deref().unwrap_or(""))
                        ))),
                        Err(e) => Err(Failure {
                            error: e.clone(),
                            counts: !o.not_offered,
                        }),
                    })
                    .collect()
            }
            Client::Stow(client) => {
                let mut out = Vec::with_capacity(batch.len());
                for d in batch {
                    out.push(client.store(&d.path).await.map_err(|e| Failure {
                        counts: !e.is_unreachable(),
                        error: e.to_string(),
                    }));
                }
                out
            }
            Client::Folder(root) => batch
                .iter()
                .map(|d| {
                    let (root, study, path) = (root.clone(), d.study_uid.clone(), d.path.clone());
                    tokio::task::block_in_place(|| folder::deliver(&root, &study, &path))
                        .map(|_| ())
                        .map_err(|e| Failure::counted(e.to_string()))
                })
                .collect(),
        }
    }
}

/// Why one object was not delivered.
struct Failure {
    error: String,
    /// Whether it counts towards `max_attempts`: not when the object never reached the
    /// destination (no connection or association, or an association that broke before its
    /// turn). A PACS down for hours keeps its deliveries pending instead of dead.
    counts: bool,
}

impl Failure {
    fn counted(error: String) -> Failure {
        Failure {
            error,
            counts: true,
        }
    }
}

/// Where text the peer chose begins in a delivery error. It is kept (printable ASCII, at
/// most 128 characters) with the delivery for `osteoscreen queue show`, and left out of
/// the log: a PACS may repeat the patient's name or ID in its error comment.
const PEER_SAID: &str = "; the peer said: ";

/// `text` from the peer, ready to append to an error ("" when it said nothing).
pub(crate) fn peer_said(text: &str) -> String {
    let text = crate::dicom::command::command_text(text.trim(), 128);
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("{PEER_SAID}{text}")
    }
}

/// A delivery error without the peer's own words.
fn loggable(error: &str) -> &str {
    error.split(PEER_SAID).next().unwrap_or(error)
}

/// What every destination task shares.
pub struct Deliverer {
    pub store: Arc<Store>,
    pub settings: DeliverySettings,
    pub our_ae: String,
    pub max_pdu_length: u32,
    /// Woken when new deliveries are recorded.
    pub wake: Wake,
    pub health: Health,
}

impl Deliverer {
    /// Run one task per destination until shutdown; each finishes the batch it is
    /// sending first. When the routes change (SIGHUP), the tasks finish their batch and
    /// a new set starts.
    pub async fn run(
        self: Arc<Self>,
        mut routes: watch::Receiver<Arc<Routes>>,
        mut shutdown: Shutdown,
        _done: Done,
    ) {
        let mut watching = true;
        loop {
            let current = routes.borrow_and_update().clone();
            let stop = ShutdownTrigger::new();
            let mut tasks = tokio::task::JoinSet::new();
            for d in current.all() {
                let (me, stop) = (self.clone(), stop.subscribe());
                tasks.spawn(async move { me.serve(d, stop).await });
            }
            let reload = tokio::select! {
                changed = routes.changed(), if watching => {
                    watching = changed.is_ok();
                    watching
                }
                _ = shutdown.recv() => false,
            };
            stop.trigger();
            while tasks.join_next().await.is_some() {}
            if !reload && shutdown.is_shutdown() {
                return;
            }
            if reload {
                tracing::info!("destinations reloaded");
            }
        }
    }

    async fn serve(&self, d: Destination, mut shutdown: Shutdown) {
        let part = format!("delivery to {}", d.name);
        let mut wake = self.wake.clone();
        let timeout = Duration::from_secs(self.settings.timeout_seconds);
        let client = match Client::new(&d, &self.our_ae, timeout, self.max_pdu_length) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(destination = %d.name, error = %e, "destination unusable; its deliveries wait");
                return;
            }
        };
        // Every wait on a peer is bounded (an exchange or a STOW-RS request by
        // `PEER_TIMEOUTS` timeouts, an association by two), so a batch to a PACS that
        // stalls at every step ends within this; a PACS's slowness must not make the
        // watchdog restart the daemon.
        self.health.register(
            &part,
            timeout * (BATCH as u32 * PEER_TIMEOUTS + 4) + IDLE_POLL * 4,
        );
        loop {
            self.health.beat(&part);
            let store = self.store.clone();
            let name = d.name.clone();
            let due = tokio::task::spawn_blocking(move || store.due_deliveries(&name, BATCH))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let due = match due {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(destination = %d.name, error = %e, "cannot read deliveries");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = wake.wait() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.recv() => break,
                }
                continue;
            }
            let started = Instant::now();
            let results = client.send(&due).await;
            let recorded = self.record(&d.name, &due, results, started.elapsed());
            if shutdown.is_shutdown() {
                break;
            }
            if !recorded {
                // The rows are still due: without a pause the same objects would go to
                // the PACS again at once, over and over, while the database cannot be
                // written (a full or read-only disk).
                tokio::select! {
                    _ = tokio::time::sleep(RECORD_FAILURE_PAUSE) => {}
                    _ = shutdown.recv() => break,
                }
            }
        }
        self.health.retire(&part);
    }

    /// Store each result; log finished jobs. False when some result could not be stored.
    fn record(
        &self,
        destination: &str,
        batch: &[Delivery],
        results: Vec<Result<(), Failure>>,
        took: Duration,
    ) -> bool {
        let mut all_recorded = true;
        for (d, result) in batch.iter().zip(results) {
            let ended = match &result {
                Ok(()) => {
                    metrics()
                        .deliveries
                        .with_label_values(&[destination, "sent"])
                        .inc();
                    tokio::task::block_in_place(|| self.store.delivery_done(d.id))
                }
                Err(Failure {
                    error: e,
                    counts: false,
                }) => {
                    // Not reached: no attempt used, a steady reconnect pace.
                    let retry_at = crate::store::now_ms()
                        + self
                            .settings
                            .unreachable_retry_ms(rand::rng().random::<f64>());
                    metrics()
                        .deliveries
                        .with_label_values(&[destination, "retry"])
                        .inc();
                    tracing::warn!(
                        destination,
                        study_uid = %d.study_uid,
                        sop_instance_uid = %d.sop_instance_uid,
                        attempts_used = d.attempts,
                        retry_in_ms = retry_at - crate::store::now_ms(),
                        error = %loggable(e),
                        "destination not reached"
                    );
                    tokio::task::block_in_place(|| self.store.delivery_postponed(d.id, e, retry_at))
                }
                Err(Failure { error: e, .. }) => {
                    let failures = (d.attempts + 1) as u32;
                    let retry_at = (failures < self.settings.max_attempts).then(|| {
                        crate::store::now_ms()
                            + self
                                .settings
                                .backoff_ms(failures, rand::rng().random::<f64>())
                    });
                    let outcome = if retry_at.is_some() { "retry" } else { "dead" };
                    metrics()
                        .deliveries
                        .with_label_values(&[destination, outcome])
                        .inc();
                    tracing::warn!(
                        destination,
                        study_uid = %d.study_uid,
                        sop_instance_uid = %d.sop_instance_uid,
                        attempt = failures,
                        retry_in_ms = retry_at.map(|t| t - crate::store::now_ms()),
                        error = %loggable(e),
                        "delivery failed"
                    );
                    tokio::task::block_in_place(|| self.store.delivery_failed(d.id, e, retry_at))
                }
            };
            match ended {
                Ok(Some((job_id, state))) => self.log_outcome(job_id, state),
                Ok(None) => {}
                Err(e) => {
                    all_recorded = false;
                    tracing::error!(error = %e, delivery = d.id, "cannot record delivery")
                }
            }
        }
        tracing::debug!(
            destination,
            objects = batch.len(),
            ms = took.as_millis() as u64,
            "delivery round"
        );
        all_recorded
    }

    /// The one line per study outcome: what was found, how long each stage took, where
    /// it went. UIDs and numbers only, never patient data.
    fn log_outcome(&self, job_id: i64, state: JobState) {
        let job = tokio::task::block_in_place(|| self.store.job(job_id));
        let deliveries = job
            .as_ref()
            .ok()
            .and_then(|j| j.as_ref())
            .map(|j| tokio::task::block_in_place(|| self.store.deliveries_of(&j.study_uid)))
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let Ok(Some(job)) = job else { return };
        let mut destinations: Vec<&str> = deliveries
            .iter()
            .filter(|d| d.job_id == job_id)
            .map(|d| d.destination.as_str())
            .collect();
        // One row per object and destination: each destination appears once per object.
        destinations.sort_unstable();
        destinations.dedup();
        crate::pipeline::summary::JobSummary::parse(job.finding.as_deref()).log_finished(
            &job.study_uid,
            job_id,
            state,
            &destinations,
            job.last_error.as_deref().unwrap_or(""),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_peer_says_is_stored_cleaned_and_kept_out_of_the_log() {
        let error = format!(
            "C-STORE status 0xA700{}",
            peer_said("Patient DOE^JANE\r\nforged line\u{1b}[31m")
        );
        assert!(
            !error.contains('\n') && !error.contains('\u{1b}'),
            "{error}"
        );
        assert!(error.contains("DOE^JANE"), "kept for queue show: {error}");
        assert_eq!(loggable(&error), "C-STORE status 0xA700");
        assert_eq!(peer_said("  "), "");
        assert_eq!(peer_said(&"x".repeat(500)).len(), PEER_SAID.len() + 128);
    }
}
