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
                    .into_iter()
                    .map(|o| match o.result {
                        _ if o.stored() => Ok(()),
                        Ok((status, comment)) => Err(Failure {
                            error: format!("C-STORE status {status}"),
                            peer_said: comment.unwrap_or_default(),
                            counts: true,
                        }),
                        Err(error) => Err(Failure {
                            error,
                            peer_said: String::new(),
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
                        peer_said: e.peer_said().to_string(),
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
                        .map_err(|e| Failure {
                            error: e.to_string(),
                            peer_said: String::new(),
                            counts: true,
                        })
                })
                .collect(),
        }
    }
}

/// Why one object was not delivered.
struct Failure {
    /// Our account of it: logged and stored.
    error: String,
    /// The peer's own words (an Error Comment, a response body), "" when none. Stored,
    /// cleaned and cut (`Failure::stored`), for `osteoscreen queue show`, and kept out of
    /// the log: a PACS may repeat the patient's name or ID in them.
    peer_said: String,
    /// Whether it counts towards `max_attempts`: not when the object never reached the
    /// destination (no connection or association, or an association that broke before its
    /// turn). A PACS down for hours keeps its deliveries pending instead of dead.
    counts: bool,
}

impl Failure {
    /// The text kept with the delivery: ours, then the peer's in printable ASCII, at most
    /// 128 characters.
    fn stored(&self) -> String {
        let said = crate::dicom::command::command_text(self.peer_said.trim(), 128);
        if said.trim().is_empty() {
            self.error.clone()
        } else {
            format!("{}; the peer said: {said}", self.error)
        }
    }
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

/// How often deliveries are checked against the configured destinations.
const UNROUTED_CHECK: Duration = Duration::from_secs(60);

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
            self.abandon_unrouted(&current);
            let stop = ShutdownTrigger::new();
            let mut tasks = tokio::task::JoinSet::new();
            for d in current.all() {
                let (me, stop) = (self.clone(), stop.subscribe());
                tasks.spawn(async move { me.serve(d, stop).await });
            }
            // Checked again now and then: a worker may record a delivery to a destination
            // just removed, and `queue retry` may revive one.
            let reload = loop {
                tokio::select! {
                    changed = routes.changed(), if watching => {
                        watching = changed.is_ok();
                        break watching;
                    }
                    _ = shutdown.recv() => break false,
                    _ = tokio::time::sleep(UNROUTED_CHECK) => self.abandon_unrouted(&current),
                }
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

    /// Deliveries to destinations the configuration no longer names end `dead`, with
    /// that reason, instead of keeping their jobs open for ever.
    fn abandon_unrouted(&self, routes: &Routes) {
        let names: Vec<String> = routes.all().into_iter().map(|d| d.name).collect();
        match tokio::task::block_in_place(|| self.store.abandon_unrouted(&names)) {
            Ok(0) => {}
            Ok(n) => tracing::error!(
                deliveries = n,
                "deliveries to destinations no longer configured are dead (queue retry revives them once the destination is back)"
            ),
            Err(e) => tracing::error!(error = %e, "cannot check deliveries against the destinations"),
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
                Err(failure) => {
                    let failures = (d.attempts + 1) as u32;
                    let (now, unit) = (crate::store::now_ms(), rand::rng().random::<f64>());
                    // Not reached: no attempt used, a steady reconnect pace.
                    let retry_at = if failure.counts {
                        (failures < self.settings.max_attempts)
                            .then(|| now + self.settings.backoff_ms(failures, unit))
                    } else {
                        Some(now + self.settings.unreachable_retry_ms(unit))
                    };
                    let outcome = if retry_at.is_some() { "retry" } else { "dead" };
                    metrics()
                        .deliveries
                        .with_label_values(&[destination, outcome])
                        .inc();
                    let what = if failure.counts {
                        "delivery failed"
                    } else {
                        "destination not reached"
                    };
                    tracing::warn!(
                        destination,
                        study_uid = %d.study_uid,
                        sop_instance_uid = %d.sop_instance_uid,
                        attempts_used = d.attempts + i64::from(failure.counts),
                        retry_in_ms = retry_at.map(|t| t - now),
                        error = %failure.error,
                        "{what}"
                    );
                    let stored = failure.stored();
                    tokio::task::block_in_place(|| match retry_at {
                        Some(at) if !failure.counts => {
                            self.store.delivery_postponed(d.id, &stored, at)
                        }
                        _ => self.store.delivery_failed(d.id, &stored, retry_at),
                    })
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
    fn what_a_peer_says_is_stored_cleaned_and_cut() {
        let failure = |said: &str| Failure {
            error: "C-STORE status 0xA700".into(),
            peer_said: said.into(),
            counts: true,
        };
        let stored = failure("Patient DOE^JANE\r\nforged line\u{1b}[31m").stored();
        assert!(
            !stored.contains('\n') && !stored.contains('\u{1b}'),
            "{stored}"
        );
        assert!(stored.starts_with("C-STORE status 0xA700; the peer said: Patient DOE^JANE"));
        assert_eq!(failure("  ").stored(), "C-STORE status 0xA700");
        let long = failure(&"x".repeat(500)).stored();
        assert_eq!(long.split("said: ").nth(1).map(str::len), Some(128));
    }
}
