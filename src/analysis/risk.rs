//! Clinical risk from the header: the Osteoporosis Self-assessment Tool (OST / OSTA),
//! 0.2 x (weight kg - age years), truncated to an integer; bands high < -4, moderate
//! -4..-1, low > -1 (REFERENCES.md). Missing or implausible inputs give "unknown".

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub use super::finding::{Risk, RiskBand};
use crate::dicom::text::text_opt;

/// OST from age and weight (both already checked plausible).
pub fn ost(age_years: f64, weight_kg: f64) -> (i32, RiskBand) {
    let index = (0.2 * (weight_kg - age_years)).trunc() as i32;
    let band = if index < -4 {
        RiskBand::High
    } else if index <= -1 {
        RiskBand::Moderate
    } else {
        RiskBand::Low
    };
    (index, band)
}

/// Age in years from PatientAge ("067Y", "030M", ...), or from PatientBirthDate and
/// StudyDate; None when absent or implausible ("000Y", future birth dates).
pub fn age_years(obj: &InMemDicomObject) -> Option<f64> {
    let text = |tag| text_opt(obj, tag).filter(|s| !s.is_empty());
    let from_as = text(tags::PATIENT_AGE).and_then(|s| {
        if s.len() != 4 {
            return None;
        }
        let n: f64 = s[..3].parse().ok()?;
        match &s[3..] {
            "Y" => Some(n),
            "M" => Some(n / 12.0),
            "W" => Some(n / 52.18),
            "D" => Some(n / 365.25),
            _ => None,
        }
    });
    let from_dates = || {
        let date = |s: String| chrono::NaiveDate::parse_from_str(&s, "%Y%m%d").ok();
        let birth = date(text(tags::PATIENT_BIRTH_DATE)?)?;
        let study = date(text(tags::STUDY_DATE)?)?;
        Some((study - birth).num_days() as f64 / 365.25)
    };
    from_as
        .or_else(from_dates)
        .filter(|a| (1.0..=120.0).contains(a))
}

/// OST from the header's PatientAge (or birth/study dates) and PatientWeight.
pub fn from_header(obj: &InMemDicomObject) -> Risk {
    let Some(age) = age_years(obj) else {
        return Risk::Unknown {
            reason: "patient age missing or implausible".into(),
        };
    };
    let weight = obj
        .get(tags::PATIENT_WEIGHT)
        .and_then(|e| e.value().to_float64().ok())
        .filter(|w| (20.0..=300.0).contains(w));
    let Some(weight) = weight else {
        return Risk::Unknown {
            reason: "patient weight missing or implausible".into(),
        };
    };
    if age < 18.0 {
        return Risk::Unknown {
            reason: "OST is defined for adults".into(),
        };
    }
    let (index, band) = ost(age, weight);
    Risk::Known {
        index,
        band,
        age_years: age,
        weight_kg: weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn obj(pairs: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(
            pairs
                .iter()
                .map(|(t, vr, v)| DataElement::new(*t, *vr, PrimitiveValue::from(*v))),
        )
    }

    #[test]
    fn ost_bands() {
        assert_eq!(ost(75.0, 50.0), (-5, RiskBand::High));
        assert_eq!(ost(70.0, 60.0), (-2, RiskBand::Moderate));
        assert_eq!(ost(60.0, 58.0), (0, RiskBand::Low));
        assert_eq!(ost(64.0, 60.0).0, 0, "truncated toward zero: -0.8 -> 0");
        assert_eq!(ost(80.0, 60.0), (-4, RiskBand::Moderate));
    }

    #[test]
    fn header_inputs() {
        let o = obj(&[
            (tags::PATIENT_AGE, VR::AS, "072Y"),
            (tags::PATIENT_WEIGHT, VR::DS, "51"),
        ]);
        assert!(matches!(
            from_header(&o),
            Risk::Known {
                index: -4,
                band: RiskBand::Moderate,
                ..
            }
        ));
        let o = obj(&[
            (tags::PATIENT_BIRTH_DATE, VR::DA, "19500601"),
            (tags::STUDY_DATE, VR::DA, "20250601"),
            (tags::PATIENT_WEIGHT, VR::DS, "50"),
        ]);
        assert!(matches!(
            from_header(&o),
            Risk::Known {
                index: -5,
                band: RiskBand::High,
                ..
            }
        ));
        for (age, weight) in [("000Y", "60"), ("070Y", "0"), ("", "60"), ("070Y", "")] {
            let o = obj(&[
                (tags::PATIENT_AGE, VR::AS, age),
                (tags::PATIENT_WEIGHT, VR::DS, weight),
            ]);
            assert!(
                matches!(from_header(&o), Risk::Unknown { .. }),
                "{age} {weight}"
            );
        }
    }
}
