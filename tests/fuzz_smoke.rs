//! A bounded smoke run of each fuzz target (src/fuzz.rs), seeded from the real test
//! files: no panic escapes, nothing hangs, no allocation the input does not back. The
//! long runs (a million executions each) are in FUZZING.md.

mod common;

use std::time::Duration;

use osteoscreen::fuzz::{oversized, run, seeds_from, CappedAllocator, Target, ALLOCATION_CAP};

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

fn smoke(target: Target, seconds: u64) {
    let files = osteoscreen::dicom::files::collect_files(&[common::testdata()]).unwrap_or_default();
    let seeds = seeds_from(target, &files, 128 << 10);
    assert!(!seeds.is_empty(), "{target:?}: no seeds");
    let report = run(
        target,
        &seeds,
        u64::MAX,
        Duration::from_secs(seconds),
        7,
        Some(oversized),
    );
    eprintln!(
        "{target:?}: {} executions, {} accepted, {} crashes, {} hangs",
        report.executions,
        report.accepted,
        report.crashes.len(),
        report.hangs
    );
    assert!(
        report.executions > 100,
        "{target:?}: only {}",
        report.executions
    );
    assert!(report.accepted > 0, "{target:?}: every mutant refused");
    let crashes: Vec<&String> = report.crashes.iter().map(|(_, m)| m).collect();
    for (i, (input, _)) in report.crashes.iter().enumerate() {
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("fuzz-{target:?}-{i}.bin")),
            input,
        );
    }
    assert!(crashes.is_empty(), "{target:?} crashed: {crashes:?}");
    assert_eq!(report.hangs, 0, "{target:?} hung");
    assert_eq!(
        oversized(),
        0,
        "allocation over the cap of {ALLOCATION_CAP} bytes"
    );
}

/// One test: the targets share the process's panic hook, so they run one after another,
/// a minute each.
#[test]
fn every_fuzz_target_survives_a_minute_of_mutants() {
    smoke(Target::Command, 60);
    smoke(Target::DataSet, 60);
    smoke(Target::Image, 60);
    smoke(Target::Analyze, 60);
}
