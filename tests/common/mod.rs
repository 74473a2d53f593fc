//! Shared test harness: the daemon as a child process on a free loopback port, the real
//! DICOM peers (DCMTK) run as commands, and test data.
#![allow(dead_code)]

pub mod files;
pub mod http;
pub mod models;
pub mod orthanc;
pub mod report;
pub mod scu;
pub mod stow;

// Not every test binary uses them.
#[allow(unused_imports)]
pub use files::*;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use osteoscreen::store::Store;

/// `../shared/testdata/real` beside the clone (override with OSTEOSCREEN_TESTDATA).
pub fn testdata() -> PathBuf {
    std::env::var_os("OSTEOSCREEN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/real"))
}

pub fn real(rel: &str) -> PathBuf {
    let p = testdata().join(rel);
    assert!(p.exists(), "test data {} missing", p.display());
    p
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run a command to completion, keeping its output.
/// Whether the other end closed `socket` (end of stream or reset), reading and dropping
/// whatever it sends first; false when it is still open after `patience`, a guard far
/// beyond the limit under test, not a measure of speed.
pub fn closed_by_peer(socket: &mut TcpStream, patience: Duration) -> bool {
    use std::io::{ErrorKind, Read};
    socket.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is the peer installed?)"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// DCMTK storescp (AE PACS) on a free loopback port, writing into `dir`; killed on drop.
/// It accepts every transfer syntax proposed (`+xa`); `extra` adds options.
pub struct Storescp {
    child: Child,
    pub port: u16,
}

impl Storescp {
    pub fn start(dir: &Path, extra: &[&str]) -> Storescp {
        let port = free_port();
        let child = Command::new("storescp")
            .args(["-aet", "PACS", "+xa", "-od"])
            .arg(dir)
            .args(extra)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp");
        wait_until("storescp", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Storescp { child, port }
    }
}

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `osteoscreen serve` started by the test, stopped by PID.
pub struct Daemon {
    config: PathBuf,
    pub child: Option<Child>,
    pub port: u16,
    /// `[http] listen`: STOW-RS, /healthz, /readyz, /metrics.
    pub http_port: u16,
    pub work: PathBuf,
    pub storage: PathBuf,
    env: Vec<(String, String)>,
    starts: usize,
    /// Started as systemd starts a Type=notify service: WATCHDOG_PID is its own PID.
    as_service: bool,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_osteoscreen")
}

/// A small synthetic AP + lateral study (512 x 640) for the X-ray tests.
pub const DX_SMALL: [&str; 6] = ["--modality", "dx", "--size", "512x640", "--seed", "5"];
/// A synthetic CT at 3 mm whose L1 is labelled (seed 61).
pub const CT_3MM: [&str; 6] = ["--modality", "ct", "--seed", "61", "--ct-slice-mm", "3"];

/// The test venv's Python (scripts/test.sh makes it and sets OSTEOSCREEN_PYTHON; else
/// ~/.cache/osteoscreen-venv): pydicom, highdicom, numpy, scipy.
pub fn python() -> String {
    std::env::var("OSTEOSCREEN_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/osteoscreen-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

/// `osteoscreen synth --studies 1 ARGS --out DIR`; returns the study's folder.
pub fn synth_study(dir: &Path, args: &[&str]) -> PathBuf {
    let out = run(Command::new(bin())
        .args(["synth", "--studies", "1"])
        .args(args)
        .arg("--out")
        .arg(dir));
    assert!(out.status.success(), "synth: {}", text(&out));
    dir.join("study00000")
}

/// `n` small two-view DX studies (`synth --seed SEED`) in `dir`/study00000...; returns `dir`.
pub fn synth_dx_studies(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = run(Command::new(bin())
        .args(["synth", "--modality", "dx", "--size", "256x320"])
        .args([
            "--studies",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(dir));
    assert!(out.status.success(), "synth: {}", text(&out));
    dir.to_path_buf()
}

/// Every `.dcm` file under `dir`, recursively, sorted.
pub fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "dcm") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A randomly initialised X-ray model (weights + card) in `dir`; returns the weights.
pub fn untrained_model(dir: &Path) -> PathBuf {
    let weights = dir.join("xray.safetensors");
    osteoscreen::model::XrayModel::create_untrained(&weights).unwrap();
    weights
}

pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/osteoscreen.toml")
}

impl Daemon {
    /// Start with the shipped config, storage under `work`, and `env` overrides.
    pub fn start(work: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(work, &shipped_config(), env, false)
    }

    /// Start with a settings file of the test's, storage under `work`, `env` overrides.
    pub fn start_with_config(work: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(work, config, env, false)
    }

    /// As `start`, with WATCHDOG_PID set to the daemon's own PID (through `sh -c 'exec'`),
    /// as systemd does for a service with a watchdog.
    pub fn start_as_service(work: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(work, &shipped_config(), env, true)
    }

    fn start_with(work: &Path, config: &Path, env: &[(&str, &str)], as_service: bool) -> Daemon {
        let mut d = Daemon {
            config: config.to_path_buf(),
            child: None,
            port: free_port(),
            http_port: 0,
            work: work.to_path_buf(),
            storage: work.join("var"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
            as_service,
        };
        d.pick_http_port();
        d.spawn();
        d
    }

    /// Two calls of `free_port` may hand out the same port; the listeners need two.
    fn pick_http_port(&mut self) {
        self.http_port = free_port();
        while self.http_port == self.port {
            self.http_port = free_port();
        }
    }

    /// Start the process and wait until it says it is ready. Ready means our daemon has
    /// bound the port: a bare connect could reach another test's daemon that happened to
    /// get the same free port. On a first start that lost such a race for its port, try
    /// another port.
    fn spawn(&mut self) {
        let attempts = if self.starts == 0 { 5 } else { 1 };
        for attempt in 1..=attempts {
            self.starts += 1;
            let log_path = self.work.join(format!("daemon-{}.log", self.starts));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = if self.as_service {
                let mut sh = Command::new("sh");
                sh.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", bin()]);
                sh
            } else {
                Command::new(bin())
            };
            cmd.arg("--config")
                .arg(&self.config)
                .arg("serve")
                .env(
                    "OSTEOSCREEN__DICOM__LISTEN",
                    format!("127.0.0.1:{}", self.port),
                )
                .env(
                    "OSTEOSCREEN__HTTP__LISTEN",
                    format!("127.0.0.1:{}", self.http_port),
                )
                .env("OSTEOSCREEN__STORAGE__DIR", &self.storage)
                .env("OSTEOSCREEN__LOG__LEVEL", "debug")
                // Ingest tests look at queued jobs: no analysis unless a test turns it on.
                .env("OSTEOSCREEN__PIPELINE__PAUSED", "true")
                // The shipped 256 MiB journal segments, zero-filled at each fresh start,
                // would write half a GiB per test daemon: same path, smaller segments
                // (radiographs larger than what is left take the per-file path).
                .env("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "8")
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("start osteoscreen serve");
            // 60 s is only a guard against a hang.
            let start = Instant::now();
            loop {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("osteoscreen ready") {
                    self.child = Some(child);
                    return;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    if attempt < attempts && log.contains("cannot listen") {
                        self.port = free_port();
                        self.pick_http_port();
                        break;
                    }
                    panic!("osteoscreen serve exited ({status}) before it was ready:\n{log}");
                }
                if start.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("osteoscreen serve not ready after 60 s:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM; the daemon keeps running until it has finished (see `wait_exit`).
    pub fn sigterm(&self) {
        let out = run(Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string()));
        assert!(out.status.success(), "kill -TERM: {}", text(&out));
    }

    /// Wait for the process to end (`timeout` is only a guard against a hang).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon still running {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// Change an environment override for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// `osteoscreen ARGS` against this daemon's settings and storage.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("OSTEOSCREEN__STORAGE__DIR", &self.storage))
    }

    /// The instance rows once there are `n` of them. A C-STORE is acknowledged once in the
    /// journal; its row follows within milliseconds (the journal's mover), so a test that
    /// counts rows right after storescu returns waits for them.
    pub fn rows(&self, n: usize) -> Vec<osteoscreen::store::InstanceRecord> {
        let store = self.store();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows = store.instances().unwrap();
            if rows.len() >= n || std::time::Instant::now() > until {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until every acknowledged instance has left the ingest journal for the spool
    /// tree and the database (`osteoscreen_journal_backlog 0` on /metrics).
    pub fn settled(&self) {
        wait_until("journal backlog 0", Duration::from_secs(20), || {
            let reply = http::get(&self.work, self.http_port, "/metrics");
            String::from_utf8_lossy(&reply.body)
                .lines()
                .any(|l| l == "osteoscreen_journal_backlog 0")
        });
    }

    /// `[storage] dir` of this daemon.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    pub fn store(&self) -> Store {
        Store::open(&Store::path_in(&self.storage)).unwrap()
    }

    /// All daemon logs written so far.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.work.join(format!("daemon-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Wait until the logs contain `needle` (`timeout` is only a guard against a hang).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.logs().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {needle:?} in the daemon's log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The partial files in `spool/.tmp` with their sizes. The empty spare files the
    /// daemon creates ahead (`ingest::spare`) hold nothing and are not counted: a file
    /// that ever held an instance starts with its preamble.
    pub fn partial_files(&self) -> Vec<(PathBuf, u64)> {
        partial_files_in(&self.storage)
    }

    pub fn storescu(&self, calling_ae: &str) -> Command {
        let mut cmd = Command::new("storescu");
        cmd.arg("-aet")
            .arg(calling_ae)
            .arg("-aec")
            .arg("OSTEOSCREEN")
            .arg("127.0.0.1")
            .arg(self.port.to_string());
        cmd
    }

    pub fn peer(&self, calling_ae: &str) -> osteoscreen::deliver::dimse::Peer {
        osteoscreen::deliver::dimse::Peer {
            tls: None,
            host: "127.0.0.1".into(),
            port: self.port,
            called_ae: "OSTEOSCREEN".into(),
            calling_ae: calling_ae.into(),
            max_pdu_length: 16384,
            timeout: Duration::from_secs(20),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The non-empty files in `<storage>/spool/.tmp` with their sizes (see `partial_files`).
pub fn partial_files_in(storage: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(storage.join("spool/.tmp"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0))
        })
        .filter(|(_, size)| *size > 0)
        .collect()
}
