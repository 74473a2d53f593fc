//! Fuzz one target for N executions, seeded from real DICOM files:
//!
//! ```sh
//! cargo run --release --example fuzz -- command 1000000
//! cargo run --release --example fuzz -- dataset 1000000 ../shared/testdata/real
//! cargo run --release --example fuzz -- image 1000000 ../shared/testdata/real
//! cargo run --release --example fuzz -- analyze 1000000 ../shared/testdata/real
//! ```
//!
//! Prints executions, accepted inputs, crashes (with a file written for each), hangs and
//! allocations over the cap; exits 1 if any of the last three is non-zero.

use std::time::Duration;

use osteoscreen::fuzz::{oversized, run, seeds_from, CappedAllocator, Target, ALLOCATION_CAP};

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target: Target = args
        .first()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or(Target::Command);
    let iterations: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "../shared/testdata/real".into());
    let files = osteoscreen::dicom::files::collect_files(&[dir.into()]).unwrap_or_default();
    // Small seeds keep an image execution short; the size of a file changes nothing in
    // how its header is read.
    let seeds = seeds_from(target, &files, 128 << 10);
    let report = run(
        target,
        &seeds,
        iterations,
        Duration::from_secs(24 * 3600),
        1,
        Some(oversized),
    );
    let over = oversized();
    println!(
        "target {target:?}: {} seeds, {} executions in {:.1} s ({:.0}/s), {} accepted, {} crashes, {} hangs (> {:?}), {} allocations over {} MiB",
        seeds.len(),
        report.executions,
        report.elapsed.as_secs_f64(),
        report.executions as f64 / report.elapsed.as_secs_f64(),
        report.accepted,
        report.crashes.len(),
        report.hangs,
        osteoscreen::fuzz::HANG,
        over,
        ALLOCATION_CAP >> 20
    );
    for (i, (input, message)) in report.crashes.iter().enumerate() {
        let path = format!("fuzz-crash-{target:?}-{i}.bin");
        let _ = std::fs::write(&path, input);
        println!("crash {i}: {message} ({path})");
    }
    if !report.crashes.is_empty() || report.hangs > 0 || over > 0 {
        std::process::exit(1);
    }
}
