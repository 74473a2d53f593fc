//! SR content items (PS3.3 C.17.3): one constructor per value type, each returning the
//! sequence item with its relationship, concept name and value. Children are attached by
//! the caller with `with`.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::codes::Code;
use crate::dicom::dataset::{code_item, DatasetBuilder};

/// Relationship of a content item to its parent.
#[derive(Debug, Clone, Copy)]
pub enum Rel {
    Contains,
    HasObsContext,
    HasConceptMod,
    InferredFrom,
    SelectedFrom,
}

impl Rel {
    fn cs(self) -> &'static str {
        match self {
            Rel::Contains => "CONTAINS",
            Rel::HasObsContext => "HAS OBS CONTEXT",
            Rel::HasConceptMod => "HAS CONCEPT MOD",
            Rel::InferredFrom => "INFERRED FROM",
            Rel::SelectedFrom => "SELECTED FROM",
        }
    }
}

/// One content item under construction.
pub struct Item(DatasetBuilder);

pub fn coded(c: Code) -> InMemDicomObject {
    code_item(c.value, c.scheme, c.meaning)
}

fn item(rel: Rel, value_type: &str, name: Option<Code>) -> Item {
    let mut h = DatasetBuilder::new();
    h.str(tags::RELATIONSHIP_TYPE, VR::CS, rel.cs())
        .str(tags::VALUE_TYPE, VR::CS, value_type);
    if let Some(name) = name {
        h.seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![coded(name)]);
    }
    Item(h)
}

impl Item {
    /// Attach children (ContentSequence).
    pub fn with(mut self, children: Vec<Item>) -> Item {
        if !children.is_empty() {
            self.0.seq(
                tags::CONTENT_SEQUENCE,
                children.into_iter().map(Item::into_inner).collect(),
            );
        }
        self
    }

    pub fn into_inner(self) -> InMemDicomObject {
        self.0 .0
    }
}

pub fn container(rel: Rel, name: Code) -> Item {
    let mut i = item(rel, "CONTAINER", Some(name));
    i.0.str(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    i
}

pub fn code(rel: Rel, name: Code, value: Code) -> Item {
    let mut i = item(rel, "CODE", Some(name));
    i.0.seq(tags::CONCEPT_CODE_SEQUENCE, vec![coded(value)]);
    i
}

/// A CODE item whose value is an existing code sequence item (copied from the source).
pub fn code_copied(rel: Rel, name: Code, value: InMemDicomObject) -> Item {
    let mut i = item(rel, "CODE", Some(name));
    i.0.seq(tags::CONCEPT_CODE_SEQUENCE, vec![value]);
    i
}

pub fn text(rel: Rel, name: Code, value: &str) -> Item {
    let mut i = item(rel, "TEXT", Some(name));
    i.0.str(tags::TEXT_VALUE, VR::UT, value);
    i
}

pub fn uidref(rel: Rel, name: Code, uid: &str) -> Item {
    let mut i = item(rel, "UIDREF", Some(name));
    i.0.str(tags::UID, VR::UI, uid);
    i
}

/// A decimal string of at most 16 characters (the DS limit); exponent form for
/// magnitudes that need it. Callers keep non-finite values out.
pub fn ds(value: f64) -> String {
    for decimals in (0..=6).rev() {
        let s = format!("{value:.decimals$}");
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{value:.6e}")
}

pub fn num(rel: Rel, name: Code, value: f64, unit: Code) -> Item {
    let mut i = item(rel, "NUM", Some(name));
    let mut mv = DatasetBuilder::new();
    mv.str(tags::NUMERIC_VALUE, VR::DS, &ds(value))
        .seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![coded(unit)]);
    i.0.seq(tags::MEASURED_VALUE_SEQUENCE, vec![mv.0]);
    i
}

/// A reference to a source image (optionally without a concept name, as in the image
/// library and under SCOORD).
pub fn image(rel: Rel, name: Option<Code>, sop_class: &str, sop_instance: &str) -> Item {
    let mut i = item(rel, "IMAGE", name);
    let mut r = DatasetBuilder::new();
    r.str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class)
        .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance);
    i.0.seq(tags::REFERENCED_SOP_SEQUENCE, vec![r.0]);
    i
}

/// A closed 2D polyline in image pixel coordinates (column, row), first point repeated
/// last; its child names the image it was drawn on.
pub fn polygon(rel: Rel, name: Code, points: &[(f32, f32)]) -> Item {
    let mut i = item(rel, "SCOORD", Some(name));
    let mut data: Vec<f32> = points.iter().flat_map(|(x, y)| [*x, *y]).collect();
    if let Some((x, y)) = points.first() {
        data.extend([*x, *y]);
    }
    i.0 .0.put(DataElement::new(
        tags::GRAPHIC_DATA,
        VR::FL,
        PrimitiveValue::F32(data.into()),
    ));
    i.0.str(tags::GRAPHIC_TYPE, VR::CS, "POLYLINE");
    i
}
