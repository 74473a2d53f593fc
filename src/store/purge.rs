//! Removing finished work: a study whose every job has ended, and ended before the
//! cutoff, loses its rows here. The caller checks each study again as its turn comes
//! (`purge_plan`: the list goes stale while files are removed), deletes its files
//! (spool, outbox), then calls `forget_study`, which keeps the rows if anything arrived
//! since the plan. A crash in between leaves rows without files for a finished study
//! (the next purge removes them), never files without rows (which start-up recovery
//! would take for new instances).

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use super::{sql, JobState, Store, StoreError};

/// A study the purge may remove, as it stood when checked.
pub struct PurgePlan {
    /// Its spool files and outbox objects.
    pub files: Vec<PathBuf>,
    /// When it last received an instance: `forget_study` removes its rows only if that
    /// has not changed since.
    pub last_received_ms: i64,
    /// The cutoff it was checked against (checked again by `forget_study`).
    pub cutoff_ms: i64,
}

/// The purge condition on `s` (a study row): nothing pending or received since the
/// cutoff (?1), jobs, every one of them final and none updated since the cutoff.
fn purgeable(finals: &str) -> String {
    format!(
        "s.pending = 0 AND s.last_received_ms <= ?1
         AND EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid)
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid
                         AND (j.state NOT IN ({finals}) OR j.updated_ms > ?1))"
    )
}

fn final_states() -> String {
    JobState::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

impl Store {
    /// Studies the purge may remove at `cutoff_ms`, oldest first (each is checked again
    /// by `purge_plan` when its turn comes: the list goes stale while files are removed).
    pub fn purgeable_studies(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT s.study_uid FROM studies s WHERE {}
                 ORDER BY s.last_received_ms",
                purgeable(&final_states())
            ))
            .map_err(sql("purgeable_studies"))?;
        let rows = stmt
            .query_map([cutoff_ms], |r| r.get(0))
            .map_err(sql("purgeable_studies"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("purgeable_studies"))
    }

    /// `study_uid` as it stands now, if it may still be purged at `cutoff_ms`: its files
    /// and its last arrival, read together.
    pub fn purge_plan(
        &self,
        study_uid: &str,
        cutoff_ms: i64,
    ) -> Result<Option<PurgePlan>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("purge_plan"))?;
        let last_received_ms: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT s.last_received_ms FROM studies s WHERE s.study_uid = ?2 AND {}",
                    purgeable(&final_states())
                ),
                params![cutoff_ms, study_uid],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("purge_plan"))?;
        let Some(last_received_ms) = last_received_ms else {
            return Ok(None);
        };
        let mut files = Vec::new();
        // Spool paths are stored relative to the storage dir; outbox paths as written.
        for (query, spool) in [
            ("SELECT path FROM instances WHERE study_uid = ?1", true),
            (
                "SELECT DISTINCT path FROM deliveries WHERE study_uid = ?1",
                false,
            ),
        ] {
            let mut stmt = tx.prepare(query).map_err(sql("purge_plan"))?;
            let rows = stmt
                .query_map([study_uid], |r| {
                    let path = r.get::<_, String>(0)?;
                    Ok(if spool {
                        self.base.resolve(&path)
                    } else {
                        PathBuf::from(path)
                    })
                })
                .map_err(sql("purge_plan"))?;
            for row in rows {
                files.push(row.map_err(sql("purge_plan"))?);
            }
        }
        drop(tx);
        Ok(Some(PurgePlan {
            files,
            last_received_ms,
            cutoff_ms,
        }))
    }

    /// Remove a purged study's rows, unless something arrived for it since its plan or
    /// it is no longer purgeable (a job queued again by `queue retry`): then its rows
    /// stay, and the next purge looks again. Returns whether it was removed.
    pub fn forget_study(&self, study_uid: &str, plan: &PurgePlan) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("forget_study"))?;
        let removed = tx
            .execute(
                &format!(
                    "DELETE FROM studies AS s
                     WHERE s.study_uid = ?2 AND s.last_received_ms = ?3 AND {}",
                    purgeable(&final_states())
                ),
                params![plan.cutoff_ms, study_uid, plan.last_received_ms],
            )
            .map_err(sql("forget_study"))?;
        if removed == 1 {
            for table in ["deliveries", "jobs", "instances"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE study_uid = ?1"),
                    params![study_uid],
                )
                .map_err(sql("forget_study"))?;
            }
        }
        tx.commit().map_err(sql("forget_study"))?;
        Ok(removed == 1)
    }
}
