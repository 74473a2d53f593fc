//! What happens between ingest and analysis: studies become jobs once quiet (assembler).
//! Workers that analyse queued jobs will live here too.

pub mod assembler;
