//! Synthetic-study generation speed: studies per second for DX (AP + lateral at the
//! default 2048 x 2560) and CT (2 mm slices), with one thread and with all cores.
//! Run: `cargo bench --bench synth` (`STUDIES=N` to change the DX count).

use std::time::Instant;

use osteoscreen::synth::{generate, SynthModality, SynthOptions};

fn main() {
    let dx_studies: usize = std::env::var("STUDIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("synth benchmark: {cores} cores available");
    println!(
        "  {:<4} {:>8} {:>8} {:>10} {:>12} {:>14}",
        "kind", "threads", "studies", "seconds", "studies/s", "MB written/s"
    );
    for (modality, studies) in [(SynthModality::Dx, dx_studies), (SynthModality::Ct, 2)] {
        let mut rates = Vec::new();
        for threads in [1, cores] {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut opts = SynthOptions::new(dir.path().to_path_buf(), studies, modality);
            opts.threads = threads;
            let start = Instant::now();
            generate(&opts).expect("generation");
            let secs = start.elapsed().as_secs_f64();
            let bytes: u64 = walk(dir.path());
            rates.push(studies as f64 / secs);
            println!(
                "  {:<4} {:>8} {:>8} {:>10.2} {:>12.2} {:>14.1}",
                format!("{modality:?}"),
                threads,
                studies,
                secs,
                studies as f64 / secs,
                bytes as f64 / 1e6 / secs
            );
        }
        println!(
            "  {modality:?}: all cores / one thread = {:.2}x; 1,000 studies would take {:.1} min on all cores",
            rates[1] / rates[0],
            1000.0 / rates[1] / 60.0
        );
    }
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                p.metadata().unwrap().len()
            }
        })
        .sum()
}
