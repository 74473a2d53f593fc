//! Where the lumbar spine lies on a lateral radiograph. The frontal rule (the column
//! brighter than both flanks) alone misses there: the abdomen's soft tissue is thick and
//! bright in front of the spine, and the spine lies anywhere from the middle of the field
//! to its back. What a lateral spine has and soft tissue lacks is a stack of endplates:
//! horizontal edges, one every 30-40 mm. So the column is where the brightness rule and
//! the endplate-edge energy (row-to-row differences, less the column-to-column ones so that
//! the field's vertical borders and the skin line do not count) are highest together,
//! each as a z-score over the columns searched.

use super::framing::{above_flanks, gaussian, ROWS};

/// On a lateral view the spine lies anywhere from the middle to the back.
const COLUMNS: (f64, f64) = (0.15, 0.85);
/// The picture is smoothed this much (sigma, mm) before its differences are taken...
const EDGE_SMOOTH_MM: f64 = 1.5;
/// ...and the edge energy's column profile this much.
const EDGE_PROFILE_MM: f64 = 8.0;
/// Vertical borders count against a column at this weight.
const VERTICAL_EDGE_WEIGHT: f64 = 0.5;

/// The column of the spine on a lateral view of `display` (rows x cols, 0..1, bone
/// bright) at `mm` a pixel.
pub fn spine_column(display: &[f32], rows: usize, cols: usize, mm: f64) -> usize {
    let bin = ((1.0 / mm).round() as usize).max(1);
    let (gr, gc) = (rows / bin, cols / bin);
    if gr < 3 || gc < 3 {
        return cols / 2;
    }
    let grid_mm = mm * bin as f64;
    let grid = block_mean(display, cols, bin, gr, gc);
    let (ra, rb) = (
        ((gr as f64 * ROWS.0) as usize).max(1),
        ((gr as f64 * ROWS.1) as usize).clamp(2, gr - 1),
    );
    if rb <= ra {
        return cols / 2;
    }
    // Brightness against both flanks, as on a frontal view.
    let mut profile = vec![0f64; gc];
    for r in ra..rb {
        for (p, v) in profile.iter_mut().zip(&grid[r * gc..(r + 1) * gc]) {
            *p += v;
        }
    }
    let bright = above_flanks(&profile, grid_mm);
    // Endplate edges.
    let s = smooth_2d(&grid, gr, gc, EDGE_SMOOTH_MM / grid_mm);
    let mut edge = vec![0f64; gc];
    for r in ra..rb {
        for (c, e) in edge.iter_mut().enumerate() {
            let dy = (s[(r + 1) * gc + c] - s[(r - 1) * gc + c]).abs();
            let dx = (s[r * gc + (c + 1).min(gc - 1)] - s[r * gc + c.saturating_sub(1)]).abs();
            *e += dy - VERTICAL_EDGE_WEIGHT * dx;
        }
    }
    let edge = gaussian(&edge, EDGE_PROFILE_MM / grid_mm);
    let (lo, hi) = (
        (gc as f64 * COLUMNS.0) as usize,
        ((gc as f64 * COLUMNS.1) as usize).clamp(1, gc),
    );
    if hi <= lo {
        return cols / 2;
    }
    let (zb, ze) = (z_scores(&bright[lo..hi]), z_scores(&edge[lo..hi]));
    let best = zb
        .iter()
        .zip(&ze)
        .enumerate()
        .max_by(|a, b| (a.1 .0 + a.1 .1).total_cmp(&(b.1 .0 + b.1 .1)))
        .map_or(gc / 2, |(i, _)| lo + i);
    (best * bin + bin / 2).min(cols - 1)
}

/// `v` (cols wide) averaged over `bin` x `bin` blocks: `gr` x `gc` values.
fn block_mean(v: &[f32], cols: usize, bin: usize, gr: usize, gc: usize) -> Vec<f64> {
    let mut out = vec![0f64; gr * gc];
    for r in 0..gr * bin {
        let row = &v[r * cols..r * cols + gc * bin];
        for (c, x) in row.iter().enumerate() {
            out[(r / bin) * gc + c / bin] += *x as f64;
        }
    }
    let n = (bin * bin) as f64;
    out.iter_mut().for_each(|x| *x /= n);
    out
}

/// `v` (rows x cols) smoothed by a Gaussian of `sigma` samples, rows then columns.
fn smooth_2d(v: &[f64], rows: usize, cols: usize, sigma: f64) -> Vec<f64> {
    let mut out: Vec<f64> = v
        .chunks(cols)
        .flat_map(|row| gaussian(row, sigma))
        .collect();
    for c in 0..cols {
        let column: Vec<f64> = (0..rows).map(|r| out[r * cols + c]).collect();
        for (r, x) in gaussian(&column, sigma).into_iter().enumerate() {
            out[r * cols + c] = x;
        }
    }
    out
}

/// `v` as z-scores (all zero when it does not vary).
fn z_scores(v: &[f64]) -> Vec<f64> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    v.iter().map(|x| (x - mean) / sd.max(1e-12)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 400 x 300 mm lateral picture at `mm` a pixel: a broad bright abdomen on the
    /// left (front), a stack of 30 mm vertebral bodies 40 mm wide with 5 mm dark discs
    /// centred `spine_mm` from the left, dark air behind the back at 270 mm.
    fn lateral(mm: f64, spine_mm: f64) -> (Vec<f32>, usize, usize) {
        let (rows, cols) = ((400.0 / mm) as usize, (300.0 / mm) as usize);
        let v = (0..rows * cols)
            .map(|i| {
                let (y, x) = ((i / cols) as f64 * mm, (i % cols) as f64 * mm);
                let mut g = if x > 270.0 {
                    0.05
                } else {
                    // Thick soft tissue in front, thinning towards the back.
                    0.55 - 0.25 * (x / 270.0)
                };
                if (x - spine_mm).abs() < 20.0 && y % 35.0 > 5.0 {
                    g += 0.15;
                }
                g as f32
            })
            .collect();
        (v, rows, cols)
    }

    #[test]
    fn the_column_is_the_stack_of_vertebral_bodies() {
        for (mm, spine) in [(0.15, 190.0), (0.3, 170.0), (0.5, 200.0)] {
            let (v, rows, cols) = lateral(mm, spine);
            let c = spine_column(&v, rows, cols, mm) as f64 * mm;
            assert!(
                (c - spine).abs() < 10.0,
                "{mm} mm: column at {c} mm, spine {spine}"
            );
        }
    }

    #[test]
    fn tiny_or_flat_pictures_give_the_middle() {
        assert_eq!(spine_column(&[0.5; 4], 2, 2, 1.0), 1);
        let flat = vec![0.5f32; 200 * 100];
        let c = spine_column(&flat, 200, 100, 1.0);
        assert!(c < 100);
    }
}
