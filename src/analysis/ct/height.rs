//! Vertebrae much lower than their neighbours: possibly a compression fracture, whose HU
//! should not drive a class.

use crate::analysis::finding::LevelMeasure;

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
