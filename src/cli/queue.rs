//! `osteoscreen queue list|show|retry|purge`: the jobs and deliveries in the database of
//! `[storage] dir`, safe while the daemon runs (SQLite WAL: readers do not block it; a
//! retry or purge is one transaction the daemon's next step sees).

use std::process::ExitCode;

use clap::Subcommand;

use osteoscreen::config::Settings;
use osteoscreen::pipeline::summary::JobSummary;
use osteoscreen::store::{now_ms, Delivery, DeliveryState, Job, Store};

#[derive(Subcommand)]
pub enum QueueAction {
    /// Every job: state, age, attempts, last error, deliveries (the default).
    List,
    /// One study: its jobs, deliveries and the Finding's summary.
    Show {
        /// StudyInstanceUID.
        study: String,
    },
    /// Failed and dead jobs (and dead deliveries) back to the queue, of one study or all.
    Retry {
        /// StudyInstanceUID; all when omitted.
        study: Option<String>,
    },
    /// Remove finished studies (files and rows) whose last job ended DAYS ago or more.
    Purge {
        #[arg(long, value_name = "DAYS")]
        older_than: f64,
    },
}

fn open(settings: &Settings) -> anyhow::Result<Store> {
    let path = Store::path_in(&settings.storage.dir);
    anyhow::ensure!(
        path.exists(),
        "no database at {} (has the daemon run with this [storage] dir?)",
        path.display()
    );
    Ok(Store::open(&path)?)
}

pub fn run(action: Option<QueueAction>, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = open(settings)?;
    match action.unwrap_or(QueueAction::List) {
        QueueAction::List => list(&store),
        QueueAction::Show { study } => show(&store, &study),
        QueueAction::Retry { study } => {
            let n = store.retry_jobs(study.as_deref())?;
            println!("{n} job(s) queued again");
            Ok(ExitCode::SUCCESS)
        }
        QueueAction::Purge { older_than } => {
            anyhow::ensure!(
                older_than.is_finite() && older_than >= 0.0,
                "--older-than takes a number of days, 0 or more"
            );
            let outbox = settings.storage.dir.join("outbox");
            let p = osteoscreen::ops::retention::purge(&store, &outbox, older_than)?;
            println!(
                "purged {} studies: {} files, {} MiB",
                p.studies,
                p.files,
                p.bytes >> 20
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(store: &Store) -> anyhow::Result<ExitCode> {
    let jobs = store.jobs()?;
    println!(
        "{:>6}  {:<14}  {:>7}  {:>9}  {:>8}  {:>8}  {:<19}  {:<22}  study / last error",
        "job",
        "state",
        "version",
        "instances",
        "priority",
        "attempts",
        "queued at (UTC)",
        "delivered"
    );
    for j in &jobs {
        let deliveries = store.deliveries_of(&j.study_uid)?;
        println!(
            "{:>6}  {:<14}  {:>7}  {:>9}  {:>8}  {:>8}  {:<19}  {:<22}  {}{}",
            j.id,
            j.state,
            j.version,
            j.instance_count,
            j.priority,
            j.attempts,
            format_utc(j.created_ms),
            delivered(j, &deliveries),
            j.study_uid,
            j.last_error
                .as_deref()
                .map(|e| format!("  ({})", short(e, 100)))
                .unwrap_or_default()
        );
    }
    println!("{} jobs", jobs.len());
    Ok(ExitCode::SUCCESS)
}

/// "2/4 sent" for a job's deliveries and the destinations, "-" when it has none.
fn delivered(job: &Job, deliveries: &[Delivery]) -> String {
    let of: Vec<&Delivery> = deliveries.iter().filter(|d| d.job_id == job.id).collect();
    if of.is_empty() {
        return "-".into();
    }
    let done = of.iter().filter(|d| d.state == DeliveryState::Done).count();
    let mut names: Vec<&str> = of.iter().map(|d| d.destination.as_str()).collect();
    names.sort();
    names.dedup();
    format!("{done}/{} sent to {}", of.len(), names.join(","))
}

fn show(store: &Store, study: &str) -> anyhow::Result<ExitCode> {
    let jobs = store.jobs_of(study)?;
    anyhow::ensure!(!jobs.is_empty(), "no job for study {study}");
    for j in &jobs {
        println!(
            "job {} (version {}): {}, {} instances, priority {}, {} attempt(s), queued {}, updated {}",
            j.id,
            j.version,
            j.state,
            j.instance_count,
            j.priority,
            j.attempts,
            format_utc(j.created_ms),
            format_utc(j.updated_ms)
        );
        if let Some(r) = &j.reason {
            println!("  reason: {r}");
        }
        if let Some(e) = &j.last_error {
            println!("  last error: {e}");
        }
        let s = JobSummary::parse(j.finding.as_deref());
        if let Some(class) = &s.class {
            println!(
                "  result: {class} by {} ({})",
                s.method.as_deref().unwrap_or("-"),
                s.basis.as_deref().unwrap_or("")
            );
        }
        for f in &s.flags {
            println!("  flag: {f}");
        }
        if !s.timings.is_empty() {
            println!("  timings (ms): {}", s.timings_text());
        }
    }
    let now = now_ms();
    for d in store.deliveries_of(study)? {
        let next = if d.state == DeliveryState::Pending {
            format!(
                ", next attempt in {:.0} s",
                ((d.next_attempt_ms - now) as f64 / 1e3).max(0.0)
            )
        } else {
            String::new()
        };
        println!(
            "delivery {} (job {}): {} {} -> {}: {}, {} attempt(s){next}{}",
            d.id,
            d.job_id,
            d.kind,
            d.sop_instance_uid,
            d.destination,
            d.state,
            d.attempts,
            d.last_error
                .as_deref()
                .map(|e| format!(", last error: {}", short(e, 200)))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds.
fn format_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}
