//! DIMSE plumbing shared by the SCP (ingest) and the SCU (`echo`, `send`, later delivery):
//! command sets in, command sets out, the SOP classes and statuses we speak.

pub mod command;
pub mod scu;
pub mod sop;

pub use command::{Command, CommandError, Status};
