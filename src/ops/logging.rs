//! Log set-up: human-readable text by default, one JSON object per line with
//! `[log] format = "json"`. Logs go to stderr (journald under systemd). Call sites log UIDs,
//! AE titles, counts and durations, never patient names, IDs or birth dates.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log verbosity and format (`text` for people, `json` for collectors).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Swaps the level filter of the installed subscriber (SIGHUP).
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static RELOAD: std::sync::OnceLock<Reload> = std::sync::OnceLock::new();

fn filter_for(level: &str) -> EnvFilter {
    // The JPEG 2000 codec logs every header it parses at INFO: keep it to warnings.
    EnvFilter::try_new(format!("{level},jpeg2k=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info,jpeg2k=warn"))
}

/// Install the global subscriber; `RUST_LOG`, when set, overrides `[log] level`.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(&settings.level));
    // Colours only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The two formats are different types: each gets its reload handle the same way.
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = RELOAD.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }};
    }
    match settings.format {
        LogFormat::Text => install!(tracing_subscriber::fmt()),
        LogFormat::Json => install!(tracing_subscriber::fmt().json().flatten_event(true)),
    }
}

/// Change the level of the running subscriber (`RUST_LOG`, when set, still wins).
pub fn set_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(reload) = RELOAD.get() {
        if let Err(e) = reload(filter_for(level)) {
            tracing::error!(error = %e, "log level not changed");
        }
    }
}
