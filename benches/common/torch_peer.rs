//! The PyTorch peer as one child process (`benches/peers/xray_torch.py serve`), so that a
//! bench can alternate candle and PyTorch rounds in one run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

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
