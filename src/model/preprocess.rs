//! Radiograph preprocessing for the network: display values (0..1, bone bright) in;
//! collimation cropped, aspect-preserving resize into 256 x 256 with padding, grey levels
//! normalised (robustly, or by histogram equalisation) out. The model card names which.

use serde::{Deserialize, Serialize};

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

    /// The model card's `input` for this normalisation.
    pub fn spec(self) -> &'static str {
        match self {
            Normalisation::Robust => "1x256x256 grey, robust-normalised",
            Normalisation::Equalised => "1x256x256 grey, histogram-equalised",
        }
    }

    pub fn from_spec(spec: &str) -> Option<Normalisation> {
        Normalisation::ALL.into_iter().find(|n| n.spec() == spec)
    }

    /// Every card `input` this build knows, quoted, for error messages.
    pub fn known_specs() -> String {
        let quoted: Vec<String> = Normalisation::ALL
            .iter()
            .map(|n| format!("{:?}", n.spec()))
            .collect();
        quoted.join(" or ")
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

/// Rows or columns this flat (standard deviation below this) at the edges are collimator
/// or padding, not patient.
const FLAT: f32 = 0.02;

/// `display`: rows x cols values in 0..1.
pub fn prepare(display: &[f32], rows: usize, cols: usize, norm: Normalisation) -> Vec<f32> {
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
    let normalised = match norm {
        Normalisation::Robust => robust(&resized),
        Normalisation::Equalised => equalised(&resized),
    };
    let mut out = vec![0.0; INPUT_SIZE * INPUT_SIZE];
    for y in 0..oh {
        out[(top + y) * INPUT_SIZE + left..][..ow].copy_from_slice(&normalised[y * ow..][..ow]);
    }
    out
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
        let out = prepare(&v, rows, cols, Normalisation::Robust);
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
            let out = prepare(&vec![0.4; 64 * 64], 64, 64, norm);
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
        let base = prepare(&v, 256, 200, Normalisation::Equalised);
        let spread = |o: &[f32]| o.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((0.5..0.6).contains(&spread(&base)), "{}", spread(&base));
        for (k, curve) in curves.iter().enumerate() {
            let bent: Vec<f32> = v.iter().map(|&x| curve(x)).collect();
            assert_eq!(crop_collimation(&bent, 256, 200), (0, 256, 0, 200));
            let eq = prepare(&bent, 256, 200, Normalisation::Equalised);
            let worst = base
                .iter()
                .zip(&eq)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-6, "curve {k}: equalised input moved by {worst}");
            // The robust input does move: that is what equalisation is for.
            let (r0, r1) = (
                prepare(&v, 256, 200, Normalisation::Robust),
                prepare(&bent, 256, 200, Normalisation::Robust),
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
        for n in Normalisation::ALL {
            assert_eq!(Normalisation::from_spec(n.spec()), Some(n));
        }
        assert_eq!(Normalisation::from_spec("1x256x256 grey"), None);
        assert_eq!("equalised".parse(), Ok(Normalisation::Equalised));
        assert!("linear".parse::<Normalisation>().is_err());
    }
}
