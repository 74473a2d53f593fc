//! The listener's settings (`[dicom]` in the config file) and the caller rules parsed
//! from them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The DICOM listener (C-ECHO / C-STORE SCP) and study assembly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomSettings {
    pub ae_title: String,
    pub listen: String,
    /// `AE` or `AE@ip`; empty accepts any caller.
    pub allowed_callers: Vec<String>,
    pub max_associations: usize,
    pub max_pdu_length: u32,
    pub study_stable_seconds: u64,
    pub accepted_modalities: Vec<String>,
    /// ARTIM-style limit: a peer silent this long mid-association is dropped.
    pub timeout_seconds: u64,
    /// Below this much free space in `[storage] dir`, associations and stores are refused.
    pub min_free_disk_mb: u64,
}

impl Default for DicomSettings {
    fn default() -> Self {
        DicomSettings {
            ae_title: "OSTEOSCREEN".into(),
            listen: "0.0.0.0:11112".into(),
            allowed_callers: Vec::new(),
            max_associations: 32,
            max_pdu_length: 65536,
            study_stable_seconds: 10,
            accepted_modalities: vec!["CR".into(), "DX".into(), "CT".into()],
            timeout_seconds: 30,
            min_free_disk_mb: 512,
        }
    }
}

/// One entry of `allowed_callers`: an AE title, optionally tied to one IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRule {
    pub ae_title: String,
    pub ip: Option<IpAddr>,
}

impl CallerRule {
    pub fn parse(s: &str) -> Result<CallerRule, String> {
        let (ae, ip) = match s.split_once('@') {
            Some((ae, ip)) => {
                let ip = ip
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
                (ae, Some(ip))
            }
            None => (s, None),
        };
        let ae = ae.trim();
        check_ae_title(ae).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(CallerRule {
            ae_title: ae.to_string(),
            ip,
        })
    }

    pub fn matches(&self, calling_ae: &str, peer: IpAddr) -> bool {
        self.ae_title == calling_ae.trim() && self.ip.is_none_or(|ip| ip == peer)
    }
}

/// PS3.5 AE title rules: 1-16 characters, no backslash or control characters.
pub fn check_ae_title(ae: &str) -> Result<(), String> {
    if ae.is_empty() || ae.len() > 16 {
        return Err(format!("AE title {ae:?} must have 1 to 16 characters"));
    }
    if ae
        .chars()
        .any(|c| c == '\\' || c.is_control() || !c.is_ascii())
    {
        return Err(format!(
            "AE title {ae:?} may not contain backslashes, control or non-ASCII characters"
        ));
    }
    Ok(())
}
