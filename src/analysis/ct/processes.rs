//! The lumbar transverse-process anchor. Lumbar vertebrae carry a transverse process on
//! each side (bone that ends 31-48 mm out on the real contrast CT and the independent
//! phantoms, `ribs::outgrowths`); T12 carries ribs, or nothing that reaches 30 mm. So the
//! first of a run of vertebrae with processes on both sides, directly below one with ribs
//! or without processes, is L1.
//!
//! It is the weakest anchor: the stub of a short 12th rib looks like a process, and one
//! side's process can be missed (28 mm on one side of L1 on the real 3 mm CT). So it names
//! levels only when there are neither ribs nor the pelvis to count from, and otherwise
//! confirms or questions the anchor that named them.

use super::levels::{lowest_ribbed, name_from, Labelling};
use crate::analysis::finding::LevelMeasure;

/// Vertebrae with processes on both sides, one after another, that make a lumbar run: a
/// thoracic vertebra whose ribs were missed rarely shows a process on both sides, three
/// in a row still less.
const RUN: usize = 3;

/// Processes on both sides and nothing thoracic or pelvic beside it.
fn lumbar_shaped(v: &LevelMeasure) -> bool {
    v.transverse_processes == 2 && !v.ribs && !v.lung && !v.pelvis
}

/// L1 by the transverse processes: the first lumbar-shaped vertebra below the ribcage
/// and above the pelvis, when it starts a run of `RUN` and the vertebra directly above it
/// (none missed between) has ribs or no process. (Above the ribcage, `levels::lowest_ribbed`,
/// lies the neck, whose vertebrae have processes and no lung beside them.) `place` counts
/// vertebrae along the spine (`levels::places`).
pub fn first_lumbar(vertebrae: &[LevelMeasure], place: &[usize]) -> Option<usize> {
    let above_pelvis = vertebrae
        .iter()
        .position(|v| v.pelvis)
        .unwrap_or(vertebrae.len());
    let below_ribs = lowest_ribbed(vertebrae).map_or(0, |k| k + 1);
    let l1 = below_ribs
        + vertebrae[below_ribs..above_pelvis]
            .iter()
            .position(lumbar_shaped)?;
    let above = &vertebrae[l1.checked_sub(1)?];
    let next = |k: usize| place.get(k + 1) == Some(&(place[k] + 1));
    let bare_above = (above.ribs || above.transverse_processes == 0) && next(l1 - 1);
    let run = (l1..l1 + RUN)
        .all(|k| vertebrae.get(k).is_some_and(lumbar_shaped) && (k + 1 == l1 + RUN || next(k)));
    (bare_above && run).then_some(l1)
}

/// Weigh the labels the ribs and the pelvis gave (`t12`, `l5`: the vertebrae they named)
/// against L1 by the transverse processes (`l1`):
/// - ribs and pelvis both there: they decide, and their disagreement is said already;
/// - the ribs alone: agreeing processes are said; others are not weighed (below);
/// - the pelvis alone: agreeing processes make the pair sure; disagreeing ones are said,
///   and the labels stay the pelvis's, not sure;
/// - neither: the processes name the levels, not sure, and the reader is told.
pub fn weigh(
    labelling: Labelling,
    vertebrae: &mut [LevelMeasure],
    place: &[usize],
    l1: usize,
    t12: Option<usize>,
    l5: Option<usize>,
) -> Labelling {
    const AGREE: &str = "the first vertebra with lumbar transverse processes agrees";
    // Places from the L1 the other anchor gives to the processes' L1 (below: positive).
    let off = |l1_place: i64| place[l1] as i64 - l1_place;
    match (labelling.sure, t12, l5) {
        // Processes can only put L1 below the ribs' (a ribbed vertebra is not lumbar-
        // shaped), and that is what a missed process does (the real 3 mm CT's L1): the
        // ribs, followed to their heads, are not questioned by it.
        (Some(_), Some(t12), None) if off(place[t12] as i64 + 1) == 0 => Labelling {
            how: format!("{}; {AGREE}", labelling.how),
            ..labelling
        },
        (Some(_), Some(_), _) => labelling,
        (Some(_), None, Some(l5)) => match off(place[l5] as i64 - 4) {
            0 => Labelling {
                how: format!("{}; {AGREE}", labelling.how),
                sure: Some(true),
                caution: None,
            },
            n => {
                let why = format!(
                    "CT level anchors disagree: the first vertebra with lumbar transverse processes on both sides lies {} {} {} the one the ilium makes L1; levels counted from the ilium",
                    n.abs(),
                    if n.abs() == 1 { "vertebra" } else { "vertebrae" },
                    if n > 0 { "below" } else { "above" },
                );
                Labelling {
                    how: labelling.how,
                    sure: Some(false),
                    caution: Some(match labelling.caution {
                        Some(c) => format!("{c}; {why}"),
                        None => why,
                    }),
                }
            }
        },
        _ => {
            name_from(vertebrae, place, l1, 13);
            Labelling {
                how: "L1 = first of three vertebrae with transverse processes on both sides, below one with ribs or none (no rib-bearing T12 or pelvis to count from); counted from there".into(),
                sure: Some(false),
                caution: Some(
                    "CT levels from the transverse processes only (no ribs or pelvis to count from): L1 may be one level off".into(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::levels::label;
    use super::super::levels::tests::{even, vertebra};
    use crate::analysis::finding::LevelMeasure;

    /// T12 to L5 as `(ribs, lung, process sides, pelvis)` per vertebra.
    fn spine(parts: &[(bool, bool, u8, bool)]) -> Vec<LevelMeasure> {
        parts
            .iter()
            .map(|&(ribs, lung, sides, pelvis)| {
                let mut v = vertebra(150.0, ribs, lung);
                v.transverse_processes = sides;
                v.pelvis = pelvis;
                v
            })
            .collect()
    }

    fn names(v: &[LevelMeasure]) -> Vec<Option<&str>> {
        v.iter().map(|x| x.level.as_deref()).collect()
    }

    /// Thick slices miss the 12th ribs: the pelvis counts up, and processes on L1-L4 below
    /// a T12 without any make the pair sure.
    #[test]
    fn processes_below_a_bare_t12_confirm_the_pelvis() {
        let lumbar = (false, false, 2, false);
        let mut v = spine(&[
            (false, true, 0, false),
            lumbar,
            lumbar,
            lumbar,
            lumbar,
            (false, false, 2, true),
        ]);
        let labelling = label(&mut v, &even(6));
        assert_eq!(names(&v)[1], Some("L1"));
        assert_eq!(labelling.sure, Some(true), "{labelling:?}");
        assert!(labelling.how.contains("transverse processes agree"));
        assert_eq!(labelling.caution, None);
        // A high crest beside L4 (L5 out of view): the pelvis makes T12 "L1", the
        // processes do not agree, and the reader is told.
        let mut v = spine(&[
            (false, false, 0, false),
            lumbar,
            lumbar,
            lumbar,
            (false, false, 2, true),
        ]);
        let labelling = label(&mut v, &even(5));
        assert_eq!(names(&v)[0], Some("L1"), "counted from the ilium");
        assert_eq!(labelling.sure, Some(false));
        let caution = labelling.caution.unwrap();
        assert!(
            caution.contains("lies 1 vertebra below the one the ilium makes L1"),
            "{caution}"
        );
    }

    /// No ribs and no pelvis in view (a scan from T12 to L4 with thick slices): the
    /// processes name the levels, not sure.
    #[test]
    fn without_ribs_or_pelvis_the_processes_name_the_levels() {
        let lumbar = (false, false, 2, false);
        let mut v = spine(&[(false, false, 0, false), lumbar, lumbar, lumbar, lumbar]);
        let labelling = label(&mut v, &even(5));
        assert_eq!(
            names(&v),
            [Some("T12"), Some("L1"), Some("L2"), Some("L3"), Some("L4")]
        );
        assert_eq!(labelling.sure, Some(false));
        assert!(labelling
            .caution
            .unwrap()
            .contains("transverse processes only"));
    }

    /// What the processes cannot tell, they leave alone: one side missed on L1 (the real
    /// 3 mm CT), a run shorter than three, a vertebra missed above the run, processes on
    /// every vertebra from the top of the scan.
    #[test]
    fn doubtful_processes_name_nothing_and_question_nothing() {
        let lumbar = (false, false, 2, false);
        let one_side = (false, false, 1, false);
        let bare = (false, false, 0, false);
        for (parts, centres) in [
            (vec![bare, one_side, lumbar, lumbar, lumbar], even(5)),
            (vec![bare, lumbar, lumbar, bare, lumbar], even(5)),
            (vec![lumbar, lumbar, lumbar, lumbar], even(4)),
            (
                vec![bare, lumbar, lumbar, lumbar],
                vec![0.0, -60.0, -90.0, -120.0],
            ),
        ] {
            let mut v = spine(&parts);
            let labelling = label(&mut v, &centres);
            assert_eq!(labelling.sure, None, "{parts:?}: {labelling:?}");
            assert!(v.iter().all(|x| x.level.is_none()));
        }
        // A scan from the neck down to the chest: processes on the neck's vertebrae above
        // the ribs name nothing.
        let ribbed_chest = (true, true, 0, false);
        let neck = (false, false, 2, false);
        let mut v = spine(&[bare, neck, neck, neck, ribbed_chest, ribbed_chest]);
        let labelling = label(&mut v, &even(6));
        assert_eq!(labelling.sure, None, "{labelling:?}");
        assert!(v.iter().all(|x| x.level.is_none()));
        // The ribs name T12 and the processes agree; processes missed on L1 (one side, or
        // both) question nothing.
        let ribbed = (true, false, 0, false);
        for l1 in [lumbar, one_side, bare] {
            let mut v = spine(&[ribbed, ribbed, l1, lumbar, lumbar, lumbar]);
            let labelling = label(&mut v, &even(6));
            assert_eq!(names(&v)[1], Some("T12"));
            assert_eq!(labelling.sure, Some(true), "{labelling:?}");
            assert_eq!(labelling.caution, None);
        }
    }
}
