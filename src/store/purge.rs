//! Removing finished work: a study whose every job has ended, and ended before the
//! cutoff, loses its rows here. The caller deletes the files first (spool, outbox), then
//! calls `forget_study`: a crash in between leaves rows without files for a finished
//! study (the next purge removes them), never files without rows (which start-up
//! recovery would take for new instances).

use std::path::PathBuf;

use rusqlite::params;

use super::{sql, JobState, Store, StoreError};

impl Store {
    /// Studies not pending, with jobs, every one of them final and none updated after
    /// `cutoff_ms`.
    pub fn purgeable_studies(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        let finals: Vec<&str> = JobState::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        let list = finals
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT s.study_uid FROM studies s
                 WHERE s.pending = 0
                   AND EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid)
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid
                                   AND (j.state NOT IN ({list}) OR j.updated_ms > ?1))
                 ORDER BY s.last_received_ms"
            ))
            .map_err(sql("purgeable_studies"))?;
        let rows = stmt
            .query_map([cutoff_ms], |r| r.get(0))
            .map_err(sql("purgeable_studies"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("purgeable_studies"))
    }

    /// Every file of a study the daemon keeps: its spool files and its outbox objects.
    pub fn study_owned_files(&self, study_uid: &str) -> Result<Vec<PathBuf>, StoreError> {
        let mut files = self.study_files(study_uid)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT path FROM deliveries WHERE study_uid = ?1")
            .map_err(sql("study_owned_files"))?;
        let rows = stmt
            .query_map([study_uid], |r| r.get::<_, String>(0).map(PathBuf::from))
            .map_err(sql("study_owned_files"))?;
        for row in rows {
            files.push(row.map_err(sql("study_owned_files"))?);
        }
        Ok(files)
    }

    /// Remove a purgeable study's rows, unless something arrived for it meanwhile
    /// (then it is pending again and nothing is removed). Returns whether it was removed.
    pub fn forget_study(&self, study_uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("forget_study"))?;
        let removed = tx
            .execute(
                "DELETE FROM studies WHERE study_uid = ?1 AND pending = 0",
                params![study_uid],
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
