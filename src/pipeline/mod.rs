//! What happens between ingest and analysis: studies become jobs once quiet (assembler),
//! and the one shutdown signal every long-lived task listens to.

pub mod assembler;
pub mod shutdown;
