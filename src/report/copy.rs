//! The patient and study attributes our objects copy from the source study, cleaned on
//! the way. The source's values come from a peer: as sent they could make our objects
//! invalid (another VR, too long, several values, characters the VR does not allow) or
//! garbled under our UTF-8 Specific Character Set (ISO 2022 code extensions the reader
//! did not decode, bytes its declared character set could not decode). Each attribute is
//! rebuilt from its text with the VR the standard gives it; a value that cannot be
//! rescued is written empty, which the Patient and General Study modules allow.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::content::ds;
use crate::dicom::dataset::{code_item, DatasetBuilder};
use crate::dicom::text::unpad;

/// What is copied, and how each is cleaned.
#[derive(Clone, Copy)]
enum Kind {
    /// Free text (PN, LO, SH) of at most this many characters.
    Text(usize),
    /// An identifier (LO, SH) of at most this many characters: a backslash (a second
    /// value, or a byte its character set could not decode) ends it, so a mangled one
    /// is cut short rather than turned into another identifier.
    Id(usize),
    Date,
    Time,
    Sex,
    Age,
    Decimal,
    /// Checked before a report is built (`Source::read`).
    Uid,
}

/// Patient and study attributes copied into our objects, with their VR.
const COPIED: [(Tag, VR, Kind); 13] = [
    (tags::PATIENT_NAME, VR::PN, Kind::Text(64)),
    (tags::PATIENT_ID, VR::LO, Kind::Id(64)),
    (tags::PATIENT_BIRTH_DATE, VR::DA, Kind::Date),
    (tags::PATIENT_SEX, VR::CS, Kind::Sex),
    (tags::STUDY_INSTANCE_UID, VR::UI, Kind::Uid),
    (tags::STUDY_DATE, VR::DA, Kind::Date),
    (tags::STUDY_TIME, VR::TM, Kind::Time),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN, Kind::Text(64)),
    (tags::STUDY_ID, VR::SH, Kind::Id(16)),
    (tags::ACCESSION_NUMBER, VR::SH, Kind::Id(16)),
    (tags::STUDY_DESCRIPTION, VR::LO, Kind::Text(64)),
    (tags::PATIENT_AGE, VR::AS, Kind::Age),
    (tags::PATIENT_WEIGHT, VR::DS, Kind::Decimal),
];

/// Copy the patient and study attributes from `source`, cleaned; those it lacks, or
/// whose value cannot be used, are written empty.
pub fn copy_study(h: &mut DatasetBuilder, source: &InMemDicomObject) {
    for (tag, vr, kind) in COPIED {
        let value = raw_text(source, tag).map_or_else(String::new, |raw| clean(&raw, kind));
        h.str(tag, vr, &value);
    }
}

/// The source's procedure codes, each rebuilt from its three text fields; items lacking
/// one of them (or too long for its VR) are left out.
pub fn procedure_codes(source: &InMemDicomObject) -> Vec<InMemDicomObject> {
    let Some(items) = source
        .get(tags::PROCEDURE_CODE_SEQUENCE)
        .and_then(|e| e.items())
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let field = |tag, max| {
                let raw = raw_text(item, tag)?;
                let value = clean(&raw, Kind::Text(usize::MAX));
                (!value.is_empty() && value.chars().count() <= max).then_some(value)
            };
            Some(code_item(
                &field(tags::CODE_VALUE, 16)?,
                &field(tags::CODING_SCHEME_DESIGNATOR, 16)?,
                &field(tags::CODE_MEANING, 64)?,
            ))
        })
        .collect()
}

/// The element's value as text, when it holds text at all (a sequence or binary value
/// sent under one of these tags is treated as absent).
fn raw_text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let textual = matches!(
        e.vr(),
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UI
            | VR::UT
    );
    if !textual {
        return None;
    }
    e.value().to_str().ok().map(|s| s.into_owned())
}

fn clean(raw: &str, kind: Kind) -> String {
    // Only text holds characters a decoder could have failed on; in dates and numbers a
    // backslash before digits is a second value.
    let text = first_value(raw, matches!(kind, Kind::Text(_)));
    let value = unpad(&text);
    match kind {
        Kind::Text(max) | Kind::Id(max) => {
            value.chars().take(max).collect::<String>().trim().into()
        }
        Kind::Uid => value.into(),
        Kind::Date => date(value).unwrap_or_default(),
        Kind::Time => time(value).unwrap_or_default(),
        Kind::Sex => match value.to_ascii_uppercase().as_str() {
            s @ ("M" | "F" | "O") => s.into(),
            _ => String::new(),
        },
        Kind::Age => {
            let b = value.as_bytes();
            let ok = b.len() == 4
                && b[..3].iter().all(u8::is_ascii_digit)
                && matches!(b[3], b'D' | b'W' | b'M' | b'Y');
            if ok {
                value.into()
            } else {
                String::new()
            }
        }
        Kind::Decimal => match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v < 1e6 => {
                let shortest = v.to_string();
                if shortest.len() <= 16 {
                    shortest
                } else {
                    ds(v)
                }
            }
            _ => String::new(),
        },
    }
}

/// The first value of `raw`, as text our UTF-8 objects can carry:
/// - an ISO 2022 escape the reader left undecoded ends it (before it, text is in the
///   default repertoire: a name's alphabetic group, "Yamada^Tarou=" becomes
///   "Yamada^Tarou");
/// - in text (`undecoded`), a byte the declared character set could not decode (which
///   the reader writes as a backslash and three octal digits) becomes '?' rather than a
///   value separator;
/// - a backslash ends it (these attributes hold one value);
/// - other control characters are dropped.
fn first_value(raw: &str, undecoded: bool) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut escaped = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\u{1b}' {
            escaped = true;
            break;
        }
        if c == '\\' {
            let octal = undecoded
                && chars
                    .get(i + 1..i + 4)
                    .is_some_and(|d| d.iter().all(|c| ('0'..='7').contains(c)) && d[0] <= '3');
            if !octal {
                break;
            }
            out.push('?');
            i += 4;
            continue;
        }
        if !c.is_control() {
            out.push(c);
        }
        i += 1;
    }
    if escaped {
        // The component groups that followed are gone: drop their separators.
        let kept = out.trim_end_matches(['=', ' ']).len();
        out.truncate(kept);
    }
    out
}

/// DA: YYYYMMDD (the ACR-NEMA form YYYY.MM.DD is rewritten), with a plausible month and
/// day.
fn date(value: &str) -> Option<String> {
    let digits: String = if value.len() == 10 && value.as_bytes()[4] == b'.' {
        value.replace('.', "")
    } else {
        value.into()
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..8].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(digits)
}

/// TM: HH[MM[SS[.F{1,6}]]] (the ACR-NEMA form with colons is rewritten).
fn time(value: &str) -> Option<String> {
    let value = value.replace(':', "");
    let (whole, fraction) = match value.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (value.as_str(), None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !matches!(whole.len(), 2 | 4 | 6) || !digits(whole) {
        return None;
    }
    if let Some(f) = fraction {
        if whole.len() != 6 || f.is_empty() || f.len() > 6 || !digits(f) {
            return None;
        }
    }
    let limits = [24, 60, 61];
    for (k, limit) in limits.iter().enumerate().take(whole.len() / 2) {
        let part: u32 = whole[2 * k..2 * k + 2].parse().ok()?;
        if part >= *limit {
            return None;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_first_value_in_our_repertoire() {
        let name = |raw| clean(raw, Kind::Text(64));
        assert_eq!(name("Doe^Jane"), "Doe^Jane");
        assert_eq!(name("Müller^Eva"), "Müller^Eva");
        // ISO 2022: the ideographic groups the reader left encoded are dropped.
        assert_eq!(
            name("Yamada^Tarou=\u{1b}$B;3ED\u{1b}(B^\u{1b}$BB@O:"),
            "Yamada^Tarou"
        );
        assert_eq!(name("\u{1b}$)C\u{1b}$)C"), "");
        // A byte the declared set could not decode, as dicom-rs reports it.
        assert_eq!(name("M\\374ller^Eva"), "M?ller^Eva");
        assert_eq!(name("Doe^Jane\\Roe^Richard"), "Doe^Jane");
        assert_eq!(name("Doe\r\n^Jane\t"), "Doe^Jane");
        assert_eq!(name(&"x".repeat(300)).len(), 64);
        // Identifiers are cut, never rewritten into another one.
        assert_eq!(clean("12345\\01234", Kind::Id(64)), "12345");
        assert_eq!(
            clean("ACC-2024-000123456", Kind::Id(16)),
            "ACC-2024-0001234"
        );
    }

    #[test]
    fn dates_times_and_numbers_must_have_their_vr_form() {
        assert_eq!(clean("20240131", Kind::Date), "20240131");
        assert_eq!(clean("2024.01.31", Kind::Date), "20240131");
        for bad in ["2024年1月1日", "20241301", "2024013", "2024-01-01", ""] {
            assert_eq!(clean(bad, Kind::Date), "", "{bad}");
        }
        assert_eq!(clean("20240101\\20240102", Kind::Date), "20240101");
        assert_eq!(clean("101500", Kind::Time), "101500");
        assert_eq!(clean("101500.123", Kind::Time), "101500.123");
        assert_eq!(clean("10:15:00", Kind::Time), "101500");
        for bad in ["2500", "10h15", "1015.5", "101500.1234567", "1"] {
            assert_eq!(clean(bad, Kind::Time), "", "{bad}");
        }
        assert_eq!(clean("f", Kind::Sex), "F");
        assert_eq!(clean("female", Kind::Sex), "");
        assert_eq!(clean("045Y", Kind::Age), "045Y");
        assert_eq!(clean("45", Kind::Age), "");
        assert_eq!(clean(" 72.5 ", Kind::Decimal), "72.5");
        for bad in ["NaN", "inf", "-3", "72€", "1e300"] {
            assert_eq!(clean(bad, Kind::Decimal), "", "{bad}");
        }
    }

    #[test]
    fn procedure_codes_are_rebuilt_and_incomplete_ones_dropped() {
        let mut good = code_item("RPID20", "RADLEX", "XR LUMBAR SPINE 2 VIEWS");
        good.put(dicom_core::DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            dicom_core::PrimitiveValue::from("ISO_IR 144"),
        ));
        let incomplete = code_item("X1", "", "no scheme");
        let mut source = DatasetBuilder::new();
        source.seq(
            tags::PROCEDURE_CODE_SEQUENCE,
            vec![good, incomplete, InMemDicomObject::new_empty()],
        );
        let codes = procedure_codes(&source.0);
        assert_eq!(codes.len(), 1);
        // Only the three fields: no character set switch inside our SR.
        assert!(codes[0].get(tags::SPECIFIC_CHARACTER_SET).is_none());
        assert_eq!(crate::dicom::text(&codes[0], tags::CODE_VALUE), "RPID20");
    }

    #[test]
    fn a_sequence_or_binary_value_under_a_copied_tag_is_written_empty() {
        let mut source = DatasetBuilder::new();
        source.seq(tags::PATIENT_NAME, vec![InMemDicomObject::new_empty()]);
        source.str(tags::PATIENT_ID, VR::SH, "ID\u{7}42");
        let mut out = DatasetBuilder::new();
        copy_study(&mut out, &source.0);
        let name = out.0.get(tags::PATIENT_NAME).unwrap();
        assert_eq!(name.vr(), VR::PN);
        assert_eq!(crate::dicom::text(&out.0, tags::PATIENT_NAME), "");
        assert_eq!(crate::dicom::text(&out.0, tags::PATIENT_ID), "ID42");
        assert_eq!(out.0.get(tags::PATIENT_ID).unwrap().vr(), VR::LO);
    }
}
