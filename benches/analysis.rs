//! Analysis speed, each part in its own process so peak memory is its own:
//! - CT: a synthetic ~300-slice volume (0.86 mm) decoded and measured by `analysis::analyze`,
//!   median of 5 runs after a warm-up. Goal: under 2 s on 2 cores. Its floor, in the same
//!   run: pydicom reading and rescaling the same files (benches/peers/ct_decode.py).
//! - X-ray model: osteoscreen's latency per image (`XrayModel::predict`: the weights loaded by
//!   candle, the pass itself `model::plain`), batch 1 and batch 8, against the same network in
//!   PyTorch CPU (benches/peers/xray_torch.py as one child process, same weights, same thread
//!   count). Outputs are compared first: over 1e-4 fails the bench and prints no ratio. Then
//!   candle and PyTorch alternate over ROUNDS rounds, each the median of RUNS calls after 5
//!   warm-ups; the figure is the median over rounds. Goal: candle at least as fast.
//!
//! Run: `scripts/bench-analysis.sh` (installs PyTorch CPU and pydicom into
//! benches/peers/.venv, then `cargo bench --bench analysis`).

#[path = "common/report.rs"]
mod report;
#[path = "common/torch_peer.rs"]
mod torch_peer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use osteoscreen::analysis::{analyze, select::Rules, Engine, Thresholds};
use osteoscreen::model::{net::INPUT_SIZE, XrayModel};
use osteoscreen::synth::{generate, SynthModality, SynthOptions};
use report::{alternate, candle_version, median, median_ms};
use torch_peer::{bench_inputs, Torch};

const ROUNDS: usize = 5;
const RUNS: usize = 20;
const TOLERANCE: f64 = 1e-4;

fn main() {
    let dir = || PathBuf::from(std::env::var("OSTEO_BENCH_DIR").unwrap());
    match std::env::var("OSTEO_BENCH_PART").as_deref() {
        Ok("ct") => ct_part(&dir()),
        Ok("xray") => xray_part(&dir()),
        _ => driver(),
    }
}

fn python() -> String {
    std::env::var("OSTEO_TORCH_PYTHON").unwrap_or("benches/peers/.venv/bin/python".into())
}

/// Runs the parts as child processes, then the CT floor.
fn driver() {
    let me = std::env::current_exe().expect("own path");
    let part = |name: &str, dir: &Path| {
        let out = Command::new(&me)
            .env("OSTEO_BENCH_PART", name)
            .env("OSTEO_BENCH_DIR", dir)
            .output()
            .expect("run bench part");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{name} part failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ct = part("ct", dir.path());
    let ours: serde_json::Value = serde_json::from_str(
        ct.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .expect("CT result"),
    )
    .expect("json");
    let python = python();
    let floor = Command::new(&python)
        .arg("benches/peers/ct_decode.py")
        .arg(dir.path().join("ct"))
        .arg("5")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {python} ({e}): run scripts/bench-analysis.sh, which installs pydicom"
            )
        });
    assert!(
        floor.status.success(),
        "pydicom floor failed: {}",
        String::from_utf8_lossy(&floor.stderr)
    );
    let floor: serde_json::Value = serde_json::from_slice(&floor.stdout).expect("one JSON line");
    let floor_s = floor["median_s"].as_f64().expect("seconds");
    let (total, decode) = (
        ours["median_s"].as_f64().unwrap(),
        ours["decode_s"].as_f64().unwrap(),
    );
    println!(
        "CT floor: pydicom {} reads and rescales the same {} files in {floor_s:.2} s (median of 5, one thread); \
         osteoscreen's decode {decode:.2} s = {:.2}x that time, its whole analysis {total:.2} s = {:.2}x",
        floor["pydicom"].as_str().unwrap_or("?"),
        floor["files"],
        decode / floor_s,
        total / floor_s
    );
    part("xray", dir.path());
}

fn ct_part(dir: &Path) {
    let dir = dir.join("ct");
    let mut opts = SynthOptions::new(dir.clone(), 1, SynthModality::Ct);
    // 0.86 mm spacing: this subject's T11-sacrum coverage becomes ~300 slices.
    opts.ct_slice_mm = 0.86;
    opts.seed = 3;
    generate(&opts).expect("synthetic CT");
    let study = dir.join("study00000");
    let files: Vec<_> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    let engine = Engine {
        thresholds: Thresholds::default(),
        // Thin slices are excluded by default (1-5 mm); allowed here for the slice count.
        rules: Rules {
            ct_min_slice_mm: 0.5,
            ..Rules::default()
        },
        xray: Default::default(),
        adaptation: None,
        batch_size: 8,
        covariates: false,
        risk_model: None,
        site: Default::default(),
    };
    let _ = analyze(&files, &engine);
    let (mut total, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let start = Instant::now();
        let f = analyze(&files, &engine);
        total.push(start.elapsed().as_secs_f64());
        decode.push(f.timings_ms.get("ct_decode").copied().unwrap_or(0.0) / 1e3);
        assert!(f.ct.is_some_and(|ct| ct.levels.len() >= 5), "levels found");
    }
    let m = median(&total);
    let decode_s = median(&decode);
    println!(
        "CT analysis of {} slices (512x512, decode included): median {m:.2} s (decode {:.2} s), runs {:?}",
        files.len(),
        decode_s,
        total.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!(
        "CT goal < 2 s on 2 cores: {}; peak resident memory {} MB",
        if m < 2.0 { "met" } else { "NOT met" },
        peak_rss_mb()
    );
    println!(
        "RESULT {}",
        serde_json::json!({"median_s": m, "decode_s": decode_s})
    );
}

/// Candle against PyTorch CPU, alternating rounds, after the outputs agree.
fn xray_part(dir: &Path) {
    let weights: PathBuf = dir.join("xray.safetensors");
    XrayModel::create_untrained(&weights).expect("weights");
    let model = XrayModel::load(&weights, None, Device::Cpu).expect("model");
    let inputs = bench_inputs(8);
    let out = model.predict(&inputs).expect("predict");
    let threads = candle_core::utils::get_num_threads();
    let mut torch = Torch::start(&python(), "cpu", threads);
    let check = torch.check(dir, &weights, &inputs, &out);
    let diff = check["max_output_diff_vs_candle"].as_f64().expect("diff");
    println!(
        "X-ray model: candle {} CPU vs PyTorch {} CPU, {threads} threads each; max |output difference| over 8 images {diff:.1e} (tolerance {TOLERANCE:.0e})",
        candle_version(),
        check["torch"].as_str().unwrap_or("?"),
    );
    assert!(
        diff <= TOLERANCE,
        "outputs differ beyond {TOLERANCE:e}: no timing is printed"
    );
    assert_eq!(
        check["threads"].as_u64(),
        Some(threads as u64),
        "same threads"
    );
    // The same weights through candle's stock layers (conv2d, batch norm): the baseline the
    // inference path improves on (one measurement, for reference).
    let mut varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let stock = osteoscreen::model::net::XrayNet::new(vb).expect("net");
    varmap.load(&weights).expect("weights");
    let stock_ms = |batch: usize| {
        let flat: Vec<f32> = inputs[..batch].iter().flatten().copied().collect();
        let x =
            candle_core::Tensor::from_vec(flat, (batch, 1, INPUT_SIZE, INPUT_SIZE), &Device::Cpu)
                .expect("tensor");
        median_ms(5, RUNS, || {
            stock.forward_t(&x, false).expect("forward");
        }) / batch as f64
    };
    println!(
        "  candle stock conv2d + batch norm layers: batch 1 {:.1} ms/image, batch 8 {:.1} ms/image",
        stock_ms(1),
        stock_ms(8)
    );
    for batch in [1usize, 8] {
        // Median ms per image of RUNS calls after 5 warm-ups, each side.
        let (ours, theirs) = alternate(
            ROUNDS,
            || {
                median_ms(5, RUNS, || {
                    model.predict(&inputs[..batch]).expect("predict");
                }) / batch as f64
            },
            || {
                torch.ask(&format!("infer {batch} {RUNS}"))["ms"]
                    .as_f64()
                    .expect("ms")
                    / batch as f64
            },
        );
        let (c, t) = (median(&ours), median(&theirs));
        let ratio = t / c;
        println!(
            "  batch {batch}: osteoscreen (candle-loaded weights, plain CPU pass) {c:.1} ms/image, PyTorch {t:.1} ms/image \
             (medians of {ROUNDS} alternating rounds: {:?} / {:?}): {ratio:.2}x PyTorch's speed (goal >= 1.0: {})",
            ours.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
            theirs.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
    }
    println!("  candle process peak RSS {} MB", peak_rss_mb());
}

/// VmHWM from /proc/self/status (Linux), in MB.
fn peak_rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0}", kb / 1024.0))
}
