//! Settings: what the operator configures, loaded once at start-up.
//!
//! Sources, later ones winning: built-in defaults, the TOML file (`--config FILE`, or
//! `config/osteoscreen.toml` when present), then `OSTEOSCREEN__<SECTION>__<KEY>` variables.
//! `Settings::validate` turns every mistake into a message an administrator can act on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::ingest::settings::{check_ae_title, CallerRule, DicomSettings};
pub use crate::ops::logging::{LogFormat, LogSettings};

/// The file read when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/osteoscreen.toml";

/// A configuration that could not be loaded or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Every setting of the daemon, grouped by section as in `config/osteoscreen.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub dicom: DicomSettings,
    pub http: crate::ops::http::HttpSettings,
    pub storage: StorageSettings,
    pub log: LogSettings,
    pub analysis: crate::analysis::Thresholds,
    pub selection: crate::analysis::select::Rules,
    pub model: crate::model::ModelSettings,
    pub output: crate::report::OutputSettings,
    pub pipeline: crate::pipeline::settings::PipelineSettings,
    pub delivery: crate::deliver::DeliverySettings,
    /// Where results go; none: a folder under `[storage] dir` (`results/`).
    pub destinations: Vec<crate::deliver::Destination>,
    /// DICOM nodes results may be sent back to (`[delivery] reply_to_sender`).
    pub peers: Vec<crate::deliver::PeerNode>,
}

/// Where received instances (spool) and the SQLite database live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub dir: PathBuf,
    /// Finished studies (spool files, results waiting in the outbox, their rows) are
    /// removed this many days after their last job ended; 0 keeps everything.
    pub retention_days: f64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            dir: PathBuf::from("./var/osteoscreen"),
            retention_days: 0.0,
        }
    }
}

impl Settings {
    /// Load from `path` (or the default file if present) and the environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As `load`, with the environment replaced by `env` when given (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => builder = builder.add_source(config::File::from(p).required(true)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                if default.exists() {
                    builder = builder.add_source(config::File::from(default).required(true));
                }
            }
        }
        let environment = config::Environment::with_prefix("OSTEOSCREEN")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("dicom.allowed_callers")
            .with_list_parse_key("dicom.accepted_modalities")
            .try_parsing(true)
            .source(env.clone());
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        // try_parsing reads "0123" as the number 123, and it cannot be turned off: the
        // config crate splits list values only with it on. The free-text settings a
        // number could be mistaken for are taken from the environment as written.
        let raw = |key: &str| match &env {
            Some(map) => map.get(key).cloned(),
            None => std::env::var(key).ok(),
        };
        for (key, value) in [
            (
                "OSTEOSCREEN__HTTP__BEARER_TOKEN",
                &mut settings.http.bearer_token,
            ),
            ("OSTEOSCREEN__DICOM__AE_TITLE", &mut settings.dicom.ae_title),
        ] {
            if let Some(written) = raw(key) {
                *value = written;
            }
        }
        let config_dir = match path {
            Some(p) => p.parent().map(Path::to_path_buf),
            None => Path::new(DEFAULT_CONFIG_FILE)
                .exists()
                .then(|| PathBuf::from(DEFAULT_CONFIG_FILE))
                .and_then(|p| p.parent().map(Path::to_path_buf)),
        };
        settings.model.resolve(config_dir.as_deref());
        settings.validate()?;
        Ok(settings)
    }

    /// Check every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.dicom;
        check_ae_title(&d.ae_title).map_err(|e| invalid("dicom.ae_title", e))?;
        self.listen_addr()?;
        self.caller_rules()?;
        if d.max_associations == 0 {
            return Err(invalid("dicom.max_associations", "must be at least 1"));
        }
        // PS3.8 allows any value; below 4 KiB or above 4 MiB is a configuration mistake.
        if !(4096..=4 * 1024 * 1024).contains(&d.max_pdu_length) {
            return Err(invalid(
                "dicom.max_pdu_length",
                format!("{} is outside 4096..=4194304 bytes", d.max_pdu_length),
            ));
        }
        if d.study_stable_seconds == 0 {
            return Err(invalid("dicom.study_stable_seconds", "must be at least 1"));
        }
        if d.timeout_seconds == 0 {
            return Err(invalid("dicom.timeout_seconds", "must be at least 1"));
        }
        for (key, value) in [
            ("dicom.max_instance_mb", d.max_instance_mb),
            (
                "dicom.max_associations_per_peer",
                d.max_associations_per_peer as u64,
            ),
            ("dicom.max_association_seconds", d.max_association_seconds),
            ("dicom.idle_seconds", d.idle_seconds),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if d.tls.enabled() {
            d.tls
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| invalid("dicom.tls.listen", format!("{:?}: {e}", d.tls.listen)))?;
            crate::dicom::tls::server_config(&d.tls)
                .map_err(|e| invalid("dicom.tls", e.to_string()))?;
        }
        if d.accepted_modalities.is_empty() {
            return Err(invalid("dicom.accepted_modalities", "lists no modality"));
        }
        for m in &d.accepted_modalities {
            let ok = !m.is_empty() && m.len() <= 16 && m.chars().all(|c| c.is_ascii_uppercase());
            if !ok {
                return Err(invalid(
                    "dicom.accepted_modalities",
                    format!("{m:?} is not a DICOM modality code (e.g. CR, DX, CT)"),
                ));
            }
        }
        self.http.validate().map_err(|e| invalid("http", e))?;
        let a = &self.analysis;
        let ordered = a.ct_osteoporosis_hu.is_finite()
            && a.ct_normal_hu.is_finite()
            && a.ct_osteoporosis_hu < a.ct_normal_hu;
        if !ordered {
            return Err(invalid(
                "analysis.ct_osteoporosis_hu",
                "must be below analysis.ct_normal_hu",
            ));
        }
        self.selection
            .validate()
            .map_err(|e| invalid("selection", e))?;
        self.model.validate().map_err(|e| invalid("model", e))?;
        self.output.validate().map_err(|e| invalid("output", e))?;
        self.pipeline
            .validate()
            .map_err(|e| invalid("pipeline", e))?;
        self.delivery
            .validate()
            .map_err(|e| invalid("delivery", e))?;
        let mut names = std::collections::HashSet::new();
        for d in &self.destinations {
            d.validate().map_err(|e| invalid("destinations", e))?;
            if !names.insert(d.name.as_str()) {
                return Err(invalid(
                    "destinations",
                    format!("{:?} is named twice", d.name),
                ));
            }
        }
        for p in &self.peers {
            check_ae_title(&p.ae_title).map_err(|e| invalid("peers", e))?;
            if p.host.is_empty() || p.port == 0 {
                return Err(invalid(
                    "peers",
                    format!("{} needs host and port", p.ae_title),
                ));
            }
        }
        let days = self.storage.retention_days;
        if !(days.is_finite() && days >= 0.0) {
            return Err(invalid(
                "storage.retention_days",
                "must be 0 (keep) or more",
            ));
        }
        if self.storage.dir.as_os_str().is_empty() {
            return Err(invalid("storage.dir", "is empty"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.dicom.listen.parse().map_err(|_| {
            invalid(
                "dicom.listen",
                format!("{:?} is not an address:port", self.dicom.listen),
            )
        })
    }

    pub fn caller_rules(&self) -> Result<Vec<CallerRule>, ConfigError> {
        self.dicom
            .allowed_callers
            .iter()
            .map(|s| CallerRule::parse(s).map_err(|e| invalid("dicom.allowed_callers", e)))
            .collect()
    }

    /// The effective settings as TOML, with anything secret-looking masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("settings serialise to TOML");
        mask_secrets(&mut value);
        toml::to_string_pretty(&value).expect("TOML value serialises")
    }
}

fn mask_secrets(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                let k = key.to_ascii_lowercase();
                let secret = ["password", "secret", "token"]
                    .iter()
                    .any(|s| k.contains(s));
                let set = matches!(v, toml::Value::String(s) if !s.is_empty());
                if secret && set {
                    *v = toml::Value::String("********".into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        // [[destinations]] and other arrays of tables.
        toml::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_validate() {
        let s = Settings::load_with_env(Some(Path::new("config/osteoscreen.toml")), env(&[]))
            .expect("shipped config loads");
        assert_eq!(s.dicom.ae_title, "OSTEOSCREEN");
        assert_eq!(s.dicom.study_stable_seconds, 10);
        Settings::default().validate().unwrap();
    }

    #[test]
    fn environment_overrides_file() {
        let s = Settings::load_with_env(
            Some(Path::new("config/osteoscreen.toml")),
            env(&[
                ("OSTEOSCREEN__DICOM__LISTEN", "127.0.0.1:4242"),
                (
                    "OSTEOSCREEN__DICOM__ALLOWED_CALLERS",
                    "PACS@10.0.0.1,MODALITY",
                ),
                ("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(s.dicom.listen, "127.0.0.1:4242");
        assert_eq!(s.dicom.max_associations, 3);
        let rules = s.caller_rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].matches("PACS", "10.0.0.1".parse().unwrap()));
        assert!(!rules[0].matches("PACS", "10.0.0.2".parse().unwrap()));
        assert!(rules[1].matches("MODALITY", "10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn http_settings_from_the_environment() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("OSTEOSCREEN__HTTP__LISTEN", "127.0.0.1:9999"),
                ("OSTEOSCREEN__HTTP__MAX_BODY_MB", "3"),
                ("OSTEOSCREEN__HTTP__BEARER_TOKEN", "abc"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (s.http.listen.as_str(), s.http.max_body_mb),
            ("127.0.0.1:9999", 3)
        );
        assert!(!s.to_masked_toml().contains("\"abc\""), "token masked");
        // Free text that looks like a number stays as written.
        let s = Settings::load_with_env(
            None,
            env(&[
                ("OSTEOSCREEN__HTTP__BEARER_TOKEN", "0123456"),
                ("OSTEOSCREEN__DICOM__AE_TITLE", "007"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (s.http.bearer_token.as_str(), s.dicom.ae_title.as_str()),
            ("0123456", "007")
        );
        let err = Settings::load_with_env(None, env(&[("OSTEOSCREEN__HTTP__LISTEN", "nowhere")]))
            .unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Settings::load_with_env(None, env(&[("OSTEOSCREEN__DICOM__LISTEN", "nowhere")]))
            .unwrap_err();
        assert!(err.to_string().contains("dicom.listen"), "{err}");
        let err = Settings::load_with_env(
            None,
            env(&[("OSTEOSCREEN__DICOM__AE_TITLE", "A_TITLE_LONGER_THAN_16")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("dicom.ae_title"), "{err}");
        let err = Settings::load_with_env(
            None,
            env(&[("OSTEOSCREEN__DICOM__ALLOWED_CALLERS", "PACS@not-an-ip")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("allowed_callers"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut v: toml::Value = toml::from_str("[a]\npassword = \"hunter2\"\nx = 1").unwrap();
        mask_secrets(&mut v);
        let s = toml::to_string(&v).unwrap();
        assert!(!s.contains("hunter2") && s.contains("********"));
    }
}
