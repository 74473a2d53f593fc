//! What every bench reports with: the conventional median and candle's version.

/// The conventional median (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// candle-core's version from Cargo.lock (the build's own metadata, not a literal).
#[allow(dead_code)] // not every bench prints it
pub fn candle_version() -> String {
    let lock = include_str!("../../Cargo.lock");
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("?".into(), |v| v.trim_matches('"').to_string())
}
