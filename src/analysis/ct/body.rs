//! The vertebral body in one axial slice, in three named steps: locate the spine (the bone
//! component of a vertebra's size near the midline, posteriorly), find the body's front
//! and width, and place the trabecular ROI inside it.

use serde::Serialize;

use super::morph::{components, despeckle, dilate_by, erode_by, extent, fill_holes, noise_sd};
use crate::analysis::finding::RoiOutline;
use crate::analysis::image::Frame;

/// Pixels above this are left out of the ROI as cortex or sclerosis (dense trabecular
/// bone can exceed 400 HU in places; cortex is mostly brighter).
const SHELL_HU: f32 = 600.0;
/// Bone for locating the spine.
const BONE_HU: f32 = 220.0;
/// Pixels coarser than this (mm) blur a thin cortex under `BONE_HU`...
pub(super) const COARSE_PIXEL_MM: f64 = 1.2;
/// ...so their slices are also searched with this threshold.
const COARSE_BONE_HU: f32 = 150.0;
/// Above this noise SD (HU) a slice whose plain bone mask shows no spine is tried again
/// with the mask despeckled.
const NOISY_SD_HU: f64 = 40.0;
/// A vertebra with its posterior elements, after 3 mm dilation (mm²).
const VERTEBRA_AREA_MM2: (f64, f64) = (500.0, 9000.0);

/// The body found in one slice.
#[derive(Debug, Clone, Serialize)]
pub struct SliceBody {
    pub slice: usize,
    /// Pixel indices (row * columns + column) of the trabecular ROI.
    #[serde(skip)]
    pub roi: Vec<usize>,
    /// Centre of the enclosed region (column, row).
    pub centre: (f64, f64),
    pub area_mm2: f64,
    pub outline: RoiOutline,
}

/// The spine's bone component in a slice, holes filled.
struct Spine {
    /// The component as found (dilated bone).
    region: Vec<usize>,
    /// The component with every enclosed pixel.
    filled: Vec<bool>,
    /// Dilation steps: every edge of `region` lies this many pixels out.
    steps: usize,
    /// Column of the component's centre.
    centre_column: usize,
}

/// Pixel geometry of a slice.
#[derive(Clone, Copy)]
struct Grid {
    w: usize,
    h: usize,
    /// (row, column) spacing in mm.
    spacing: (f64, f64),
}

impl Grid {
    /// Rows for a distance in mm.
    fn rows(&self, mm: f64) -> usize {
        (mm / self.spacing.0).round() as usize
    }
    /// Columns for a distance in mm.
    fn columns(&self, mm: f64) -> usize {
        (mm / self.spacing.1).round() as usize
    }
}

/// Find the vertebral body's trabecular region in one slice.
///
/// Bone (HU above `BONE_HU`, dilated 3 mm so that the pieces of one vertebra join) forms
/// components; the spine is the one nearest the patient's midline, in the posterior part
/// of the image, with a vertebra's size. Its anterior edge is the front of the body; the body's
/// width is measured just behind that edge (only the body reaches that far forward). The
/// ROI is the central oval (half the width and depth), cut to stay clear of the
/// basivertebral vein, without cortex-level pixels: robust to open or faint cortices and
/// hollow bodies.
pub fn find_body(frame: &Frame, spacing: (f64, f64), slice: usize) -> Option<SliceBody> {
    find_body_with(frame, spacing, slice, None)
}

/// `find_body`, taking only a bone component centred within `NEAR_MM` of `near` (column,
/// row): where the spine's course says the body is. For a slice whose first answer was
/// off that course: the arch, a separate component beside the body's lower part or
/// where the transverse processes leave it apart from the body, can outweigh the body's
/// thin ring.
pub fn find_body_near(
    frame: &Frame,
    spacing: (f64, f64),
    slice: usize,
    near: (f64, f64),
) -> Option<SliceBody> {
    find_body_with(frame, spacing, slice, Some(near))
}

/// A component centred further than this from the expected body centre is not it (mm).
const NEAR_MM: f64 = 15.0;

fn find_body_with(
    frame: &Frame,
    spacing: (f64, f64),
    slice: usize,
    near: Option<(f64, f64)>,
) -> Option<SliceBody> {
    let grid = Grid {
        w: frame.columns,
        h: frame.rows,
        spacing,
    };
    let midline = patient_midline(frame, grid.w);
    let found = |despeckled: bool, threshold: f32, closing: usize| {
        let spine = locate_spine(frame, grid, midline, near, despeckled, threshold, closing)?;
        let front = body_front(&spine, grid)?;
        let columns = body_columns(&spine, grid, front)?;
        trabecular_roi(frame, grid, slice, front, columns)
    };
    // Low-dose noise: single pixels over the bone threshold can join everything once
    // dilated, and then no component has a vertebra's size; without them, a faint cortex
    // may no longer close. The plain mask first, the despeckled one when it finds nothing.
    // The noise is measured once, and only for a slice that needs it.
    let noise = std::cell::OnceCell::new();
    let noisy = || *noise.get_or_init(|| noise_sd(&frame.values, grid.w) > NOISY_SD_HU);
    let at = |threshold: f32, closing: usize| {
        found(false, threshold, closing)
            .or_else(|| noisy().then(|| found(true, threshold, closing)).flatten())
    };
    let best = at(BONE_HU, 0);
    if spacing.0.min(spacing.1) <= COARSE_PIXEL_MM || noisy() {
        return best;
    }
    // Coarse pixels average a thin cortex with what is around it: the body's ring may stay
    // under BONE_HU, and the arch alone is then found. A lower threshold closes the ring,
    // and a ring with gaps wider than the dilation closes (its inside enclosed) only when
    // the mask is closed 3 mm further (gaps up to ~12 mm). Of the attempts, the body
    // reaching furthest forward is the body and not the canal. Not on noisy slices, where
    // the lower threshold admits noise.
    let front = |b: &SliceBody| b.outline.centre.1 - 2.0 * b.outline.radii.1;
    let closing = (3.0 / spacing.0.min(spacing.1)).round().max(1.0) as usize;
    [at(COARSE_BONE_HU, 0), at(COARSE_BONE_HU, closing)]
        .into_iter()
        .flatten()
        .fold(best, |a, b| match a {
            Some(a) if front(&b) >= front(&a) => Some(a),
            _ => Some(b),
        })
}

/// The bone component that is the spine: a vertebra's size and shape, in the posterior
/// part of the image, scored by area and closeness to the midline.
fn locate_spine(
    frame: &Frame,
    grid: Grid,
    midline: f64,
    near: Option<(f64, f64)>,
    despeckled: bool,
    threshold: f32,
    closing: usize,
) -> Option<Spine> {
    let Grid { w, h, spacing } = grid;
    let mut bone: Vec<bool> = frame.values.iter().map(|v| *v > threshold).collect();
    if despeckled {
        bone = despeckle(&bone, w, h);
    }
    let steps = (3.0 / spacing.0.min(spacing.1)).round().max(1.0) as usize;
    // Closing steps are dilated here, so that a ring's halves form one component, and
    // eroded away once its holes are filled.
    let grown = dilate_by(&bone, w, h, steps + closing);
    let pixel_mm2 = spacing.0 * spacing.1;
    let mut best: Option<(f64, Vec<usize>)> = None;
    for region in components(&grown, w, h) {
        let area = region.len() as f64 * pixel_mm2;
        let (cx, cy, bw, bh) = extent(&region, w);
        let (width_mm, depth_mm) = (bw * spacing.1, bh * spacing.0);
        let off_centre = (cx - midline).abs() * spacing.1;
        if !(VERTEBRA_AREA_MM2.0..VERTEBRA_AREA_MM2.1).contains(&area)
            || !(30.0..140.0).contains(&width_mm)
            || !(25.0..140.0).contains(&depth_mm)
            || cy < h as f64 * 0.35
            || off_centre > 60.0
        {
            continue;
        }
        let score = match near {
            None => area / (1.0 + off_centre / 10.0),
            Some((nx, ny)) => {
                let away = ((cx - nx) * spacing.1).hypot((cy - ny) * spacing.0);
                if away > NEAR_MM {
                    continue;
                }
                area / (1.0 + away / 10.0)
            }
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, region));
        }
    }
    let (_, mut region) = best?;
    // Fill the component's holes: a body whose trabecular bone is below BONE_HU is a ring.
    let mut filled = fill_holes(&region, w, h);
    if closing > 0 {
        let mut mask = vec![false; w * h];
        for &i in &region {
            mask[i] = true;
        }
        mask = erode_by(&mask, w, h, closing);
        filled = erode_by(&filled, w, h, closing);
        region = (0..w * h).filter(|&i| mask[i]).collect();
    }
    let centre_column = extent(&region, w).0.round() as usize;
    Some(Spine {
        region,
        filled,
        steps,
        centre_column,
    })
}

/// The patient's midline column: the mean column of everything denser than fat's far
/// side (-500 HU), on every other row and column (enough for a mean). A patient lying to
/// one side of the scanner's centre, or a field of view centred elsewhere, moves the spine
/// away from the image's middle column, not from this.
fn patient_midline(frame: &Frame, w: usize) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for row in frame.values.chunks(w).step_by(2) {
        for (c, v) in row.iter().enumerate().step_by(2) {
            if *v > -500.0 {
                sum += c as f64;
                n += 1;
            }
        }
    }
    if n == 0 {
        w as f64 / 2.0
    } else {
        sum / n as f64
    }
}

impl Spine {
    /// The run of filled pixels in row `r` nearest the centre column: (first, last) column.
    fn run_at(&self, r: usize, w: usize) -> Option<(usize, usize)> {
        let row = &self.filled[r * w..(r + 1) * w];
        let start = (0..w)
            .filter(|&c| row[c])
            .min_by_key(|&c| c.abs_diff(self.centre_column))?;
        let (mut c0, mut c1) = (start, start);
        while c0 > 0 && row[c0 - 1] {
            c0 -= 1;
        }
        while c1 + 1 < w && row[c1 + 1] {
            c1 += 1;
        }
        Some((c0, c1))
    }

    fn width_at(&self, r: usize, w: usize) -> usize {
        self.run_at(r, w).map_or(0, |(a, b)| b - a)
    }
}

/// The first row of the body. Something narrower may sit in front of it, joined by the
/// dilation (an osteophyte, the contrast-filled or calcified aorta, up to ~30 mm): the
/// body starts at the first row at least 30 mm wide.
fn body_front(spine: &Spine, grid: Grid) -> Option<usize> {
    // The dilation moved every edge out by `steps` pixels.
    let top = spine.region.iter().map(|i| i / grid.w).min()? + spine.steps;
    (top..(top + grid.rows(50.0)).min(grid.h))
        .find(|&r| spine.width_at(r, grid.w) >= grid.columns(30.0))
}

/// The body's columns: the widest run between 2 and 14 mm behind the front (rows wider
/// than 75 mm hold transverse processes or ribs), less the dilation; None when the width
/// is not a vertebral body's (18-70 mm).
fn body_columns(spine: &Spine, grid: Grid, front: usize) -> Option<(usize, usize)> {
    let (c0, c1) = (front + grid.rows(2.0)..(front + grid.rows(14.0)).min(grid.h))
        .filter_map(|r| spine.run_at(r, grid.w))
        .filter(|(a, b)| b - a <= grid.columns(75.0))
        .max_by_key(|(a, b)| b - a)?;
    let (c0, c1) = (c0 + spine.steps, c1.saturating_sub(spine.steps));
    let width_mm = (c1.saturating_sub(c0)) as f64 * grid.spacing.1;
    (18.0..70.0).contains(&width_mm).then_some((c0, c1))
}

/// The central oval of the body (half its width and depth; depth 0.7 x width, 18-40 mm),
/// cut at 60 % of the depth to stay clear of the basivertebral vein, without cortex-level
/// pixels; None when under 25 mm² remain.
fn trabecular_roi(
    frame: &Frame,
    grid: Grid,
    slice: usize,
    front: usize,
    (c0, c1): (usize, usize),
) -> Option<SliceBody> {
    let (w, h) = (grid.w, grid.h);
    let width_mm = (c1 - c0) as f64 * grid.spacing.1;
    let depth_px = ((0.7 * width_mm).clamp(18.0, 40.0) / grid.spacing.0) as usize;
    let (r0, r1) = (front, (front + depth_px).min(h - 1));
    let (ox, oy) = ((c0 + c1) as f64 / 2.0, (r0 + r1) as f64 / 2.0);
    let (ax, ay) = ((c1 - c0) as f64 / 4.0, (r1 - r0) as f64 / 4.0);
    let vein_limit = r0 as f64 + (r1 - r0) as f64 * 0.6;
    let mut roi = Vec::new();
    for r in r0..r1 {
        for c in c0..=c1 {
            let (dx, dy) = ((c as f64 - ox) / ax, (r as f64 - oy) / ay);
            let i = r * w + c;
            if dx * dx + dy * dy <= 1.0 && (r as f64) < vein_limit && frame.values[i] < SHELL_HU {
                roi.push(i);
            }
        }
    }
    let pixel_mm2 = grid.spacing.0 * grid.spacing.1;
    let area_mm2 = ((c1 - c0) * (r1 - r0)) as f64 * pixel_mm2 * std::f64::consts::FRAC_PI_4;
    (roi.len() as f64 * pixel_mm2 >= 25.0).then_some(SliceBody {
        slice,
        roi,
        centre: (ox, oy),
        area_mm2,
        outline: RoiOutline {
            centre: (ox, oy),
            radii: (ax, ay),
            posterior_row: vein_limit,
        },
    })
}
