//! HTTP to the daemon's `[http]` listener with curl, a client nobody here wrote: GETs of the
//! operations endpoints, POSTs of a prepared body (STOW-RS). Loopback only.

use std::path::Path;
use std::process::Command;

use super::{run, text};

/// One HTTP exchange as curl saw it.
pub struct Reply {
    /// 0 when no response arrived.
    pub status: u16,
    /// The response header block, as received.
    pub headers: String,
    pub body: Vec<u8>,
    /// curl's own messages (an upload cut short by an early answer shows up here).
    pub curl: String,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// The values of every `name` header (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// `curl` with `args`, keeping status, headers and body (written under `work`).
pub fn curl(work: &Path, args: &[String]) -> Reply {
    let (body, headers) = (work.join("curl-body"), work.join("curl-headers"));
    let _ = std::fs::remove_file(&body);
    let _ = std::fs::remove_file(&headers);
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "120", "-w", "%{http_code}", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(args));
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Reply {
        status,
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
        curl: text(&out),
    }
}

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

pub fn get(work: &Path, port: u16, path: &str) -> Reply {
    curl(work, &[url(port, path)])
}

/// POST the file `body` with `content_type` and any `-H` `headers`.
pub fn post(
    work: &Path,
    port: u16,
    path: &str,
    content_type: &str,
    body: &Path,
    headers: &[&str],
) -> Reply {
    let mut args = vec![
        "-X".to_string(),
        "POST".into(),
        "-H".into(),
        format!("Content-Type: {content_type}"),
        "--data-binary".into(),
        format!("@{}", body.display()),
    ];
    for h in headers {
        args.push("-H".into());
        args.push(h.to_string());
    }
    args.push(url(port, path));
    curl(work, &args)
}
