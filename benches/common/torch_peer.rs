//! The PyTorch peer as one child process (`benches/peers/xray_torch.py serve`), so that a
//! bench can alternate candle and PyTorch rounds in one run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use osteoscreen::model::{net::INPUT_SIZE, Prediction};

/// `count` deterministic network inputs in the range preprocessing produces.
pub fn bench_inputs(count: usize) -> Vec<Vec<f32>> {
    let n = INPUT_SIZE * INPUT_SIZE;
    (0..count)
        .map(|b| {
            (0..n)
                .map(|i| (((i * 7919 + b * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        })
        .collect()
}

/// The PyTorch child: one command line in, one JSON line out.
pub struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    /// `python benches/peers/xray_torch.py serve DEVICE THREADS`.
    pub fn start(python: &str, device: &str, threads: usize) -> Torch {
        let mut child = Command::new(python)
            .args(["benches/peers/xray_torch.py", "serve", device])
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} ({e}): PyTorch is the peer"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Torch {
            child,
            stdin,
            stdout,
        }
    }

    /// Load `weights` and `inputs` (written into `dir`) and compare PyTorch's outputs on
    /// the first 8 with candle's `reference`: the reply holds `max_output_diff_vs_candle`.
    pub fn check(
        &mut self,
        dir: &Path,
        weights: &Path,
        inputs: &[Vec<f32>],
        reference: &[Prediction],
    ) -> serde_json::Value {
        let bytes: Vec<u8> = inputs
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (input, expected) = (dir.join("input.f32"), dir.join("candle_out.json"));
        std::fs::write(&input, bytes).expect("write inputs");
        let json = serde_json::json!({
            "probabilities": reference.iter().map(|p| p.probabilities.to_vec()).collect::<Vec<_>>(),
            "t_score": reference.iter().map(|p| p.t_score).collect::<Vec<_>>(),
        });
        std::fs::write(&expected, json.to_string()).expect("write outputs");
        self.ask(&format!(
            "check {} {} {}",
            weights.display(),
            input.display(),
            expected.display()
        ))
    }

    pub fn ask(&mut self, command: &str) -> serde_json::Value {
        writeln!(self.stdin, "{command}").expect("write to PyTorch");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from PyTorch");
        assert!(!line.is_empty(), "PyTorch ended on {command:?}");
        serde_json::from_str(&line).expect("PyTorch prints JSON")
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
