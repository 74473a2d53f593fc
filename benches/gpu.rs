//! The GPU path (`--features cuda`), against the same network in PyTorch CUDA on the same GPU,
//! in one run:
//! 1. Outputs: candle CUDA vs candle CPU, and PyTorch CUDA vs candle CPU, on 8 images. Either
//!    difference over 1e-4 fails the bench before any time is printed.
//! 2. Inference at batch 1, 8 and 64: per call, from host f32 images to host outputs (both
//!    sides copy in and out). Candle and PyTorch alternate over ROUNDS rounds; each round is
//!    the median of RUNS calls after 5 warm-ups; the figure is the median over rounds.
//! 3. Training step (forward + backward + AdamW) at batch 16 and 64: 3 alternating rounds,
//!    each the median of 8 steps after 2 warm-ups; the median over rounds.
//!
//! TF32 is off in PyTorch (candle computes f32 in full precision). PyTorch runs as one child
//! process (`benches/peers/xray_torch.py serve cuda`) that answers a JSON line per command.
//! Run: `scripts/bench-gpu.sh` (builds with the CUDA toolkit from scripts/cuda-toolkit.sh),
//! or `cargo bench --features cuda --bench gpu` where CUDA and PyTorch are installed.

#[path = "common/report.rs"]
mod report;
#[path = "common/torch_peer.rs"]
mod torch_peer;
#[path = "common/train_step.rs"]
mod train_step;

use candle_core::Device;
use osteoscreen::model::{Prediction, XrayModel};
use report::{alternate, candle_version, median, median_ms};
use torch_peer::{bench_inputs, Torch};
use train_step::candle_images_per_s;

const ROUNDS: usize = 5;
const RUNS: usize = 20;
const TOLERANCE: f32 = 1e-4;

fn max_difference(a: &[Prediction], b: &[Prediction]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(p, q)| {
            p.probabilities
                .iter()
                .zip(q.probabilities)
                .map(|(x, y)| (x - y).abs())
                .chain([(p.t_score - q.t_score).abs()])
        })
        // A NaN is the largest difference of all (f32::max would skip it).
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

fn main() {
    let gpu = Device::new_cuda(0).expect("a CUDA device: this bench needs a GPU");
    let version = env!("CARGO_PKG_VERSION");
    let candle_version = candle_version();
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("xray.safetensors");
    XrayModel::create_untrained(&weights).expect("weights");
    let cpu_model = XrayModel::load(&weights, None, Device::Cpu).expect("CPU model");
    let gpu_model = XrayModel::load(&weights, None, gpu.clone()).expect("CUDA model");
    let inputs = bench_inputs(64);

    // 1. Outputs.
    let cpu_out = cpu_model.predict(&inputs[..8]).expect("CPU predict");
    let gpu_out = gpu_model.predict(&inputs[..8]).expect("CUDA predict");
    let gpu_diff = max_difference(&cpu_out, &gpu_out);
    let python = std::env::var("OSTEO_TORCH_PYTHON").unwrap_or("python3".into());
    let mut torch = Torch::start(&python, "cuda", candle_core::utils::get_num_threads());
    let check = torch.check(dir.path(), &weights, &inputs, &cpu_out);
    let torch_diff = check["max_output_diff_vs_candle"].as_f64().expect("diff") as f32;
    println!(
        "osteoscreen {version}, candle {candle_version} CUDA vs PyTorch {} CUDA on {}",
        check["torch"].as_str().unwrap_or("?"),
        check["name"].as_str().unwrap_or("?")
    );
    println!(
        "max |output difference| over 8 images: candle CUDA vs candle CPU {gpu_diff:.1e}, \
         PyTorch CUDA vs candle CPU {torch_diff:.1e} (tolerance {TOLERANCE:.0e})"
    );
    assert!(
        gpu_diff <= TOLERANCE && torch_diff <= TOLERANCE,
        "outputs differ beyond {TOLERANCE:e}: no timing is printed"
    );

    // 2. Inference, alternating: ms per call, host images in, host outputs out.
    for batch in [1usize, 8, 64] {
        let (ours, theirs) = alternate(
            ROUNDS,
            || {
                median_ms(5, RUNS, || {
                    gpu_model.predict(&inputs[..batch]).expect("predict");
                })
            },
            || {
                torch.ask(&format!("infer {batch} {RUNS}"))["ms"]
                    .as_f64()
                    .expect("ms")
            },
        );
        let (c, t) = (median(&ours), median(&theirs));
        println!(
            "inference batch {batch:>2}: candle {:>7.0} images/s ({c:.2} ms/call), PyTorch {:>7.0} images/s ({t:.2} ms/call): {:.2}x PyTorch's speed",
            batch as f64 * 1e3 / c,
            batch as f64 * 1e3 / t,
            t / c
        );
    }

    // 3. Training step, alternating.
    for batch in [16usize, 64] {
        let (ours, theirs) = alternate(
            3,
            || candle_images_per_s(&gpu, batch, 8),
            || {
                torch.ask(&format!("train {batch} 8"))["images_per_s"]
                    .as_f64()
                    .expect("images/s")
            },
        );
        let (c, t) = (median(&ours), median(&theirs));
        println!(
            "training step batch {batch}: candle {c:.0} images/s, PyTorch {t:.0} images/s: {:.2}x PyTorch's speed",
            c / t
        );
    }
}
