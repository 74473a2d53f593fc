//! Radiograph preprocessing for the network: display values (0..1, bone bright) in;
//! box-filtered to 1.5 x the input side, cut to the exposed field (`field`),
//! aspect-preserving resize into the input square (256 x 256 unless the card says
//! otherwise) with padding, grey levels normalised (robustly, or by histogram
//! equalisation) out. The model card names
//! the side and the normalisation.

use serde::{Deserialize, Serialize};

use super::field::exposed_field;
use super::framing::Framing;
use super::net::INPUT_SIZE;

/// How the collimated field's grey levels become the network's input. Both give median 0
/// and a 5-95 % range of 1 (the padding is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalisation {
    /// Linear: minus the median, over the 5-95 % range. Keeps the contrast between bone
    /// and soft tissue as the vendor's grey-level curve drew it.
    #[default]
    Robust,
    /// Each pixel replaced by its rank among the field's pixels. Every vendor (and every
    /// generator) applies its own monotone grey-level curve; ranks are the same under any
    /// such curve, so the network cannot learn one curve's contrast as bone density.
    Equalised,
}

impl Normalisation {
    pub const ALL: [Normalisation; 2] = [Normalisation::Robust, Normalisation::Equalised];

    /// How the card's `input` names it.
    fn label(self) -> &'static str {
        match self {
            Normalisation::Robust => "robust-normalised",
            Normalisation::Equalised => "histogram-equalised",
        }
    }
}

/// What the network reads: a `side` x `side` grey image of the part of the radiograph
/// `framing` names, normalised by `norm`. The model card's `input` names all three
/// ("1x256x256 grey, robust-normalised[, lumbar spine 150 mm, frontal views]"), so
/// weights trained at one size and framing are read that way. The network itself
/// (convolutions, then a global mean) takes any size; a larger one shows each vertebra
/// with more pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    pub side: usize,
    pub norm: Normalisation,
    pub framing: Framing,
}

/// The input side of cards, options and checkpoints written before the side was a
/// choice (serde's default for them).
pub fn default_side() -> usize {
    INPUT_SIZE
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            side: default_side(),
            norm: Normalisation::default(),
            framing: Framing::default(),
        }
    }
}

impl InputSpec {
    /// The sides a model may be trained at, in words, for messages: multiples of 32 (the
    /// network halves the image five times) from 128 to 512.
    pub const SIDES: &'static str = "a multiple of 32 from 128 to 512";

    /// Whether `side` is one of `SIDES`.
    pub fn valid_side(side: usize) -> bool {
        (128..=512).contains(&side) && side % 32 == 0
    }

    /// The model card's `input`.
    pub fn spec(&self) -> String {
        let framing = match self.framing {
            Framing::Whole => String::new(),
            other => format!(", {}", other.label()),
        };
        format!("1x{0}x{0} grey, {1}{framing}", self.side, self.norm.label())
    }

    pub fn from_spec(spec: &str) -> Option<InputSpec> {
        let (size, rest) = spec.split_once(" grey, ")?;
        let (norm, framing) = match rest.split_once(", ") {
            Some((norm, named)) => (
                norm,
                Framing::ALL
                    .into_iter()
                    .find(|f| !f.label().is_empty() && f.label() == named)?,
            ),
            None => (rest, Framing::Whole),
        };
        let mut dims = size.split('x');
        let (one, rows, cols) = (dims.next()?, dims.next()?, dims.next()?);
        let side: usize = rows.parse().ok()?;
        if one != "1" || cols != rows || dims.next().is_some() || !Self::valid_side(side) {
            return None;
        }
        let norm = Normalisation::ALL.into_iter().find(|n| n.label() == norm)?;
        Some(InputSpec {
            side,
            norm,
            framing,
        })
    }

    /// What a card's `input` may say, for error messages.
    pub fn known_specs() -> String {
        let labels: Vec<&str> = Normalisation::ALL.iter().map(|n| n.label()).collect();
        format!(
            "\"1xNxN grey, {}\", N {}, optionally followed by \", {}\" or \", {}\"",
            labels.join("\" or \"1xNxN grey, "),
            Self::SIDES,
            Framing::Spine.label(),
            Framing::SpineFrontal.label()
        )
    }

    /// Longest side the input is drawn from: every image is box-filtered to at most this
    /// first, in training (the cache) and in the daemon alike. 1.5 x the input, so that
    /// zoom and crop augmentation have real detail to work with; and a 3,000-pixel
    /// detector's image resampled straight to the input would keep one pixel in twelve,
    /// with its full quantum noise and aliased grid lines, which training never showed.
    pub fn source_side(&self) -> usize {
        self.side * 3 / 2
    }
}

impl std::str::FromStr for Normalisation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "robust" => Ok(Normalisation::Robust),
            "equalised" | "equalized" => Ok(Normalisation::Equalised),
            other => Err(format!("{other}: expected robust or equalised")),
        }
    }
}

/// `display`: rows x cols values in 0..1, at any size (see `InputSpec::source_side`).
pub fn prepare(display: &[f32], rows: usize, cols: usize, spec: InputSpec) -> Vec<f32> {
    let side = spec.side;
    let shrunk;
    let (display, rows, cols) = if rows.max(cols) > spec.source_side() {
        let (r, c, v) = shrink(display, rows, cols, spec.source_side());
        shrunk = v;
        (&shrunk[..], r, c)
    } else {
        (display, rows, cols)
    };
    let (r0, r1, c0, c1) = exposed_field(display, rows, cols);
    let (h, w) = (r1 - r0, c1 - c0);
    let scale = side as f32 / h.max(w) as f32;
    let (oh, ow) = (
        ((h as f32 * scale).round() as usize).clamp(1, side),
        ((w as f32 * scale).round() as usize).clamp(1, side),
    );
    let (top, left) = ((side - oh) / 2, (side - ow) / 2);
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
    let normalised = match spec.norm {
        Normalisation::Robust => robust(&resized),
        Normalisation::Equalised => equalised(&resized),
    };
    let mut out = vec![0.0; side * side];
    for y in 0..oh {
        out[(top + y) * side + left..][..ow].copy_from_slice(&normalised[y * ow..][..ow]);
    }
    out
}

/// The part of a display image (rows x cols, 0..1, bone bright) that `spec`'s framing
/// reads (`model::framing`), shrunk to the source side: what training caches and the
/// daemon prepares. `spacing_mm`: the header's pixel size, if any; `lateral`: a lateral
/// view (the spine is looked for another way).
pub fn framed(
    display: &[f32],
    rows: usize,
    cols: usize,
    spacing_mm: Option<f64>,
    lateral: bool,
    spec: InputSpec,
) -> (usize, usize, Vec<f32>) {
    let w = super::framing::window(spec.framing, display, rows, cols, spacing_mm, lateral);
    if (w.rows(), w.cols()) == (rows, cols) {
        return shrink(display, rows, cols, spec.source_side());
    }
    shrink(
        &w.cut(display, cols),
        w.rows(),
        w.cols(),
        spec.source_side(),
    )
}

/// Box-filter `v` (rows x cols) by a whole factor so that its longest side is at most
/// `side`. An image thinner than the factor is returned as it is.
pub fn shrink(v: &[f32], rows: usize, cols: usize, side: usize) -> (usize, usize, Vec<f32>) {
    let f = rows.max(cols).div_ceil(side.max(1)).max(1);
    if f == 1 || rows.min(cols) < f {
        return (rows, cols, v.to_vec());
    }
    let (r, c) = (rows / f, cols / f);
    let mut out = vec![0f32; r * c];
    for y in 0..r {
        for x in 0..c {
            let mut s = 0.0;
            for dy in 0..f {
                let row = &v[(y * f + dy) * cols + x * f..][..f];
                s += row.iter().sum::<f32>();
            }
            out[y * c + x] = s / (f * f) as f32;
        }
    }
    (r, c, out)
}

/// Minus the median, over the 5-95 % range.
fn robust(values: &[f32]) -> Vec<f32> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = sorted[n / 2];
    let range = (sorted[n * 95 / 100] - sorted[n * 5 / 100]).max(1e-3);
    values.iter().map(|v| (v - median) / range).collect()
}

/// Values closer than this are one grey level: resampling leaves rounding differences that
/// must not become rank differences (a flat field would turn into a ramp). Display values
/// of a 16-bit image are 1.5e-5 apart.
const SAME_LEVEL: f32 = 1e-6;

/// Each value's mid-rank as a fraction of the count (equal values share one), centred and
/// scaled to the robust scale: uniform on about -0.56..0.56.
fn equalised(values: &[f32]) -> Vec<f32> {
    let n = values.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]));
    let mut out = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let v = values[order[i] as usize];
        let mut j = i + 1;
        while j < n && values[order[j] as usize] - v < SAME_LEVEL {
            j += 1;
        }
        let q = (i + j) as f32 / (2 * n) as f32;
        for &k in &order[i..j] {
            out[k as usize] = (q - 0.5) / 0.9;
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default input (256 px) with normalisation `norm`.
    fn at256(norm: Normalisation) -> InputSpec {
        InputSpec {
            side: 256,
            norm,
            framing: Framing::Whole,
        }
    }

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

    /// A 2560 x 2048 detector's image: a lit, textured field with a bright block, plus (when
    /// `noisy`) independent per-pixel noise of standard deviation 0.058.
    fn detector(noisy: bool) -> Vec<f32> {
        let (rows, cols) = (2560, 2048);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                // Structure across the columns too, as anatomy has: no edge line is
                // flat enough to be taken for a shutter.
                let scene = 0.3 + 0.2 * (r as f32 / rows as f32) + 0.05 * (c as f32 / 40.0).sin();
                let block = if (900..1600).contains(&r) && (700..1300).contains(&c) {
                    0.3
                } else {
                    0.0
                };
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                scene + block + if noisy { 0.2 * u } else { 0.0 }
            })
            .collect()
    }

    #[test]
    fn a_large_detector_is_box_filtered_as_training_saw_it() {
        let (rows, cols) = (2560, 2048);
        let (noisy, clean) = (detector(true), detector(false));
        let out = prepare(&noisy, rows, cols, at256(Normalisation::Robust));
        // The daemon's full-size image gives what training's cache (`shrink` to the
        // source side, 384) gives.
        let source = at256(Normalisation::Robust).source_side();
        let (r, c, cached) = shrink(&noisy, rows, cols, source);
        assert!(r.max(c) <= source && r.max(c) > source / 2, "{r} x {c}");
        assert_eq!(out, prepare(&cached, r, c, at256(Normalisation::Robust)));
        // The pixel noise is averaged away, not sampled one pixel in ten: resampled
        // straight to 256, the noise would be ~0.058 / 0.5 = 0.12 in the output's units.
        let base = prepare(&clean, rows, cols, at256(Normalisation::Robust));
        let n = out.len() as f32;
        let sd = (out
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / n)
            .sqrt();
        assert!(sd < 0.03, "noise in the network's input: sd {sd}");
        // An image thinner than the shrink factor is resampled as it is, without panic.
        let thin = vec![0.5; 5000];
        assert_eq!(
            prepare(&thin, 1, 5000, at256(Normalisation::Robust)).len(),
            out.len()
        );
    }

    /// The value at `q` (0..1) of the sorted values, indexed as `prepare` indexes them.
    fn quantile(sorted: &[f32], q: usize) -> f32 {
        sorted[sorted.len() * q / 100]
    }

    #[test]
    fn collimation_is_cropped_and_output_is_normalised() {
        let (v, rows, cols) = collimated();
        assert_eq!(exposed_field(&v, rows, cols), (10, 90, 10, 50));
        let out = prepare(&v, rows, cols, at256(Normalisation::Robust));
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
        for norm in Normalisation::ALL {
            let out = prepare(&vec![0.4; 64 * 64], 64, 64, at256(norm));
            assert!(
                out.iter().all(|&x| x.abs() < 1e-3),
                "{norm:?}: {:?}",
                &out[..8]
            );
        }
    }

    /// A 256 x 200 field (no collimation, no resize: the comparison is exact) with
    /// gradients, a bright block and fine texture, on a grid of 1/2000 so that equal
    /// values are exactly equal.
    fn field() -> Vec<f32> {
        (0..256 * 200)
            .map(|i| {
                let (r, c) = (i / 200, i % 200);
                let block = (80..170).contains(&r) && (60..140).contains(&c);
                let steps =
                    600 + 2 * (r + c) + 400 * usize::from(block) + (7 * r + 13 * c) % 11 * 8;
                steps as f32 / 2000.0
            })
            .collect()
    }

    #[test]
    fn equalised_input_is_the_same_under_any_monotone_grey_level_curve() {
        let v = field();
        let curves: [fn(f32) -> f32; 3] = [
            |x| x.powf(2.2),
            |x| 1.0 / (1.0 + (-12.0 * (x - 0.4)).exp()),
            |x| 0.1 + 0.9 * x.sqrt(),
        ];
        let base = prepare(&v, 256, 200, at256(Normalisation::Equalised));
        let spread = |o: &[f32]| o.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((0.5..0.6).contains(&spread(&base)), "{}", spread(&base));
        for (k, curve) in curves.iter().enumerate() {
            let bent: Vec<f32> = v.iter().map(|&x| curve(x)).collect();
            assert_eq!(exposed_field(&bent, 256, 200), (0, 256, 0, 200));
            let eq = prepare(&bent, 256, 200, at256(Normalisation::Equalised));
            let worst = base
                .iter()
                .zip(&eq)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-6, "curve {k}: equalised input moved by {worst}");
            // The robust input does move: that is what equalisation is for.
            let (r0, r1) = (
                prepare(&v, 256, 200, at256(Normalisation::Robust)),
                prepare(&bent, 256, 200, at256(Normalisation::Robust)),
            );
            let moved = r0
                .iter()
                .zip(&r1)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(moved > 0.05, "curve {k}: robust input moved only {moved}");
        }
        // Order kept, padding 0: columns 28..228 hold the field, the block is brightest.
        assert_eq!(base[0], 0.0);
        assert!(base[128 * 256 + 128] > base[20 * 256 + 128]);
    }

    #[test]
    fn card_specs_round_trip() {
        for norm in Normalisation::ALL {
            for side in [128, 256, 384, 512] {
                for framing in Framing::ALL {
                    let spec = InputSpec {
                        side,
                        norm,
                        framing,
                    };
                    assert_eq!(InputSpec::from_spec(&spec.spec()), Some(spec));
                }
            }
        }
        // The bundled card's words, as every card before sizes were a choice.
        assert_eq!(
            InputSpec::from_spec("1x256x256 grey, robust-normalised"),
            Some(InputSpec::default())
        );
        for bad in [
            "1x256x256 grey",
            "1x256x200 grey, robust-normalised",
            "1x300x300 grey, robust-normalised",
            "3x256x256 grey, robust-normalised",
            "1x256x256 grey, robust-normalised, ",
            "1x256x256 grey, robust-normalised, lumbar spine",
            "1x256x256 grey, linear",
        ] {
            assert_eq!(InputSpec::from_spec(bad), None, "{bad}");
        }
        assert_eq!("equalised".parse(), Ok(Normalisation::Equalised));
        assert!("linear".parse::<Normalisation>().is_err());
    }
}
