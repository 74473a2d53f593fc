//! Clinical risk from the header: the Osteoporosis Self-assessment Tool (OST / OSTA),
//! 0.2 x (weight kg - age years), truncated to an integer; bands high < -4, moderate
//! -4..-1, low > -1 (REFERENCES.md). Missing or implausible inputs give "unknown".
//! Optionally also a fitted model (`RiskModel`, made by `osteoscreen train-risk` on a
//! tabular DXA dataset): multinomial logistic regression on sex, age, weight, height, BMI
//! and years since menopause.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub use super::finding::{FittedRisk, Risk, RiskBand};
use crate::dicom::text::text_opt;
use crate::model::logistic;

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
        // Byte slicing below: only plain ASCII "nnnU" is an age string.
        if s.len() != 4 || !s.is_ascii() {
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
    from_as.or_else(from_dates).and_then(plausible_age)
}

/// An age in years that can be a patient's (1-120); None otherwise (NaN included).
pub fn plausible_age(years: f64) -> Option<f64> {
    (1.0..=120.0).contains(&years).then_some(years)
}

/// The fitted model's inputs, in this order.
pub const FEATURES: [&str; 6] = [
    "female",
    "age_years",
    "weight_kg",
    "height_m",
    "bmi",
    "menopause_years",
];

/// A fitted multinomial logistic model of the WHO class, as `train-risk` writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RiskModel {
    pub name: String,
    /// Must equal `FEATURES`.
    pub features: Vec<String>,
    /// Standardisation (and imputation: a missing input counts as the mean).
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Per class (normal, osteopenia, osteoporosis): one weight per feature, then the
    /// intercept.
    pub coefficients: Vec<Vec<f64>>,
    pub trained_on: String,
    /// Held-out comparison with OST, as `train-risk` measured it.
    pub evaluation: serde_json::Value,
}

/// Why a risk model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RiskModelError {
    #[error("{path}: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

impl RiskModel {
    pub fn load(path: &std::path::Path) -> Result<RiskModel, RiskModelError> {
        let invalid = |message: String| RiskModelError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let m: RiskModel = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let n = FEATURES.len();
        if m.features != FEATURES
            || m.mean.len() != n
            || m.sd.len() != n
            || m.coefficients.len() != 3
            || m.coefficients.iter().any(|c| c.len() != n + 1)
        {
            return Err(invalid(format!(
                "not a risk model for the features {FEATURES:?} with 3 classes"
            )));
        }
        Ok(m)
    }

    /// Class probabilities; `x[i]` None is imputed with the mean.
    pub fn predict(&self, x: &[Option<f64>; 6]) -> [f64; 3] {
        let z: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v.map_or(0.0, |v| (v - self.mean[i]) / self.sd[i].max(1e-9)))
            .collect();
        logistic::predict(&self.coefficients, &z)
    }
}

/// OST from the header, plus the fitted model's estimate when one is given.
pub fn from_header_with(obj: &InMemDicomObject, model: Option<&RiskModel>) -> Risk {
    let mut risk = from_header(obj);
    if let (
        Risk::Known {
            fitted,
            age_years,
            weight_kg,
            ..
        },
        Some(m),
    ) = (&mut risk, model)
    {
        let sex = text_opt(obj, tags::PATIENT_SEX).map(|s| s.trim().to_string());
        let female = match sex.as_deref() {
            Some("F") => Some(1.0),
            Some("M") => Some(0.0),
            _ => None,
        };
        let height = obj
            .get(tags::PATIENT_SIZE)
            .and_then(|e| e.value().to_float64().ok())
            .filter(|h| (0.8..=2.5).contains(h));
        let bmi = height.map(|h| *weight_kg / (h * h));
        let x = [
            female,
            Some(*age_years),
            Some(*weight_kg),
            height,
            bmi,
            None,
        ];
        let imputed = FEATURES
            .iter()
            .zip(&x)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n.to_string())
            .collect();
        *fitted = Some(FittedRisk {
            model: m.name.clone(),
            probabilities: m.predict(&x),
            imputed,
        });
    }
    risk
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
        fitted: None,
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
        for (age, weight) in [
            ("000Y", "60"),
            ("070Y", "0"),
            ("", "60"),
            ("070Y", ""),
            // Not ASCII: four bytes, but a byte index would fall inside 'é'.
            ("12é", "60"),
            ("é12Y", "60"),
        ] {
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
