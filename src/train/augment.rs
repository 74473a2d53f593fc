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
use serde::{Deserialize, Serialize};

/// How far augmentation imitates vendor image processing (`train --processing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Processing {
    /// Half the images get one mild unsharp mask (or its inverse).
    #[default]
    Mild,
    /// Half the images get a vendor's multi-scale pipeline instead (band gains, dynamic
    /// range compression, re-windowing, a tone curve); half of the rest the mild mask.
    /// Every DR vendor processes this way, with its own gains: a network that reads
    /// density from one set of gains reads another vendor's images wrong.
    Multiscale,
}

/// An image being augmented: rows x cols values, 0..1.
pub struct Img {
    pub rows: usize,
    pub cols: usize,
    pub v: Vec<f32>,
}

/// Apply every augmentation (each by chance) to `img`.
pub fn augment(img: Img, processing: Processing, rng: &mut impl Rng) -> Img {
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
    // Mild draws nothing here, so its images are as before this option existed.
    if processing == Processing::Multiscale && rng.random_bool(0.5) {
        multiscale(&mut img, rng);
    } else if rng.random_bool(0.5) {
        unsharp(&mut img, rng);
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
fn unsharp(img: &mut Img, rng: &mut impl Rng) {
    let radius = rng.random_range(8..=24);
    // Mild: a strong unsharp mask changes the vertebra-to-soft-tissue contrast, which is
    // the very thing the labels depend on.
    let k = rng.random_range(-0.25f32..0.35);
    let low = box_blur(&img.v, img.rows, img.cols, radius);
    for (v, l) in img.v.iter_mut().zip(low) {
        *v = (*v + k * (*v - l)).clamp(0.0, 1.0);
    }
}

/// A vendor's multi-scale processing. The image is split into octave-spaced bands (about
/// 1, 3 and 9 px, i.e. roughly 1, 3 and 9 mm in the 384 px cache); each band gets its own
/// gain, the coarsest level (30-80 px) is partly subtracted (dynamic range compression),
/// then the result is re-windowed on its 0.5-99.5 % range and passed through a sigmoid or
/// a gamma. Gains reach the strong settings of musculoskeletal presets, because that is
/// where a density reading learned on one look breaks.
fn multiscale(img: &mut Img, rng: &mut impl Rng) {
    let (rows, cols) = (img.rows, img.cols);
    let jitter = rng.random_range(0.8f32..1.25);
    let b0 = gaussian(&img.v, rows, cols, jitter);
    let b1 = gaussian(&img.v, rows, cols, 3.0 * jitter);
    let b2 = gaussian(&img.v, rows, cols, 9.0 * jitter);
    let b3 = gaussian(&img.v, rows, cols, rng.random_range(30f32..80.0));
    let g_fine = rng.random_range(0f32..1.0);
    let g_mid = rng.random_range(0f32..1.5);
    let g_coarse = rng.random_range(-0.3f32..0.8);
    let drc = rng.random_range(0f32..0.8);
    let mean3 = b3.iter().sum::<f32>() / b3.len() as f32;
    let mut out: Vec<f32> = (0..img.v.len())
        .map(|i| {
            b2[i]
                + (1.0 + g_coarse) * (b1[i] - b2[i])
                + (1.0 + g_mid) * (b0[i] - b1[i])
                + (1.0 + g_fine) * (img.v[i] - b0[i])
                - drc * (b3[i] - mean3)
        })
        .collect();
    let mut sample: Vec<f32> = out.iter().step_by(7).copied().collect();
    sample.sort_by(f32::total_cmp);
    let at = |q: f32| sample[((sample.len() - 1) as f32 * q) as usize];
    let (lo, hi) = (at(0.005), at(0.995));
    let span = (hi - lo).max(1e-3);
    let sigmoid = rng.random_bool(0.5);
    let slope = rng.random_range(3f32..6.0);
    let gamma = rng.random_range(0.8f32..1.25);
    let s = |x: f32| 1.0 / (1.0 + (-slope * (x - 0.5)).exp());
    let (s0, s1) = (s(0.0), s(1.0));
    for v in out.iter_mut() {
        let x = ((*v - lo) / span).clamp(0.0, 1.0);
        let y = if sigmoid {
            (s(x) - s0) / (s1 - s0)
        } else {
            x.powf(gamma)
        };
        // Rounding can leave the sigmoid a hair outside 0..1.
        *v = y.clamp(0.0, 1.0);
    }
    img.v = out;
}

/// An approximate Gaussian blur: three box blurs whose variances add up to sigma².
fn gaussian(v: &[f32], rows: usize, cols: usize, sigma: f32) -> Vec<f32> {
    // One box of radius r has variance r(r+1)/3, so three have r(r+1).
    let r = (((sigma * sigma + 0.25).sqrt() - 0.5).round() as usize).max(1);
    let once = box_blur(v, rows, cols, r);
    let twice = box_blur(&once, rows, cols, r);
    box_blur(&twice, rows, cols, r)
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
        for p in [Processing::Mild, Processing::Multiscale] {
            let a = augment(ramp(120, 90), p, &mut ChaCha8Rng::seed_from_u64(7));
            let b = augment(ramp(120, 90), p, &mut ChaCha8Rng::seed_from_u64(7));
            assert_eq!(a.v, b.v, "same seed, same result");
            assert_eq!(a.v.len(), a.rows * a.cols);
            let mut differs = 0;
            for seed in 0..20 {
                let out = augment(ramp(120, 90), p, &mut ChaCha8Rng::seed_from_u64(seed));
                // The blur's running sum may round a hair past 1; left so, because
                // clamping would change the shipped recipe's images and so its weights.
                let bad: Vec<_> = out
                    .v
                    .iter()
                    .filter(|x| !(-1e-6..=1.0 + 1e-6).contains(*x))
                    .take(3)
                    .collect();
                assert!(bad.is_empty(), "seed {seed} {p:?}: {bad:?}");
                assert!(out.rows >= 16 && out.cols >= 16);
                differs += usize::from(out.v != ramp(120, 90).v);
            }
            assert!(differs >= 18, "only {differs} of 20 changed");
        }
    }

    #[test]
    fn multiscale_processing_changes_a_vertebra_s_contrast_and_stays_in_range() {
        // A bright 40 x 24 px block (a vertebral body) on a soft-tissue ramp.
        let (rows, cols) = (160, 120);
        let mut img = ramp(rows, cols);
        for y in 60..100 {
            for x in 48..72 {
                img.v[y * cols + x] = 0.5 + 0.3 * img.v[y * cols + x];
            }
        }
        let contrast = |v: &[f32]| v[80 * cols + 60] - v[80 * cols + 30];
        let before = contrast(&img.v);
        let mut ratios = Vec::new();
        for seed in 0..12 {
            let mut out = Img {
                rows,
                cols,
                v: img.v.clone(),
            };
            multiscale(&mut out, &mut ChaCha8Rng::seed_from_u64(seed));
            assert!(out.v.iter().all(|x| (0.0..=1.0).contains(x)));
            ratios.push(contrast(&out.v) / before);
        }
        let (lo, hi) = ratios
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        assert!(lo > 0.0, "bone stays brighter than soft tissue: {ratios:?}");
        assert!(hi / lo > 1.3, "the gains vary the contrast: {ratios:?}");
    }

    #[test]
    fn gaussian_keeps_a_constant_and_spreads_a_point_by_sigma() {
        let flat = gaussian(&[0.25; 400], 20, 20, 3.0);
        assert!(flat.iter().all(|x| (x - 0.25).abs() < 1e-6));
        let (rows, cols) = (1, 101);
        let mut point = vec![0f32; cols];
        point[50] = 1.0;
        let g = gaussian(&point, rows, cols, 4.0);
        let var: f32 = g
            .iter()
            .enumerate()
            .map(|(i, w)| w * (i as f32 - 50.0).powi(2))
            .sum();
        assert!((var.sqrt() - 4.0).abs() < 0.6, "sigma {}", var.sqrt());
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
