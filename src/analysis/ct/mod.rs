//! CT attenuation (opportunistic screening after Pickhardt et al., Ann Intern Med 2013):
//! find the vertebral bodies in an axial volume by image analysis, label levels where the
//! anatomy allows, place a trabecular ROI inside each body away from the cortex and the
//! basivertebral vein, and report mean / median HU per level.
//!
//! The steps, one file each: `volume` decodes and orders the series; `body` finds the
//! body in each slice (spine component → body front → ROI); here consecutive slices with a
//! body form one vertebra (disc slices separate them); `levels` names them (the lowest
//! vertebra with ribs beside it above the pelvis is T12) and flags low ones; `keyview`
//! keeps the pixels the key image shows. `morph` holds the mask operations.

pub mod body;
pub mod keyview;
pub mod levels;
pub mod morph;
pub mod volume;

use serde::Serialize;

pub use body::{find_body, SliceBody};
pub use volume::{Volume, VolumeError};

use crate::analysis::finding::{CtClass, LevelMeasure};

/// What the volume showed.
#[derive(Debug, Clone, Serialize)]
pub struct CtMeasurement {
    pub vertebrae: Vec<LevelMeasure>,
    /// How levels were assigned, or why they were not.
    pub labelling: String,
}

/// Measure every vertebra in the volume.
pub fn measure(volume: &Volume) -> CtMeasurement {
    use rayon::prelude::*;
    // Slices are independent: find the bodies on every core.
    let bodies: Vec<SliceBody> = volume
        .slices
        .par_iter()
        .enumerate()
        .filter_map(|(k, f)| find_body(f, volume.spacing, k))
        .collect();
    let groups = group_slices(bodies, volume.spacing);
    // Endplate fragments (groups spanning under 8 mm) are not vertebrae.
    let mut vertebrae: Vec<LevelMeasure> = groups
        .iter()
        .filter(|g| span_mm(g, volume) >= 8.0 || groups.len() == 1)
        .map(|g| vertebra(g, volume))
        .collect();
    levels::flag_compressed(&mut vertebrae);
    let labelling = levels::label(&mut vertebrae);
    CtMeasurement {
        vertebrae,
        labelling,
    }
}

/// Consecutive slices whose bodies line up (centres within 15 mm) form one group.
fn group_slices(bodies: Vec<SliceBody>, spacing: (f64, f64)) -> Vec<Vec<SliceBody>> {
    let mut groups: Vec<Vec<SliceBody>> = Vec::new();
    for body in bodies {
        let continues = groups.last().and_then(|g| g.last()).is_some_and(|prev| {
            prev.slice + 1 == body.slice
                && (prev.centre.0 - body.centre.0).hypot(prev.centre.1 - body.centre.1) * spacing.0
                    < 15.0
        });
        match groups.last_mut() {
            Some(group) if continues => group.push(body),
            _ => groups.push(vec![body]),
        }
    }
    groups
}

/// Cranio-caudal extent of a group of slices, one slice interval included (mm).
fn span_mm(group: &[SliceBody], volume: &Volume) -> f64 {
    let (a, b) = (group[0].slice, group[group.len() - 1].slice);
    (volume.z[a] - volume.z[b]).abs() + volume.z.get(1).map_or(2.0, |z1| (volume.z[0] - z1).abs())
}

/// One vertebra's measurement from its group of slices (level and compression are set
/// later, from its neighbours).
fn vertebra(group: &[SliceBody], volume: &Volume) -> LevelMeasure {
    let mid = &group[group.len() / 2];
    // Mid-body slices only: the outer fifths hold partial-volumed endplates.
    let cut = group.len() / 5;
    let central = &group[cut..group.len() - cut];
    let mut values: Vec<f64> = central
        .iter()
        .flat_map(|b| {
            b.roi
                .iter()
                .map(|&i| volume.slices[b.slice].values[i] as f64)
        })
        .collect();
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let (ribs, pelvis) = levels::beside_the_spine(&volume.slices[mid.slice], mid, volume.spacing);
    LevelMeasure {
        level: None,
        slices: central.iter().map(|b| b.slice).collect(),
        mean_hu: values.iter().sum::<f64>() / n.max(1) as f64,
        median_hu: if n == 0 { f64::NAN } else { values[n / 2] },
        roi_pixels: n,
        roi_mm2: mid.roi.len() as f64 * volume.spacing.0 * volume.spacing.1,
        ribs,
        pelvis,
        height_mm: span_mm(group, volume),
        roi: mid.outline,
        roi_sop_instance_uid: volume.sop_uids.get(mid.slice).cloned().unwrap_or_default(),
        compressed: false,
    }
}

/// The class by the L1 trabecular HU (Pickhardt 2013 thresholds by default), the contrast
/// offset subtracted first. The ROI median is used: an automatic ROI that grazes an
/// endplate or a pedicle in one slice moves the mean, not the median. Falls back to L2, then L3, when L1 is missing or compressed;
/// no class when no lumbar level was identified.
pub fn classify(
    m: &CtMeasurement,
    (osteoporosis_hu, normal_hu): (f64, f64),
    contrast_offset_hu: f64,
) -> (Option<CtClass>, String) {
    for name in ["L1", "L2", "L3"] {
        let Some(level) = m
            .vertebrae
            .iter()
            .find(|v| v.level.as_deref() == Some(name) && !v.compressed && v.roi_pixels > 0)
        else {
            continue;
        };
        let hu = level.median_hu - contrast_offset_hu;
        let class = if hu <= osteoporosis_hu {
            CtClass::OsteoporosisLikely
        } else if hu >= normal_hu {
            CtClass::NormalLikely
        } else {
            CtClass::Indeterminate
        };
        return (Some(class), format!("{name} median {hu:.1} HU"));
    }
    (
        None,
        "no class: L1-L3 not identified or all compressed (levels need a rib-bearing T12 in the volume)"
            .into(),
    )
}
