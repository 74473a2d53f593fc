//! Workers: each takes the next job (highest priority, then oldest), analyses the study
//! on the blocking pool (so DIMSE and HTTP stay responsive), writes the SR and SC into
//! the outbox, records one delivery per (object, destination) and wakes the deliverer.
//! Every step is one committed state change; a crash in between re-runs the step, and
//! the deterministic output UIDs make that harmless.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::settings::PipelineSettings;
use super::summary::JobSummary;
use crate::analysis::finding::{Finding, Status};
use crate::analysis::{analyze, Engine};
use crate::ops::health::Health;
use crate::ops::metrics::metrics;
use crate::report::{write_reports, OutputSettings, Source};
use crate::shutdown::{Done, Shutdown};
use crate::store::{now_ms, Job, JobState, NewDelivery, Store};
use crate::wake::Wake;

/// How often an idle worker looks for jobs without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A worker busy longer than this with one study is reported stalled.
const STUDY_LIMIT: Duration = Duration::from_secs(600);

/// Which destinations a study's results go to, by name (`deliver::Routes` implements
/// it): the worker records one delivery per object and destination without knowing how
/// a destination is reached, so the pipeline does not depend on delivery.
pub trait Router: Send + Sync {
    fn destinations_for(&self, calling_aes: &[String]) -> Vec<String>;
}

/// What every worker shares.
pub struct Workers<R> {
    pub store: Arc<Store>,
    pub engine: Arc<Engine>,
    pub output: OutputSettings,
    /// `<storage dir>/outbox`: written objects wait here until delivered.
    pub outbox: PathBuf,
    pub settings: PipelineSettings,
    /// Which destinations a study's results go to (SIGHUP may change them).
    pub router: watch::Receiver<Arc<R>>,
    /// Woken by the assembler when a job is queued.
    pub wake: Wake,
    /// Woken here when deliveries are recorded.
    pub wake_delivery: Wake,
    pub health: Health,
}

/// Why a job's analysis or reporting failed.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("analysis stopped unexpectedly: {0}")]
    Panicked(String),
    #[error("{0}")]
    Analysis(String),
    #[error("report: {0}")]
    Report(#[from] crate::report::ReportError),
    #[error("outbox: {0}")]
    Outbox(#[from] std::io::Error),
}

impl<R: Router + 'static> Workers<R> {
    /// Run `count` workers until shutdown; a worker finishes the study it is on first.
    pub async fn run(self: Arc<Self>, count: usize, shutdown: Shutdown, _done: Done) {
        let mut tasks = tokio::task::JoinSet::new();
        for k in 1..=count {
            let (me, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { me.work(k, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn work(&self, k: usize, mut shutdown: Shutdown) {
        let part = format!("worker {k}");
        let mut wake = self.wake.clone();
        self.health.register(&part, STUDY_LIMIT);
        while !shutdown.is_shutdown() {
            self.health.beat(&part);
            let store = self.store.clone();
            let claimed = tokio::task::spawn_blocking(move || store.claim_job()).await;
            match claimed {
                Ok(Ok(Some(job))) => self.process(job).await,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = wake.wait() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.recv() => {}
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(worker = k, error = %e, "cannot claim a job");
                    tokio::time::sleep(IDLE_POLL).await;
                }
                Err(e) => tracing::error!(worker = k, error = %e, "claim task failed"),
            }
        }
        self.health.retire(&part);
    }

    /// Analyse, report, hand over to delivery; any failure becomes `failed` (retried)
    /// or `dead`.
    async fn process(&self, job: Job) {
        let started = Instant::now();
        tracing::info!(
            study_uid = %job.study_uid,
            job_id = job.id,
            attempt = job.attempts,
            priority = job.priority,
            "analysing study"
        );
        let result = match self.analyse(&job).await {
            Ok((_, finding)) if finding.status == Status::Failed => Err(JobError::Analysis(
                finding.reason.unwrap_or_else(|| "analysis failed".into()),
            )),
            Ok((files, finding)) => self.report(&job, files, finding).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(state) => tracing::debug!(
                study_uid = %job.study_uid,
                job_id = job.id,
                state = %state,
                ms = started.elapsed().as_millis() as u64,
                "study handed to delivery"
            ),
            Err(e) => self.fail(&job, &e.to_string()),
        }
    }

    /// The study's files and their Finding.
    async fn analyse(&self, job: &Job) -> Result<(Vec<PathBuf>, Finding), JobError> {
        let (store, study) = (self.store.clone(), job.study_uid.clone());
        let files = blocking(move || store.study_files(&study)).await?;
        let (engine, paths) = (self.engine.clone(), files.clone());
        let finding = blocking(move || Ok::<_, JobError>(analyze(&paths, &engine))).await?;
        // Read back under the tracker's lock, so that of two workers finishing together
        // the later setter shows the latest value.
        // NaN again after a site adaptation, until enough radiographs were read with it.
        let shift = self.engine.site.current().map_or(f64::NAN, f64::from);
        metrics().xray_feature_shift.set(shift);
        if let Some(a) = &self.engine.adaptation {
            let adapted = a.adapted(&self.engine.xray);
            metrics()
                .xray_site_adapted
                .set(f64::from(u8::from(adapted)));
        }
        for stage in ["total", "ct", "xray", "inference"] {
            if let Some(ms) = finding.timings_ms.get(stage) {
                metrics()
                    .analysis_seconds
                    .with_label_values(&[stage])
                    .observe(ms / 1e3);
            }
        }
        Ok((files, finding))
    }

    /// Write the objects into the outbox and record their deliveries.
    async fn report(
        &self,
        job: &Job,
        files: Vec<PathBuf>,
        finding: Finding,
    ) -> Result<JobState, JobError> {
        let mut summary = JobSummary::of(&finding);
        let outcome = if finding.status == Status::Analysed {
            JobState::Done
        } else {
            JobState::NotApplicable
        };
        let (store, id, text) = (self.store.clone(), job.id, summary.to_json());
        blocking(move || store.job_reporting(id, &text)).await?;
        let dir = self.outbox.join(&job.study_uid).join(job.id.to_string());
        let reporting = Instant::now();
        let output = self.output.clone();
        let written = blocking(move || -> Result<Vec<PathBuf>, JobError> {
            if finding.status != Status::Analysed && !output.report_not_analysed {
                return Ok(Vec::new());
            }
            let source = Source::read(&files, &finding.instances_used)?;
            let written = write_reports(&finding, &source, &output, &dir)?;
            make_durable(&written, &dir)?;
            Ok(written)
        })
        .await?;
        summary
            .timings
            .insert("report".into(), reporting.elapsed().as_secs_f64() * 1e3);
        summary.objects = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let (store, study) = (self.store.clone(), job.study_uid.clone());
        let (senders, _) = blocking(move || store.study_origin(&study)).await?;
        let destinations = self.router.borrow().destinations_for(&senders);
        let deliveries = deliveries_for(&written, &destinations);
        let (store, text) = (self.store.clone(), summary.to_json());
        let reason = summary.reason.clone();
        let state = blocking(move || {
            store.job_delivering(id, &deliveries, outcome, reason.as_deref(), &text)
        })
        .await?;
        self.wake_delivery.wake();
        if state != JobState::Delivering {
            summary.log_finished(&job.study_uid, job.id, state, &[], "");
        }
        Ok(state)
    }

    /// `failed` with a pause before the next attempt, or `dead` after the last one.
    fn fail(&self, job: &Job, error: &str) {
        let retry_at = (job.attempts < self.settings.max_attempts as i64)
            .then(|| now_ms() + self.settings.retry_seconds as i64 * 1000);
        tracing::warn!(
            study_uid = %job.study_uid,
            job_id = job.id,
            attempt = job.attempts,
            retry = retry_at.is_some(),
            error,
            "study analysis failed"
        );
        if let Err(e) =
            tokio::task::block_in_place(|| self.store.job_failed(job.id, error, retry_at))
        {
            tracing::error!(job_id = job.id, error = %e, "cannot record the failure");
        }
    }
}

/// One delivery per (object, destination).
fn deliveries_for(objects: &[PathBuf], destinations: &[String]) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    for path in objects {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Written as `<kind>-<SOP Instance UID>.dcm` by `report::write_reports`.
        let (kind, uid) = name
            .trim_end_matches(".dcm")
            .split_once('-')
            .unwrap_or(("object", ""));
        for d in destinations {
            out.push(NewDelivery {
                destination: d.clone(),
                kind: kind.to_string(),
                sop_instance_uid: uid.to_string(),
                path: path.clone(),
            });
        }
    }
    out
}

/// fsync each written object and its folder: a delivery row is recorded only for files
/// that survive a crash.
fn make_durable(files: &[PathBuf], dir: &Path) -> std::io::Result<()> {
    for f in files {
        std::fs::File::open(f)?.sync_all()?;
    }
    crate::fsutil::sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        crate::fsutil::sync_dir(parent)?;
    }
    Ok(())
}

/// Run `f` on the blocking pool; a panic there is a job error like any other.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, JobError>
where
    T: Send + 'static,
    E: Into<JobError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Panicked(e.to_string()))?
        .map_err(Into::into)
}
