//! What the reports take from the source study: the header of the first instance used
//! (its Patient and General Study modules, copied by `copy`) and a reference to every
//! instance the Finding used, which must all name one patient.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::dicom::open;

use super::ReportError;
use crate::dicom::text;

/// One referenced source instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInstance {
    pub series_uid: String,
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// The source study as the reports need it.
pub struct Source {
    /// Header of the first instance used (no pixel data).
    pub header: InMemDicomObject,
    pub instances: Vec<SourceInstance>,
}

impl Source {
    /// Read the headers of `paths` and keep the instances whose SOP Instance UID is in
    /// `used` (the Finding's `instances_used`). With `used` empty (a study that was not
    /// analysed) the header comes from the first readable file and nothing is referenced.
    pub fn read(paths: &[PathBuf], used: &[String]) -> Result<Source, ReportError> {
        let wanted: BTreeSet<&str> = used.iter().map(String::as_str).collect();
        let mut header = None;
        let mut instances = Vec::new();
        let mut first_patient: Option<String> = None;
        for path in paths {
            let Ok(obj) = open::open_header(path, &open::Limits::default()) else {
                continue;
            };
            let uid = text(&obj, tags::SOP_INSTANCE_UID);
            if wanted.is_empty() {
                header = Some(obj.into_inner());
                break;
            }
            if !wanted.contains(uid.as_str()) {
                continue;
            }
            let patient = text(&obj, tags::PATIENT_ID);
            if !patient.is_empty() {
                match &first_patient {
                    None => first_patient = Some(patient),
                    // One report names one patient: never label another's images with it.
                    Some(first) if *first != patient => return Err(ReportError::MixedPatients),
                    Some(_) => {}
                }
            }
            instances.push(SourceInstance {
                series_uid: text(&obj, tags::SERIES_INSTANCE_UID),
                path: path.clone(),
                sop_class_uid: text(&obj, tags::SOP_CLASS_UID),
                sop_instance_uid: uid,
            });
            if header.is_none() {
                header = Some(obj.into_inner());
            }
        }
        // One entry per SOP Instance UID (the first file seen), then by series.
        let mut seen = BTreeSet::new();
        instances.retain(|i| seen.insert(i.sop_instance_uid.clone()));
        instances.sort_by(|a, b| {
            (&a.series_uid, &a.sop_instance_uid).cmp(&(&b.series_uid, &b.sop_instance_uid))
        });
        let header = header.ok_or(ReportError::NoSource)?;
        let study = text(&header, tags::STUDY_INSTANCE_UID);
        if !crate::dicom::uid::is_safe_uid(&study) {
            // Our objects must join the source study; without a valid UID they cannot.
            return Err(ReportError::StudyUid(study));
        }
        Ok(Source { header, instances })
    }

    pub fn study_uid(&self) -> String {
        text(&self.header, tags::STUDY_INSTANCE_UID)
    }

    pub fn sop_class_of(&self, sop_instance_uid: &str) -> Option<&str> {
        self.instances
            .iter()
            .find(|i| i.sop_instance_uid == sop_instance_uid)
            .map(|i| i.sop_class_uid.as_str())
    }
}
