//! Fuzz one target for N executions, seeded from real DICOM files:
//!
//! ```sh
//! cargo run --release --example fuzz -- command 1000000
//! cargo run --release --example fuzz -- dataset 1000000 ../shared/testdata/real
//! cargo run --release --example fuzz -- image 1000000 ../shared/testdata/real
//! ```
//!
//! Prints executions, accepted inputs, crashes (with a file written for each), hangs and
//! allocations over the cap; exits 1 if any of the last three is non-zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use osteoscreen::fuzz::{run, seeds_from, Target};

/// A single allocation above this is a finding: the pre-scan exists so that no declared
/// length turns into an allocation the input does not back.
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
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            OVER_CAP.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
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
        Some(|| OVER_CAP.load(Ordering::Relaxed)),
    );
    let over = OVER_CAP.load(Ordering::Relaxed);
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
