//! Telling vertebrae apart: what lies beside the spine (ribs, the ilium, lung) and which
//! level each vertebra is.

use super::body::SliceBody;
use super::morph::{components, extent};
use crate::analysis::finding::LevelMeasure;
use crate::analysis::image::Frame;

/// Cortical bone of ribs and ilium, for telling levels apart.
const CORTEX_HU: f32 = 400.0;
/// The same on coarse pixels (`body::COARSE_PIXEL_MM`).
const COARSE_CORTEX_HU: f32 = 250.0;

/// The cortical-bone threshold for pixels of `spacing`: coarse pixels average a rib's or
/// the ilium's thin cortex with the fat around it.
pub(super) fn cortex_hu(spacing: (f64, f64)) -> f32 {
    if spacing.0.min(spacing.1) > super::body::COARSE_PIXEL_MM {
        COARSE_CORTEX_HU
    } else {
        CORTEX_HU
    }
}

/// What lies beside the spine in a slice: ribs (small separate pieces of cortical bone
/// 45-140 mm to both sides, level with the body: from 15 mm before its centre to 38 mm
/// behind it), the pelvis (a large plate of bone 50-170 mm to the side: the ilium) and
/// lung (`lung_beside`).
pub fn beside_the_spine(frame: &Frame, body: &SliceBody, spacing: (f64, f64)) -> Beside {
    let (w, h) = (frame.columns, frame.rows);
    let cortex = cortex_hu(spacing);
    let bone: Vec<bool> = frame.values.iter().map(|v| *v > cortex).collect();
    let pixel_mm2 = spacing.0 * spacing.1;
    let first_row = (body.centre.1 as usize).saturating_sub((15.0 / spacing.0) as usize);
    // Ribs beside a rib-bearing vertebra lie level with its body (up to ~32 mm behind its
    // centre on the real scans here); the tips of the 12th ribs that reach down beside L1
    // lie further behind (42-48 mm on the real 3 mm scan).
    let last_row = body.centre.1 + 38.0 / spacing.0;
    let mut sides = [false; 2];
    // Long pieces to each side (mm²): an iliac plate's two cortices can be two pieces.
    let mut plates = [0.0f64; 2];
    let mut pelvis = false;
    for piece in components(&bone, w, h) {
        let area = piece.len() as f64 * pixel_mm2;
        let (cx, cy, bw, bh) = extent(&piece, w);
        let dx = (cx - body.centre.0) * spacing.1;
        let level = cy >= first_row as f64 && cy <= last_row;
        if level && (15.0..400.0).contains(&area) && (45.0..140.0).contains(&dx.abs()) {
            sides[(dx > 0.0) as usize] = true;
        }
        if (50.0..170.0).contains(&dx.abs()) {
            pelvis |= area > 500.0;
            let length = (bw * spacing.1).max(bh * spacing.0);
            if length >= WING_LENGTH_MM {
                plates[(dx > 0.0) as usize] += area;
            }
        }
    }
    let wings = plates[0] >= WING_MM2 && plates[1] >= WING_MM2 && !pelvis;
    Beside {
        ribs: sides[0] && sides[1] && !pelvis && !wings,
        pelvis,
        wings,
        lung: lung_beside(frame, body, spacing),
    }
}

/// The upper iliac wings beside L5 are thin plates: in one slice, long pieces under
/// the pelvis's 500 mm² on each side (340-450 mm², 48-76 mm long on a real 5 mm PET-CT
/// whose L5 was taken for L4 without them; 200-290 mm² on an independent generator's
/// phantoms, sometimes one piece per cortex, added up). Lower ribs cut along their
/// course look alike, so wings count only below a vertebra without ribs and beside one
/// without lung (`pelvis_from_wings`).
const WING_MM2: f64 = 200.0;
const WING_LENGTH_MM: f64 = 40.0;

/// What lies beside a vertebra's body on its middle slice.
#[derive(Debug, Clone, Copy)]
pub struct Beside {
    pub ribs: bool,
    /// A large plate of bone to the side: the ilium.
    pub pelvis: bool,
    /// A long thin plate of bone on each side, not large enough for `pelvis`: the upper
    /// iliac wings, or lower ribs cut along their course.
    pub wings: bool,
    pub lung: bool,
}

/// The ilium's upper wings beside vertebra k (`wings[k]`) make it the pelvis's first
/// vertebra when nothing above it has the ilium beside it, it has no lung beside it and
/// the vertebra above it has no ribs (the 11th and 12th ribs beside T12 and L1 can look
/// like wings in one slice).
pub fn pelvis_from_wings(vertebrae: &mut [LevelMeasure], wings: &[bool]) {
    let first = (0..vertebrae.len()).find(|&k| {
        vertebrae[k].pelvis
            || (wings[k] && !vertebrae[k].lung && (k == 0 || !vertebrae[k - 1].ribs))
    });
    if let Some(k) = first {
        vertebrae[k].pelvis = true;
        vertebrae[k].ribs = false;
    }
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

/// The lowest vertebra of the ribcage: above the pelvis, with ribs beside it, and its
/// upper neighbour too (or it is the first in view). Ribs run on cranially; lateral bone
/// beside one vertebra only (the first pieces of the iliac crests beside L4 or L5,
/// contrast in both renal pelves) is not a ribcage.
pub fn lowest_ribbed(vertebrae: &[LevelMeasure]) -> Option<usize> {
    let above_pelvis = vertebrae
        .iter()
        .position(|v| v.pelvis)
        .unwrap_or(vertebrae.len());
    let ribbed = |k: usize| vertebrae[k].ribs && (k == 0 || vertebrae[k - 1].ribs);
    (0..above_pelvis).rev().find(|&k| ribbed(k))
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

/// Name the vertebrae (cranial first) from two anchors, checked against the lungs and the
/// lumbar transverse processes (`processes`, which name the levels only when neither
/// anchor is there):
/// - from above, T12 is the lowest vertebra with ribs above the pelvis. Ribs run on
///   cranially, so lateral bone counts as ribs only when the vertebra above has it too (or
///   the volume starts there): the first pieces of the iliac crests beside L4, or contrast
///   in both renal pelves, are small lateral pieces at one level only;
/// - from below, the first vertebra with the ilium beside it is L5 (the crests reach L4 in
///   some people, so this anchor alone is the weaker one); the ilium lies below every
///   rib-bearing vertebra with lung beside it, so plates beside one above the last such
///   vertebra are the shoulder blades;
/// - the lungs: T1-T9 always have lung beside them. When the rib anchor names T9 or higher
///   vertebrae that have none (`lungs_contradict`), the "ribs" were something else dense
///   beside every vertebra (opacified colon, excreted contrast, transverse processes): the
///   rib flags are cleared and the pelvis alone is used, or no level is named;
/// - the count: two or more vertebrae off the usual five between T12 and L5 is not
///   transitional anatomy. When the rib anchor's L1 has lung beside it and the pelvis's has
///   none (`lung_below_ribs`), the lowest ribs were missed, and the pelvis counts.
///
/// Counts are by place along the spine (`places`, from the vertebrae's z `centres`), so a
/// vertebra that was not found between two that were keeps its level's room. Both found
/// and five places apart: sure. Another count (six or four lumbar-looking vertebrae:
/// lumbosacral transitional anatomy, or a high crest): labelled from T12, not sure, and
/// said. Ribs on the lowest vertebra found: no level is named (the scan may end above T12).
/// Only the pelvis: counted up from L5, not sure, and said.
pub fn label(vertebrae: &mut [LevelMeasure], centres: &[f64]) -> Labelling {
    let place = places(centres);
    // The ilium lies below every rib-bearing vertebra with lung beside it: large plates
    // beside one above the last such vertebra are the shoulder blades. (Lung alone could
    // be gas in the bowel beside the pelvis.)
    let last_chest = vertebrae.iter().rposition(|v| v.lung && v.ribs);
    for v in vertebrae.iter_mut().take(last_chest.map_or(0, |k| k + 1)) {
        v.pelvis = false;
    }
    let pelvis = vertebrae.iter().position(|v| v.pelvis);
    let mut t12 = lowest_ribbed(vertebrae);
    let not_ribs = t12.and_then(|t12| lungs_contradict(vertebrae, &place, t12));
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
        (Some(t), Some(p))
            if (place[p] - place[t]).abs_diff(5) >= 2
                && lung_below_ribs(vertebrae, &place, t, p) =>
        {
            t12 = None;
            Some(format!(
                "{} vertebrae from the lowest rib-bearing one down to the first with the ilium beside it (usually 5), and the vertebra it would make L1 has lung beside it: the lowest ribs were missed",
                place[p] - place[t]
            ))
        }
        _ => None,
    };
    let mut labelling = from_anchors(vertebrae, &place, t12, pelvis);
    if let Some(l1) = super::processes::first_lumbar(vertebrae, &place) {
        labelling = super::processes::weigh(labelling, vertebrae, &place, l1, t12, pelvis);
    }
    // Between the first and the last named vertebra: pieces of the sacrum below L5 are
    // not vertebrae missed.
    let first = vertebrae.iter().position(|v| v.level.is_some());
    let last = vertebrae.iter().rposition(|v| v.level.is_some());
    let missed = match (first, last) {
        (Some(a), Some(b)) => (place[b] - place[a]) - (b - a),
        _ => 0,
    };
    if labelling.sure.is_some() && missed > 0 {
        labelling.how =
            format!(
            "{}; {missed} {} between those measured counted from the spacing of their neighbours",
            labelling.how,
            if missed == 1 { "vertebra not found" } else { "vertebrae not found" }
        );
    }
    let overruled = not_ribs
        .map(|why| format!("{why}; the dense pieces beside the spine are not ribs (contrast or transverse processes)"))
        .or(missed_ribs);
    if let Some(why) = overruled {
        // Labels whose anchors were overruled are not sure, whatever agreed after.
        labelling.sure = labelling.sure.map(|_| false);
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
    place: &[usize],
    t12: Option<usize>,
    pelvis: Option<usize>,
) -> Labelling {
    let above_pelvis = pelvis.unwrap_or(vertebrae.len());
    match (t12, pelvis) {
        // The lowest vertebra found has ribs: which rib is the 12th cannot be told (a
        // chest CT, or a real PET-CT from the skull to the upper chest that was labelled
        // T5-T12), so no level is named and nothing lumbar is measured.
        (Some(t12), None) if t12 + 1 == vertebrae.len() => Labelling {
            how: "levels not determined: the lowest vertebra found has ribs, so T12 cannot be told (the scan may end above the lumbar spine)".into(),
            sure: None,
            caution: None,
        },
        (Some(t12), p) => {
            name_from(vertebrae, place, t12, 12);
            let how =
                "T12 = lowest vertebra with ribs above the pelvis; counted caudally from there";
            match p.map(|p| place[p] - place[t12]) {
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
            name_from(vertebrae, place, l5, 17);
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

/// Whether the rib anchor's L1 (the place after `t12`) has lung beside it while the
/// pelvis's L1 (four places above `l5`, the first with the ilium beside it) has none.
fn lung_below_ribs(vertebrae: &[LevelMeasure], place: &[usize], t12: usize, l5: usize) -> bool {
    let at = |p: Option<usize>| p.and_then(|p| place.iter().position(|&q| q == p));
    let rib_l1 = at(Some(place[t12] + 1)).is_some_and(|k| vertebrae[k].lung);
    let pelvis_l1 = at(place[l5].checked_sub(4)).is_some_and(|k| !vertebrae[k].lung);
    rib_l1 && pelvis_l1
}

/// Why taking vertebra `t12` as T12 contradicts the lungs, if it does: the vertebrae it
/// would make T1-T9 (three or more above it) mostly have no lung beside them. At T9 and
/// above the lungs always flank the spine; one vertebra may miss the area threshold, so
/// half of them must lack lung, and at least one. A candidate with lung beside it is
/// thoracic whatever lies above: the neck's vertebrae above the chest have no lung either
/// (a scan from the skull down).
fn lungs_contradict(vertebrae: &[LevelMeasure], place: &[usize], t12: usize) -> Option<String> {
    if vertebrae[t12].lung {
        return None;
    }
    let upper: Vec<&LevelMeasure> = (0..t12)
        .filter(|&k| place[k] + 3 <= place[t12])
        .map(|k| &vertebrae[k])
        .collect();
    let without = upper.iter().filter(|v| !v.lung).count();
    (without > 0 && 2 * without >= upper.len()).then(|| {
        format!(
            "counting from the lowest vertebra with lateral bone as T12 makes {} vertebrae T1-T9, and {without} of them have no lung beside them",
            upper.len()
        )
    })
}

/// Each vertebra's place along the spine (0 for the first), counting vertebrae that were
/// not found between those measured: a gap between two centres of at least 1.6 times the
/// usual pitch there (the median of up to two gaps on each side) holds
/// round(gap / pitch) - 1 missed vertebrae (on a real contrast CT, two mid-thoracic bodies
/// whose cortex did not close, 64 mm apart at a 23 mm pitch). Pitch grows from T1 to L5,
/// hence the neighbours' gaps and not the scan's.
pub fn places(centres: &[f64]) -> Vec<usize> {
    let gaps: Vec<f64> = centres.windows(2).map(|w| (w[0] - w[1]).abs()).collect();
    let mut place = vec![0usize; centres.len()];
    for (i, gap) in gaps.iter().enumerate() {
        let near: Vec<f64> = (i.saturating_sub(2)..(i + 3).min(gaps.len()))
            .filter(|&j| j != i)
            .map(|j| gaps[j])
            .collect();
        let pitch = super::track::median(near);
        let missed = if pitch.is_finite() && pitch > 0.0 && *gap >= 1.6 * pitch {
            // At most a spine's 24 presacral vertebrae, whatever the positions say.
            ((gap / pitch).round() as usize).clamp(1, 25) - 1
        } else {
            0
        };
        place[i + 1] = place[i] + 1 + missed;
    }
    place
}

/// Name vertebra `anchor` by its ordinal (T1 = 1 ... T12 = 12, L1 = 13 ... L5 = 17) and
/// the others by their place from it; beyond T1 or L5 a vertebra stays unnamed.
pub(super) fn name_from(
    vertebrae: &mut [LevelMeasure],
    place: &[usize],
    anchor: usize,
    ordinal: i64,
) {
    for (k, v) in vertebrae.iter_mut().enumerate() {
        let o = ordinal + place[k] as i64 - place[anchor] as i64;
        v.level = match o {
            1..=12 => Some(format!("T{o}")),
            13..=17 => Some(format!("L{}", o - 12)),
            _ => None,
        };
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::analysis::finding::RoiOutline;

    /// Centres of `n` vertebrae at a steady 30 mm pitch, cranial first.
    pub(in crate::analysis::ct) fn even(n: usize) -> Vec<f64> {
        (0..n).map(|k| -30.0 * k as f64).collect()
    }

    pub(in crate::analysis::ct) fn vertebra(
        median_hu: f64,
        ribs: bool,
        lung: bool,
    ) -> LevelMeasure {
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
            transverse_processes: 0,
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
        let c = even(v.len());
        let labelling = label(&mut v, &c);
        assert!(v.iter().all(|x| x.level.is_none() && !x.ribs), "{v:?}");
        assert_eq!(labelling.sure, None);
        assert!(labelling.how.starts_with("levels not determined"));
        assert!(labelling.caution.as_deref().unwrap().contains("not ribs"));
        let m = super::super::CtMeasurement::new(v, labelling);
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
        let c = even(v.len());
        let labelling = label(&mut v, &c);
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
        let c = even(v.len());
        let labelling = label(&mut v, &c);
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
        let c = even(v.len());
        label(&mut v, &c);
        assert_eq!(v[1].level.as_deref(), Some("T12"), "{v:?}");
    }

    /// Two vertebrae missed between the first and second found (a 64 mm gap at a 23 mm
    /// pitch) move the names above the gap, not below it; a long lumbar pitch beside short
    /// thoracic ones is not a gap.
    #[test]
    fn vertebrae_missed_between_those_found_keep_their_places() {
        assert_eq!(
            places(&[0.0, -64.5, -85.5, -111.0, -135.0, -174.0, -205.0, -240.0]),
            [0, 3, 4, 5, 6, 7, 8, 9]
        );
        let mut v: Vec<LevelMeasure> = (0..8).map(|k| vertebra(200.0, k <= 1, k <= 2)).collect();
        let labelling = label(
            &mut v,
            &[0.0, -64.5, -85.5, -111.0, -135.0, -174.0, -205.0, -240.0],
        );
        let names: Vec<Option<&str>> = v.iter().map(|x| x.level.as_deref()).collect();
        assert_eq!(
            names,
            [
                Some("T9"),
                Some("T12"),
                Some("L1"),
                Some("L2"),
                Some("L3"),
                Some("L4"),
                Some("L5"),
                None
            ],
            "{}",
            labelling.how
        );
        assert!(
            labelling.how.contains("2 vertebrae not found"),
            "{}",
            labelling.how
        );
    }

    /// Thin plates on both sides of the last lumbar vertebra (the upper iliac wings) make it
    /// the pelvis's first; the same beside a vertebra below one with ribs (the 12th ribs
    /// beside L1) or beside lung do not.
    #[test]
    fn thin_iliac_wings_anchor_the_pelvis_unless_ribs_or_lung_explain_them() {
        let mut v: Vec<LevelMeasure> = (0..6).map(|k| vertebra(150.0, k == 0, false)).collect();
        let wings = [false, false, false, false, false, true];
        pelvis_from_wings(&mut v, &wings);
        assert!(v[5].pelvis && !v[5].ribs);
        let mut v: Vec<LevelMeasure> = (0..6).map(|k| vertebra(150.0, k == 0, k == 1)).collect();
        pelvis_from_wings(&mut v, &[false, true, false, false, false, false]);
        assert!(v.iter().all(|x| !x.pelvis), "lung beside: {v:?}");
        let mut v: Vec<LevelMeasure> = (0..6).map(|k| vertebra(150.0, k == 0, false)).collect();
        pelvis_from_wings(&mut v, &[false, true, false, false, false, false]);
        assert!(v.iter().all(|x| !x.pelvis), "ribs above: {v:?}");
        // A large plate above thin wings is the first with the ilium beside it.
        let mut v: Vec<LevelMeasure> = (0..6).map(|_| vertebra(150.0, false, false)).collect();
        v[4].pelvis = true;
        pelvis_from_wings(&mut v, &[false, false, false, false, false, true]);
        assert!(v[4].pelvis && !v[5].pelvis);
    }

    /// A chest CT that ends on a rib-bearing vertebra: its lowest ribs need not be the
    /// 12th, so no level is named and the labelling says why; shoulder blades beside the
    /// top vertebra are not the pelvis.
    #[test]
    fn a_scan_ending_on_ribs_names_no_level_and_shoulder_blades_are_not_the_pelvis() {
        let mut v: Vec<LevelMeasure> = (0..6).map(|k| vertebra(200.0, true, k < 4)).collect();
        v[0].pelvis = true;
        let c = even(v.len());
        let labelling = label(&mut v, &c);
        assert!(!v[0].pelvis);
        assert!(v.iter().all(|x| x.level.is_none()), "{v:?}");
        assert_eq!(labelling.sure, None);
        assert!(
            labelling.how.contains("T12 cannot be told"),
            "{}",
            labelling.how
        );
    }
}
