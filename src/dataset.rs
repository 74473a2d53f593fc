//! Building data sets: a terse setter wrapper over `InMemDicomObject` and coded entries,
//! shared by the synthetic-study writer and the report writers.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// A data set under construction, with terse setters.
pub struct Header(pub InMemDicomObject);

impl Header {
    pub fn new() -> Header {
        Header(InMemDicomObject::new_empty())
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

impl Default for Header {
    fn default() -> Self {
        Header::new()
    }
}

/// A coded entry (Code Value, Coding Scheme Designator, Code Meaning) as a sequence item.
pub fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut h = Header::new();
    h.str(tags::CODE_VALUE, VR::SH, value)
        .str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme)
        .str(tags::CODE_MEANING, VR::LO, meaning);
    h.0
}
