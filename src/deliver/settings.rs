//! Where results go (`[[destinations]]`), how deliveries are retried (`[delivery]`), and
//! the DICOM nodes a reply can go to (`[[peers]]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a destination is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// DICOM C-STORE to an AE (`ae_title`, `host`, `port`, `calling_ae`).
    Dimse,
    /// DICOMweb STOW-RS (`url`; `bearer_token` or `username`/`password`; `ca_file`).
    Stow,
    /// Files in a folder (`path`): one sub-folder per study.
    #[default]
    Folder,
}

/// One `[[destinations]]` entry. Only the fields of its kind are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Destination {
    /// Shown in logs, metrics and `queue`; unique.
    pub name: String,
    pub kind: DestinationKind,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Our AE title towards this node; empty: `[dicom] ae_title`.
    pub calling_ae: String,
    /// STOW-RS base URL (the service root: `.../dicom-web`); `/studies` is appended.
    pub url: String,
    pub bearer_token: String,
    pub username: String,
    pub password: String,
    /// PEM file of extra CA certificates for an HTTPS `url`.
    pub ca_file: PathBuf,
    /// DIMSE over DICOM TLS: the CA (PEM) that signs the node's certificate; set, TLS is on.
    pub tls_ca: PathBuf,
    /// Our certificate and key (PEM) when the node asks for one (mutual TLS).
    pub tls_certificate: PathBuf,
    pub tls_private_key: PathBuf,
    pub path: PathBuf,
}

impl Destination {
    /// A folder destination.
    pub fn folder(name: &str, path: PathBuf) -> Destination {
        Destination {
            name: name.into(),
            kind: DestinationKind::Folder,
            path,
            ..Destination::default()
        }
    }

    /// What is wrong with this entry, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 || self.name.contains(char::is_whitespace) {
            return Err(format!(
                "name {:?} must be 1-64 characters without spaces",
                self.name
            ));
        }
        let missing = |what: &str| Err(format!("{}: {:?} needs {what}", self.name, self.kind));
        match self.kind {
            DestinationKind::Dimse => {
                if self.ae_title.is_empty() || self.host.is_empty() || self.port == 0 {
                    return missing("ae_title, host and port");
                }
            }
            DestinationKind::Stow => {
                let url = self.url.to_ascii_lowercase();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return missing("an http:// or https:// url");
                }
                if !self.bearer_token.is_empty() && !self.username.is_empty() {
                    return Err(format!(
                        "{}: bearer_token and username/password exclude each other",
                        self.name
                    ));
                }
            }
            DestinationKind::Folder => {
                if self.path.as_os_str().is_empty() {
                    return missing("a path");
                }
            }
        }
        Ok(())
    }
}

/// A DICOM node results may be sent back to (`[[peers]]`, for `reply_to_sender`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PeerNode {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// Retries of deliveries (`[delivery]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Attempts per object and destination before it is dead.
    pub max_attempts: u32,
    /// First pause after a failure; doubled each time, with jitter, up to the maximum.
    pub initial_backoff_seconds: f64,
    pub max_backoff_seconds: f64,
    /// Seconds to wait for a destination to connect and answer.
    pub timeout_seconds: u64,
    /// Also send results to the AE that sent the study, when it is listed in `[[peers]]`.
    pub reply_to_sender: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: 10,
            initial_backoff_seconds: 5.0,
            max_backoff_seconds: 600.0,
            timeout_seconds: 30,
            reply_to_sender: false,
        }
    }
}

impl DeliverySettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        let (a, b) = (self.initial_backoff_seconds, self.max_backoff_seconds);
        if !(a.is_finite() && b.is_finite() && a > 0.0 && a <= b) {
            return Err(
                "initial_backoff_seconds must be above 0 and at most max_backoff_seconds".into(),
            );
        }
        if self.timeout_seconds == 0 {
            return Err("timeout_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The pause before attempt `failures + 1`: exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that many deliveries failing together do not retry
    /// in lockstep. `unit` is a random number in 0..1.
    pub fn backoff_ms(&self, failures: u32, unit: f64) -> i64 {
        let exp =
            self.initial_backoff_seconds * 2f64.powi(failures.saturating_sub(1).min(30) as i32);
        let capped = exp.min(self.max_backoff_seconds);
        ((capped / 2.0 + capped / 2.0 * unit.clamp(0.0, 1.0)) * 1000.0) as i64
    }

    /// The pause before trying a destination that could not be reached again: 30 s, or
    /// `max_backoff_seconds` when shorter (half fixed, half random, like `backoff_ms`).
    pub fn unreachable_retry_ms(&self, unit: f64) -> i64 {
        let pause = self
            .max_backoff_seconds
            .min(30.0)
            .max(self.initial_backoff_seconds);
        ((pause / 2.0 + pause / 2.0 * unit.clamp(0.0, 1.0)) * 1000.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let s = DeliverySettings {
            initial_backoff_seconds: 2.0,
            max_backoff_seconds: 10.0,
            ..DeliverySettings::default()
        };
        assert_eq!(s.backoff_ms(1, 1.0), 2000);
        assert_eq!(s.backoff_ms(1, 0.0), 1000);
        assert_eq!(s.backoff_ms(2, 1.0), 4000);
        assert_eq!(s.backoff_ms(3, 1.0), 8000);
        assert_eq!(s.backoff_ms(4, 1.0), 10_000, "capped");
        assert_eq!(s.backoff_ms(40, 0.5), 7500, "capped, no overflow");
    }

    #[test]
    fn destinations_are_checked_for_their_kind() {
        let mut d = Destination::folder("out", PathBuf::from("/tmp/x"));
        assert!(d.validate().is_ok());
        d.kind = DestinationKind::Dimse;
        assert!(d.validate().unwrap_err().contains("ae_title"));
        d.kind = DestinationKind::Stow;
        d.url = "ftp://x".into();
        assert!(d.validate().unwrap_err().contains("http"));
        d.url = "https://pacs/dicom-web".into();
        assert!(d.validate().is_ok());
        d.name = "two words".into();
        assert!(d.validate().is_err());
    }
}
