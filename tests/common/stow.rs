//! STOW-RS from the client's side, for tests: multipart bodies built by hand, sent with
//! curl (`super::http`), and the DICOM JSON answer read back; plus what to look at on the
//! daemon afterwards (the temp folder, a metric).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use super::http::{get, post, Reply};
use super::Daemon;

pub const BOUNDARY: &str = "osteoscreen-test-7c1f0b2e";

/// The Content-Type of a STOW-RS request whose body `multipart` built.
pub fn stow_type() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}")
}

/// A `multipart/related` body with one application/dicom part per item.
pub fn multipart(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = b"preamble a client may send\r\n".to_vec();
    for p in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub fn files_body(files: &[PathBuf]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    multipart(&parts)
}

/// POST `body` to `path` on the daemon's HTTP port.
pub fn stow_to(
    daemon: &Daemon,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[&str],
) -> Reply {
    let file = daemon.work.join("stow-body");
    std::fs::write(&file, body).unwrap();
    post(
        &daemon.work,
        daemon.http_port,
        path,
        content_type,
        &file,
        headers,
    )
}

pub fn stow(daemon: &Daemon, body: &[u8]) -> Reply {
    stow_to(daemon, "/dicomweb/studies", &stow_type(), body, &[])
}

/// SOP Instance UIDs in the Referenced SOP Sequence.
pub fn referenced(reply: &Reply) -> BTreeSet<String> {
    let json = reply.json();
    json["00081199"]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["00081155"]["Value"][0].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (SOP Instance UID or "", Failure Reason) in the Failed SOP Sequence.
pub fn failed(reply: &Reply) -> Vec<(String, u64)> {
    let json = reply.json();
    json["00081198"]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    let uid = i["00081155"]["Value"][0].as_str().unwrap_or("").to_string();
                    (uid, i["00081197"]["Value"][0].as_u64().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn sop_instance_uid(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

/// No partial file is left in `spool/.tmp` (empty spare files do not count).
pub fn tmp_is_empty(daemon: &Daemon) -> bool {
    daemon.partial_files().is_empty()
}

pub fn metric(daemon: &Daemon, series: &str) -> Option<f64> {
    let reply = get(&daemon.work, daemon.http_port, "/metrics");
    assert_eq!(reply.status, 200, "{}", reply.curl);
    reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
