//! Selection: which instances of a study can be analysed, and why the others cannot.
//! Header facts only (`header`); the rules are the operator's (`[selection]`).
//!
//! - Lumbar radiographs: CR/DX with lumbar evidence (BodyPartExamined, the Anatomic Region
//!   Sequence, or a lumbar term in a description, any of several languages), or with no
//!   anatomy in the headers at all when the rules allow; the view from ViewPosition, the
//!   View Code Sequence, the descriptions, else PatientOrientation.
//! - CT: axial, not a localizer, slices within the thickness range, enough of them, a body
//!   part that can contain the lumbar spine, not a lung kernel. The series with most slices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::finding::View;
pub use super::header::{read_headers, InstanceInfo};

/// The selection rules (`[selection]` in the config file). Text matches ignore case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// BodyPartExamined values that make a CR/DX lumbar.
    pub lumbar_body_parts: Vec<String>,
    /// Fragments that, found in a description, make a CR/DX lumbar.
    pub lumbar_terms: Vec<String>,
    /// Whole words of a description that name a frontal view (dots removed: "a.p." is "ap").
    pub frontal_terms: Vec<String>,
    /// Whole words of a description that name a lateral view.
    pub lateral_terms: Vec<String>,
    /// Whole words that exclude a radiograph (views the model was not made for).
    pub excluded_view_terms: Vec<String>,
    /// Analyse (and flag) a CR/DX series whose headers name no anatomy at all: no
    /// BodyPartExamined, Anatomic Region Sequence or description. The PACS sent it here.
    pub radiographs_without_anatomy: bool,
    pub ct_min_slice_mm: f64,
    pub ct_max_slice_mm: f64,
    pub ct_min_slices: usize,
    /// CT BodyPartExamined values that cannot contain the lumbar spine.
    pub ct_excluded_body_parts: Vec<String>,
    /// Fragments of ConvolutionKernel that exclude a CT series (lung reconstructions).
    pub ct_excluded_kernel_terms: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            lumbar_body_parts: strings(&[
                "LSPINE",
                "LUMBAR",
                "L-SPINE",
                "SPINE",
                "LSSPINE",
                "LUMBOSACRAL",
                "TLSPINE",
            ]),
            // English/Spanish/Italian/Portuguese "lumb", French/Italian "lomb", German
            // "LWS"/"Lendenwirbel", Dutch "LWK"/"lendenwervel", Swedish "ländrygg".
            lumbar_terms: strings(&[
                "lumb",
                "lomb",
                "lws",
                "lendenwirbel",
                "lwk",
                "lendenwervel",
                "ländrygg",
                "l-spine",
                "l spine",
                "lspine",
                "ls-spine",
            ]),
            frontal_terms: strings(&[
                "ap",
                "pa",
                "frontal",
                "anteroposterior",
                "posteroanterior",
                "ventrodorsal",
                "dorsoventral",
                "face",
            ]),
            lateral_terms: strings(&[
                "lat", "lateral", "ll", "rl", "seitlich", "sagittal", "profil", "lateraal",
            ]),
            excluded_view_terms: strings(&["obl", "oblique", "schräg", "functional"]),
            radiographs_without_anatomy: true,
            ct_min_slice_mm: 0.5,
            ct_max_slice_mm: 5.0,
            ct_min_slices: 5,
            ct_excluded_body_parts: strings(&[
                "HEAD",
                "BRAIN",
                "SKULL",
                "NECK",
                "CSPINE",
                "EXTREMITY",
                "ARM",
                "HAND",
                "WRIST",
                "ELBOW",
                "SHOULDER",
                "KNEE",
                "LEG",
                "ANKLE",
                "FOOT",
            ]),
            ct_excluded_kernel_terms: strings(&["LUNG", "PULMO"]),
        }
    }
}

impl Rules {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ct_min_slice_mm > 0.0 && self.ct_min_slice_mm <= self.ct_max_slice_mm) {
            return Err("ct_min_slice_mm must be > 0 and <= ct_max_slice_mm".into());
        }
        if self.ct_min_slices == 0 {
            return Err("ct_min_slices must be at least 1".into());
        }
        Ok(())
    }

    /// Lumbar evidence: a listed body part, a lumbar code, or a lumbar term in the free
    /// text (body parts are free text too at many sites: "LUMBAR SPINE", "L SPINE").
    fn is_lumbar(&self, i: &InstanceInfo) -> bool {
        let text = [&i.body_part, &i.anatomy, &i.description].map(|t| t.to_lowercase());
        self.lumbar_body_parts
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&i.body_part))
            || i.anatomy
                .split_whitespace()
                .any(|w| LUMBAR_CODES.contains(&w))
            || self.lumbar_terms.iter().any(|t| {
                let t = t.to_lowercase();
                !t.is_empty() && text.iter().any(|x| x.contains(&t))
            })
    }

    /// The view, or None when the image is of a view we exclude.
    fn view(&self, i: &InstanceInfo) -> Option<View> {
        let (described, coded) = (words(&i.description), words(&i.view_code));
        let has = |terms: &[String]| any_word(&described, terms);
        if has(&self.excluded_view_terms) || any_word(&coded, &self.excluded_view_terms) {
            return None;
        }
        if let Some(v) = view_from_position(&i.view_position) {
            return Some(v);
        }
        if let Some(v) = view_from_code(&i.view_code) {
            return Some(v);
        }
        match (has(&self.frontal_terms), has(&self.lateral_terms)) {
            (true, false) => Some(View::Frontal),
            (false, true) => Some(View::Lateral),
            _ => Some(view_from_orientation(&i.patient_orientation).unwrap_or(View::Unknown)),
        }
    }
}

/// Lumbar spine in SNOMED CT and its older SNOMED-RT code (DICOM CID 4031).
const LUMBAR_CODES: [&str; 2] = ["122496007", "T-11503"];
/// DX views (CID 4010): frontal, antero-posterior and postero-anterior...
const FRONTAL_CODES: [&str; 6] = [
    "399033003",
    "R-10202",
    "399348003",
    "R-10206",
    "272479007",
    "R-10214",
];
/// ...and lateral, right lateral, left lateral.
const LATERAL_CODES: [&str; 5] = ["399067008", "399198007", "R-10232", "399173006", "R-10236"];

/// The view a View Position (0018,5101) value names, if any.
pub fn view_from_position(position: &str) -> Option<View> {
    match position.to_ascii_uppercase().as_str() {
        "AP" | "PA" => Some(View::Frontal),
        "LL" | "RL" | "LAT" | "LATERAL" => Some(View::Lateral),
        _ => None,
    }
}

/// The view a View Code Sequence names, by code or by meaning.
fn view_from_code(code: &str) -> Option<View> {
    let ws: Vec<&str> = code.split_whitespace().collect();
    let joined: String = code
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    if ws.iter().any(|w| FRONTAL_CODES.contains(w))
        || ["anteroposterior", "posteroanterior", "frontal"]
            .iter()
            .any(|t| joined.contains(t))
    {
        Some(View::Frontal)
    } else if ws.iter().any(|w| LATERAL_CODES.contains(w))
        || joined.contains("lateral")
        || joined.contains("sagittal")
    {
        Some(View::Lateral)
    } else {
        None
    }
}

/// The view PatientOrientation implies for an upright spine image (columns running to
/// the feet or head): rows running left-right are a frontal view, front-back a lateral.
fn view_from_orientation(orientation: &str) -> Option<View> {
    let mut parts = orientation.split('\\');
    let (rows, cols) = (parts.next()?.chars().next()?, parts.next()?.chars().next()?);
    if !matches!(cols, 'F' | 'H') {
        return None;
    }
    match rows {
        'L' | 'R' => Some(View::Frontal),
        'A' | 'P' => Some(View::Lateral),
        _ => None,
    }
}

/// No anatomy at all in the headers: neither for nor against the lumbar spine.
fn names_no_anatomy(i: &InstanceInfo) -> bool {
    i.body_part.is_empty() && i.anatomy.is_empty() && i.description.is_empty()
}

/// Whether one of `words` is one of `terms`, ignoring case.
fn any_word(words: &[String], terms: &[String]) -> bool {
    terms
        .iter()
        .any(|t| words.iter().any(|w| w.eq_ignore_ascii_case(t)))
}

/// Lower-case words of free text, dots dropped first so "a.p." reads "ap".
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('.', "")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// What selection decided for a study.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The CT series to measure, if any.
    pub ct: Option<(String, Vec<InstanceInfo>)>,
    /// Lumbar radiographs and their views.
    pub radiographs: Vec<(InstanceInfo, View)>,
    /// Why the other series were left out, one line each.
    pub excluded: Vec<String>,
    /// What the reader should know about what was taken (flags on the Finding).
    pub notes: Vec<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.ct.is_none() && self.radiographs.is_empty()
    }

    /// Why nothing can be analysed, in words.
    pub fn reason(&self) -> String {
        if self.excluded.is_empty() {
            "no readable DICOM instance".into()
        } else {
            self.excluded.join("; ")
        }
    }
}

/// Decide what to analyse in one study.
pub fn select(instances: &[InstanceInfo], rules: &Rules) -> Selection {
    let mut sel = Selection::default();
    let mut series: BTreeMap<(&str, &str), Vec<&InstanceInfo>> = BTreeMap::new();
    for i in instances {
        series
            .entry((i.modality.as_str(), i.series_uid.as_str()))
            .or_default()
            .push(i);
    }
    let mut best_ct: Option<&Vec<&InstanceInfo>> = None;
    for ((modality, _), items) in &series {
        let first = items[0];
        let part = if first.body_part.is_empty() {
            "unspecified body part".to_string()
        } else {
            first.body_part.clone()
        };
        match *modality {
            // RG: conventional film digitised, read like a CR.
            "CR" | "DX" | "RG" => {
                let unnamed =
                    rules.radiographs_without_anatomy && items.iter().all(|i| names_no_anatomy(i));
                if !unnamed && !rules.is_lumbar(first) {
                    sel.excluded
                        .push(format!("{modality} of {part}: not a lumbar study"));
                    continue;
                }
                let note = format!("{modality} names no body part: taken as lumbar, as sent");
                if unnamed && !sel.notes.contains(&note) {
                    sel.notes.push(note);
                }
                for i in items.iter().filter(|i| i.has_pixels) {
                    match rules.view(i) {
                        Some(v) => sel.radiographs.push(((*i).clone(), v)),
                        None => sel.excluded.push(format!(
                            "{modality} {}: oblique or functional view, not analysed",
                            i.sop_instance_uid
                        )),
                    }
                }
            }
            "CT" => match ct_problem(items, rules) {
                Some(why) => sel.excluded.push(format!("CT series of {part}: {why}")),
                None => {
                    if best_ct.is_none_or(|b| items.len() > b.len()) {
                        best_ct = Some(items);
                    }
                }
            },
            "" => sel
                .excluded
                .push("instances without Modality: not analysed".into()),
            other => sel
                .excluded
                .push(format!("{other} series: not a lumbar CT or radiograph")),
        }
    }
    if let Some(items) = best_ct {
        sel.ct = Some((
            items[0].series_uid.clone(),
            items.iter().map(|i| (*i).clone()).collect(),
        ));
    }
    raw_images(&mut sel);
    sel.radiographs
        .sort_by(|a, b| (a.1, &a.0.sop_instance_uid).cmp(&(b.1, &b.0.sop_instance_uid)));
    sel
}

/// Raw detector images ("FOR PROCESSING") look nothing like the processed images the
/// model learned: left out where processed ones are there to read, flagged where not.
fn raw_images(sel: &mut Selection) {
    let raw = |i: &InstanceInfo| i.presentation_intent == "FOR PROCESSING";
    if !sel.radiographs.iter().any(|(i, _)| raw(i)) {
        return;
    }
    if sel.radiographs.iter().all(|(i, _)| raw(i)) {
        sel.notes
            .push("only raw (For Processing) radiographs: read unprocessed".into());
        return;
    }
    let excluded = &mut sel.excluded;
    sel.radiographs.retain(|(i, _)| {
        if raw(i) {
            excluded.push(format!(
                "{} {}: raw (For Processing) image, the processed one is read",
                i.modality, i.sop_instance_uid
            ));
        }
        !raw(i)
    });
}

/// Why a CT series cannot be measured, or None when it can.
fn ct_problem(items: &[&InstanceInfo], rules: &Rules) -> Option<String> {
    let first = items[0];
    if items.iter().any(|i| i.image_type.contains("LOCALIZER")) {
        return Some("localizer".into());
    }
    if !items.iter().any(|i| i.has_pixels) {
        return Some("no image pixel data".into());
    }
    if !items.iter().all(|i| i.axial) {
        return Some("not axial".into());
    }
    if rules
        .ct_excluded_body_parts
        .iter()
        .any(|b| b.eq_ignore_ascii_case(&first.body_part))
    {
        return Some("does not cover the lumbar spine".into());
    }
    if let Some(t) = first.slice_thickness {
        if !(rules.ct_min_slice_mm..=rules.ct_max_slice_mm).contains(&t) {
            return Some(format!(
                "slices {t:.1} mm thick (need {}-{} mm)",
                rules.ct_min_slice_mm, rules.ct_max_slice_mm
            ));
        }
    }
    if let Some(term) = rules
        .ct_excluded_kernel_terms
        .iter()
        .find(|t| !t.is_empty() && first.kernel.contains(&t.to_ascii_uppercase()))
    {
        return Some(format!("{term} kernel reconstruction"));
    }
    if items.len() < rules.ct_min_slices {
        return Some(format!(
            "{} slice(s) (need at least {})",
            items.len(),
            rules.ct_min_slices
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dx(body: &str, view: &str, desc: &str) -> InstanceInfo {
        InstanceInfo {
            modality: "DX".into(),
            series_uid: format!("{body}{view}{desc}"),
            sop_instance_uid: format!("1.{}", desc.len()),
            body_part: body.into(),
            view_position: view.into(),
            description: desc.into(),
            has_pixels: true,
            ..Default::default()
        }
    }

    #[test]
    fn lumbar_evidence_and_views_from_headers_or_words() {
        let r = Rules::default();
        let cases = [
            (dx("LSPINE", "AP", ""), Some(View::Frontal)),
            (dx("", "", "LWS seitlich"), Some(View::Lateral)),
            (dx("", "", "Rachis lombaire face"), Some(View::Frontal)),
            (dx("", "", "L-Spine a.p."), Some(View::Frontal)),
            (dx("SPINE", "", "lumbar spine 2 views"), Some(View::Unknown)),
            (dx("LSPINE", "", "Lumbar oblique"), None),
        ];
        for (i, want) in cases {
            let s = select(std::slice::from_ref(&i), &r);
            assert_eq!(s.radiographs.first().map(|x| x.1), want, "{i:?}");
        }
        let hip = select(&[dx("HIP", "AP", "HIP JOINT")], &r);
        assert!(hip.is_empty());
        assert_eq!(hip.reason(), "DX of HIP: not a lumbar study");
        // "lap" (a word containing "ap") is not a view word.
        assert_eq!(r.view(&dx("", "", "lap belt")), Some(View::Unknown));
    }

    #[test]
    fn coded_anatomy_view_codes_orientation_and_no_anatomy() {
        let r = Rules::default();
        // body part, anatomic region, view code, patient orientation; no description
        let coded = |[body, anatomy, view, orientation]: [&str; 4]| InstanceInfo {
            anatomy: anatomy.into(),
            view_code: view.into(),
            patient_orientation: orientation.into(),
            ..dx(body, "", "")
        };
        let cases = [
            (["LUMBAR SPINE", "", "", ""], Some(View::Unknown)),
            (["", "T-11503", "", ""], Some(View::Unknown)),
            (
                ["", "Lumbar spine", "R-10236 left lateral", ""],
                Some(View::Lateral),
            ),
            (["LSPINE", "", "399348003", ""], Some(View::Frontal)),
            (["LSPINE", "", "antero-posterior oblique", ""], None),
            (["LSPINE", "", "", "P\\F"], Some(View::Lateral)),
            (["LSPINE", "", "", "L\\F"], Some(View::Frontal)),
            (["LSPINE", "", "", "A\\R"], Some(View::Unknown)),
        ];
        for (fields, want) in cases {
            let s = select(&[coded(fields)], &r);
            assert_eq!(s.radiographs.first().map(|x| x.1), want, "{fields:?}");
            assert!(s.notes.is_empty(), "{fields:?}");
        }
        // No anatomy anywhere: taken, and said; or left out when the rules say so.
        let bare = [coded(["", "", "", "L\\F"])];
        let s = select(&bare, &r);
        assert_eq!(s.radiographs.first().map(|x| x.1), Some(View::Frontal));
        assert_eq!(s.notes, ["DX names no body part: taken as lumbar, as sent"]);
        let strict = Rules {
            radiographs_without_anatomy: false,
            ..Rules::default()
        };
        assert_eq!(
            select(&bare, &strict).reason(),
            "DX of unspecified body part: not a lumbar study"
        );
        // Another body part named is never taken.
        let chest = select(&[coded(["", "T-D3000 Chest", "", ""])], &r);
        assert!(chest.is_empty() && chest.notes.is_empty());
    }

    #[test]
    fn raw_detector_images_give_way_to_processed_ones() {
        let r = Rules::default();
        let image = |uid: &str, intent: &str| InstanceInfo {
            sop_instance_uid: uid.into(),
            presentation_intent: intent.into(),
            ..dx("LSPINE", "AP", "")
        };
        let both = select(
            &[
                image("1.1", "FOR PROCESSING"),
                image("1.2", "FOR PRESENTATION"),
            ],
            &r,
        );
        let read: Vec<&str> = both
            .radiographs
            .iter()
            .map(|(i, _)| i.sop_instance_uid.as_str())
            .collect();
        assert_eq!(read, ["1.2"]);
        assert_eq!(
            both.excluded,
            ["DX 1.1: raw (For Processing) image, the processed one is read"]
        );
        let raw_only = select(&[image("1.1", "FOR PROCESSING")], &r);
        assert_eq!(raw_only.radiographs.len(), 1);
        assert_eq!(
            raw_only.notes,
            ["only raw (For Processing) radiographs: read unprocessed"]
        );
        // Digitised film (RG) is a radiograph too.
        let film = InstanceInfo {
            modality: "RG".into(),
            ..image("1.3", "")
        };
        assert_eq!(select(&[film], &r).radiographs.len(), 1);
    }

    #[test]
    fn ct_rules() {
        let ct = |n: usize, thick: f64, part: &str, kernel: &str| -> Vec<InstanceInfo> {
            (0..n)
                .map(|k| InstanceInfo {
                    modality: "CT".into(),
                    series_uid: format!("{n}{thick}{part}{kernel}"),
                    sop_instance_uid: format!("1.{k}"),
                    image_type: "ORIGINAL\\PRIMARY\\AXIAL".into(),
                    slice_thickness: Some(thick),
                    axial: true,
                    body_part: part.into(),
                    kernel: kernel.into(),
                    has_pixels: true,
                    ..Default::default()
                })
                .collect()
        };
        let r = Rules::default();
        assert!(select(&ct(20, 3.0, "ABDOMEN", "B30F"), &r).ct.is_some());
        for (set, why) in [
            (ct(20, 0.4, "ABDOMEN", ""), "0.4 mm"),
            (ct(20, 3.0, "HEAD", ""), "does not cover"),
            (ct(20, 3.0, "CHEST", "LUNG"), "LUNG kernel"),
            (ct(2, 3.0, "", ""), "2 slice(s)"),
        ] {
            let s = select(&set, &r);
            assert!(s.ct.is_none() && s.reason().contains(why), "{}", s.reason());
        }
        // The series with most slices wins.
        let mut both = ct(10, 3.0, "ABDOMEN", "");
        both.extend(ct(30, 2.0, "ABDOMEN", ""));
        assert_eq!(select(&both, &r).ct.unwrap().1.len(), 30);
    }
}
