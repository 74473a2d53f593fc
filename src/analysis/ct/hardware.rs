//! Spinal hardware. Metal in or beside a vertebra (pedicle screws, a cage, a rod) makes its
//! trabecular HU meaningless: the streaks it casts darken and brighten the bone for several
//! mm around it. A reader leaves such a level out; so does the class (`classify`), and the
//! Finding, SR and key image say why.

use super::track::Piece;
use super::volume::Volume;

/// Above this is metal: cortical bone stays under about 1,900 HU, and no noise reaches
/// it; excreted or oral contrast rarely does, and then lies outside the box below.
const METAL_HU: f32 = 2500.0;
/// Metal area (mm², summed over one slice) that marks a level: a screw cut lengthwise shows
/// some 200 mm², so a few hot pixels do not count.
const MIN_METAL_MM2: f64 = 10.0;
/// Metal this far above or below the vertebra's slices still counts (mm): slices through
/// screws are often those where the body is not found, at the edge of the piece.
const Z_MARGIN_MM: f64 = 6.0;
/// The box searched around the body's centre (mm): the body, the pedicles and the rods
/// behind them, not the ureters or bowel beside and in front of the spine.
const HALF_WIDTH_MM: f64 = 30.0;
const ANTERIOR_MM: f64 = 25.0;
const POSTERIOR_MM: f64 = 60.0;

/// Whether there is metal in or around the vertebra `piece`, whose body's centre in
/// its middle slice is `centre` (column, row).
pub fn metal_near(piece: &Piece, centre: (f64, f64), volume: &Volume) -> bool {
    let (top, bottom) = piece.z_range(volume);
    let (row_mm, col_mm) = volume.spacing;
    let min_pixels = ((MIN_METAL_MM2 / (row_mm * col_mm)).ceil() as usize).max(1);
    let span = |c: f64, before: f64, after: f64, len: usize| {
        let lo = (c - before).max(0.0) as usize;
        let hi = ((c + after).max(0.0) as usize).min(len.saturating_sub(1));
        lo..=hi
    };
    volume
        .z
        .iter()
        .zip(&volume.slices)
        .filter(|(z, _)| **z <= top + Z_MARGIN_MM && **z >= bottom - Z_MARGIN_MM)
        .any(|(_, frame)| {
            let w = frame.columns;
            let columns = span(centre.0, HALF_WIDTH_MM / col_mm, HALF_WIDTH_MM / col_mm, w);
            let rows = span(
                centre.1,
                ANTERIOR_MM / row_mm,
                POSTERIOR_MM / row_mm,
                frame.rows,
            );
            let mut found = 0;
            for r in rows {
                let row = &frame.values[r * w..(r + 1) * w];
                found += row[columns.clone()]
                    .iter()
                    .filter(|v| **v > METAL_HU)
                    .count();
                if found >= min_pixels {
                    return true;
                }
            }
            false
        })
}
