//! Building data sets: a terse setter wrapper over `InMemDicomObject`, coded entries and
//! the Part 10 writer, shared by the synthetic-study writer and the report writers.

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::text::text;
use super::uid::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// A data set under construction, with terse setters.
pub struct DatasetBuilder(pub InMemDicomObject);

impl DatasetBuilder {
    pub fn new() -> DatasetBuilder {
        DatasetBuilder(InMemDicomObject::new_empty())
    }

    pub fn str(&mut self, tag: Tag, vr: VR, value: &str) -> &mut Self {
        self.0
            .put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        self
    }

    pub fn u16(&mut self, tag: Tag, value: u16) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        self
    }

    pub fn int16(&mut self, tag: Tag, value: i16) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::SS, PrimitiveValue::from(value)));
        self
    }

    pub fn seq(&mut self, tag: Tag, items: Vec<InMemDicomObject>) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
        self
    }
}

impl Default for DatasetBuilder {
    fn default() -> Self {
        DatasetBuilder::new()
    }
}

/// A coded entry (Code Value, Coding Scheme Designator, Code Meaning) as a sequence item.
pub fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut h = DatasetBuilder::new();
    h.str(tags::CODE_VALUE, VR::SH, value)
        .str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme)
        .str(tags::CODE_MEANING, VR::LO, meaning);
    h.0
}

/// Write `obj` as a Part 10 file in `transfer_syntax`; the meta group names the SOP class
/// and instance the data set itself carries.
pub fn write_part10(
    obj: InMemDicomObject,
    transfer_syntax: &str,
    path: &Path,
) -> std::io::Result<()> {
    let sop_class = text(&obj, tags::SOP_CLASS_UID);
    let sop_instance = text(&obj, tags::SOP_INSTANCE_UID);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(transfer_syntax)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_instance)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
        )
        .map_err(std::io::Error::other)?;
    file.write_to_file(path).map_err(|e| {
        // A half-written object must not be left where it could be taken for a whole one.
        let _ = std::fs::remove_file(path);
        std::io::Error::other(e)
    })
}
