//! osteoscreen: a DICOM daemon that screens lumbar studies for osteoporosis.
//!
//! One study's path: `ingest` (C-STORE in, durable spool + `store`) → `pipeline` (the
//! assembler turns quiet studies into jobs) → analysis and reports (later stages).
//! `dimse` holds the DICOM message plumbing both directions share; `ops` the
//! administrator's side (logs, systemd).

pub mod analysis;
pub mod config;
pub mod daemon;
pub mod dataset;
pub mod dimse;
pub mod fsutil;
pub mod ingest;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod report;
pub mod store;
pub mod synth;
pub mod uid;
