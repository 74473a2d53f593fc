//! CT attenuation (opportunistic screening after Pickhardt et al., Ann Intern Med 2013):
//! find the vertebral bodies in an axial volume by image analysis, label levels where the
//! anatomy allows, place a trabecular ROI inside each body away from the cortex and the
//! basivertebral vein, and report mean / median HU per level.
//!
//! The steps, one file each: `volume` decodes and orders the series; `body` finds the
//! body in each slice (spine component → body front → ROI); `track` follows the spine
//! along z and turns those slices into vertebrae (off-course detections dropped, runs cut
//! at endplates and discs); `ribs` follows ribs in 3D to the vertebrae they articulate
//! with, and the shorter transverse processes; `levels` names them (the lowest vertebra
//! with ribs beside it above the pelvis is T12), `processes` checks the names against the
//! lumbar transverse processes, and `height` flags low vertebrae; `keyview`
//! keeps the pixels the key image shows. `morph` holds the mask operations.

pub mod body;
pub mod hardware;
pub mod height;
pub mod keyview;
pub mod levels;
pub mod morph;
pub mod processes;
pub mod ribs;
pub mod track;
pub mod volume;

use serde::Serialize;

pub use body::{find_body, SliceBody};
use track::Located;
pub use volume::{Volume, VolumeError};

use crate::analysis::finding::{CtClass, LevelConfidence, LevelMeasure};

/// What the volume showed.
#[derive(Debug, Clone, Serialize)]
pub struct CtMeasurement {
    pub vertebrae: Vec<LevelMeasure>,
    /// How levels were assigned, or why they were not.
    pub labelling: String,
    /// Whether the labels are sure (None: no labels).
    pub labels_sure: Option<bool>,
    /// What a reader must know about the labels, for the flags.
    pub labels_caution: Option<String>,
}

impl CtMeasurement {
    /// The measured vertebrae with how they were named.
    pub fn new(vertebrae: Vec<LevelMeasure>, labelling: levels::Labelling) -> CtMeasurement {
        CtMeasurement {
            vertebrae,
            labelling: labelling.how,
            labels_sure: labelling.sure,
            labels_caution: labelling.caution,
        }
    }
}

/// Measure every vertebra in the volume.
pub fn measure(volume: &Volume) -> CtMeasurement {
    use rayon::prelude::*;
    // Slices are independent: find the bodies on every core.
    let bodies: Vec<Located> = volume
        .slices
        .par_iter()
        .enumerate()
        .filter_map(|(k, f)| find_body(f, volume.spacing, k))
        .map(|b| Located::new(b, volume))
        .collect();
    let bodies = track::on_the_spine(bodies, volume);
    let profile = track::Profile::of(&bodies);
    let runs = track::group_slices(bodies, volume);
    let single = runs.len() == 1;
    let mut pieces: Vec<track::Piece> = runs
        .into_iter()
        .flat_map(|run| track::split_at_discs(run, profile, volume))
        .collect();
    // Endplate fragments (groups spanning under 8 mm) are not vertebrae.
    let only = single && pieces.len() == 1;
    pieces.retain(|p| only || track::span_mm(&p.bodies, volume) >= track::MIN_BODY_MM);
    let pieces = track::drop_disc_remnants(pieces, volume);
    let (mut vertebrae, wings): (Vec<LevelMeasure>, Vec<bool>) =
        pieces.iter().map(|p| vertebra(p, volume)).unzip();
    // Ribs followed to their heads find the lowest ones, which the mid-slice test misses;
    // the shorter pieces are transverse processes.
    let spans: Vec<ribs::Span> = pieces
        .iter()
        .map(|p| ribs::Span {
            extent: p.extent,
            centre: p.bodies[p.bodies.len() / 2].body.centre,
        })
        .collect();
    for (v, found) in vertebrae.iter_mut().zip(ribs::outgrowths(volume, &spans)) {
        v.ribs |= (found.ribs[0] || found.ribs[1]) && !v.pelvis;
        v.transverse_processes = found.process_sides();
    }
    levels::pelvis_from_wings(&mut vertebrae, &wings);
    let ranges: Vec<(f64, f64)> = pieces.iter().map(|p| p.z_range(volume)).collect();
    height::flag_compressed(&mut vertebrae, &ranges);
    let centres: Vec<f64> = ranges.iter().map(|(a, b)| (a + b) / 2.0).collect();
    let labelling = levels::label(&mut vertebrae, &centres);
    CtMeasurement::new(vertebrae, labelling)
}

/// One vertebra's measurement from its group of slices (level and compression are set
/// later, from its neighbours), and whether thin iliac wings may lie beside it
/// (`levels::pelvis_from_wings`).
fn vertebra(piece: &track::Piece, volume: &Volume) -> (LevelMeasure, bool) {
    let group = &piece.bodies;
    let mid = &group[group.len() / 2].body;
    // Mid-body slices only: the outer fifths hold partial-volumed endplates.
    let cut = group.len() / 5;
    let central = &group[cut..group.len() - cut];
    let values: Vec<f64> = central
        .iter()
        .flat_map(|b| {
            b.body
                .roi
                .iter()
                .map(|&i| volume.slices[b.body.slice].values[i] as f64)
        })
        .collect();
    let n = values.len();
    let mean_hu = values.iter().sum::<f64>() / n.max(1) as f64;
    let median_hu = track::median(values);
    let beside = levels::beside_the_spine(&volume.slices[mid.slice], mid, volume.spacing);
    let measure = LevelMeasure {
        level: None,
        slices: central.iter().map(|b| b.body.slice).collect(),
        mean_hu,
        median_hu,
        roi_pixels: n,
        roi_mm2: mid.roi.len() as f64 * volume.spacing.0 * volume.spacing.1,
        ribs: beside.ribs,
        pelvis: beside.pelvis,
        lung: beside.lung,
        transverse_processes: 0,
        height_mm: piece.height_mm(volume),
        roi: mid.outline,
        roi_sop_instance_uid: volume.sop_uids.get(mid.slice).cloned().unwrap_or_default(),
        compressed: false,
        metal: hardware::metal_near(piece, mid.centre, volume),
    };
    (measure, beside.wings)
}

/// A classifying body measured over less than this (mm) is said to be (lumbar bodies are
/// 24-30 mm tall, endplates included).
const SHORT_MEASURE_MM: f64 = 12.0;

/// A median above this is not trabecular bone (contrast, sclerosis, a misplaced ROI).
const PLAUSIBLE_TRABECULAR_HU: f64 = 350.0;

/// The class by the L1 trabecular HU (Pickhardt 2013 thresholds by default), the contrast
/// offset subtracted first. The ROI median is used: an automatic ROI that grazes an
/// endplate or a pedicle in one slice moves the mean, not the median. Falls back to L2,
/// then L3, when L1 is missing, compressed or beside metal; labels that are not sure (one weak anchor,
/// or anchors that disagree) give `LevelConfidence::Low`. When no lumbar level is labelled, the mean
/// of the (up to four most cranial) measured bodies below the ribcage, without ribs, lung or
/// ilium beside them, stands in (L1-L4 averages track L1), at `LevelConfidence::Unlabelled`.
pub fn classify(
    m: &CtMeasurement,
    thresholds: (f64, f64),
    contrast_offset_hu: f64,
) -> (Option<CtClass>, String, Option<LevelConfidence>) {
    let class_of = |hu: f64| {
        if hu <= thresholds.0 {
            CtClass::OsteoporosisLikely
        } else if hu >= thresholds.1 {
            CtClass::NormalLikely
        } else {
            CtClass::Indeterminate
        }
    };
    let usable = |v: &&LevelMeasure| {
        !v.compressed && !v.metal && v.roi_pixels > 0 && v.median_hu.is_finite()
    };
    for name in ["L1", "L2", "L3"] {
        let Some(level) = m
            .vertebrae
            .iter()
            .filter(usable)
            .find(|v| v.level.as_deref() == Some(name))
        else {
            continue;
        };
        let hu = level.median_hu - contrast_offset_hu;
        let confidence = if m.labels_sure == Some(true) {
            LevelConfidence::Labelled
        } else {
            LevelConfidence::Low
        };
        // A body measured over less than half a lumbar body's height (a dense focus or
        // missed slices cut it short) still classifies, but the reader is told.
        let short = if level.height_mm < SHORT_MEASURE_MM {
            format!(
                " (measured over only {:.0} mm of the body: check the key image)",
                level.height_mm
            )
        } else {
            String::new()
        };
        return (
            Some(class_of(hu)),
            format!("{name} median {hu:.1} HU{short}"),
            Some(confidence),
        );
    }
    // Lumbar bodies lie below the ribcage: a body above it without lung beside it is
    // cervical (a real PET-CT from the skull to the upper chest).
    let below_ribs = levels::lowest_ribbed(&m.vertebrae).map_or(0, |k| k + 1);
    let lumbar_looking: Vec<&LevelMeasure> = m
        .vertebrae
        .iter()
        .skip(below_ribs)
        .filter(usable)
        .filter(|v| v.level.is_none() && !v.ribs && !v.pelvis && !v.lung)
        // Above this no trabecular bone measures: the ROI sits in contrast or sclerosis.
        .filter(|v| v.median_hu < PLAUSIBLE_TRABECULAR_HU)
        .take(4)
        .collect();
    if lumbar_looking.is_empty() {
        return (
            None,
            "no class: no lumbar vertebral body measured (L1-L3 not labelled, and no unlabelled body below the ribs without lung or ilium beside it and with a plausible trabecular HU)"
                .into(),
            None,
        );
    }
    let n = lumbar_looking.len();
    let hu =
        lumbar_looking.iter().map(|v| v.median_hu).sum::<f64>() / n as f64 - contrast_offset_hu;
    (
        Some(class_of(hu)),
        format!(
            "mean of {n} unlabelled lumbar-looking {} {hu:.1} HU (L1 not identified: lower confidence)",
            if n == 1 { "body" } else { "bodies" }
        ),
        Some(LevelConfidence::Unlabelled),
    )
}

#[cfg(test)]
mod tests {
    use super::levels::tests::{even, vertebra};
    use super::*;

    /// A scan from the skull to the upper chest: the lowest vertebra found has ribs, so no
    /// level is named, and the neck's bodies above the ribs (no lung beside them) are not
    /// taken for lumbar ones: no class, and the basis says why.
    #[test]
    fn a_scan_ending_in_the_chest_names_no_level_and_gives_no_class() {
        let mut v = vec![
            vertebra(90.0, false, false),
            vertebra(90.0, false, false),
            vertebra(230.0, true, true),
            vertebra(240.0, true, true),
            vertebra(250.0, true, true),
        ];
        let labelling = levels::label(&mut v, &even(5));
        assert!(v.iter().all(|x| x.level.is_none()));
        let (class, basis, confidence) =
            classify(&CtMeasurement::new(v, labelling), (110.0, 160.0), 0.0);
        assert_eq!((class, confidence), (None, None), "{basis}");
        assert!(basis.contains("below the ribs"), "{basis}");
    }

    /// Lateral bone beside one lumbar vertebra only (the iliac crests beside L5, flagged
    /// as ribs on the real 3 mm CT) is no ribcage: the bodies above it still give the
    /// unlabelled class.
    #[test]
    fn lateral_bone_beside_the_last_vertebra_does_not_hide_the_lumbar_bodies() {
        let mut v: Vec<LevelMeasure> = (0..5).map(|_| vertebra(90.0, false, false)).collect();
        v[4].ribs = true;
        let labelling = levels::label(&mut v, &even(5));
        let (class, basis, confidence) =
            classify(&CtMeasurement::new(v, labelling), (110.0, 160.0), 0.0);
        assert_eq!(class, Some(CtClass::OsteoporosisLikely), "{basis}");
        assert_eq!(confidence, Some(LevelConfidence::Unlabelled));
        assert!(basis.contains("mean of 4"), "{basis}");
    }
}
