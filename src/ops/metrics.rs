//! The daemon's metrics, in one registry, rendered in the Prometheus text format by
//! `/metrics`. Counters and histograms are updated where things happen; gauges that
//! describe the queue and the disk are set at scrape time from the store
//! (`Metrics::refresh_gauges`), so they are never stale.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::{now_ms, JobState, QueueStats};

/// Every metric osteoscreen exports.
pub struct Metrics {
    registry: Registry,
    /// C-STORE and STOW-RS instances by calling AE (`STOW-RS` for STOW-RS) and `stored` /
    /// `refused`.
    pub instances: IntCounterVec,
    /// Associations by outcome (`accepted`, `rejected`).
    pub associations: IntCounterVec,
    /// Jobs by state (set at scrape time).
    pub jobs: IntGaugeVec,
    /// Jobs waiting for a worker (queued, or failed and due for a retry).
    pub queue_depth: IntGauge,
    /// Age of the oldest waiting job, seconds (0 when none waits).
    pub oldest_queued_seconds: IntGauge,
    /// Analysis time per study by stage (`total`, `ct`, `xray`, and `inference`: the
    /// X-ray network alone).
    pub analysis_seconds: HistogramVec,
    /// Deliveries by destination and outcome (`sent`, `retry`, `dead`).
    pub deliveries: IntCounterVec,
    /// Free bytes on the filesystem of `[storage] dir` (set at scrape time).
    pub disk_free_bytes: IntGauge,
    /// Acknowledged instances in the ingest journal not yet in the spool tree and the
    /// database (normally 0 or a few; growing means the mover cannot keep up or fails).
    pub journal_backlog: IntGauge,
    /// How far the mean features of the last ~200 radiographs lie from the X-ray model's
    /// training images (`analysis::site_shift`); above 0.45 the site's look is one the
    /// weights did not learn. NaN until 32 radiographs have been analysed.
    pub xray_feature_shift: Gauge,
    /// 1 once studies are read with weights adapted to this site (`analysis::site_adapt`),
    /// else 0.
    pub xray_site_adapted: Gauge,
    /// Calling AE titles that have their own `instances` series (`caller_label`).
    callers: Mutex<HashSet<String>>,
}

/// Calling AE titles given their own series. A peer picks its AE title, and with
/// `allowed_callers` empty anyone may call: past this many, new titles share one series
/// (`OTHER_CALLERS`) so that `/metrics` cannot be grown without bound.
const MAX_CALLER_LABELS: usize = 100;
const OTHER_CALLERS: &str = "(other)";

const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("osteoscreen".into()), None)?;
        let instances = IntCounterVec::new(
            Opts::new(
                "instances_total",
                "Instances received, by calling AE and status",
            ),
            &["calling_ae", "status"],
        )?;
        let associations = IntCounterVec::new(
            Opts::new("associations_total", "DICOM associations, by outcome"),
            &["outcome"],
        )?;
        let jobs = IntGaugeVec::new(Opts::new("jobs", "Jobs by state"), &["state"])?;
        let queue_depth = IntGauge::new("queue_depth", "Jobs waiting for analysis")?;
        let oldest_queued_seconds = IntGauge::new(
            "oldest_queued_age_seconds",
            "Age of the oldest job waiting for analysis",
        )?;
        let analysis_seconds = HistogramVec::new(
            HistogramOpts::new("analysis_seconds", "Analysis time per study, by stage")
                .buckets(SECONDS_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "deliveries_total",
                "Delivery attempts of result objects, by destination and outcome",
            ),
            &["destination", "outcome"],
        )?;
        let disk_free_bytes = IntGauge::new("disk_free_bytes", "Free bytes in [storage] dir")?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(associations.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(oldest_queued_seconds.clone()))?;
        registry.register(Box::new(analysis_seconds.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        let journal_backlog = IntGauge::new(
            "journal_backlog",
            "Acknowledged instances not yet moved from the ingest journal to the spool",
        )?;
        registry.register(Box::new(disk_free_bytes.clone()))?;
        registry.register(Box::new(journal_backlog.clone()))?;
        let xray_feature_shift = Gauge::new(
            "xray_feature_shift",
            "RMS z-score of the mean features of the last ~200 radiographs against the X-ray model's training images (NaN until 32)",
        )?;
        xray_feature_shift.set(f64::NAN);
        registry.register(Box::new(xray_feature_shift.clone()))?;
        let xray_site_adapted = Gauge::new(
            "xray_site_adapted",
            "1 once radiographs are read with X-ray weights adapted to this site's first radiographs ([model] site_adaptation), else 0",
        )?;
        registry.register(Box::new(xray_site_adapted.clone()))?;
        Ok(Metrics {
            registry,
            instances,
            associations,
            jobs,
            queue_depth,
            oldest_queued_seconds,
            analysis_seconds,
            deliveries,
            disk_free_bytes,
            journal_backlog,
            xray_feature_shift,
            xray_site_adapted,
            callers: Mutex::new(HashSet::new()),
        })
    }

    /// Count one received instance under its calling AE (`status`: `stored`, `refused`).
    pub fn count_instance(&self, calling_ae: &str, status: &str) {
        let label = self.caller_label(calling_ae);
        self.instances.with_label_values(&[&label, status]).inc();
    }

    /// The `calling_ae` label for a title: itself for the first `MAX_CALLER_LABELS`
    /// titles seen, `OTHER_CALLERS` after that.
    fn caller_label(&self, calling_ae: &str) -> String {
        let mut seen = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(calling_ae) {
            return calling_ae.to_string();
        }
        if seen.len() < MAX_CALLER_LABELS {
            seen.insert(calling_ae.to_string());
            return calling_ae.to_string();
        }
        OTHER_CALLERS.to_string()
    }

    /// Set the gauges that describe the queue and the disk (at scrape time).
    pub fn refresh_gauges(&self, queue: &QueueStats, disk_free_bytes: u64) {
        // Every state, so that one no job is in any more reads 0 rather than its last count.
        for state in JobState::ALL {
            let n = queue
                .by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.jobs.with_label_values(&[state.as_str()]).set(n);
        }
        self.queue_depth.set(queue.waiting);
        let oldest = queue
            .oldest_waiting_ms
            .map_or(0, |at| (now_ms() - at).max(0) / 1000);
        self.oldest_queued_seconds.set(oldest);
        self.disk_free_bytes
            .set(i64::try_from(disk_free_bytes).unwrap_or(i64::MAX));
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into memory fails only on invalid metric data, which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> =
        LazyLock::new(|| Metrics::new().expect("metric names and labels are valid"));
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_ae_series_are_bounded() {
        let m = Metrics::new().unwrap();
        for i in 0..MAX_CALLER_LABELS + 50 {
            m.count_instance(&format!("PEER{i}"), "refused");
        }
        m.count_instance("PEER0", "stored");
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("osteoscreen_instances_total{"))
            .count();
        // One series per early title, one for the rest, and PEER0's stored.
        assert_eq!(series, MAX_CALLER_LABELS + 2, "{text}");
        assert!(
            text.contains(
                r#"osteoscreen_instances_total{calling_ae="(other)",status="refused"} 50"#
            ),
            "{text}"
        );
    }

    #[test]
    fn counters_appear_in_the_text_format() {
        let m = metrics();
        m.instances
            .with_label_values(&["MODALITY", "stored"])
            .inc_by(3);
        m.analysis_seconds
            .with_label_values(&["total"])
            .observe(0.2);
        m.jobs.with_label_values(&["queued"]).set(2);
        let text = m.render();
        assert!(
            text.contains(
                r#"osteoscreen_instances_total{calling_ae="MODALITY",status="stored"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains("osteoscreen_analysis_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"osteoscreen_jobs{state="queued"} 2"#),
            "{text}"
        );

        let stats = QueueStats {
            by_state: vec![(JobState::Done, 4)],
            waiting: 0,
            oldest_waiting_ms: None,
        };
        m.refresh_gauges(&stats, 1 << 30);
        let text = m.render();
        assert!(
            text.contains(r#"osteoscreen_jobs{state="queued"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"osteoscreen_jobs{state="done"} 4"#),
            "{text}"
        );
        assert!(
            text.contains("osteoscreen_disk_free_bytes 1073741824"),
            "{text}"
        );
    }
}
