//! The SQLite schema and its migrations, applied in order via `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: instances received, studies being assembled, jobs.
    "CREATE TABLE instances (
        sop_instance_uid TEXT PRIMARY KEY,
        sop_class_uid    TEXT NOT NULL,
        study_uid        TEXT NOT NULL,
        series_uid       TEXT NOT NULL,
        modality         TEXT NOT NULL,
        transfer_syntax  TEXT NOT NULL,
        path             TEXT NOT NULL,
        size             INTEGER NOT NULL,
        calling_ae       TEXT NOT NULL,
        received_at_ms   INTEGER NOT NULL,
        times_received   INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX instances_by_study ON instances(study_uid);
    CREATE TABLE studies (
        study_uid           TEXT PRIMARY KEY,
        first_received_ms   INTEGER NOT NULL,
        last_received_ms    INTEGER NOT NULL,
        -- 1 while instances arrived that no job covers yet
        pending             INTEGER NOT NULL,
        job_version         INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX studies_pending ON studies(pending, last_received_ms);
    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        study_uid       TEXT NOT NULL,
        version         INTEGER NOT NULL,
        state           TEXT NOT NULL,
        instance_count  INTEGER NOT NULL,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        reason          TEXT,
        UNIQUE (study_uid, version)
    );
    CREATE INDEX jobs_by_state ON jobs(state);",
    // 2: the job state machine (priority, attempts, errors, the Finding's summary, the
    // state a job ends in once delivered) and one delivery per (object, destination).
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN last_error TEXT;
    ALTER TABLE jobs ADD COLUMN finding TEXT;
    ALTER TABLE jobs ADD COLUMN outcome TEXT;
    CREATE INDEX jobs_by_study ON jobs(study_uid);
    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id           INTEGER NOT NULL REFERENCES jobs(id),
        study_uid        TEXT NOT NULL,
        destination      TEXT NOT NULL,
        kind             TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        path             TEXT NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms  INTEGER NOT NULL,
        last_error       TEXT,
        created_ms       INTEGER NOT NULL,
        updated_ms       INTEGER NOT NULL,
        UNIQUE (job_id, destination, sop_instance_uid)
    );
    CREATE INDEX deliveries_due ON deliveries(destination, state, next_attempt_ms);
    CREATE INDEX deliveries_by_job ON deliveries(job_id);",
    // 3: how often a crash caught a job in analysis (> 0: a suspect, run one at a time).
    "ALTER TABLE jobs ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;",
];

/// Bring `conn` to the newest schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
