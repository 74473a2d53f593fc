//! `osteoscreen queue`: the jobs in the database of `[storage] dir`, read while the
//! daemon runs (SQLite WAL: readers do not block it).

use std::process::ExitCode;

use osteoscreen::config::Settings;
use osteoscreen::store::Store;

pub fn list(settings: &Settings) -> anyhow::Result<ExitCode> {
    let path = Store::path_in(&settings.storage.dir);
    anyhow::ensure!(
        path.exists(),
        "no database at {} (has the daemon run with this [storage] dir?)",
        path.display()
    );
    let store = Store::open(&path)?;
    let jobs = store.jobs()?;
    println!(
        "{:>6}  {:<10}  {:>7}  {:>9}  {:<19}  study",
        "job", "state", "version", "instances", "queued at (UTC)"
    );
    for j in &jobs {
        println!(
            "{:>6}  {:<10}  {:>7}  {:>9}  {:<19}  {}",
            j.id,
            j.state,
            j.version,
            j.instance_count,
            format_utc(j.created_ms),
            j.study_uid
        );
    }
    println!("{} jobs", jobs.len());
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds.
fn format_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}
