//! A structure-aware mutation fuzzer on stable Rust for the code that reads bytes from
//! the network or from files nobody here wrote: the command-set decoder, the data-set
//! pre-scan and parse (what `inspect` runs), image header + first-frame decode, and
//! `analyze` on one file with its reports written.
//!
//! Why not cargo-fuzz or cargo-afl: neither a nightly toolchain nor AFL++ can be installed
//! from the registries this project builds with, so coverage guidance is not available;
//! the mutations below know DICOM's element layout instead (bit flips, interesting
//! values, truncation, length-field and VR corruption, chunk duplication, nesting).
//! `examples/fuzz.rs` runs a target for millions of executions; tests/fuzz_smoke.rs runs
//! each for a bounded time in the test suite.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::dicom::scan::{scan_bytes, Encoding};

/// What a target checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `Command::decode` on a DIMSE command set.
    Command,
    /// The pre-scan, then the parser, on a data set (Explicit VR LE): what ingest's
    /// instance check runs.
    DataSet,
    /// A whole Part 10 file: pre-scan, parse, image header, first-frame decode, display.
    Image,
    /// A whole Part 10 file through `analysis::analyze` (headers, selection, the CT
    /// measurement, the risk score, the conclusion) and then the SR and key-image writers.
    /// No X-ray network is loaded: its forward pass sees a fixed-size tensor whatever the
    /// input, costs ~100x the rest and would cut the run to thousands of executions; the
    /// pixel path that feeds it is the `image` target's.
    Analyze,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "command" => Ok(Target::Command),
            "dataset" => Ok(Target::DataSet),
            "image" => Ok(Target::Image),
            "analyze" => Ok(Target::Analyze),
            _ => Err(format!(
                "unknown target {s:?} (command, dataset, image, analyze)"
            )),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub executions: u64,
    /// Inputs the code under test accepted (parsed through).
    pub accepted: u64,
    /// Inputs that panicked, with the panic message: each one is a bug.
    pub crashes: Vec<(Vec<u8>, String)>,
    /// Executions slower than `HANG`.
    pub hangs: u64,
    pub elapsed: Duration,
}

/// A single allocation above this is a finding: the pre-scan exists so that no declared
/// length becomes an allocation the input does not back.
pub const ALLOCATION_CAP: usize = 256 << 20;
static OVERSIZED: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations over `ALLOCATION_CAP`. A fuzzing binary
/// installs it with `#[global_allocator]` and passes `oversized` to `run`.
pub struct CappedAllocator;

fn note(size: usize) {
    if size > ALLOCATION_CAP {
        OVERSIZED.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are read.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations over the cap so far (with `CappedAllocator` installed).
pub fn oversized() -> u64 {
    OVERSIZED.load(Ordering::Relaxed)
}

/// An execution slower than this counts as a hang.
pub const HANG: Duration = Duration::from_secs(2);

/// A small, seeded PRNG (xorshift64*): runs are reproducible from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING_32: [u32; 8] = [
    0,
    1,
    0x7F,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFF0,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];
const VRS: [&[u8; 2]; 10] = [
    b"OB", b"OW", b"SQ", b"UN", b"UT", b"CS", b"UI", b"US", b"DS", b"\0\0",
];

/// Offsets where an element header seems to start in `data` (explicit VR LE): a VR of
/// two upper-case letters after a 4-byte tag.
fn header_offsets(data: &[u8]) -> Vec<usize> {
    (0..data.len().saturating_sub(8))
        .filter(|&i| data[i + 4].is_ascii_uppercase() && data[i + 5].is_ascii_uppercase())
        .collect()
}

/// One mutation of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if data.is_empty() {
            data.push(0);
        }
        let headers = header_offsets(&data);
        let at = rng.below(data.len());
        match rng.below(9) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = [0, 0xFF, 0x7F, 0x80][rng.below(4)],
            2 => data.truncate(at),
            3 | 4 if !headers.is_empty() => {
                // A length field: 2 bytes at +6, or 4 bytes at +8 for long VRs.
                let h = headers[rng.below(headers.len())];
                let value = INTERESTING_32[rng.below(INTERESTING_32.len())];
                if h + 12 <= data.len() && rng.below(2) == 0 {
                    data[h + 8..h + 12].copy_from_slice(&value.to_le_bytes());
                } else {
                    data[h + 6..h + 8].copy_from_slice(&(value as u16).to_le_bytes());
                }
            }
            5 if !headers.is_empty() => {
                let h = headers[rng.below(headers.len())];
                data[h + 4..h + 6].copy_from_slice(VRS[rng.below(VRS.len())]);
            }
            6 => {
                // Duplicate a chunk somewhere else.
                let len = 1 + rng.below(64.min(data.len()));
                let from = rng.below(data.len() - len + 1);
                let chunk = data[from..from + len].to_vec();
                let to = rng.below(data.len());
                data.splice(to..to, chunk);
            }
            7 => {
                // An undefined-length sequence opened, maybe many times.
                let sq = [
                    0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                ];
                let item = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
                for _ in 0..1 + rng.below(40) {
                    data.splice(at..at, sq.iter().chain(item.iter()).copied());
                }
            }
            _ => {
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    let i = rng.below(data.len());
                    data[i] = rng.next() as u8;
                }
            }
        }
    }
    data
}

fn explicit_le() -> &'static dicom_encoding::TransferSyntax {
    use dicom_encoding::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get("1.2.840.10008.1.2.1")
        .expect("Explicit VR LE is built into the registry")
}

/// Run one input through `target`. Errors are fine; a panic is a crash.
fn execute(target: Target, input: &[u8], scratch: &std::path::Path) -> bool {
    match target {
        Target::Command => crate::dicom::Command::decode(input).is_ok(),
        Target::DataSet => {
            scan_bytes(input, Encoding::EXPLICIT_LE).is_ok()
                && dicom_object::InMemDicomObject::read_dataset_with_ts(input, explicit_le())
                    .is_ok()
        }
        Target::Image => {
            if std::fs::write(scratch, input).is_err() {
                return false;
            }
            let Ok(obj) = crate::dicom::open::open_file(scratch, &Default::default()) else {
                return false;
            };
            match crate::analysis::image::decode_first(&obj) {
                Ok((header, frame)) => {
                    let shown = crate::analysis::image::display(&frame, &header);
                    !shown.is_empty()
                }
                Err(_) => false,
            }
        }
        Target::Analyze => {
            if std::fs::write(scratch, input).is_err() {
                return false;
            }
            analyze_and_report(scratch)
        }
    }
}

/// The `analyze` target's body: the engine without a network, then the writers into a
/// directory beside `file` that is emptied afterwards.
fn analyze_and_report(file: &std::path::Path) -> bool {
    use crate::analysis::{analyze, Engine};
    let engine = Engine {
        thresholds: Default::default(),
        rules: Default::default(),
        xray: Default::default(),
        adaptation: None,
        batch_size: 1,
        covariates: false,
        risk_model: None,
        site: Default::default(),
    };
    let files = [file.to_path_buf()];
    let finding = analyze(&files, &engine);
    let _ = serde_json::to_string(&finding);
    let _ = finding.summary();
    let out = file.with_extension("out");
    let settings = crate::report::OutputSettings {
        report_not_analysed: true,
        ..Default::default()
    };
    let written = crate::report::Source::read(&files, &finding.instances_used)
        .ok()
        .and_then(|source| crate::report::write_reports(&finding, &source, &settings, &out).ok());
    let _ = std::fs::remove_dir_all(&out);
    written.is_some_and(|w| !w.is_empty())
}

/// Mutate `seeds` and run `target` until `iterations` or `budget` is reached.
/// `oversized`, when given, counts the process's allocations over its cap (the caller's
/// global allocator keeps the count): an input during which it grows is a finding too.
pub fn run(
    target: Target,
    seeds: &[Vec<u8>],
    iterations: u64,
    budget: Duration,
    seed: u64,
    oversized: Option<fn() -> u64>,
) -> Report {
    let mut rng = Rng(seed.max(1));
    let mut report = Report::default();
    let scratch = std::env::temp_dir().join(format!(
        "osteoscreen-fuzz-{}-{seed}-{target:?}.dcm",
        std::process::id()
    ));
    let started = Instant::now();
    // Our own panics inside the target are reported, not printed one by one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while report.executions < iterations && started.elapsed() < budget && !seeds.is_empty() {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base);
        let t = Instant::now();
        let before = oversized.map(|f| f());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute(target, &input, &scratch)
        }));
        if t.elapsed() > HANG {
            report.hangs += 1;
        }
        if oversized.map(|f| f()) != before && report.crashes.len() < 20 {
            report
                .crashes
                .push((input.clone(), "allocation over the cap".into()));
        }
        match outcome {
            Ok(true) => report.accepted += 1,
            Ok(false) => {}
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                if report.crashes.len() < 20 {
                    report.crashes.push((input, message));
                }
            }
        }
        report.executions += 1;
    }
    std::panic::set_hook(hook);
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_dir_all(scratch.with_extension("out"));
    report.elapsed = started.elapsed();
    report
}

/// Seeds for `target` from DICOM files: whole files (image), their data sets (dataset), or
/// command sets built from their identifiers (command).
pub fn seeds_from(target: Target, files: &[std::path::PathBuf], max_bytes: usize) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        if bytes.len() > max_bytes {
            continue;
        }
        match target {
            Target::Image | Target::Analyze => seeds.push(bytes),
            Target::DataSet => {
                if let Ok(checked) = crate::dicom::open::check_file(f, &Default::default()) {
                    if checked.transfer_syntax == "1.2.840.10008.1.2.1" {
                        seeds.push(bytes[checked.data_set_at as usize..].to_vec());
                    }
                }
            }
            Target::Command => {}
        }
    }
    if target == Target::Command {
        use crate::dicom::command::{encode_echo_rq, encode_response, encode_store_rq};
        let rq = encode_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.2.1");
        let command = crate::dicom::Command::decode(&rq).expect("our own command decodes");
        seeds.push(encode_response(
            &command,
            crate::dicom::DimseStatus::DATA_SET_MISMATCH,
            Some("a comment"),
        ));
        seeds.push(rq);
        seeds.push(encode_echo_rq(1));
    }
    seeds
}
