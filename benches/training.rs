//! Training throughput of the bundled architecture on the CPU: forward + backward + AdamW
//! step (images/s, median of 8 steps after 2 warm-ups, batch 16, 256 px), the augmentation
//! and preprocessing cost per image, and the same network in PyTorch (benches/peers/
//! xray_torch.py train) with the same thread count in the same run, as a ratio.
//! Run: ./scripts/bench-training.sh

#[path = "common/report.rs"]
mod report;
#[path = "common/train_step.rs"]
mod train_step;

use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use osteoscreen::model::net::INPUT_SIZE;
use osteoscreen::model::preprocess;
use osteoscreen::train::augment::{augment, Img, Processing};
use report::median;
use train_step::candle_images_per_s;

const BATCH: usize = 16;
const RUNS: usize = 8;

/// Milliseconds per image for augmentation + preprocessing of a 384 x 307 display image.
fn augment_ms() -> f64 {
    let (rows, cols) = (384, 307);
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| (i % cols) as f32 / cols as f32 * 0.7 + (i / cols) as f32 / rows as f32 * 0.3)
        .collect();
    let mut times = Vec::new();
    for seed in 0..40 {
        let start = Instant::now();
        let img = augment(
            Img {
                rows,
                cols,
                v: v.clone(),
            },
            // The shipped recipe's setting.
            Processing::Mild,
            &mut ChaCha8Rng::seed_from_u64(seed),
        );
        let x = preprocess::prepare(&img.v, img.rows, img.cols, preprocess::InputSpec::default());
        assert_eq!(x.len(), INPUT_SIZE * INPUT_SIZE);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    median(&times)
}

fn main() {
    let threads = candle_core::utils::get_num_threads();
    let candle = candle_images_per_s(&Device::Cpu, BATCH, RUNS);
    let aug = augment_ms();
    println!("training throughput, batch {BATCH}, {INPUT_SIZE} px, {threads} threads (median of {RUNS} steps)");
    println!("  candle CPU (forward + backward + AdamW): {candle:.1} images/s");
    println!("  augmentation + preprocessing: {aug:.1} ms per image (one core)");
    let python = "benches/peers/.venv/bin/python";
    let torch = Command::new(python)
        .args(["benches/peers/xray_torch.py", "train"])
        .arg(threads.to_string())
        .arg(BATCH.to_string())
        .arg(RUNS.to_string())
        .output();
    match torch {
        Ok(out) if out.status.success() => {
            let t: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("PyTorch prints one JSON line");
            let ips = t["images_per_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  PyTorch {} CPU, same network and threads: {ips:.1} images/s",
                t["torch"].as_str().unwrap_or("?")
            );
            println!("  ratio candle / PyTorch: {:.2}", candle / ips);
        }
        Ok(out) => println!(
            "  PyTorch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!(
            "  PyTorch peer not run ({python}: {e}); ./scripts/bench-training.sh installs it"
        ),
    }
    if let Ok(dev) = Device::new_cuda(0) {
        println!(
            "  candle CUDA: {:.1} images/s",
            candle_images_per_s(&dev, BATCH, RUNS)
        );
    }
}
