//! What part of a radiograph the network reads. `Whole`: the exposed field, fitted into
//! the input square (a 43 cm detector at 256 px is ~1.7 mm a pixel: a vertebral body is
//! ~25 pixels, its cortex and trabecular texture are gone). `Spine`: a square of
//! `SPINE_SIDE_MM` centred on the lumbar spine, found by its column profile (on a lateral
//! view, with the endplates' edges); at 256 px that is ~0.6 mm a pixel, so shell and
//! texture survive. `SpineFrontal`: the same square, frontal views only (cards of the
//! thirty-eighth session).

use serde::{Deserialize, Serialize};

/// Side of the spine square, in millimetres: L1-L4 bodies with their pedicles and a
/// margin of paraspinal soft tissue, about four vertebrae high.
pub const SPINE_SIDE_MM: f64 = 150.0;

/// Pixel size assumed when a picture has no spacing (a PNG, a header without one): its
/// longer side taken as a 43 cm cassette.
const ASSUMED_SIDE_MM: f64 = 430.0;

/// The spine is looked for between these fractions of the rows (the field's middle:
/// shutters, the diaphragm and the pelvis stay out of the profile)...
pub(super) const ROWS: (f64, f64) = (0.2, 0.8);
/// ...and between these fractions of the columns.
const COLUMNS: (f64, f64) = (0.25, 0.75);
/// Profile smoothing (Gaussian sigma), millimetres.
const SMOOTH_MM: f64 = 4.0;
/// The spine column is brighter than the columns this far to either side. Both sides
/// must be darker (the smaller difference counts), so a bright border, a shutter or the
/// heel effect's slope, brighter on one side only, is not taken for it.
const FLANK_MM: f64 = 40.0;
/// Columns within this fraction of the best score are one plateau, whose middle is taken.
const PLATEAU: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// The exposed field, whole.
    #[default]
    Whole,
    /// A square around the lumbar spine, of frontal and lateral views.
    Spine,
    /// The same square, frontal views only; lateral views are not read.
    #[serde(rename = "spine-frontal")]
    SpineFrontal,
}

impl Framing {
    pub const ALL: [Framing; 3] = [Framing::Whole, Framing::Spine, Framing::SpineFrontal];

    /// How the card's `input` names it after the normalisation ("" for `Whole`, which
    /// cards written before framing was a choice read as).
    pub fn label(self) -> &'static str {
        match self {
            Framing::Whole => "",
            Framing::Spine => "lumbar spine 150 mm",
            Framing::SpineFrontal => "lumbar spine 150 mm, frontal views",
        }
    }

    /// Whether this framing reads lateral radiographs.
    pub fn reads_laterals(self) -> bool {
        self != Framing::SpineFrontal
    }
}

impl std::str::FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whole" => Ok(Framing::Whole),
            "spine" => Ok(Framing::Spine),
            "spine-frontal" => Ok(Framing::SpineFrontal),
            other => Err(format!("{other}: expected whole, spine or spine-frontal")),
        }
    }
}

/// Rows and columns (`r0..r1`, `c0..c1`) of an image that the network reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
}

impl Window {
    pub fn rows(&self) -> usize {
        self.r1 - self.r0
    }

    pub fn cols(&self) -> usize {
        self.c1 - self.c0
    }

    /// The window's pixels of `v` (an image `cols` wide).
    pub fn cut(&self, v: &[f32], cols: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows() * self.cols());
        for r in self.r0..self.r1 {
            out.extend_from_slice(&v[r * cols + self.c0..r * cols + self.c1]);
        }
        out
    }
}

/// The part of `display` (rows x cols, 0..1, bone bright) that `framing` reads.
/// `spacing_mm`: the pixel size, when the header gives one; `lateral`: a lateral view.
pub fn window(
    framing: Framing,
    display: &[f32],
    rows: usize,
    cols: usize,
    spacing_mm: Option<f64>,
    lateral: bool,
) -> Window {
    let whole = Window {
        r0: 0,
        r1: rows,
        c0: 0,
        c1: cols,
    };
    if framing == Framing::Whole || rows == 0 || cols == 0 {
        return whole;
    }
    let mm = spacing_mm
        .filter(|s| s.is_finite() && *s > 0.01 && *s < 5.0)
        .unwrap_or(ASSUMED_SIDE_MM / rows.max(cols) as f64);
    let centre = if lateral {
        super::framing_lateral::spine_column(display, rows, cols, mm)
    } else {
        spine_column(display, rows, cols, mm)
    };
    let side = ((SPINE_SIDE_MM / mm).round() as usize).max(1);
    let place = |centre: usize, n: usize| {
        if side >= n {
            (0, n)
        } else {
            let start = centre.saturating_sub(side / 2).min(n - side);
            (start, start + side)
        }
    };
    let (c0, c1) = place(centre, cols);
    let (r0, r1) = place(rows / 2, rows);
    Window { r0, r1, c0, c1 }
}

/// The column of the spine: the column profile of the middle rows, on a ~1 mm grid,
/// smoothed, where it stands highest above both its flanks.
fn spine_column(display: &[f32], rows: usize, cols: usize, mm: f64) -> usize {
    let (ra, rb) = (
        (rows as f64 * ROWS.0) as usize,
        ((rows as f64 * ROWS.1) as usize).max(1),
    );
    let bin = ((1.0 / mm).round() as usize).max(1);
    let bins = cols.div_ceil(bin);
    let mut profile = vec![0f64; bins];
    let mut count = vec![0usize; bins];
    for r in ra..rb.min(rows) {
        for (c, v) in display[r * cols..(r + 1) * cols].iter().enumerate() {
            profile[c / bin] += *v as f64;
            count[c / bin] += 1;
        }
    }
    for (p, n) in profile.iter_mut().zip(&count) {
        *p /= (*n).max(1) as f64;
    }
    let score = above_flanks(&profile, mm * bin as f64);
    let (lo, hi) = (
        (bins as f64 * COLUMNS.0) as usize,
        ((bins as f64 * COLUMNS.1) as usize).max(1),
    );
    let hi = hi.min(bins);
    let Some((best, top)) = (lo..hi)
        .map(|c| (c, score[c]))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return cols / 2;
    };
    // A band of even brightness (a vertebral body is ~45 mm wide) scores alike across its
    // width: its middle is the run of columns near the best score.
    let near = |c: usize| score[c] >= top - PLATEAU * top.abs();
    let (mut l, mut r) = (best, best);
    while l > lo && near(l - 1) {
        l -= 1;
    }
    while r + 1 < hi && near(r + 1) {
        r += 1;
    }
    let best = (l + r) / 2;
    (best * bin + bin / 2).min(cols - 1)
}

/// How far each column of a column `profile` (on a `grid_mm` grid) stands above both of
/// its flanks `FLANK_MM` away, once smoothed: the smaller of the two differences.
pub(super) fn above_flanks(profile: &[f64], grid_mm: f64) -> Vec<f64> {
    let smooth = gaussian(profile, SMOOTH_MM / grid_mm);
    let flank = ((FLANK_MM / grid_mm).round() as isize).max(1);
    let at = |i: isize| smooth[i.clamp(0, smooth.len() as isize - 1) as usize];
    (0..smooth.len() as isize)
        .map(|i| (at(i) - at(i - flank)).min(at(i) - at(i + flank)))
        .collect()
}

/// `v` smoothed by a Gaussian of `sigma` samples (edges held).
pub(super) fn gaussian(v: &[f64], sigma: f64) -> Vec<f64> {
    let reach = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-reach..=reach)
        .map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let n = v.len() as isize;
    (0..n)
        .map(|i| {
            kernel
                .iter()
                .enumerate()
                .map(|(j, w)| w * v[(i + j as isize - reach).clamp(0, n - 1) as usize])
                .sum::<f64>()
                / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 300 x 240 mm frontal picture at `mm` a pixel: soft tissue with a bright spine
    /// band 40 mm wide centred `spine_mm` from the left, and (when `border`) a bright
    /// shutter strip 25 mm wide on the right.
    fn frontal(mm: f64, spine_mm: f64, border: bool) -> (Vec<f32>, usize, usize) {
        let (rows, cols) = ((300.0 / mm) as usize, (240.0 / mm) as usize);
        let v = (0..rows * cols)
            .map(|i| {
                let x = (i % cols) as f64 * mm;
                let mut g = 0.3 + 0.1 * x / 240.0;
                if (x - spine_mm).abs() < 20.0 {
                    g += 0.3;
                }
                if border && x > 215.0 {
                    g = 1.0;
                }
                g as f32
            })
            .collect();
        (v, rows, cols)
    }

    #[test]
    fn the_square_is_centred_on_the_spine_and_150_mm_a_side() {
        for (mm, spine) in [(0.15, 120.0), (0.3, 100.0), (0.5, 140.0)] {
            let (v, rows, cols) = frontal(mm, spine, true);
            let w = window(Framing::Spine, &v, rows, cols, Some(mm), false);
            let centre = (w.c0 + w.c1) as f64 / 2.0 * mm;
            assert!((centre - spine).abs() < 3.0, "{mm} mm: centre {centre}");
            assert!(((w.cols() as f64 * mm) - SPINE_SIDE_MM).abs() < 1.0);
            assert_eq!(w.rows(), w.cols());
            assert_eq!((w.r0 + w.r1) / 2, rows / 2);
        }
    }

    #[test]
    fn a_bright_border_is_not_taken_for_the_spine() {
        // The spine off-centre, a shutter strip brighter than it on the right.
        let (v, rows, cols) = frontal(0.25, 95.0, true);
        let w = window(Framing::Spine, &v, rows, cols, Some(0.25), false);
        let centre = (w.c0 + w.c1) as f64 / 2.0 * 0.25;
        assert!((centre - 95.0).abs() < 3.0, "centre {centre}");
    }

    #[test]
    fn whole_framing_and_small_pictures_keep_everything() {
        let (v, rows, cols) = frontal(0.3, 120.0, false);
        let all = window(Framing::Whole, &v, rows, cols, Some(0.3), false);
        assert_eq!((all.rows(), all.cols()), (rows, cols));
        // 1 mm pixels and a 100 x 80 pixel picture: smaller than the square both ways.
        let small = window(Framing::Spine, &v[..100 * 80], 100, 80, Some(1.0), false);
        assert_eq!((small.rows(), small.cols()), (100, 80));
        // No spacing: the longer side is taken as 43 cm.
        let w = window(Framing::Spine, &v, rows, cols, None, false);
        let assumed = ASSUMED_SIDE_MM / rows as f64;
        assert!((w.cols() as f64 * assumed - SPINE_SIDE_MM).abs() < 2.0);
    }

    #[test]
    fn the_cut_holds_the_window_pixels() {
        let v: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let w = Window {
            r0: 1,
            r1: 3,
            c0: 2,
            c1: 4,
        };
        assert_eq!(w.cut(&v, 5), vec![7.0, 8.0, 12.0, 13.0]);
    }
}
