//! CT analysis time: a synthetic volume of ~300 slices (1 mm) decoded and measured by
//! `analysis::analyze`, median of 5 runs after a warm-up, plus the decode share and the
//! process's peak memory. The goal is under 2 s on 2 cores.
//! Run: `cargo bench --bench analysis`.

use std::time::Instant;

use osteoscreen::analysis::{analyze, Thresholds};
use osteoscreen::synth::{generate, SynthModality, SynthOptions};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = SynthOptions::new(dir.path().to_path_buf(), 1, SynthModality::Ct);
    opts.ct_slice_mm = 1.0;
    opts.seed = 3;
    generate(&opts).expect("synthetic CT");
    let study = dir.path().join("study00000");
    let files: Vec<_> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    let t = Thresholds {
        ct_osteoporosis_hu: 110.0,
        ct_normal_hu: 160.0,
        ct_contrast_offset_hu: 0.0,
    };
    let _ = analyze(&files, t);
    let mut total = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let f = analyze(&files, t);
        total.push(start.elapsed().as_secs_f64());
        decode.push(f.timings_ms.get("decode").copied().unwrap_or(0.0) / 1e3);
        assert!(f.ct.is_some_and(|ct| ct.levels.len() >= 5), "levels found");
    }
    total.sort_by(|a, b| a.total_cmp(b));
    decode.sort_by(|a, b| a.total_cmp(b));
    println!(
        "CT analysis of {} slices (512x512, decode included): median {:.2} s (decode {:.2} s), runs {:?}",
        files.len(),
        total[2],
        decode[2],
        total.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!(
        "goal < 2 s on 2 cores: {}; peak resident memory {} MB",
        if total[2] < 2.0 { "met" } else { "NOT met" },
        peak_rss_mb()
    );
}

/// VmHWM from /proc/self/status (Linux), in MB.
fn peak_rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0}", kb / 1024.0))
}
