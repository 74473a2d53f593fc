//! From a stored study to results handed to delivery: the assembler turns a quiet study
//! into a queued job (with its priority); workers analyse queued jobs, write the SR and
//! SC and record their deliveries. `summary` is what a job keeps of its Finding.

pub mod assembler;
pub mod settings;
pub mod summary;
pub mod worker;
