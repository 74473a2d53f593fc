//! The subcommands, one function each (like mini-redis's `cmd/`): each takes its parsed
//! arguments and the settings, calls into the library, prints, and returns the exit code.

pub mod adapt;
pub mod analyze;
pub mod average;
pub mod calibrate;
pub mod data_args;
pub mod eval;
pub mod link;
pub mod polarity;
pub mod queue;
pub mod readout;
pub mod synth;
pub mod train;
pub mod train_risk;

use std::process::ExitCode;

use osteoscreen::config::Settings;

/// `osteoscreen serve`: run the daemon until SIGTERM / SIGINT.
pub async fn serve(
    settings: Settings,
    config_file: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    osteoscreen::daemon::serve(settings, config_file).await?;
    Ok(ExitCode::SUCCESS)
}

/// `osteoscreen check-config`: the effective settings, secrets masked.
pub fn check_config(settings: &Settings) -> ExitCode {
    print!("{}", settings.to_masked_toml());
    eprintln!("settings are valid");
    ExitCode::SUCCESS
}

/// Success when `ok`, else failure.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
