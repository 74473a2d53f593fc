//! Telling vertebrae apart: what lies beside the spine (ribs, the ilium, lung), which level
//! each vertebra is, and which ones are much lower than their neighbours.

use super::body::SliceBody;
use super::morph::{components, extent};
use crate::analysis::finding::LevelMeasure;
use crate::analysis::image::Frame;

/// Cortical bone of ribs and ilium, for telling levels apart.
const CORTEX_HU: f32 = 400.0;
/// The same on coarse pixels (`body::COARSE_PIXEL_MM`).
const COARSE_CORTEX_HU: f32 = 250.0;

/// What lies beside the spine in a slice: ribs (small separate pieces of cortical bone
/// 45-140 mm to both sides, level with the body: from 15 mm before its centre to 38 mm
/// behind it), the pelvis (a large plate of bone 50-170 mm to the side: the ilium) and
/// lung (`lung_beside`).
pub fn beside_the_spine(frame: &Frame, body: &SliceBody, spacing: (f64, f64)) -> Beside {
    let (w, h) = (frame.columns, frame.rows);
    // Coarse pixels average a rib's or the ilium's thin cortex with the fat around it.
    let cortex = if spacing.0.min(spacing.1) > super::body::COARSE_PIXEL_MM {
        COARSE_CORTEX_HU
    } else {
        CORTEX_HU
    };
    let bone: Vec<bool> = frame.values.iter().map(|v| *v > cortex).collect();
    let pixel_mm2 = spacing.0 * spacing.1;
    let first_row = (body.centre.1 as usize).saturating_sub((15.0 / spacing.0) as usize);
    // Ribs beside a rib-bearing vertebra lie level with its body (up to ~32 mm behind its
    // centre on the real scans here); the tips of the 12th ribs that reach down beside L1
    // lie further behind (42-48 mm on the real 3 mm scan).
    let last_row = body.centre.1 + 38.0 / spacing.0;
    let mut sides = [false; 2];
    let mut pelvis = false;
    for piece in components(&bone, w, h) {
        let area = piece.len() as f64 * pixel_mm2;
        let (cx, cy, _, _) = extent(&piece, w);
        let dx = (cx - body.centre.0) * spacing.1;
        let level = cy >= first_row as f64 && cy <= last_row;
        if level && (15.0..400.0).contains(&area) && (45.0..140.0).contains(&dx.abs()) {
            sides[(dx > 0.0) as usize] = true;
        }
        if area > 500.0 && (50.0..170.0).contains(&dx.abs()) {
            pelvis = true;
        }
    }
    Beside {
        ribs: sides[0] && sides[1] && !pelvis,
        pelvis,
        lung: lung_beside(frame, body, spacing),
    }
}

/// What lies beside a vertebra's body on its middle slice.
#[derive(Debug, Clone, Copy)]
pub struct Beside {
    pub ribs: bool,
    pub pelvis: bool,
    pub lung: bool,
}

/// Lung beside the spine: at least 600 mm² of lung density (-960 to -500 HU: air with
/// tissue in it) on each side, 20-120 mm from the body's centre and from 15 mm before it to
/// 60 mm behind it. Gas in the bowel and the air around the patient are emptier (about
/// -1000 HU); the lungs' posterior recesses reach down to T12. A vertebra with lung beside
/// it is thoracic, whatever its ribs looked like.
fn lung_beside(frame: &Frame, body: &SliceBody, spacing: (f64, f64)) -> bool {
    let (w, h) = (frame.columns, frame.rows);
    let (cx, cy) = body.centre;
    let pixel_mm2 = spacing.0 * spacing.1;
    let rows =
        ((cy - 15.0 / spacing.0).max(0.0) as usize)..((cy + 60.0 / spacing.0) as usize).min(h);
    let mut area = [0.0f64; 2];
    for r in rows {
        for c in 0..w {
            let dx = (c as f64 - cx) * spacing.1;
            let v = frame.values[r * w + c];
            if (-960.0..-500.0).contains(&v) && (20.0..120.0).contains(&dx.abs()) {
                area[(dx > 0.0) as usize] += pixel_mm2;
            }
        }
    }
    area[0] >= 600.0 && area[1] >= 600.0
}

/// How the levels were named.
#[derive(Debug, Clone)]
pub struct Labelling {
    /// The anchors used, or why there are no levels.
    pub how: String,
    /// Whether the levels can carry the class at full confidence.
    pub sure: Option<bool>,
    /// What a reader must know about the labels (anchors that disagree, one weak anchor).
    pub caution: Option<String>,
}

/// Name the vertebrae (cranial first) from two anchors, checked against a third:
/// - from above, T12 is the lowest vertebra with ribs above the pelvis. Ribs run on
///   cranially, so lateral bone counts as ribs only when the vertebra above has it too (or
///   the volume starts there): the first pieces of the iliac crests beside L4, or contrast
///   in both renal pelves, are small lateral pieces at one level only;
/// - from below, the first vertebra with the ilium beside it is L5 (the crests reach L4 in
///   some people, so this anchor alone is the weaker one);
/// - the lungs: T1-T9 always have lung beside them. When the rib anchor names T9 or higher
///   vertebrae that have none (`lungs_contradict`), the "ribs" were something else dense
///   beside every vertebra (opacified colon, excreted contrast, transverse processes): the
///   rib flags are cleared and the pelvis alone is used, or no level is named;
/// - the count: two or more vertebrae off the usual five between T12 and L5 is not
///   transitional anatomy. When the rib anchor's L1 has lung beside it and the pelvis's has
///   none (`lung_below_ribs`), the lowest ribs were missed, and the pelvis counts.
///
/// Both found and five vertebrae apart: sure. Another count (six or four lumbar-looking
/// vertebrae: lumbosacral transitional anatomy, or a high crest): labelled from T12, not
/// sure, and said. Only the pelvis: counted up from L5, not sure, and said.
pub fn label(vertebrae: &mut [LevelMeasure]) -> Labelling {
    let pelvis = vertebrae.iter().position(|v| v.pelvis);
    let above_pelvis = pelvis.unwrap_or(vertebrae.len());
    let ribbed = |k: usize| vertebrae[k].ribs && (k == 0 || vertebrae[k - 1].ribs);
    let mut t12 = (0..above_pelvis).rev().find(|&k| ribbed(k));
    let not_ribs = t12.and_then(|t12| lungs_contradict(vertebrae, t12));
    if not_ribs.is_some() {
        for v in vertebrae.iter_mut() {
            v.ribs = false;
        }
        t12 = None;
    }
    // Two or more vertebrae between the anchors beyond the usual five is not transitional
    // anatomy: one anchor is wrong. Ribs missed on the lowest levels (short floating ribs)
    // make the rib anchor too high; its L1 then has lung beside it, which an L1 does not,
    // and the pelvis's L1 has none: the pelvis counts.
    let missed_ribs = match (t12, pelvis) {
        (Some(t), Some(p)) if (p - t).abs_diff(5) >= 2 && lung_below_ribs(vertebrae, t, p) => {
            t12 = None;
            Some(format!(
                "{} vertebrae from the lowest rib-bearing one down to the first with the ilium beside it (usually 5), and the vertebra it would make L1 has lung beside it: the lowest ribs were missed",
                p - t
            ))
        }
        _ => None,
    };
    let mut labelling = from_anchors(vertebrae, t12, pelvis);
    let overruled = not_ribs
        .map(|why| format!("{why}; the dense pieces beside the spine are not ribs (contrast or transverse processes)"))
        .or(missed_ribs);
    if let Some(why) = overruled {
        let disagree = format!("CT level anchors disagree: {why}");
        labelling.caution = Some(match labelling.caution {
            Some(c) => format!("{disagree}; {c}"),
            None => disagree,
        });
    }
    labelling
}

/// The labels from the rib-bearing T12 and the first vertebra with the ilium beside it.
fn from_anchors(
    vertebrae: &mut [LevelMeasure],
    t12: Option<usize>,
    pelvis: Option<usize>,
) -> Labelling {
    let above_pelvis = pelvis.unwrap_or(vertebrae.len());
    match (t12, pelvis) {
        (Some(t12), p) => {
            name_from(vertebrae, t12, 12);
            let how =
                "T12 = lowest vertebra with ribs above the pelvis; counted caudally from there";
            match p.map(|p| p - t12) {
                Some(5) => Labelling {
                    how: format!("{how}; the ilium beside L5 agrees"),
                    sure: Some(true),
                    caution: None,
                },
                None => Labelling {
                    how: how.into(),
                    sure: Some(true),
                    caution: None,
                },
                Some(n) => Labelling {
                    how: how.into(),
                    sure: Some(false),
                    caution: Some(format!(
                        "CT level anchors disagree: {n} vertebrae from T12 down to the first with the ilium beside it (usually 5): lumbosacral transitional anatomy or a high iliac crest; levels counted from T12"
                    )),
                },
            }
        }
        (None, Some(l5)) if l5 >= 1 => {
            name_from(vertebrae, l5, 17);
            Labelling {
                how: "L5 = first vertebra with the ilium beside it (no rib-bearing T12 to count from); counted cranially from there".into(),
                sure: Some(false),
                caution: Some(
                    "CT levels counted up from the iliac crest only (no ribs to count from): L1 may be one level off".into(),
                ),
            }
        }
        _ => Labelling {
            how: if vertebrae[..above_pelvis].iter().any(|v| v.ribs) {
                "levels not determined: lateral bone beside a single vertebra only (an iliac crest or contrast, not ribs), and no pelvis".into()
            } else {
                "levels not determined: no rib-bearing vertebra and no pelvis in view".into()
            },
            sure: None,
            caution: None,
        },
    }
}

/// Whether the rib anchor's L1 (the vertebra after `t12`) has lung beside it while the
/// pelvis's L1 (four above `l5`, the first with the ilium beside it) has none.
fn lung_below_ribs(vertebrae: &[LevelMeasure], t12: usize, l5: usize) -> bool {
    let rib_l1 = vertebrae.get(t12 + 1).is_some_and(|v| v.lung);
    let pelvis_l1 = l5
        .checked_sub(4)
        .and_then(|k| vertebrae.get(k))
        .is_some_and(|v| !v.lung);
    rib_l1 && pelvis_l1
}

/// Why taking vertebra `t12` as T12 contradicts the lungs, if it does: the vertebrae it
/// would make T1-T9 (three or more above it) mostly have no lung beside them. At T9 and
/// above the lungs always flank the spine; one vertebra may miss the area threshold, so
/// half of them must lack lung, and at least one.
fn lungs_contradict(vertebrae: &[LevelMeasure], t12: usize) -> Option<String> {
    let upper = &vertebrae[..t12.saturating_sub(2)];
    let without = upper.iter().filter(|v| !v.lung).count();
    (without > 0 && 2 * without >= upper.len()).then(|| {
        format!(
            "counting from the lowest vertebra with lateral bone as T12 makes {} vertebrae T1-T9, and {without} of them have no lung beside them",
            upper.len()
        )
    })
}

/// Name vertebra `anchor` by its ordinal (T1 = 1 ... T12 = 12, L1 = 13 ... L5 = 17) and
/// the others by their distance from it; beyond T1 or L5 a vertebra stays unnamed.
fn name_from(vertebrae: &mut [LevelMeasure], anchor: usize, ordinal: i64) {
    for (k, v) in vertebrae.iter_mut().enumerate() {
        let o = ordinal + k as i64 - anchor as i64;
        v.level = match o {
            1..=12 => Some(format!("T{o}")),
            13..=17 => Some(format!("L{}", o - 12)),
            _ => None,
        };
    }
}

/// Flag vertebrae much lower than their two neighbours (< 75 % of their mean height):
/// possibly a compression fracture. `ranges` are the vertebrae's (upper, lower) edges
/// along z (mm). A collapsed body leaves its neighbours about its own height plus two
/// discs apart; a body measured short (slices lost to a dense lesion or a missed endplate)
/// leaves them where they were, with room to spare. So a short body is flagged only when
/// the room between its neighbours, less its height and two typical discs (the median of
/// the other gaps between consecutive bodies: its own two are what is in question), is
/// under half the height it seems to have lost. With no other gap to compare (three
/// bodies), its height alone decides.
pub fn flag_compressed(vertebrae: &mut [LevelMeasure], ranges: &[(f64, f64)]) {
    let heights: Vec<f64> = vertebrae.iter().map(|v| v.height_mm).collect();
    let n = vertebrae.len();
    let gaps: Vec<f64> = ranges.windows(2).map(|w| (w[0].1 - w[1].0).abs()).collect();
    // The first and last bodies found are often cut short by the scan's edge, the sacrum
    // or a missed endplate: only a body with a neighbour on each side is judged.
    for k in 1..n.saturating_sub(1) {
        let mean = (heights[k - 1] + heights[k + 1]) / 2.0;
        let lost = mean - heights[k];
        // Gaps k-1 (above body k) and k (below it) are its own.
        let others: Vec<f64> = gaps
            .iter()
            .enumerate()
            .filter(|&(j, _)| j + 1 != k && j != k)
            .map(|(_, g)| *g)
            .collect();
        let unexplained = if others.is_empty() {
            f64::NEG_INFINITY
        } else {
            let room = (ranges[k - 1].1 - ranges[k + 1].0).abs();
            room - heights[k] - 2.0 * super::track::median(others)
        };
        vertebrae[k].compressed = heights[k] < 0.75 * mean && unexplained < 0.5 * lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::finding::RoiOutline;

    fn vertebra(median_hu: f64, ribs: bool, lung: bool) -> LevelMeasure {
        LevelMeasure {
            level: None,
            slices: vec![0],
            mean_hu: median_hu,
            median_hu,
            roi_pixels: 100,
            roi_mm2: 100.0,
            ribs,
            pelvis: false,
            lung,
            height_mm: 25.0,
            roi: RoiOutline {
                centre: (0.0, 0.0),
                radii: (1.0, 1.0),
                posterior_row: 0.0,
            },
            roi_sop_instance_uid: String::new(),
            compressed: false,
            metal: false,
        }
    }

    /// A scan from T12 to L4 with dense pieces beside every body and no pelvis: no level is
    /// named, the reader is told why, and the class comes from the lumbar-looking bodies.
    #[test]
    fn lateral_contrast_without_lungs_or_pelvis_names_no_level() {
        let mut v: Vec<LevelMeasure> = [90.0, 100.0, 110.0, 120.0, 130.0, 140.0]
            .iter()
            .map(|&hu| vertebra(hu, true, false))
            .collect();
        let labelling = label(&mut v);
        assert!(v.iter().all(|x| x.level.is_none() && !x.ribs), "{v:?}");
        assert_eq!(labelling.sure, None);
        assert!(labelling.how.starts_with("levels not determined"));
        assert!(labelling.caution.unwrap().contains("not ribs"));
        let m = super::super::CtMeasurement {
            vertebrae: v,
            labelling: labelling.how,
            labels_sure: labelling.sure,
            labels_caution: None,
        };
        let (class, basis, confidence) = super::super::classify(&m, (80.0, 160.0), 0.0);
        assert_eq!(
            class,
            Some(crate::analysis::finding::CtClass::Indeterminate)
        );
        assert!(basis.contains("105.0 HU"), "{basis}");
        assert_eq!(
            confidence,
            Some(crate::analysis::finding::LevelConfidence::Unlabelled)
        );
    }

    /// Real ribs: the vertebrae the rib anchor makes T8-T9 have lung beside them, so the
    /// anchor stands.
    #[test]
    fn ribs_with_lung_above_them_stand() {
        let mut v = vec![
            vertebra(150.0, true, true),
            vertebra(150.0, true, true),
            vertebra(150.0, true, true),
            vertebra(150.0, true, true),
            vertebra(150.0, true, false),
            vertebra(150.0, false, false),
        ];
        let labelling = label(&mut v);
        assert_eq!(v[4].level.as_deref(), Some("T12"));
        assert_eq!(v[0].level.as_deref(), Some("T8"));
        assert_eq!(labelling.sure, Some(true));
        assert!(v[0].ribs);
    }

    /// Ribs found on T9 only (T10-T12's short ribs missed) on a scan down to the pelvis:
    /// the rib anchor would make T10 "L1", which has lung beside it; the pelvis, eight
    /// vertebrae down, labels the levels instead, and says why.
    #[test]
    fn missed_lowest_ribs_give_way_to_the_pelvis_when_the_lungs_agree_with_it() {
        // T8 T9 T10 T11 T12 L1 L2 L3 L4 L5
        let mut v: Vec<LevelMeasure> = (0..10).map(|k| vertebra(200.0, k <= 1, k <= 2)).collect();
        v[9].pelvis = true;
        let labelling = label(&mut v);
        assert_eq!(v[5].level.as_deref(), Some("L1"), "{v:?}");
        assert_eq!(v[9].level.as_deref(), Some("L5"));
        assert_eq!(v[1].level.as_deref(), Some("T9"));
        assert_eq!(labelling.sure, Some(false));
        assert!(labelling
            .caution
            .unwrap()
            .contains("lowest ribs were missed"));
        // With no lung beside the rib anchor's L1, the ribs stand (the old reading).
        let mut v: Vec<LevelMeasure> = (0..10).map(|k| vertebra(200.0, k <= 1, k == 0)).collect();
        v[9].pelvis = true;
        label(&mut v);
        assert_eq!(v[1].level.as_deref(), Some("T12"), "{v:?}");
    }
}
