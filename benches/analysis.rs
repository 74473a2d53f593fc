//! Analysis speed, each part in its own process so peak memory is its own:
//! - CT: a synthetic ~300-slice volume (0.86 mm) decoded and measured by `analysis::analyze`,
//!   median of 5 runs after a warm-up. Goal: under 2 s on 2 cores.
//! - X-ray model: candle latency per image, batch 1 and batch 8, median of 30 runs after
//!   5 warm-ups, against the same network in PyTorch CPU (benches/peers/xray_torch.py, same weights,
//!   outputs compared first) with the same thread count. Goal: candle at least as fast.
//!
//! Run: `scripts/bench-analysis.sh` (installs PyTorch CPU into benches/peers/.venv, then
//! `cargo bench --bench analysis`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use osteoscreen::analysis::{analyze, select::Rules, Engine, Thresholds};
use osteoscreen::model::{net::INPUT_SIZE, XrayModel};
use osteoscreen::synth::{generate, SynthModality, SynthOptions};

const RUNS: usize = 30;

fn main() {
    match std::env::var("OSTEO_BENCH_PART").as_deref() {
        Ok("ct") => ct_part(),
        Ok("xray") => xray_part(Path::new(&std::env::var("OSTEO_BENCH_DIR").unwrap())),
        _ => driver(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the parts as child processes and prints the comparison.
fn driver() {
    let me = std::env::current_exe().expect("own path");
    let part = |name: &str, dir: &Path| {
        let out = Command::new(&me)
            .env("OSTEO_BENCH_PART", name)
            .env("OSTEO_BENCH_DIR", dir)
            .output()
            .expect("run bench part");
        assert!(out.status.success(), "{name} part failed");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    print!("{}", part("ct", dir.path()));
    let xray = part("xray", dir.path());
    print!("{xray}");
    let candle: serde_json::Value = serde_json::from_str(
        xray.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .expect("candle result"),
    )
    .expect("json");
    let python =
        std::env::var("OSTEO_TORCH_PYTHON").unwrap_or("benches/peers/.venv/bin/python".into());
    let torch = Command::new(&python)
        .arg("benches/peers/xray_torch.py")
        .arg(dir.path().join("xray.safetensors"))
        .arg(dir.path().join("input.f32"))
        .arg(dir.path().join("candle_out.json"))
        .arg(candle["threads"].to_string())
        .arg(RUNS.to_string())
        .output();
    let torch = match torch {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "PyTorch part failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run {python} ({e}): run scripts/bench-analysis.sh, which installs PyTorch CPU"
        ),
    };
    let t: serde_json::Value =
        serde_json::from_slice(&torch.stdout).expect("PyTorch prints one JSON line");
    println!(
        "PyTorch {} CPU, {} threads: batch 1 {:.1} ms/image, batch 8 {:.1} ms/image, peak RSS {:.0} MB; max |output difference| vs candle {:.1e}",
        t["torch"].as_str().unwrap_or("?"),
        t["threads"],
        t["batch1_ms"].as_f64().unwrap(),
        t["batch8_ms_per_image"].as_f64().unwrap(),
        t["peak_rss_mb"].as_f64().unwrap(),
        t["max_output_diff_vs_candle"].as_f64().unwrap()
    );
    for (key, tkey, label) in [
        ("batch1_ms", "batch1_ms", "batch 1"),
        ("batch8_ms_per_image", "batch8_ms_per_image", "batch 8"),
    ] {
        let ratio = t[tkey].as_f64().unwrap() / candle[key].as_f64().unwrap();
        println!(
            "candle vs PyTorch, {label}: {ratio:.2}x PyTorch's speed (goal >= 1.0: {})",
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
    }
}

fn ct_part() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = SynthOptions::new(dir.path().to_path_buf(), 1, SynthModality::Ct);
    // 0.86 mm spacing: this subject's T11-sacrum coverage becomes ~300 slices.
    opts.ct_slice_mm = 0.86;
    opts.seed = 3;
    generate(&opts).expect("synthetic CT");
    let study = dir.path().join("study00000");
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
        xray: None,
        batch_size: 8,
        risk_model: None,
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
    let m = median(total.clone());
    println!(
        "CT analysis of {} slices (512x512, decode included): median {m:.2} s (decode {:.2} s), runs {:?}",
        files.len(),
        median(decode),
        total.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!(
        "CT goal < 2 s on 2 cores: {}; peak resident memory {} MB",
        if m < 2.0 { "met" } else { "NOT met" },
        peak_rss_mb()
    );
}

/// Candle latency; leaves the weights, the inputs and candle's outputs in `dir` for the
/// PyTorch script.
fn xray_part(dir: &Path) {
    let weights: PathBuf = dir.join("xray.safetensors");
    XrayModel::create_untrained(&weights).expect("weights");
    let model = XrayModel::load(&weights, None, Device::Cpu).expect("model");
    // Deterministic inputs in the range preprocessing produces.
    let n = INPUT_SIZE * INPUT_SIZE;
    let inputs: Vec<Vec<f32>> = (0..8)
        .map(|b| {
            (0..n)
                .map(|i| (((i * 7919 + b * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        })
        .collect();
    let bytes: Vec<u8> = inputs
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("input.f32"), bytes).expect("write inputs");
    let out = model.predict(&inputs).expect("predict");
    let reference = serde_json::json!({
        "probabilities": out.iter().map(|p| p.probabilities.to_vec()).collect::<Vec<_>>(),
        "t_score": out.iter().map(|p| p.t_score).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("candle_out.json"), reference.to_string()).expect("write outputs");
    let time = |batch: &[Vec<f32>]| {
        for _ in 0..5 {
            model.predict(batch).expect("predict");
        }
        let runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                model.predict(batch).expect("predict");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(runs) / batch.len() as f64
    };
    let b1 = time(&inputs[..1]);
    let b8 = time(&inputs);
    let threads = candle_core::utils::get_num_threads();
    // The same weights through candle's stock layers (conv2d, batch norm): the baseline the
    // inference path improves on.
    let mut varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let stock = osteoscreen::model::net::XrayNet::new(vb).expect("net");
    varmap.load(&weights).expect("weights");
    let stock_time = |batch: usize| {
        let flat: Vec<f32> = inputs[..batch].iter().flatten().copied().collect();
        let x =
            candle_core::Tensor::from_vec(flat, (batch, 1, INPUT_SIZE, INPUT_SIZE), &Device::Cpu)
                .expect("tensor");
        for _ in 0..5 {
            stock.forward_t(&x, false).expect("forward");
        }
        let runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                stock.forward_t(&x, false).expect("forward");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(runs) / batch as f64
    };
    println!(
        "candle 0.11 CPU, stock conv2d + batch norm layers: batch 1 {:.1} ms/image, batch 8 {:.1} ms/image",
        stock_time(1),
        stock_time(8)
    );
    println!(
        "candle 0.11 CPU (osteoscreen inference path), {threads} threads: batch 1 {b1:.1} ms/image, batch 8 {b8:.1} ms/image, peak RSS {} MB",
        peak_rss_mb()
    );
    println!(
        "RESULT {}",
        serde_json::json!({"threads": threads, "batch1_ms": b1, "batch8_ms_per_image": b8})
    );
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
