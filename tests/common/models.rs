//! Test helpers for the model commands: `synth`, `train`, `eval` and `analyze` run as a
//! user runs them, the bundled weights, and a tabular DXA table.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{bin, run, shipped_config, text};

/// `analyze --json` of `study` with the shipped config and `env`.
pub fn analyze(study: &Path, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(study))
}

/// `osteoscreen synth` of `n` small radiograph studies into `dir`.
pub fn synth_set(dir: &Path, n: usize, seed: u64, size: &str) {
    let out = run(Command::new(bin())
        .args(["synth", "--modality", "dx", "--size", size])
        .args(["--studies", &n.to_string(), "--seed", &seed.to_string()])
        .arg("--out")
        .arg(dir));
    assert!(out.status.success(), "{}", text(&out));
}

pub fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(Command::new(bin())
        .arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--batch-size", "8", "--device", "cpu"])
        .args(extra))
}

pub fn eval(model: &Path, data: &Path, out: &Path) -> std::process::Output {
    run(Command::new(bin())
        .arg("eval")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out))
}

pub fn card(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("osteoscreen-xray.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osteoscreen-xray-demo.safetensors")
}

/// The bundled weights as `dir`/x.safetensors, with the bundled card edited by `edit`.
pub fn bundled_with(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let weights = dir.join("x.safetensors");
    std::fs::copy(bundled(), &weights).unwrap();
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled().with_extension("json")).unwrap())
            .unwrap();
    edit(&mut card);
    std::fs::write(weights.with_extension("json"), card.to_string()).unwrap();
    weights
}

/// A tabular DXA CSV whose class follows age, weight and sex, as in the cohorts.
pub fn dxa_csv(path: &Path, rows: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut text = String::from(
        "IDENTIFIER1,SPINE_BMD,SPINE_TSCORE,SEX,WEIGHT,HEIGHT,BMI,ADJUSTED_AGE,MENOPAUSE_YEAR,label\n",
    );
    for i in 0..rows {
        let female = rng.random_bool(0.8);
        let age_bin = rng.random_range(8..17) * 5;
        let weight: f64 = rng.random_range(45.0..100.0);
        let height: f64 = if female { 1.60 } else { 1.74 } + rng.random_range(-0.08..0.08);
        let t = 0.045 * (weight - age_bin as f64)
            + if female { -0.6 } else { 0.4 }
            + rng.random_range(-1.2..1.2);
        let menopause = if female { (age_bin - 50).max(0) } else { 0 };
        text += &format!(
            "R{i},{:.3},{t:.2},{},{weight:.0},{:.0},{:.1},{}-{},{menopause},\n",
            1.047 + 0.11 * t,
            if female { "F" } else { "M" },
            height * 100.0,
            weight / (height * height),
            age_bin,
            age_bin + 4
        );
    }
    std::fs::write(path, text).unwrap();
}
