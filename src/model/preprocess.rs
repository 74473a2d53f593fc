//! Radiograph preprocessing for the network: display values (0..1, bone bright) in;
//! collimation cropped, aspect-preserving resize into 256 x 256 with padding, robust
//! normalisation (median and 5-95 % range) out.

use super::net::INPUT_SIZE;

/// Rows or columns this flat (standard deviation below this) at the edges are collimator
/// or padding, not patient.
const FLAT: f32 = 0.02;

/// `display`: rows x cols values in 0..1.
pub fn prepare(display: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let (r0, r1, c0, c1) = crop_collimation(display, rows, cols);
    let (h, w) = (r1 - r0, c1 - c0);
    let scale = INPUT_SIZE as f32 / h.max(w) as f32;
    let (oh, ow) = (
        ((h as f32 * scale).round() as usize).clamp(1, INPUT_SIZE),
        ((w as f32 * scale).round() as usize).clamp(1, INPUT_SIZE),
    );
    let (top, left) = ((INPUT_SIZE - oh) / 2, (INPUT_SIZE - ow) / 2);
    let mut resized = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let sy = ((y as f32 + 0.5) / scale - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, fy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..ow {
            let sx = ((x as f32 + 0.5) / scale - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, fx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(w - 1);
            let at = |yy: usize, xx: usize| display[(r0 + yy) * cols + c0 + xx];
            let top_v = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom_v = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            resized.push(top_v * (1.0 - fy) + bottom_v * fy);
        }
    }
    let mut sorted = resized.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = sorted[n / 2];
    let range = (sorted[n * 95 / 100] - sorted[n * 5 / 100]).max(1e-3);
    let mut out = vec![0.0; INPUT_SIZE * INPUT_SIZE];
    for y in 0..oh {
        for x in 0..ow {
            out[(top + y) * INPUT_SIZE + left + x] = (resized[y * ow + x] - median) / range;
        }
    }
    out
}

/// Bounds (r0, r1, c0, c1) after trimming flat edge rows and columns.
fn crop_collimation(v: &[f32], rows: usize, cols: usize) -> (usize, usize, usize, usize) {
    let std_of = |it: &mut dyn Iterator<Item = f32>| {
        let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for x in it {
            s += x as f64;
            s2 += (x as f64) * (x as f64);
            n += 1.0;
        }
        let m = s / n.max(1.0);
        ((s2 / n.max(1.0) - m * m).max(0.0)).sqrt() as f32
    };
    let row_flat = |r: usize| std_of(&mut v[r * cols..(r + 1) * cols].iter().copied()) < FLAT;
    let col_flat = |c: usize| std_of(&mut (0..rows).map(|r| v[r * cols + c])) < FLAT;
    let (mut r0, mut r1, mut c0, mut c1) = (0, rows, 0, cols);
    while r0 + 8 < r1 && row_flat(r0) {
        r0 += 1;
    }
    while r1 > r0 + 8 && row_flat(r1 - 1) {
        r1 -= 1;
    }
    while c0 + 8 < c1 && col_flat(c0) {
        c0 += 1;
    }
    while c1 > c0 + 8 && col_flat(c1 - 1) {
        c1 -= 1;
    }
    (r0, r1, c0, c1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 x 60 image: 10-pixel white collimation border around a gradient (rows) with a
    /// fine pattern (columns).
    fn collimated() -> (Vec<f32>, usize, usize) {
        let (rows, cols) = (100, 60);
        let v = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                if !(10..90).contains(&r) || !(10..50).contains(&c) {
                    1.0
                } else {
                    (r as f32 / rows as f32) * 0.5 + (c % 7) as f32 * 0.02
                }
            })
            .collect();
        (v, rows, cols)
    }

    /// The value at `q` (0..1) of the sorted values, indexed as `prepare` indexes them.
    fn quantile(sorted: &[f32], q: usize) -> f32 {
        sorted[sorted.len() * q / 100]
    }

    #[test]
    fn collimation_is_cropped_and_output_is_normalised() {
        let (v, rows, cols) = collimated();
        assert_eq!(crop_collimation(&v, rows, cols), (10, 90, 10, 50));
        let out = prepare(&v, rows, cols);
        assert_eq!(out.len(), INPUT_SIZE * INPUT_SIZE);
        assert!(out.iter().all(|x| x.is_finite()));
        // Aspect kept: the 80 x 40 field becomes 256 x 128, centred: columns 64..192.
        let image_col = |c: usize| (64..192).contains(&c);
        // The padding is exactly 0 (the normalised median), left and right.
        for (i, &x) in out.iter().enumerate() {
            if !image_col(i % INPUT_SIZE) {
                assert_eq!(
                    x,
                    0.0,
                    "padding at row {}, column {}",
                    i / INPUT_SIZE,
                    i % INPUT_SIZE
                );
            }
        }
        // The image part: robust normalisation, median 0 and 5-95 % range 1.
        let mut image: Vec<f32> = out
            .iter()
            .enumerate()
            .filter(|(i, _)| image_col(i % INPUT_SIZE))
            .map(|(_, &x)| x)
            .collect();
        assert_eq!(image.len(), 256 * 128);
        image.sort_by(|a, b| a.total_cmp(b));
        assert!(
            quantile(&image, 50).abs() < 1e-6,
            "median {}",
            quantile(&image, 50)
        );
        let range = quantile(&image, 95) - quantile(&image, 5);
        assert!((range - 1.0).abs() < 1e-4, "5-95 % range {range}");
        // Against the input: the field's values (0.05..0.445 plus 0..0.12) have a median
        // near 0.31 and a 5-95 % range near 0.38, so the darkest and brightest pixels map
        // to about -0.7 and +0.7; the collimator's white (1.0) would be near +1.8.
        let (lo, hi) = (image[0], image[image.len() - 1]);
        assert!((-0.9..-0.45).contains(&lo), "darkest {lo}");
        assert!(
            (0.45..0.9).contains(&hi),
            "brightest {hi}: collimator leaked in?"
        );
        // Order kept: the gradient runs top to bottom.
        let row_mean = |r: usize| (64..192).map(|c| out[r * INPUT_SIZE + c]).sum::<f32>() / 128.0;
        assert!(row_mean(10) < row_mean(128) && row_mean(128) < row_mean(245));
    }

    #[test]
    fn a_flat_image_does_not_divide_by_zero() {
        // No spread at all: the range floor (1e-3) keeps the output finite and at the
        // median (0, up to the interpolation's rounding).
        let out = prepare(&vec![0.4; 64 * 64], 64, 64);
        assert!(out.iter().all(|&x| x.abs() < 1e-3), "{:?}", &out[..8]);
    }
}
