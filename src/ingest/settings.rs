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
    /// Below this much free space in `[storage] dir`, associations and stores are refused
    /// (checked when a store begins and every `FREE_SPACE_CHECK_BYTES` while it is written).
    pub min_free_disk_mb: u64,
    /// An instance larger than this is refused (0xA700) and its partial file removed.
    pub max_instance_mb: u64,
    /// Concurrent associations from one IP address.
    pub max_associations_per_peer: usize,
    /// An association is aborted this long after it began, whatever it is doing.
    pub max_association_seconds: u64,
    /// An association that starts no C-STORE for this long is released by us (C-ECHOs do
    /// not count: they keep a slot without doing work).
    pub idle_seconds: u64,
    /// Accept associations whatever Called AE Title they name (default: only `ae_title`).
    pub accept_any_called_ae: bool,
    /// At shutdown, how long a store whose data is still arriving may take to finish
    /// before its association is aborted.
    pub shutdown_grace_seconds: u64,
    /// Size of one journal segment (MiB): C-STOREs are acknowledged once appended and
    /// flushed there (see `ingest::journal`). 0: no journal, each instance is fsynced in
    /// its own spool file before it is acknowledged (slower: BENCHMARKS.md).
    pub journal_segment_mb: u64,
    /// Journal segments kept zero-filled and ready (one per concurrent sender is used).
    pub journal_spare_segments: usize,
    /// The DICOM TLS listener (`[dicom.tls]`), beside the plain one.
    pub tls: crate::dicom::tls::TlsListenerSettings,
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
            max_instance_mb: 1024,
            max_associations_per_peer: 8,
            max_association_seconds: 3600,
            idle_seconds: 120,
            accept_any_called_ae: false,
            shutdown_grace_seconds: 10,
            journal_segment_mb: 256,
            journal_spare_segments: 2,
            tls: Default::default(),
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

    /// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, a dual-stack listener's view of an
    /// IPv4 peer) match rules written with the IPv4 address, and the other way round.
    pub fn matches(&self, calling_ae: &str, peer: IpAddr) -> bool {
        self.ae_title == calling_ae.trim()
            && self
                .ip
                .is_none_or(|ip| ip.to_canonical() == peer.to_canonical())
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
