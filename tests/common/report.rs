//! Reading back what `osteoscreen analyze --out` wrote: the objects, dciodvfy's verdict,
//! DCMTK's dumps of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{bin, run, shipped_config, text};

/// Run analyze --json --out; returns the Finding and the files written.
pub fn analyze_out(
    study: &Path,
    out: &Path,
    weights: Option<&Path>,
) -> (serde_json::Value, Vec<PathBuf>) {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(shipped_config());
    if let Some(w) = weights {
        cmd.env("OSTEOSCREEN__MODEL__WEIGHTS", w);
    }
    let o = run(cmd.args(["analyze", "--json", "--out"]).arg(out).arg(study));
    let f = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    (f, files)
}

pub fn dciodvfy_clean(file: &Path) -> String {
    let o = run(Command::new("dciodvfy").arg(file));
    let report = text(&o);
    assert!(
        !report.lines().any(|l| l.starts_with("Error")),
        "dciodvfy errors in {}:\n{report}",
        file.display()
    );
    report
}

pub fn dsrdump(file: &Path) -> String {
    let o = run(Command::new("dsrdump").arg("+Pc").arg(file));
    assert!(o.status.success(), "dsrdump: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn tag(file: &Path, key: &str) -> String {
    let o = run(Command::new("dcmdump")
        .args(["-q", "-s", "+P", key])
        .arg(file));
    let line = String::from_utf8_lossy(&o.stdout).to_string();
    match line.split_once('[') {
        // Strings: "(0010,0010) PN [NAME]  # ...".
        Some((_, rest)) => rest.split(']').next().unwrap_or("").to_string(),
        // Numbers: "(0028,0002) US 3  # ...".
        None => line.split_whitespace().nth(2).unwrap_or("").to_string(),
    }
}

/// The written file of `kind` ("sr" or "sc").
pub fn pick<'a>(files: &'a [PathBuf], kind: &str) -> &'a PathBuf {
    files
        .iter()
        .find(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{kind}-")))
        })
        .unwrap_or_else(|| panic!("no {kind} in {files:?}"))
}
