//! What every bench reports with: the conventional median, alternating rounds, and
//! candle's version. Each bench uses a part.
#![allow(dead_code)]

/// The conventional median (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// candle-core's version from Cargo.lock (the build's own metadata, not a literal).
pub fn candle_version() -> String {
    let lock = include_str!("../../Cargo.lock");
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("?".into(), |v| v.trim_matches('"').to_string())
}

/// `rounds` rounds of ours then theirs, so drift on a shared machine hits both: each
/// side's per-round figures.
pub fn alternate(
    rounds: usize,
    mut ours: impl FnMut() -> f64,
    mut theirs: impl FnMut() -> f64,
) -> (Vec<f64>, Vec<f64>) {
    (0..rounds).map(|_| (ours(), theirs())).unzip()
}

/// Median milliseconds of `runs` calls of `f` after `warmups` untimed ones.
pub fn median_ms(warmups: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmups {
        f();
    }
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&times)
}
