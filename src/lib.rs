//! osteoscreen: a DICOM daemon that screens lumbar studies for osteoporosis.
//!
//! The path of one study, module by module:
//!
//! 1. `ingest` — associations in (C-ECHO, C-STORE) and STOW-RS requests; each instance
//!    checked, spooled durably and recorded in `store` before it is acknowledged; open
//!    associations and requests tracked per study.
//! 2. `pipeline` — the assembler turns a study that has gone quiet into a queued job.
//! 3. `analysis` — the files of one study in, one `analysis::finding::Finding` out
//!    (selection, decoding, the X-ray model of `model`, CT attenuation, clinical risk).
//! 4. `report` — the Finding back into the study as DICOM: a TID 1500 SR and a
//!    Secondary Capture key image. It reads only the Finding and the source headers.
//! 5. `deliver` — objects out to other nodes (the C-STORE SCU).
//!
//! Beside the path: `dicom` (the DICOM layer every stage uses; it imports nothing else of
//! the crate), `config` (settings), `shutdown` (the one stop signal every long-lived task
//! listens to), `ops` (logs, systemd, health, metrics, the HTTP listener), `synth`
//! (synthetic studies with known truth), `wake` (wake-up calls between tasks that are
//! never lost), `daemon` (wires the long-running tasks together), `supervise` (a core task
//! that dies takes the daemon down, non-zero), `fsutil` (fsync, free space, the storage
//! lock).

pub mod analysis;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod dicom;
pub mod fsutil;
pub mod fuzz;
pub mod ingest;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod places;
pub mod report;
pub mod shutdown;
pub mod store;
pub mod supervise;
pub mod synth;
pub mod train;
pub mod wake;

/// An error and its causes, each said once, joined by ": ". The typed errors already put
/// their cause in their own message (`model card PATH: CAUSE`), and dicom-pixeldata's
/// ("Could not decode pixel data") leaves out the codec's reason, which is what an
/// administrator needs: the command line's last word and a codec error both read this.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}
