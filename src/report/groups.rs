//! The measurement groups of the SR (TID 1501 in TID 1500): one for the X-ray model's
//! lumbar-spine estimate, one per CT vertebra, each with its tracking identifiers,
//! finding site, algorithm identification (TID 4019), measurements and finding.

use super::codes::{self, Code};
use super::content::{self as c, Item, Rel};
use super::source::Source;
use super::{OutputSettings, MANUFACTURER};
use crate::analysis::finding::{BoneClass, CtFinding, LevelMeasure, XrayFinding};

/// The SNOMED CT code of a WHO class.
pub fn class_code(class: BoneClass) -> Code {
    match class {
        BoneClass::Normal => codes::NORMAL,
        BoneClass::Osteopenia => codes::OSTEOPENIA,
        BoneClass::Osteoporosis => codes::OSTEOPOROSIS,
    }
}

/// TID 4019 as siblings in the group (the layout highdicom writes and reads): name,
/// version, manufacturer, parameters, and the family for AI methods.
fn algorithm(name: &str, version: &str, ai: bool, parameters: &str) -> Vec<Item> {
    let mut items = vec![
        c::text(Rel::HasConceptMod, codes::ALGORITHM_NAME, name),
        c::text(Rel::HasConceptMod, codes::ALGORITHM_VERSION, version),
        c::text(
            Rel::HasConceptMod,
            codes::ALGORITHM_MANUFACTURER,
            MANUFACTURER,
        ),
        c::text(Rel::HasConceptMod, codes::ALGORITHM_PARAMETERS, parameters),
    ];
    if ai {
        items.push(c::code(
            Rel::HasConceptMod,
            codes::ALGORITHM_FAMILY,
            codes::ARTIFICIAL_INTELLIGENCE,
        ));
    }
    items
}

fn tracking(settings: &OutputSettings, study: &str, id: &str) -> Vec<Item> {
    vec![
        c::text(Rel::HasObsContext, codes::TRACKING_IDENTIFIER, id),
        c::uidref(
            Rel::HasObsContext,
            codes::TRACKING_UID,
            &settings.uid(&[study, "osteoscreen", "tracking", id]),
        ),
    ]
}

pub fn xray_group(x: &XrayFinding, src: &Source, settings: &OutputSettings, study: &str) -> Item {
    let sources = || -> Vec<Item> {
        x.images
            .iter()
            .filter_map(|i| {
                src.sop_class_of(&i.sop_instance_uid).map(|class| {
                    c::image(
                        Rel::InferredFrom,
                        Some(codes::SOURCE_OF_MEASUREMENT),
                        class,
                        &i.sop_instance_uid,
                    )
                })
            })
            .collect()
    };
    let mut items = tracking(settings, study, "lumbar spine (X-ray model)");
    items.push(c::code(
        Rel::HasConceptMod,
        codes::FINDING_SITE,
        codes::LUMBAR_SPINE,
    ));
    items.extend(algorithm(
        &x.model.name,
        &x.model.version,
        true,
        &format!(
            "estimate from radiographs, not DXA; weights sha256 {}; {}; trained on: {}",
            x.model.weights_sha256, x.fusion, x.model.training_data
        ),
    ));
    items.push(
        c::num(
            Rel::Contains,
            codes::LUMBAR_T_SCORE,
            x.t_score as f64,
            codes::UNIT_T_SCORE,
        )
        .with(sources()),
    );
    items.push(
        c::num(
            Rel::Contains,
            codes::LUMBAR_BMD,
            x.bmd_g_cm2 as f64,
            codes::UNIT_G_CM2,
        )
        .with(sources()),
    );
    for (class, p) in BoneClass::ALL.iter().zip(x.probabilities) {
        items.push(
            c::num(
                Rel::Contains,
                codes::PROBABILITY,
                p as f64,
                codes::UNIT_RATIO,
            )
            .with(vec![c::code(
                Rel::HasConceptMod,
                codes::FINDING,
                class_code(*class),
            )]),
        );
    }
    // TID 1501's finding (HAS CONCEPT MOD): what this group found.
    items.push(c::code(
        Rel::HasConceptMod,
        codes::FINDING,
        class_code(x.class),
    ));
    c::container(Rel::Contains, codes::MEASUREMENT_GROUP).with(items)
}

pub fn ct_groups(
    ct: &CtFinding,
    src: &Source,
    settings: &OutputSettings,
    study: &str,
) -> Vec<Item> {
    let basis_level = ct.class_basis.split_whitespace().next().unwrap_or("");
    ct.levels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            // Unlabelled bodies (or T12, which has no code here) are reported without a
            // finding site: their HU still informs the reader.
            let name = match l.level.as_deref() {
                Some(n) => n.to_string(),
                None => format!("vertebral body {} (level not identified)", k + 1),
            };
            let site = codes::vertebra(&name);
            ct_group(
                ct,
                l,
                &name,
                site,
                basis_level == name,
                src,
                settings,
                study,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn ct_group(
    ct: &CtFinding,
    l: &LevelMeasure,
    name: &str,
    site: Option<Code>,
    is_basis: bool,
    src: &Source,
    settings: &OutputSettings,
    study: &str,
) -> Item {
    let region = || -> Vec<Item> {
        let Some(class) = src.sop_class_of(&l.roi_sop_instance_uid) else {
            return Vec::new();
        };
        vec![
            c::polygon(Rel::InferredFrom, codes::IMAGE_REGION, &l.roi.polygon()).with(vec![
                c::image(Rel::SelectedFrom, None, class, &l.roi_sop_instance_uid),
            ]),
        ]
    };
    let mut items = tracking(settings, study, name);
    if let Some(site) = site {
        items.push(c::code(Rel::HasConceptMod, codes::FINDING_SITE, site));
    }
    items.extend(algorithm(
        "osteoscreen CT trabecular attenuation",
        env!("CARGO_PKG_VERSION"),
        false,
        &format!(
            "oval trabecular ROI, mid-body slices, cortex > 600 HU excluded; thresholds {} / {} HU; contrast offset {} HU; levels: {}",
            ct.thresholds_hu.0, ct.thresholds_hu.1, ct.contrast_offset_hu, ct.labelling
        ),
    ));
    for (value, derivation) in [(l.mean_hu, codes::MEAN), (l.median_hu, codes::MEDIAN)] {
        if !value.is_finite() || l.metal {
            // No number to report (an empty ROI), or none that means anything (metal's
            // streaks); the comments and flags still list the level.
            continue;
        }
        let mut below = vec![c::code(Rel::HasConceptMod, codes::DERIVATION, derivation)];
        below.extend(region());
        items.push(c::num(Rel::Contains, codes::ATTENUATION, value, codes::UNIT_HU).with(below));
    }
    if is_basis {
        if let Some(class) = ct.class {
            items.push(c::code(
                Rel::HasConceptMod,
                codes::FINDING,
                class_code(BoneClass::from(class)),
            ));
        }
    }
    c::container(Rel::Contains, codes::MEASUREMENT_GROUP).with(items)
}
