//! The DICOM layer: everything the rest of the crate needs to speak DICOM, and nothing
//! of the crate itself (this module imports no other osteoscreen module).
//!
//! - `dataset`: the data-set builder, coded entries and the Part 10 writer;
//! - `text`: the one reader of padded text attributes;
//! - `uid`: our implementation UIDs, derived (deterministic) UIDs and the safe-UID check;
//! - `sop`: the SOP classes we accept, with their names;
//! - `command`: DIMSE command sets and statuses, both directions;
//! - `files`: the files a user names, folders expanded;
//! - `scan`: the length and nesting pre-scan every untrusted data set passes first;
//! - `open`: opening untrusted files (pre-scan, then parse);
//! - `tls`: rustls configurations for DICOM TLS, listener and outgoing.

pub mod command;
pub mod dataset;
pub mod files;
pub mod open;
pub mod scan;
pub mod sop;
pub mod text;
pub mod tls;
pub mod uid;

pub use command::{Command, CommandError, DimseStatus};
pub use dataset::DatasetBuilder;
pub use text::text;
