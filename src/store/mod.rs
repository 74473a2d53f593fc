//! The durable state of the daemon, in SQLite (WAL): instances received, studies being
//! assembled, jobs. Every SQL statement of the crate lives in this module, behind named
//! operations, so another database can replace SQLite without touching the rest.

mod deliveries;
mod jobs;
mod purge;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

pub use deliveries::{Delivery, DeliveryState, NewDelivery};
pub use jobs::{Job, JobState, QueueStats};
pub use purge::PurgePlan;
pub use writer::InstanceWriter;

/// A database problem; the message names the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {op} failed: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("database writer has stopped")]
    WriterGone,
    #[error("cannot start the database writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The group commit this request was part of failed (shared by every request in it).
    #[error("{0}")]
    Batch(#[source] std::sync::Arc<StoreError>),
    #[error("fsync of directory {path} failed: {source}")]
    SyncDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

/// A state column: an enum stored as its name, shown by its name, compared with `&str`.
macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The state named `text`, if there is one.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|s| s.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so that width and alignment work in tables.
                f.pad(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {text:?}", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}
use state_enum;

/// Milliseconds since the Unix epoch, the time unit of every column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One received instance as recorded: where its file is and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub modality: String,
    pub transfer_syntax: String,
    pub path: PathBuf,
    pub size: u64,
    pub calling_ae: String,
    pub received_at_ms: i64,
}

/// Handle to the database for everything but the hot ingest path (see `InstanceWriter`).
pub struct Store {
    path: PathBuf,
    base: PathBase,
    conn: Mutex<Connection>,
}

/// Instance paths are stored relative to the storage dir (the database's folder), as
/// "spool/<study>/<series>/<sop>.dcm", so a daemon started from another working directory,
/// or a storage dir that moved, finds its files again. Rows written before this (the
/// configured spelling) are read as they are.
#[derive(Debug, Clone)]
pub(crate) struct PathBase(PathBuf);

impl PathBase {
    fn of_database(db: &Path) -> PathBase {
        PathBase(db.parent().unwrap_or(Path::new(".")).to_path_buf())
    }

    pub(crate) fn stored(&self, path: &Path) -> String {
        path.strip_prefix(&self.0)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    fn resolve(&self, stored: &str) -> PathBuf {
        if stored.starts_with("spool/") {
            self.0.join(stored)
        } else {
            PathBuf::from(stored)
        }
    }
}

/// Open a connection with the pragmas every connection needs.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    // WAL: readers never block the writer. synchronous=NORMAL: a commit survives a crash
    // of the process (kill -9) but not necessarily a power loss; the durable record of an
    // acknowledged instance is its fsynced spool file, and `ingest::recover` rebuilds any
    // row a power loss took from the spool at start-up. This saves an fsync per C-STORE.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(open_err)?;
    // Every transaction IMMEDIATE: a deferred one that has read cannot upgrade to a write
    // once another connection committed (SQLITE_BUSY at once, no busy wait), and an
    // instance's peer would be told 0xA700. Taking the lock first waits in the busy handler.
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    Ok(conn)
}

impl Store {
    /// Open (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = connect(path)?;
        schema::migrate(&mut conn).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Store {
            path: path.to_path_buf(),
            base: PathBase::of_database(path),
            conn: Mutex::new(conn),
        })
    }

    /// The storage dir the database lies in.
    pub fn storage_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The database file of `[storage] dir`.
    pub fn path_in(storage_dir: &Path) -> PathBuf {
        storage_dir.join("osteoscreen.sqlite")
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent; keep going.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the group-commit writer used by ingest.
    pub fn instance_writer(&self) -> Result<InstanceWriter, StoreError> {
        InstanceWriter::start(connect(&self.path)?, self.base.clone())
    }

    /// Studies with unqueued instances whose last instance arrived at or before `cutoff_ms`.
    pub fn studies_due(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT study_uid FROM studies WHERE pending = 1 AND last_received_ms <= ?1
                 ORDER BY last_received_ms",
            )
            .map_err(sql("studies_due"))?;
        let rows = stmt
            .query_map([cutoff_ms], |r| r.get(0))
            .map_err(sql("studies_due"))?;
        rows.collect::<Result<_, _>>().map_err(sql("studies_due"))
    }

    /// Every recorded instance, in SOP Instance UID order.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT sop_instance_uid, sop_class_uid, study_uid, series_uid, modality,
                        transfer_syntax, path, size, calling_ae, received_at_ms
                 FROM instances ORDER BY sop_instance_uid",
            )
            .map_err(sql("instances"))?;
        let base = &self.base;
        let rows = stmt
            .query_map([], |r| {
                Ok(InstanceRecord {
                    sop_instance_uid: r.get(0)?,
                    sop_class_uid: r.get(1)?,
                    study_uid: r.get(2)?,
                    series_uid: r.get(3)?,
                    modality: r.get(4)?,
                    transfer_syntax: r.get(5)?,
                    path: base.resolve(&r.get::<_, String>(6)?),
                    size: r.get::<_, i64>(7)? as u64,
                    calling_ae: r.get(8)?,
                    received_at_ms: r.get(9)?,
                })
            })
            .map_err(sql("instances"))?;
        rows.collect::<Result<_, _>>().map_err(sql("instances"))
    }

    /// The spool paths of every recorded instance.
    pub fn instance_paths(&self) -> Result<std::collections::HashSet<PathBuf>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path FROM instances")
            .map_err(sql("instance_paths"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0).map(|p| self.base.resolve(&p)))
            .map_err(sql("instance_paths"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("instance_paths"))
    }

    /// Record instances outside the ingest hot path (spool recovery at start-up).
    pub fn record(&self, batch: &[InstanceRecord]) -> Result<(), StoreError> {
        let replaced = record_instances(&mut self.conn(), &self.base, batch)?;
        remove_replaced(&replaced);
        Ok(())
    }

    /// When the recorded copy of `sop_instance_uid` was received, if one is recorded.
    pub fn instance_received_at(&self, sop_instance_uid: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn()
            .prepare_cached("SELECT received_at_ms FROM instances WHERE sop_instance_uid = ?1")
            .and_then(|mut stmt| stmt.query_row([sop_instance_uid], |r| r.get(0)).optional())
            .map_err(sql("instance_received_at"))
    }

    /// Where the instance `sop_instance_uid` is recorded, if it is.
    pub fn instance_path(&self, sop_instance_uid: &str) -> Result<Option<PathBuf>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path FROM instances WHERE sop_instance_uid = ?1")
            .map_err(sql("instance_path"))?;
        let mut rows = stmt
            .query_map([sop_instance_uid], |r| r.get::<_, String>(0))
            .map_err(sql("instance_path"))?;
        match rows.next() {
            Some(p) => Ok(Some(self.base.resolve(&p.map_err(sql("instance_path"))?))),
            None => Ok(None),
        }
    }

    /// A cheap committed write for readiness: take the write lock and rewrite the schema
    /// version unchanged, so a read-only, full or stuck database is noticed.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("check_writable"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("check_writable"))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sql("check_writable"))?;
        tx.commit().map_err(sql("check_writable"))
    }

    /// Cheap liveness probe for the watchdog.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(sql("ping"))
    }
}

/// Insert or refresh instances and mark their studies pending, in one transaction.
/// Returns the files the batch replaced: an instance re-sent under another study or series
/// moves its row to the new file (the newest wins), and the old file must go once the
/// commit is done (`remove_replaced`).
fn record_instances(
    conn: &mut Connection,
    base: &PathBase,
    batch: &[InstanceRecord],
) -> Result<Vec<PathBuf>, StoreError> {
    record_rows(conn, base, batch.iter().map(|r| (r, false)))
}

/// `record_instances` for (row, yielding) pairs: a yielding row (the journal mover's,
/// filed seconds after its acknowledgement) leaves a row received later in place. Others,
/// put in place as they are recorded, always replace: their order is the spool's, whatever
/// the wall clock said when an older row was written.
fn record_rows<'a>(
    conn: &mut Connection,
    base: &PathBase,
    rows: impl IntoIterator<Item = (&'a InstanceRecord, bool)>,
) -> Result<Vec<PathBuf>, StoreError> {
    let tx = conn.transaction().map_err(sql("record_instances"))?;
    let mut replaced = Vec::new();
    {
        let mut previous = tx
            .prepare_cached(
                "SELECT path, received_at_ms FROM instances WHERE sop_instance_uid = ?1",
            )
            .map_err(sql("record_instances"))?;
        // A duplicate SOP Instance UID refreshes the row: the same file path was replaced
        // atomically on disk; another path leaves the old file to remove. A yielding row
        // leaves one received later: the journal's mover can commit an older copy's row
        // after a newer one's (the spool kept the newer file).
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid,
                     modality, transfer_syntax, path, size, calling_ae, received_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (sop_instance_uid) DO UPDATE SET
                     sop_class_uid = excluded.sop_class_uid, study_uid = excluded.study_uid,
                     series_uid = excluded.series_uid, modality = excluded.modality,
                     transfer_syntax = excluded.transfer_syntax, path = excluded.path,
                     size = excluded.size, calling_ae = excluded.calling_ae,
                     received_at_ms = excluded.received_at_ms,
                     times_received = times_received + 1",
            )
            .map_err(sql("record_instances"))?;
        let mut study = tx
            .prepare_cached(
                "INSERT INTO studies (study_uid, first_received_ms, last_received_ms, pending)
                 VALUES (?1, ?2, ?2, 1)
                 ON CONFLICT (study_uid) DO UPDATE SET
                     last_received_ms = max(last_received_ms, excluded.last_received_ms),
                     pending = 1",
            )
            .map_err(sql("record_instances"))?;
        for (r, yields) in rows {
            let stored = base.stored(&r.path);
            let old: Option<(String, i64)> = previous
                .query_row([&r.sop_instance_uid], |row| Ok((row.get(0)?, row.get(1)?)))
                .ok();
            if let Some((old, at)) = old {
                if yields && at > r.received_at_ms {
                    if old != stored {
                        replaced.push(r.path.clone());
                    }
                    continue;
                }
                if old != stored {
                    replaced.push(base.resolve(&old));
                }
            }
            insert
                .execute(params![
                    r.sop_instance_uid,
                    r.sop_class_uid,
                    r.study_uid,
                    r.series_uid,
                    r.modality,
                    r.transfer_syntax,
                    stored,
                    r.size as i64,
                    r.calling_ae,
                    r.received_at_ms,
                ])
                .map_err(sql("record_instances"))?;
            study
                .execute(params![r.study_uid, r.received_at_ms])
                .map_err(sql("record_instances"))?;
        }
    }
    tx.commit().map_err(sql("record_instances"))?;
    Ok(replaced)
}

/// Remove files whose rows moved to a newer copy, durably (the directory is fsynced), so
/// a restart does not find the old copy and move the row back.
pub fn remove_replaced(paths: &[PathBuf]) {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    let _ = crate::fsutil::sync_dir(dir);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "replaced spool file not removed")
            }
        }
    }
}

#[cfg(test)]
mod tests;
