//! Augmentation aimed at domain shift: a model that only knows one generator's (or one
//! vendor's) look is useless elsewhere. Applied to the display image before the daemon's
//! own preprocessing, each with its own probability: crop (other detector sizes and
//! framing), rotation/scale/shift (other pixel spacings and positioning), horizontal flip
//! (AP and lateral both occur mirrored; never vertical), collimation edges, anti-scatter
//! grid lines, burned-in text and markers, exposure (window clipping and gamma, kept
//! moderate because bone contrast is the signal), edge enhancement or its absence
//! (vendor processing), blur and noise. MONOCHROME1 is not simulated here: the synthetic
//! set contains real MONOCHROME1 files and the display step inverts them.

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// An image being augmented: rows x cols values, 0..1.
pub struct Img {
    pub rows: usize,
    pub cols: usize,
    pub v: Vec<f32>,
}

/// Apply every augmentation (each by chance) to `img`.
pub fn augment(img: Img, rng: &mut impl Rng) -> Img {
    let mut img = if rng.random_bool(0.5) {
        crop(&img, rng)
    } else {
        img
    };
    if rng.random_bool(0.8) {
        img = affine(&img, rng);
    }
    if rng.random_bool(0.5) {
        flip(&mut img);
    }
    if rng.random_bool(0.5) {
        processing(&mut img, rng);
    }
    if rng.random_bool(0.8) {
        exposure(&mut img, rng);
    }
    if rng.random_bool(0.25) {
        grid_lines(&mut img, rng);
    }
    if rng.random_bool(0.4) {
        burned_in(&mut img, rng);
    }
    if rng.random_bool(0.3) {
        collimation(&mut img, rng);
    }
    if rng.random_bool(0.3) {
        let r = rng.random_range(1..=2);
        img.v = box_blur(&img.v, img.rows, img.cols, r);
    }
    if rng.random_bool(0.6) {
        noise(&mut img, rng);
    }
    img
}

/// Keep 70-100 % of each side.
fn crop(img: &Img, rng: &mut impl Rng) -> Img {
    let h = ((img.rows as f64) * rng.random_range(0.7..=1.0)) as usize;
    let w = ((img.cols as f64) * rng.random_range(0.7..=1.0)) as usize;
    let (h, w) = (h.max(16).min(img.rows), w.max(16).min(img.cols));
    let top = rng.random_range(0..=img.rows - h);
    let left = rng.random_range(0..=img.cols - w);
    let mut v = Vec::with_capacity(h * w);
    for y in top..top + h {
        v.extend_from_slice(&img.v[y * img.cols + left..][..w]);
    }
    Img {
        rows: h,
        cols: w,
        v,
    }
}

/// Rotation ±7°, scale 0.88-1.14, shift ±5 %; bilinear; the outside filled with one value
/// (dark or collimator-bright).
fn affine(img: &Img, rng: &mut impl Rng) -> Img {
    let angle = rng.random_range(-7f32..7.0).to_radians();
    let scale = rng.random_range(0.88f32..1.14);
    let (ty, tx) = (
        rng.random_range(-0.05f32..0.05) * img.rows as f32,
        rng.random_range(-0.05f32..0.05) * img.cols as f32,
    );
    let fill = if rng.random_bool(0.5) {
        0.0
    } else {
        rng.random_range(0.8f32..1.0)
    };
    let (cy, cx) = (img.rows as f32 / 2.0, img.cols as f32 / 2.0);
    let (s, c) = angle.sin_cos();
    let mut v = vec![fill; img.v.len()];
    for y in 0..img.rows {
        for x in 0..img.cols {
            let (dy, dx) = (y as f32 - cy - ty, x as f32 - cx - tx);
            let sy = (c * dy - s * dx) / scale + cy;
            let sx = (s * dy + c * dx) / scale + cx;
            if let Some(val) = bilinear(img, sy, sx) {
                v[y * img.cols + x] = val;
            }
        }
    }
    Img {
        rows: img.rows,
        cols: img.cols,
        v,
    }
}

fn bilinear(img: &Img, y: f32, x: f32) -> Option<f32> {
    if y < 0.0 || x < 0.0 || y > (img.rows - 1) as f32 || x > (img.cols - 1) as f32 {
        return None;
    }
    let (y0, x0) = (y as usize, x as usize);
    let (y1, x1) = ((y0 + 1).min(img.rows - 1), (x0 + 1).min(img.cols - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let at = |yy: usize, xx: usize| img.v[yy * img.cols + xx];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
    Some(top * (1.0 - fy) + bottom * fy)
}

fn flip(img: &mut Img) {
    for row in img.v.chunks_mut(img.cols) {
        row.reverse();
    }
}

/// Vendor processing: unsharp masking (edge enhancement, k > 0) or adding back low
/// frequencies (a system that equalises less than ours, k < 0).
fn processing(img: &mut Img, rng: &mut impl Rng) {
    let radius = rng.random_range(8..=24);
    // Mild: a strong unsharp mask changes the vertebra-to-soft-tissue contrast, which is
    // the very thing the labels depend on.
    let k = rng.random_range(-0.25f32..0.35);
    let low = box_blur(&img.v, img.rows, img.cols, radius);
    for (v, l) in img.v.iter_mut().zip(low) {
        *v = (*v + k * (*v - l)).clamp(0.0, 1.0);
    }
}

/// Window clipping and gamma.
fn exposure(img: &mut Img, rng: &mut impl Rng) {
    let gamma = rng.random_range(0.9f32..1.11);
    let lo = rng.random_range(-0.05f32..0.05);
    // Little clipping at the top: bone is the brightest part.
    let hi = rng.random_range(0.97f32..1.05);
    for v in img.v.iter_mut() {
        *v = ((*v - lo) / (hi - lo)).clamp(0.0, 1.0).powf(gamma);
    }
}

/// Anti-scatter grid: fine stripes, vertical or horizontal.
fn grid_lines(img: &mut Img, rng: &mut impl Rng) {
    let period = rng.random_range(2.2f32..5.0);
    let amp = rng.random_range(0.004f32..0.02);
    let vertical = rng.random_bool(0.7);
    let tau = std::f32::consts::TAU;
    for y in 0..img.rows {
        for x in 0..img.cols {
            let p = if vertical { x } else { y } as f32;
            let v = &mut img.v[y * img.cols + x];
            *v = (*v + amp * (tau * p / period).sin()).clamp(0.0, 1.0);
        }
    }
}

/// Burned-in annotations: a few bright glyph-like blocks of strokes near the edges.
fn burned_in(img: &mut Img, rng: &mut impl Rng) {
    for _ in 0..rng.random_range(1..=4) {
        let h = ((img.rows as f32) * rng.random_range(0.015f32..0.05)).max(3.0) as usize;
        let chars = rng.random_range(1..=10);
        let w = h * 2 / 3;
        let value = rng.random_range(0.9f32..1.0);
        let near_top = rng.random_bool(0.5);
        let y0 = if near_top {
            rng.random_range(0..img.rows / 8 + 1)
        } else {
            img.rows
                .saturating_sub(h + rng.random_range(0..img.rows / 8 + 1))
        };
        let x0 = rng.random_range(0..img.cols.saturating_sub(chars * w).max(1));
        for c in 0..chars {
            // Each "glyph" is a random pair of strokes (a vertical and a horizontal).
            let gx = x0 + c * w;
            let (vx, hy) = (rng.random_range(0..w.max(1)), rng.random_range(0..h.max(1)));
            for y in y0..(y0 + h).min(img.rows) {
                for x in gx..(gx + w).min(img.cols) {
                    let stroke = (x - gx).abs_diff(vx) <= h / 10 || (y - y0).abs_diff(hy) <= h / 10;
                    if stroke {
                        img.v[y * img.cols + x] = value;
                    }
                }
            }
        }
    }
}

/// Collimator shadow on one to four sides: bright, with a little scatter so that it is
/// not always a perfectly flat band the preprocessing trims.
fn collimation(img: &mut Img, rng: &mut impl Rng) {
    let value = rng.random_range(0.75f32..1.0);
    let ramp = rng.random_range(0.0f32..0.1);
    let (rows, cols) = (img.rows, img.cols);
    let band = |rng: &mut dyn rand::RngCore, n: usize| {
        if rng.random_bool(0.6) {
            ((n as f32) * rng.random_range(0.02f32..0.1)) as usize
        } else {
            0
        }
    };
    let (t, b, l, r) = (
        band(rng, rows),
        band(rng, rows),
        band(rng, cols),
        band(rng, cols),
    );
    for y in 0..rows {
        for x in 0..cols {
            if y < t || y >= rows - b || x < l || x >= cols - r {
                let g = ramp * (x as f32 / cols as f32);
                img.v[y * cols + x] = (value - g).clamp(0.0, 1.0);
            }
        }
    }
}

/// Gaussian noise, partly signal-dependent (quantum noise is larger where fewer photons
/// arrive, i.e. under bone).
fn noise(img: &mut Img, rng: &mut impl Rng) {
    let sd = rng.random_range(0.003f32..0.03);
    let dist = Normal::new(0.0f32, 1.0).expect("unit normal");
    for v in img.v.iter_mut() {
        let z: f32 = dist.sample(rng);
        *v = (*v + z * sd * (0.5 + *v)).clamp(0.0, 1.0);
    }
}

/// Separable box blur of radius `r`, edges clamped.
pub fn box_blur(v: &[f32], rows: usize, cols: usize, r: usize) -> Vec<f32> {
    let pass = |src: &[f32], n: usize, stride: usize, lines: usize, step: usize| {
        let mut out = vec![0f32; src.len()];
        for line in 0..lines {
            let at = |i: isize| src[line * step + (i.clamp(0, n as isize - 1) as usize) * stride];
            let mut sum: f32 = (-(r as isize)..=r as isize).map(at).sum();
            for i in 0..n as isize {
                out[line * step + i as usize * stride] = sum / (2 * r + 1) as f32;
                sum += at(i + r as isize + 1) - at(i - r as isize);
            }
        }
        out
    };
    let h = pass(v, cols, 1, rows, cols);
    pass(&h, rows, cols, cols, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(rows: usize, cols: usize) -> Img {
        let v = (0..rows * cols)
            .map(|i| (i % cols) as f32 / cols as f32)
            .collect();
        Img { rows, cols, v }
    }

    #[test]
    fn augmentation_is_seeded_bounded_and_changes_the_image() {
        let a = augment(ramp(120, 90), &mut ChaCha8Rng::seed_from_u64(7));
        let b = augment(ramp(120, 90), &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(a.v, b.v, "same seed, same result");
        assert_eq!(a.v.len(), a.rows * a.cols);
        let mut differs = 0;
        for seed in 0..20 {
            let out = augment(ramp(120, 90), &mut ChaCha8Rng::seed_from_u64(seed));
            assert!(out.v.iter().all(|x| (0.0..=1.0).contains(x)));
            assert!(out.rows >= 16 && out.cols >= 16);
            differs += usize::from(out.v != ramp(120, 90).v);
        }
        assert!(differs >= 18, "only {differs} of 20 changed");
    }

    #[test]
    fn box_blur_keeps_a_constant_and_smooths_a_step() {
        let flat = box_blur(&[0.5; 100], 10, 10, 2);
        assert!(flat.iter().all(|x| (x - 0.5).abs() < 1e-6));
        let step: Vec<f32> = (0..100)
            .map(|i| if i % 10 < 5 { 0.0 } else { 1.0 })
            .collect();
        let s = box_blur(&step, 10, 10, 1);
        assert!((s[4] - 1.0 / 3.0).abs() < 1e-5 && (s[5] - 2.0 / 3.0).abs() < 1e-5);
    }
}
