//! Every coded concept osteoscreen writes, with its scheme and where it was checked.
//!
//! Sources:
//! - [PS3.16] DICOM PS3.16 Content Mapping Resource (DCM codes, TID 1500/1501/300/4019, CID
//!   7602 vertebral structures, CID 222 normality, CID 7005, CID 10005, CID 12101), as
//!   generated into pydicom's `src/pydicom/sr/_concepts_dict.py` (pydicom main, commit
//!   fb1f24e4f0, read 2026-11-23) and used by highdicom and dcmjs (REFERENCES.md, "SR
//!   content").
//! - [SCT-ext] SNOMED CT concepts outside PS3.16, confirmed in several independent public
//!   terminology users (FHIR resources, radiology code maps) on 2026-11-23.
//! - [LOINC] LOINC DXA codes, as REFERENCES.md lists them (38263-0, the femur T-score, is
//!   deliberately not used).

/// A coded concept: (Code Value, Coding Scheme Designator, Code Meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

const fn code(value: &'static str, scheme: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme,
        meaning,
    }
}

// Document structure [PS3.16 TID 1500].
pub const IMAGING_MEASUREMENT_REPORT: Code = code("126000", "DCM", "Imaging Measurement Report");
pub const LANGUAGE: Code = code("121049", "DCM", "Language of Content Item and Descendants");
pub const ENGLISH_US: Code = code("en-US", "RFC5646", "English (United States)");
pub const PROCEDURE_REPORTED: Code = code("121058", "DCM", "Procedure reported");
pub const IMAGE_LIBRARY: Code = code("111028", "DCM", "Image Library");
pub const IMAGE_LIBRARY_GROUP: Code = code("126200", "DCM", "Image Library Group");
pub const IMAGING_MEASUREMENTS: Code = code("126010", "DCM", "Imaging Measurements");
pub const MEASUREMENT_GROUP: Code = code("125007", "DCM", "Measurement Group");
/// TID 1500's "Qualitative Evaluations" container (a UMLS concept; 126011 is "Derived
/// Imaging Measurements", not this).
pub const QUALITATIVE_EVALUATIONS: Code = code("C0034375", "UMLS", "Qualitative Evaluations");

/// Free-text explanation items [PS3.16 CID 12101, in pydicom's concepts].
pub const COMMENT: Code = code("121106", "DCM", "Comment");

// Observer context [PS3.16 TID 1002/1004].
pub const OBSERVER_TYPE: Code = code("121005", "DCM", "Observer Type");
pub const DEVICE: Code = code("121007", "DCM", "Device");
pub const DEVICE_OBSERVER_UID: Code = code("121012", "DCM", "Device Observer UID");
pub const DEVICE_OBSERVER_NAME: Code = code("121013", "DCM", "Device Observer Name");
pub const DEVICE_OBSERVER_MANUFACTURER: Code =
    code("121014", "DCM", "Device Observer Manufacturer");
pub const DEVICE_OBSERVER_MODEL_NAME: Code = code("121015", "DCM", "Device Observer Model Name");

// Measurement group [PS3.16 TID 1501, TID 4108, TID 300].
pub const TRACKING_IDENTIFIER: Code = code("112039", "DCM", "Tracking Identifier");
pub const TRACKING_UID: Code = code("112040", "DCM", "Tracking Unique Identifier");
pub const FINDING_SITE: Code = code("363698007", "SCT", "Finding Site");
pub const FINDING: Code = code("121071", "DCM", "Finding");
pub const SOURCE_OF_MEASUREMENT: Code = code("121112", "DCM", "Source of Measurement");
pub const IMAGE_REGION: Code = code("111030", "DCM", "Image Region");
pub const DERIVATION: Code = code("121401", "DCM", "Derivation");
pub const MEAN: Code = code("373098007", "SCT", "Mean");
/// Not 260997005 (a different concept), REFERENCES.md.
pub const MEDIAN: Code = code("373099004", "SCT", "Median");

// Algorithm identification [PS3.16 TID 4019].
pub const ALGORITHM_NAME: Code = code("111001", "DCM", "Algorithm Name");
pub const ALGORITHM_VERSION: Code = code("111003", "DCM", "Algorithm Version");
pub const ALGORITHM_FAMILY: Code = code("111000", "DCM", "Algorithm Family");
pub const ARTIFICIAL_INTELLIGENCE: Code = code("123110", "DCM", "Artificial Intelligence");
pub const ALGORITHM_PARAMETERS: Code = code("111002", "DCM", "Algorithm Parameters");
/// [highdicom's TID 4019 template].
pub const ALGORITHM_MANUFACTURER: Code = code("122405", "DCM", "Algorithm Manufacturer");

// Sites [PS3.16 CID 7602 "Vertebral Anatomic Structure"; CID 4 for the lumbar spine].
pub const LUMBAR_SPINE: Code = code("122496007", "SCT", "Lumbar spine");
pub const L1: Code = code("66794005", "SCT", "L1 vertebra");
pub const L2: Code = code("14293000", "SCT", "L2 vertebra");
pub const L3: Code = code("36470004", "SCT", "L3 vertebra");
pub const L4: Code = code("11994002", "SCT", "L4 vertebra");
pub const L5: Code = code("49668003", "SCT", "L5 vertebra");

/// The SNOMED CT site of a lumbar level name ("L1".."L5"); T12 and unlabelled bodies
/// have none here.
pub fn vertebra(level: &str) -> Option<Code> {
    match level {
        "L1" => Some(L1),
        "L2" => Some(L2),
        "L3" => Some(L3),
        "L4" => Some(L4),
        "L5" => Some(L5),
        _ => None,
    }
}

// Findings [SCT-ext for osteoporosis / osteopenia; PS3.16 CID 222 for normal].
pub const OSTEOPOROSIS: Code = code("64859006", "SCT", "Osteoporosis");
pub const OSTEOPENIA: Code = code("312894000", "SCT", "Osteopenia");
pub const NORMAL: Code = code("17621005", "SCT", "Normal");

// Measurements [LOINC DXA codes: ours are estimates, which the algorithm items say].
pub const LUMBAR_BMD: Code = code("24966-4", "LN", "DXA Lumbar spine [Mass/Area] Bone density");
pub const LUMBAR_T_SCORE: Code = code("38267-1", "LN", "DXA Lumbar spine [T-score] Bone density");
/// [PS3.16] CT attenuation (REFERENCES.md).
pub const ATTENUATION: Code = code("112031", "DCM", "Attenuation Coefficient");
/// The model's probability of each class [UMLS C0033204 "Probability (Qualitative
/// Concept)", confirmed in a FHIR value set and MetaMap data, 2026-11-23].
pub const PROBABILITY: Code = code("C0033204", "UMLS", "Probability");

// Units [UCUM].
pub const UNIT_G_CM2: Code = code("g/cm2", "UCUM", "gram per square centimeter");
pub const UNIT_T_SCORE: Code = code("{T-score}", "UCUM", "T-score");
pub const UNIT_HU: Code = code("[hnsf'U]", "UCUM", "Hounsfield unit");
pub const UNIT_RATIO: Code = code("1", "UCUM", "no units");

/// ContributingEquipmentSequence's purpose [PS3.16 CID 7005, in pydicom's concepts].
pub const PROCESSING_EQUIPMENT: Code = code("109102", "DCM", "Processing Equipment");

// Procedures, used when the source study carries no ProcedureCodeSequence [PS3.16 CID
// 10005, in pydicom's concepts].
pub const CT_PROCEDURE: Code = code("77477000", "SCT", "Computed tomography");
pub const RADIOGRAPHY_PROCEDURE: Code = code("168537006", "SCT", "Plain radiography");
