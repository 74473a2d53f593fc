//! How queued studies are worked off (`[pipeline]`): how many at once, how often a
//! failed analysis is retried, and which studies go first.

use serde::{Deserialize, Serialize};

/// One priority rule: a study matches when one of its instances came from `calling_ae`
/// (when set) and one has `modality` (when set). The first matching rule gives the
/// study's priority; higher runs first, 0 when none matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PriorityRule {
    pub calling_ae: String,
    pub modality: String,
    pub priority: i64,
}

/// `[pipeline]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Studies analysed at the same time; 0: one per CPU core.
    pub workers: usize,
    /// Receive and queue studies but analyse none (maintenance, or a node that only
    /// stores); queued jobs wait until a restart without it.
    pub paused: bool,
    /// Analysis attempts before a job is dead.
    pub max_attempts: u32,
    /// Pause before a failed analysis is tried again (seconds).
    pub retry_seconds: u64,
    pub priorities: Vec<PriorityRule>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            workers: 0,
            paused: false,
            max_attempts: 3,
            retry_seconds: 30,
            priorities: Vec::new(),
        }
    }
}

impl PipelineSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.workers > 256 {
            return Err("workers must be 0 (one per core) to 256".into());
        }
        for r in &self.priorities {
            if r.calling_ae.is_empty() && r.modality.is_empty() {
                return Err("a priorities rule needs calling_ae or modality".into());
            }
        }
        Ok(())
    }

    /// The number of workers to run.
    pub fn worker_count(&self) -> usize {
        if self.paused {
            0
        } else if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// The priority of a study sent by `calling_aes` holding `modalities`.
    pub fn priority(&self, calling_aes: &[String], modalities: &[String]) -> i64 {
        let has = |list: &[String], want: &str| {
            want.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(want))
        };
        self.priorities
            .iter()
            .find(|r| has(calling_aes, &r.calling_ae) && has(modalities, &r.modality))
            .map_or(0, |r| r.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_sets_the_priority() {
        let s = PipelineSettings {
            priorities: vec![
                PriorityRule {
                    calling_ae: "BACKFILL".into(),
                    modality: String::new(),
                    priority: -10,
                },
                PriorityRule {
                    calling_ae: String::new(),
                    modality: "CT".into(),
                    priority: 10,
                },
            ],
            ..PipelineSettings::default()
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(s.priority(&v(&["PACS"]), &v(&["CT"])), 10);
        assert_eq!(s.priority(&v(&["BACKFILL"]), &v(&["CT"])), -10);
        assert_eq!(s.priority(&v(&["PACS"]), &v(&["DX"])), 0);
        assert!(PipelineSettings {
            priorities: vec![PriorityRule::default()],
            ..PipelineSettings::default()
        }
        .validate()
        .is_err());
    }
}
