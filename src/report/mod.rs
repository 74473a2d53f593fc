//! Reports: the `Finding` back into the source study as DICOM objects a radiologist's
//! viewer shows. `sr` writes the TID 1500 measurement report (`codes`: every coded
//! concept with its source; `content`: SR content items), `sc` the Secondary Capture of
//! the key image (`keyimage` composes it, `render` draws), `source` is what both read
//! from the study and `copy` how they copy its patient and study attributes.

pub mod codes;
pub mod content;
pub mod copy;
pub mod groups;
pub mod keyimage;
pub mod render;
pub mod sc;
pub mod source;
pub mod sr;

use std::path::{Path, PathBuf};

use dicom_dictionary_std::uids;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use crate::analysis::finding::{Finding, Status};
use crate::dicom::text;
pub use source::Source;

/// Who made our objects: Manufacturer / model name in the equipment modules and SR.
pub const MANUFACTURER: &str = "osteoscreen project";
pub const MODEL_NAME: &str = "osteoscreen";

/// What the report writers produce (`[output]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSettings {
    /// Root for the UIDs of our objects; empty: `2.25.` + a UUID derived from the inputs.
    pub uid_root: String,
    pub structured_report: bool,
    pub secondary_capture: bool,
    /// Also write an SR for a study that was not analysed (or failed), saying why.
    pub report_not_analysed: bool,
    /// First line of the key image's banner.
    pub disclaimer: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            uid_root: String::new(),
            structured_report: true,
            secondary_capture: true,
            report_not_analysed: false,
            disclaimer: "AI screening result — not a diagnosis; unverified, review the images"
                .into(),
        }
    }
}

impl OutputSettings {
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.uid_root;
        let ok = r.is_empty()
            || (r.len() <= 40
                && r.split('.').all(|c| {
                    !c.is_empty()
                        && c.chars().all(|d| d.is_ascii_digit())
                        && (c == "0" || !c.starts_with('0'))
                }));
        if !ok {
            return Err(format!(
                "uid_root {r:?} is not a UID root (digits and dots, no leading zeros, at most 40 characters)"
            ));
        }
        Ok(())
    }

    /// A deterministic UID for `parts` under the configured root.
    pub fn uid(&self, parts: &[&str]) -> String {
        crate::dicom::uid::derived_under(&self.uid_root, parts)
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("source study: no readable source instance")]
    NoSource,
    #[error("source study: StudyInstanceUID {0:?} is missing or not a valid UID")]
    StudyUid(String),
    #[error("source study: the instances analysed carry different Patient IDs; no report is written for a study that mixes patients")]
    MixedPatients,
    #[error("key image: {0}")]
    KeyImage(#[from] keyimage::KeyImageError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write the objects `settings` asks for into `dir`; returns their paths. A study that
/// was not analysed gets nothing, or with `report_not_analysed` an SR saying why.
pub fn write_reports(
    finding: &Finding,
    source: &Source,
    settings: &OutputSettings,
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    let analysed = finding.status == Status::Analysed;
    if !analysed && !settings.report_not_analysed {
        return Ok(written);
    }
    if settings.structured_report {
        let obj = sr::build(finding, source, settings, chrono::Utc::now());
        written.push(write_part10(obj, dir, "sr")?);
    }
    // A key image needs a result to show.
    if analysed && settings.secondary_capture {
        let key = keyimage::compose(finding, &settings.disclaimer)?;
        let obj = sc::build(
            &key,
            source,
            settings,
            &sr::result_key(finding),
            chrono::Utc::now(),
        );
        written.push(write_part10(obj, dir, "sc")?);
    }
    Ok(written)
}

/// Write a data set (explicit VR little endian) as `<kind>-<SOP Instance UID>.dcm`.
fn write_part10(obj: InMemDicomObject, dir: &Path, kind: &str) -> Result<PathBuf, ReportError> {
    let sop_instance = text(&obj, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
    let path = dir.join(format!("{kind}-{sop_instance}.dcm"));
    let err = |source: std::io::Error| ReportError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    crate::dicom::dataset::write_part10(obj, uids::EXPLICIT_VR_LITTLE_ENDIAN, &path)
        .map_err(err)?;
    Ok(path)
}
