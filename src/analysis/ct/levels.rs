//! Telling vertebrae apart: what lies beside the spine (ribs, the ilium), which level
//! each vertebra is, and which ones are much lower than their neighbours.

use super::body::SliceBody;
use super::morph::{components, extent};
use crate::analysis::finding::LevelMeasure;
use crate::analysis::image::Frame;

/// Cortical bone of ribs and ilium, for telling levels apart.
const CORTEX_HU: f32 = 400.0;

/// What lies beside the spine in a slice: ribs (small separate pieces of cortical bone
/// 45-140 mm to both sides, level with or behind the body) and the pelvis (a large plate of
/// bone 50-170 mm to the side: the ilium).
pub fn beside_the_spine(frame: &Frame, body: &SliceBody, spacing: (f64, f64)) -> (bool, bool) {
    let (w, h) = (frame.columns, frame.rows);
    let bone: Vec<bool> = frame.values.iter().map(|v| *v > CORTEX_HU).collect();
    let pixel_mm2 = spacing.0 * spacing.1;
    let first_row = (body.centre.1 as usize).saturating_sub((15.0 / spacing.0) as usize);
    let mut sides = [false; 2];
    let mut pelvis = false;
    for piece in components(&bone, w, h) {
        let area = piece.len() as f64 * pixel_mm2;
        let (cx, cy, _, _) = extent(&piece, w);
        let dx = (cx - body.centre.0) * spacing.1;
        let level_or_behind = cy >= first_row as f64;
        if level_or_behind && (15.0..400.0).contains(&area) && (45.0..140.0).contains(&dx.abs()) {
            sides[(dx > 0.0) as usize] = true;
        }
        if area > 500.0 && (50.0..170.0).contains(&dx.abs()) {
            pelvis = true;
        }
    }
    (sides[0] && sides[1] && !pelvis, pelvis)
}

/// T12 is the lowest vertebra with ribs above the pelvis; the ones below are L1, L2, ...
/// Ribs run on cranially, so lateral bone counts as ribs only when the vertebra above has
/// it too (or the volume starts there): the first pieces of the iliac crests beside L4,
/// or contrast in both renal pelves, are small lateral pieces at one level only.
pub fn label(vertebrae: &mut [LevelMeasure]) -> String {
    let above_pelvis = vertebrae
        .iter()
        .position(|v| v.pelvis)
        .unwrap_or(vertebrae.len());
    let ribbed = |k: usize| vertebrae[k].ribs && (k == 0 || vertebrae[k - 1].ribs);
    let Some(t12) = (0..above_pelvis).rev().find(|&k| ribbed(k)) else {
        return if vertebrae[..above_pelvis].iter().any(|v| v.ribs) {
            "levels not determined: lateral bone beside a single vertebra only (an iliac crest or contrast, not ribs)".into()
        } else {
            "levels not determined: no rib-bearing vertebra above the pelvis".into()
        };
    };
    let names = ["T12", "L1", "L2", "L3", "L4", "L5"];
    for (k, v) in vertebrae.iter_mut().enumerate().skip(t12) {
        v.level = names.get(k - t12).map(|s| s.to_string());
    }
    for (k, v) in vertebrae.iter_mut().enumerate().take(t12) {
        v.level = (t12 - k <= 11).then(|| format!("T{}", 12 - (t12 - k)));
    }
    "T12 = lowest vertebra with ribs above the pelvis; counted caudally from there".into()
}

/// Flag vertebrae much lower than their neighbours (< 75 % of their mean height):
/// possibly a compression fracture.
pub fn flag_compressed(vertebrae: &mut [LevelMeasure]) {
    let heights: Vec<f64> = vertebrae.iter().map(|v| v.height_mm).collect();
    for (k, v) in vertebrae.iter_mut().enumerate() {
        let neighbours: Vec<f64> = [k.checked_sub(1), Some(k + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| heights.get(j).copied())
            .collect();
        if !neighbours.is_empty() {
            let mean = neighbours.iter().sum::<f64>() / neighbours.len() as f64;
            v.compressed = v.height_mm < 0.75 * mean;
        }
    }
}
