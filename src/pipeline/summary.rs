//! What a job keeps of its Finding: enough for `queue show`, the outcome log line and
//! metrics, without patient data (the Finding carries the age and weight it used, for OST
//! and the covariate model; none of that is kept here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::finding::Finding;

/// The stored summary of a Finding (JSON in the job row).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSummary {
    pub status: String,
    pub class: Option<String>,
    pub method: Option<String>,
    pub basis: Option<String>,
    pub reason: Option<String>,
    pub flags: Vec<String>,
    pub instances_used: usize,
    pub timings: BTreeMap<String, f64>,
    pub objects: Vec<String>,
}

impl JobSummary {
    pub fn of(f: &Finding) -> JobSummary {
        JobSummary {
            status: name_of(&f.status),
            class: f.conclusion.as_ref().map(|c| name_of(&c.class)),
            method: f.conclusion.as_ref().map(|c| c.method.to_string()),
            basis: f.conclusion.as_ref().map(|c| c.basis.clone()),
            reason: f.reason.clone(),
            flags: f.flags.clone(),
            instances_used: f.instances_used.len(),
            timings: f.timings_ms.clone(),
            objects: Vec::new(),
        }
    }

    /// The summary stored as `text`; empty when absent or unreadable.
    pub fn parse(text: Option<&str>) -> JobSummary {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The one log line per finished study: UIDs, outcome, class, method, stage
    /// timings, destinations, error — never patient data.
    pub fn log_finished(
        &self,
        study_uid: &str,
        job_id: i64,
        outcome: impl std::fmt::Display,
        destinations: &[&str],
        error: &str,
    ) {
        tracing::info!(
            study_uid,
            job_id,
            outcome = %outcome,
            class = self.class.as_deref().unwrap_or("-"),
            method = self.method.as_deref().unwrap_or("-"),
            reason = self.reason.as_deref().unwrap_or(""),
            timings_ms = %self.timings_text(),
            destinations = %destinations.join(","),
            error,
            "study finished"
        );
    }

    /// Stage timings as `stage=ms` pairs, for a log line.
    pub fn timings_text(&self) -> String {
        self.timings
            .iter()
            .map(|(k, v)| format!("{k}={v:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Serde's name for a unit enum value (`"osteopenia"`, `"analysed"`), without quotes.
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
