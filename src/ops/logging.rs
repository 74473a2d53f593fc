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

/// Install the global subscriber; `RUST_LOG`, when set, overrides `[log] level`.
pub fn init(settings: &LogSettings) {
    // The JPEG 2000 codec logs every header it parses at INFO: keep it to warnings.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},jpeg2k=warn", settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info,jpeg2k=warn"));
    // Colours only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
