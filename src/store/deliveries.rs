//! Deliveries: one row per (result object, destination), retried with backoff until it
//! is `done` or `dead`. When a job's last delivery finishes, the job ends in the same
//! transaction: its outcome (done / not applicable) when all succeeded, `dead` otherwise.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::{now_ms, sql, state_enum, JobState, Store, StoreError};

state_enum! {
    /// Where a delivery stands.
    DeliveryState {
        /// Waiting for its next attempt.
        Pending => "pending",
        /// The destination accepted the object.
        Done => "done",
        /// Attempts exhausted; `last_error` says why.
        Dead => "dead",
    }
}

/// A delivery to record, once its object is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub destination: String,
    /// `sr` or `sc`.
    pub kind: String,
    pub sop_instance_uid: String,
    pub path: PathBuf,
}

/// A delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub job_id: i64,
    pub study_uid: String,
    pub destination: String,
    pub kind: String,
    pub sop_instance_uid: String,
    pub path: PathBuf,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, job_id, study_uid, destination, kind, sop_instance_uid, path, state,
     attempts, next_attempt_ms, last_error";

fn row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        job_id: r.get(1)?,
        study_uid: r.get(2)?,
        destination: r.get(3)?,
        kind: r.get(4)?,
        sop_instance_uid: r.get(5)?,
        path: PathBuf::from(r.get::<_, String>(6)?),
        state: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_error: r.get(10)?,
    })
}

/// Record `deliveries` of job `job_id`, due now (part of `Store::job_delivering`).
pub(super) fn insert(
    tx: &Transaction<'_>,
    job_id: i64,
    deliveries: &[NewDelivery],
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (job_id, study_uid, destination, kind, sop_instance_uid,
                 path, state, next_attempt_ms, created_ms, updated_ms)
             SELECT ?1, study_uid, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7 FROM jobs WHERE id = ?1
             ON CONFLICT (job_id, destination, sop_instance_uid) DO UPDATE SET
                 path = excluded.path, state = excluded.state, attempts = 0,
                 next_attempt_ms = excluded.next_attempt_ms, updated_ms = excluded.updated_ms",
        )
        .map_err(sql("insert_deliveries"))?;
    for d in deliveries {
        stmt.execute(params![
            job_id,
            d.destination,
            d.kind,
            d.sop_instance_uid,
            d.path.to_string_lossy(),
            DeliveryState::Pending,
            now
        ])
        .map_err(sql("insert_deliveries"))?;
    }
    Ok(())
}

/// Dead deliveries (all, or one study's) back to pending, their jobs back to
/// `delivering`; returns how many jobs resume delivering (part of `Store::retry_jobs`).
pub(super) fn revive_dead(
    tx: &Transaction<'_>,
    study_uid: Option<&str>,
    now: i64,
) -> Result<usize, StoreError> {
    let jobs = tx
        .execute(
            "UPDATE jobs SET state = ?1, last_error = NULL, updated_ms = ?2
             WHERE state = ?3 AND (?4 IS NULL OR study_uid = ?4)
               AND id IN (SELECT job_id FROM deliveries WHERE state = ?5)",
            params![
                JobState::Delivering,
                now,
                JobState::Dead,
                study_uid,
                DeliveryState::Dead
            ],
        )
        .map_err(sql("revive_deliveries"))?;
    tx.execute(
        "UPDATE deliveries SET state = ?1, attempts = 0, next_attempt_ms = ?2, updated_ms = ?2
         WHERE state = ?3 AND (?4 IS NULL OR study_uid = ?4)",
        params![DeliveryState::Pending, now, DeliveryState::Dead, study_uid],
    )
    .map_err(sql("revive_deliveries"))?;
    Ok(jobs)
}

/// End job `job_id` if none of its deliveries is pending any more; returns the state it
/// ended in.
fn finish_job(tx: &Transaction<'_>, job_id: i64, now: i64) -> Result<Option<JobState>, StoreError> {
    let (pending, dead): (i64, i64) = tx
        .query_row(
            "SELECT COALESCE(SUM(state = ?2), 0), COALESCE(SUM(state = ?3), 0)
             FROM deliveries WHERE job_id = ?1",
            params![job_id, DeliveryState::Pending, DeliveryState::Dead],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("finish_job"))?;
    if pending > 0 {
        return Ok(None);
    }
    let state: Option<JobState> = if dead > 0 {
        let error: Option<String> = tx
            .query_row(
                "SELECT destination || ': ' || COALESCE(last_error, '') FROM deliveries
                 WHERE job_id = ?1 AND state = ?2 ORDER BY updated_ms DESC LIMIT 1",
                params![job_id, DeliveryState::Dead],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("finish_job"))?;
        tx.execute(
            "UPDATE jobs SET state = ?2, last_error = ?3, updated_ms = ?4
             WHERE id = ?1 AND state = ?5",
            params![job_id, JobState::Dead, error, now, JobState::Delivering],
        )
        .map_err(sql("finish_job"))?;
        Some(JobState::Dead)
    } else {
        tx.execute(
            "UPDATE jobs SET state = COALESCE(outcome, ?2), updated_ms = ?3
             WHERE id = ?1 AND state = ?4",
            params![job_id, JobState::Done, now, JobState::Delivering],
        )
        .map_err(sql("finish_job"))?;
        tx.query_row("SELECT state FROM jobs WHERE id = ?1", [job_id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("finish_job"))?
    };
    Ok(state)
}

impl Store {
    /// Pending deliveries to `destination` that are due, oldest first, at most `limit`.
    pub fn due_deliveries(
        &self,
        destination: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries
                 WHERE destination = ?1 AND state = ?2 AND next_attempt_ms <= ?3
                 ORDER BY next_attempt_ms, id LIMIT ?4"
            ))
            .map_err(sql("due_deliveries"))?;
        let rows = stmt
            .query_map(
                params![destination, DeliveryState::Pending, now_ms(), limit as i64],
                row,
            )
            .map_err(sql("due_deliveries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("due_deliveries"))
    }

    /// The deliveries of one study, by job and id.
    pub fn deliveries_of(&self, study_uid: &str) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE study_uid = ?1 ORDER BY job_id, id"
            ))
            .map_err(sql("deliveries_of"))?;
        let rows = stmt
            .query_map([study_uid], row)
            .map_err(sql("deliveries_of"))?;
        rows.collect::<Result<_, _>>().map_err(sql("deliveries_of"))
    }

    /// The destination accepted the object. Returns the job's final state when this was
    /// its last open delivery.
    pub fn delivery_done(&self, id: i64) -> Result<Option<(i64, JobState)>, StoreError> {
        self.finish_delivery(id, DeliveryState::Done, None, 0, 1)
    }

    /// An attempt failed: pending again at `retry_at_ms`, or `dead` when there is none.
    /// Returns the job's final state when this ended its last open delivery.
    pub fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<Option<(i64, JobState)>, StoreError> {
        let state = if retry_at_ms.is_some() {
            DeliveryState::Pending
        } else {
            DeliveryState::Dead
        };
        self.finish_delivery(id, state, Some(error), retry_at_ms.unwrap_or(0), 1)
    }

    /// The destination could not be reached: the delivery waits until `retry_at_ms`
    /// without using up an attempt.
    pub fn delivery_postponed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<Option<(i64, JobState)>, StoreError> {
        self.finish_delivery(id, DeliveryState::Pending, Some(error), retry_at_ms, 0)
    }

    fn finish_delivery(
        &self,
        id: i64,
        state: DeliveryState,
        error: Option<&str>,
        next_attempt_ms: i64,
        attempts_used: i64,
    ) -> Result<Option<(i64, JobState)>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("finish_delivery"))?;
        let now = now_ms();
        let job_id: Option<i64> = tx
            .query_row(
                "UPDATE deliveries SET state = ?2, attempts = attempts + ?6, last_error = ?3,
                     next_attempt_ms = ?4, updated_ms = ?5
                 WHERE id = ?1 RETURNING job_id",
                params![id, state, error, next_attempt_ms, now, attempts_used],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("finish_delivery"))?;
        let Some(job_id) = job_id else {
            return Ok(None);
        };
        let ended = if state == DeliveryState::Pending {
            None
        } else {
            finish_job(&tx, job_id, now)?
        };
        tx.commit().map_err(sql("finish_delivery"))?;
        Ok(ended.map(|s| (job_id, s)))
    }

    /// Pending deliveries to a destination that is no longer configured become `dead`
    /// (their jobs end with them): nothing would ever send them. `queue retry` revives
    /// them once the destination is back. Returns how many.
    pub fn abandon_unrouted(&self, configured: &[String]) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("abandon_unrouted"))?;
        let now = now_ms();
        let pending: Vec<(i64, i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT id, job_id, destination FROM deliveries WHERE state = ?1")
                .map_err(sql("abandon_unrouted"))?;
            let rows = stmt
                .query_map([DeliveryState::Pending], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(sql("abandon_unrouted"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("abandon_unrouted"))?
        };
        let mut jobs = std::collections::BTreeSet::new();
        let mut abandoned = 0;
        for (id, job_id, destination) in &pending {
            if configured.contains(destination) {
                continue;
            }
            abandoned += 1;
            tx.execute(
                "UPDATE deliveries SET state = ?2, last_error = ?3, updated_ms = ?4 WHERE id = ?1",
                params![
                    id,
                    DeliveryState::Dead,
                    format!("destination {destination} is no longer configured"),
                    now
                ],
            )
            .map_err(sql("abandon_unrouted"))?;
            jobs.insert(*job_id);
        }
        for job_id in &jobs {
            finish_job(&tx, *job_id, now)?;
        }
        tx.commit().map_err(sql("abandon_unrouted"))?;
        Ok(abandoned)
    }
}
