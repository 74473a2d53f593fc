//! Jobs: one per quiet period of a study, moved through its states by named operations,
//! each one committed row change:
//!
//! ```text
//! queued -> analysing -> reporting -> delivering -> done | not_applicable
//!              |                          |
//!              +-> failed (retried after a pause) -> dead (attempts exhausted)
//!                                         +-> dead (a delivery exhausted its retries)
//! queued -> superseded (a newer version of the study was queued)
//! ```
//!
//! After a crash, `resume_interrupted` puts jobs caught in `analysing` or `reporting`
//! back to `queued` (re-running a stage is harmless, its output UIDs are deterministic)
//! as suspects, analysed one at a time; one caught again while analysed alone
//! `max_attempts` times is `dead`.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row};

use super::{now_ms, sql, state_enum, Store, StoreError};

state_enum! {
    /// Where a job stands.
    JobState {
        /// Waiting for a worker.
        Queued => "queued",
        /// A worker is analysing the study.
        Analysing => "analysing",
        /// The Finding is in; the SR and SC are being written.
        Reporting => "reporting",
        /// The objects are written; deliveries are under way.
        Delivering => "delivering",
        /// Every delivery succeeded.
        Done => "done",
        /// Nothing to analyse (not lumbar, nothing usable); `reason` says why.
        NotApplicable => "not_applicable",
        /// Analysis failed; retried after a pause.
        Failed => "failed",
        /// Retries exhausted (analysis or a delivery); `last_error` says why.
        Dead => "dead",
        /// A newer version of the same study was queued.
        Superseded => "superseded",
    }
}

impl JobState {
    /// States a job does not leave by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::NotApplicable | JobState::Dead | JobState::Superseded
        )
    }
}

/// A study handed to analysis: one version per quiet period of the study.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub study_uid: String,
    pub version: i64,
    pub state: JobState,
    pub instance_count: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub priority: i64,
    pub attempts: i64,
    /// Why not applicable, in words for a person.
    pub reason: Option<String>,
    pub last_error: Option<String>,
    /// The Finding's summary (JSON), once analysed.
    pub finding: Option<String>,
}

const JOB_COLUMNS: &str = "id, study_uid, version, state, instance_count, created_ms, updated_ms,
     priority, attempts, reason, last_error, finding";

fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        study_uid: r.get(1)?,
        version: r.get(2)?,
        state: r.get(3)?,
        instance_count: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
        priority: r.get(7)?,
        attempts: r.get(8)?,
        reason: r.get(9)?,
        last_error: r.get(10)?,
        finding: r.get(11)?,
    })
}

/// The queue at a glance (metrics, `/readyz`, `queue list`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub by_state: Vec<(JobState, i64)>,
    /// Jobs a worker could take now or after their pause.
    pub waiting: i64,
    pub oldest_waiting_ms: Option<i64>,
}

impl Store {
    /// Queue a new job version for `study_uid` if it is still quiet since `cutoff_ms`;
    /// older queued versions become `superseded`. Returns the job, or None if the study
    /// received something after the cutoff (it will be due again later).
    pub fn queue_job(
        &self,
        study_uid: &str,
        cutoff_ms: i64,
        priority: i64,
    ) -> Result<Option<Job>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("queue_job"))?;
        let version: Option<i64> = tx
            .query_row(
                "UPDATE studies SET pending = 0, job_version = job_version + 1
                 WHERE study_uid = ?1 AND pending = 1 AND last_received_ms <= ?2
                 RETURNING job_version",
                params![study_uid, cutoff_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("queue_job"))?;
        let Some(version) = version else {
            return Ok(None);
        };
        let now = now_ms();
        tx.execute(
            "UPDATE jobs SET state = ?1, updated_ms = ?2 WHERE study_uid = ?3 AND state IN (?4, ?5)",
            params![
                JobState::Superseded,
                now,
                study_uid,
                JobState::Queued,
                JobState::Failed
            ],
        )
        .map_err(sql("queue_job"))?;
        let job = tx
            .query_row(
                &format!(
                    "INSERT INTO jobs (study_uid, version, state, instance_count, created_ms,
                         updated_ms, priority)
                     VALUES (?1, ?2, ?3,
                         (SELECT COUNT(*) FROM instances WHERE study_uid = ?1), ?4, ?4, ?5)
                     RETURNING {JOB_COLUMNS}"
                ),
                params![study_uid, version, JobState::Queued, now, priority],
                job_row,
            )
            .map_err(sql("queue_job"))?;
        tx.commit().map_err(sql("queue_job"))?;
        Ok(Some(job))
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
            .map_err(sql("jobs"))?;
        let rows = stmt.query_map([], job_row).map_err(sql("jobs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("jobs"))
    }

    /// The jobs of one study, oldest first.
    pub fn jobs_of(&self, study_uid: &str) -> Result<Vec<Job>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE study_uid = ?1 ORDER BY id"
            ))
            .map_err(sql("jobs_of"))?;
        let rows = stmt
            .query_map([study_uid], job_row)
            .map_err(sql("jobs_of"))?;
        rows.collect::<Result<_, _>>().map_err(sql("jobs_of"))
    }

    /// One job by id.
    pub fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_row,
            )
            .optional()
            .map_err(sql("job"))
    }

    /// Take the next job for analysis: queued, or failed and past its pause; highest
    /// priority first, then oldest. It becomes `analysing` with one more attempt.
    pub fn claim_job(&self) -> Result<Option<Job>, StoreError> {
        let now = now_ms();
        self.conn()
            .query_row(
                &format!(
                    "UPDATE jobs SET state = ?1, attempts = attempts + 1, updated_ms = ?2
                     WHERE id = (SELECT id FROM jobs
                                 WHERE (state = ?3 OR (state = ?4 AND not_before_ms <= ?2))
                                   AND (interrupted = 0 OR NOT EXISTS (
                                       SELECT 1 FROM jobs s WHERE s.interrupted > 0
                                       AND s.state IN (?1, ?5)))
                                 ORDER BY priority DESC, created_ms, id LIMIT 1)
                     RETURNING {JOB_COLUMNS}"
                ),
                params![
                    JobState::Analysing,
                    now,
                    JobState::Queued,
                    JobState::Failed,
                    JobState::Reporting
                ],
                job_row,
            )
            .optional()
            .map_err(sql("claim_job"))
    }

    /// Analysis failed: `failed` until `retry_at_ms`, or `dead` when there is none.
    pub fn job_failed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = if retry_at_ms.is_some() {
            JobState::Failed
        } else {
            JobState::Dead
        };
        self.set_job(
            "job_failed",
            "UPDATE jobs SET state = ?2, last_error = ?3, not_before_ms = ?4, updated_ms = ?5
             WHERE id = ?1",
            params![id, state, error, retry_at_ms.unwrap_or(0), now_ms()],
        )
    }

    /// Analysis done: the Finding's summary is kept and the reports are next.
    pub fn job_reporting(&self, id: i64, finding: &str) -> Result<(), StoreError> {
        self.set_job(
            "job_reporting",
            "UPDATE jobs SET state = ?2, finding = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, JobState::Reporting, finding, now_ms()],
        )
    }

    /// Reports written: record one delivery per (object, destination) and the final
    /// Finding summary, and move on, in one transaction. `outcome` (done or not
    /// applicable) is where the job ends once every delivery succeeded; with nothing to
    /// deliver it ends there now.
    pub fn job_delivering(
        &self,
        id: i64,
        deliveries: &[super::NewDelivery],
        outcome: JobState,
        reason: Option<&str>,
        finding: &str,
    ) -> Result<JobState, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("job_delivering"))?;
        let now = now_ms();
        super::deliveries::insert(&tx, id, deliveries, now)?;
        let state = if deliveries.is_empty() {
            outcome
        } else {
            JobState::Delivering
        };
        tx.execute(
            "UPDATE jobs SET state = ?2, outcome = ?3, reason = ?4, last_error = NULL,
                 finding = ?6, updated_ms = ?5
             WHERE id = ?1",
            params![id, state, outcome, reason, now, finding],
        )
        .map_err(sql("job_delivering"))?;
        tx.commit().map_err(sql("job_delivering"))?;
        Ok(state)
    }

    /// At start-up: jobs a crash caught in `analysing` or `reporting` go back to the
    /// queue (their attempt is not counted). A crash cannot say which of the jobs in
    /// flight caused it, so each becomes a suspect, and suspects are analysed one at a
    /// time (`claim_job`): a suspect caught again was the one running, and counts the
    /// interruption. After `max_attempts` of those it is `dead`, instead of restarting the
    /// daemon for ever. Returns (queued, dead).
    pub fn resume_interrupted(&self, max_attempts: i64) -> Result<(usize, usize), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("resume_interrupted"))?;
        let now = now_ms();
        let dead = tx
            .execute(
                "UPDATE jobs SET state = ?1, updated_ms = ?2, interrupted = interrupted + 1,
                     last_error = 'interrupted during analysis ' || (interrupted + 1) || \
                     ' times (crash, watchdog or forced stop), the last ones while analysed \
                     alone: given up; queue retry runs it again'
                 WHERE state IN (?3, ?4) AND interrupted >= ?5",
                params![
                    JobState::Dead,
                    now,
                    JobState::Analysing,
                    JobState::Reporting,
                    max_attempts
                ],
            )
            .map_err(sql("resume_interrupted"))?;
        let queued = tx
            .execute(
                "UPDATE jobs SET state = ?1, updated_ms = ?2, attempts = max(attempts - 1, 0),
                     interrupted = interrupted + 1
                 WHERE state IN (?3, ?4)",
                params![
                    JobState::Queued,
                    now,
                    JobState::Analysing,
                    JobState::Reporting
                ],
            )
            .map_err(sql("resume_interrupted"))?;
        tx.commit().map_err(sql("resume_interrupted"))?;
        Ok((queued, dead))
    }

    /// Failed and dead jobs (all, or those of one study) back to the queue with fresh
    /// attempts; dead deliveries of theirs back to pending. Returns the jobs requeued.
    pub fn retry_jobs(&self, study_uid: Option<&str>) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("retry_jobs"))?;
        let now = now_ms();
        // A job dead in delivery resumes its deliveries; one dead in analysis re-runs.
        let redeliver = super::deliveries::revive_dead(&tx, study_uid, now)?;
        let requeued = tx
            .execute(
                "UPDATE jobs SET state = ?1, attempts = 0, not_before_ms = 0, updated_ms = ?2,
                     interrupted = min(interrupted, 1)
                 WHERE state IN (?3, ?4) AND (?5 IS NULL OR study_uid = ?5)",
                params![
                    JobState::Queued,
                    now,
                    JobState::Failed,
                    JobState::Dead,
                    study_uid
                ],
            )
            .map_err(sql("retry_jobs"))?;
        tx.commit().map_err(sql("retry_jobs"))?;
        Ok(requeued + redeliver)
    }

    /// The spool files of a study's instances, in SOP Instance UID order.
    pub fn study_files(&self, study_uid: &str) -> Result<Vec<PathBuf>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT path FROM instances WHERE study_uid = ?1 ORDER BY sop_instance_uid",
            )
            .map_err(sql("study_files"))?;
        let rows = stmt
            .query_map([study_uid], |r| {
                r.get::<_, String>(0).map(|p| self.base.resolve(&p))
            })
            .map_err(sql("study_files"))?;
        rows.collect::<Result<_, _>>().map_err(sql("study_files"))
    }

    /// Who sent a study and what it holds: distinct calling AE titles and modalities.
    pub fn study_origin(&self, study_uid: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let conn = self.conn();
        let distinct = |column: &str| -> Result<Vec<String>, StoreError> {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT DISTINCT {column} FROM instances WHERE study_uid = ?1 ORDER BY 1"
                ))
                .map_err(sql("study_origin"))?;
            let rows = stmt
                .query_map([study_uid], |r| r.get(0))
                .map_err(sql("study_origin"))?;
            rows.collect::<Result<_, _>>().map_err(sql("study_origin"))
        };
        Ok((distinct("calling_ae")?, distinct("modality")?))
    }

    /// Counts by state, how many wait for a worker and since when.
    pub fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .map_err(sql("queue_stats"))?;
        let by_state = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("queue_stats"))?
            .collect::<Result<Vec<(JobState, i64)>, _>>()
            .map_err(sql("queue_stats"))?;
        let (waiting, oldest) = conn
            .query_row(
                "SELECT COUNT(*), MIN(created_ms) FROM jobs WHERE state IN (?1, ?2)",
                params![JobState::Queued, JobState::Failed],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql("queue_stats"))?;
        Ok(QueueStats {
            by_state,
            waiting,
            oldest_waiting_ms: oldest,
        })
    }

    fn set_job(
        &self,
        op: &'static str,
        statement: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(statement, params)
            .map(|_| ())
            .map_err(sql(op))
    }
}
