//! A bounded smoke run of each fuzz target (src/fuzz.rs), seeded from the real test
//! files: no panic escapes, nothing hangs, no allocation the input does not back. The
//! long runs (a million executions each) are in FUZZING.md.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use osteoscreen::fuzz::{run, seeds_from, Target};

const ALLOCATION_CAP: usize = 256 << 20;
static OVER_CAP: AtomicU64 = AtomicU64::new(0);

struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            OVER_CAP.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_CAP {
            OVER_CAP.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fn smoke(target: Target, seconds: u64) {
    let files = osteoscreen::dicom::files::collect_files(&[common::testdata()]).unwrap_or_default();
    let seeds = seeds_from(target, &files, 600 << 10);
    assert!(!seeds.is_empty(), "{target:?}: no seeds");
    let report = run(
        target,
        &seeds,
        u64::MAX,
        Duration::from_secs(seconds),
        7,
        Some(|| OVER_CAP.load(Ordering::Relaxed)),
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
        OVER_CAP.load(Ordering::Relaxed),
        0,
        "allocation over the cap"
    );
}

/// One test: the targets share the process's panic hook, so they run one after another.
#[test]
fn every_fuzz_target_survives_twenty_seconds_of_mutants() {
    smoke(Target::Command, 20);
    smoke(Target::DataSet, 20);
    smoke(Target::Image, 20);
}
