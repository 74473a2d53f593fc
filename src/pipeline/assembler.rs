//! Study assembly: a study becomes a queued job once no instance of it has arrived for
//! `study_stable_seconds` and no association that delivered part of it is still open.
//! The quiet period is measured from `last_received_ms` in the database, so it survives
//! a restart; later instances re-open the study as a new job version.

use std::sync::Arc;

use std::time::Duration;
use tokio::sync::watch;

use super::settings::PipelineSettings;
use crate::ingest::active::ActiveStudies;
use crate::shutdown::{Done, Shutdown};
use crate::store::{now_ms, Store};
use crate::wake::Wake;

/// Queue every study that is due now, each with the priority its senders and
/// modalities give it; returns how many jobs were queued.
pub fn assemble_once(
    store: &Store,
    active: &ActiveStudies,
    stable: Duration,
    priorities: &PipelineSettings,
) -> Result<usize, crate::store::StoreError> {
    let cutoff = now_ms() - stable.as_millis() as i64;
    let mut queued = 0;
    for study in store.studies_due(cutoff)? {
        if active.is_active(&study) {
            continue;
        }
        let (senders, modalities) = store.study_origin(&study)?;
        let priority = priorities.priority(&senders, &modalities);
        if let Some(job) = store.queue_job(&study, cutoff, priority)? {
            tracing::info!(
                study_uid = %job.study_uid,
                job_id = job.id,
                version = job.version,
                instances = job.instance_count,
                priority,
                "study stable: job queued"
            );
            queued += 1;
        }
    }
    Ok(queued)
}

/// Run `assemble_once` every `tick` until shutdown, waking the workers when a job was
/// queued. The priority rules are re-read each round (SIGHUP reloads them).
pub async fn run(
    store: Arc<Store>,
    active: ActiveStudies,
    stable: Duration,
    priorities: watch::Receiver<Arc<PipelineSettings>>,
    wake_workers: Wake,
    mut shutdown: Shutdown,
    _done: Done,
) {
    let tick = (stable / 10).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.recv() => return,
        }
        let (store, active) = (store.clone(), active.clone());
        let rules = priorities.borrow().clone();
        let result =
            tokio::task::spawn_blocking(move || assemble_once(&store, &active, stable, &rules))
                .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => wake_workers.wake(),
            Ok(Err(e)) => tracing::error!(error = %e, "study assembly failed; retrying"),
            Err(e) => tracing::error!(error = %e, "study assembly task failed; retrying"),
        }
    }
}
