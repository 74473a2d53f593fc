//! CT attenuation (opportunistic screening after Pickhardt et al., Ann Intern Med 2013):
//! find the vertebral bodies in an axial volume by image analysis, label levels where the
//! anatomy allows, place a trabecular ROI inside each body away from the cortex and the
//! basivertebral vein, and report mean / median HU per level.
//!
//! Per slice the spine is found as a bone component near the midline (see `find_body`),
//! the body as its part anterior to the canal. Consecutive slices with a body form one
//! vertebra; disc slices separate them. The lowest vertebra with ribs beside it is T12.

use serde::Serialize;

use super::image::Frame;

/// Pixels above this are left out of the ROI as cortex or sclerosis (dense trabecular
/// bone can exceed 400 HU in places; cortex is mostly brighter).
const SHELL_HU: f32 = 600.0;
/// Cortical bone of ribs and ilium, for telling levels apart.
const CORTEX_HU: f32 = 400.0;
/// Bone for locating the spine.
const BONE_HU: f32 = 220.0;
/// A vertebra with its posterior elements, after 3 mm dilation (mm²).
const VERTEBRA_AREA_MM2: (f64, f64) = (500.0, 9000.0);

/// An axial volume: slices ordered head to feet, with their z positions (mm).
pub struct Volume {
    pub slices: Vec<Frame>,
    pub z: Vec<f64>,
    /// SOP Instance UID of each slice (empty when the header has none).
    pub sop_uids: Vec<String>,
    /// (row spacing, column spacing) in mm.
    pub spacing: (f64, f64),
}

impl Volume {
    /// Decode axial slices from files and order them head to feet by ImagePositionPatient
    /// (InstanceNumber when positions are missing). Pixel spacing from the first slice.
    pub fn from_files(paths: &[std::path::PathBuf]) -> Result<Volume, String> {
        use dicom_dictionary_std::tags;
        let mut slices = Vec::with_capacity(paths.len());
        let mut spacing = None;
        for path in paths {
            let obj =
                dicom_object::open_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (header, frame) =
                super::image::decode_first(&obj).map_err(|e| format!("{}: {e}", path.display()))?;
            spacing = spacing.or(header.pixel_spacing);
            let z = obj
                .get(tags::IMAGE_POSITION_PATIENT)
                .and_then(|e| e.value().to_multi_float64().ok())
                .and_then(|v| v.get(2).copied())
                .or_else(|| {
                    obj.get(tags::INSTANCE_NUMBER)
                        .and_then(|e| e.value().to_float64().ok())
                        .map(|n| -n)
                })
                .unwrap_or(0.0);
            let uid = obj
                .get(tags::SOP_INSTANCE_UID)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default();
            slices.push((z, frame, uid));
        }
        // Head to feet; equal positions by UID, so every caller builds the same order.
        slices.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
        // The same instance given twice (two copies of an export) counts once.
        slices.dedup_by(|a, b| !a.2.is_empty() && a.2 == b.2);
        // One matrix size for the whole series: later stages index every slice with it.
        if let Some(first) = slices.first() {
            let size = (first.1.rows, first.1.columns);
            if slices.iter().any(|s| (s.1.rows, s.1.columns) != size) {
                return Err("slices of different matrix sizes in one series".into());
            }
        }
        Ok(Volume {
            z: slices.iter().map(|s| s.0).collect(),
            sop_uids: slices.iter().map(|s| s.2.clone()).collect(),
            slices: slices.into_iter().map(|s| s.1).collect(),
            spacing: spacing.ok_or("no PixelSpacing")?,
        })
    }
}

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

/// Where the trabecular ROI lies in one slice, in pixel coordinates (column, row; the
/// DICOM SCOORD convention): an ellipse cut off posteriorly at `posterior_row`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoiOutline {
    pub centre: (f64, f64),
    pub radii: (f64, f64),
    pub posterior_row: f64,
}

/// One measured vertebra.
#[derive(Debug, Clone, Serialize)]
pub struct LevelMeasure {
    /// "T12", "L1", ... or None when the level could not be determined.
    pub level: Option<String>,
    pub slices: Vec<usize>,
    pub mean_hu: f64,
    pub median_hu: f64,
    pub roi_pixels: usize,
    pub roi_mm2: f64,
    pub ribs: bool,
    /// The ilium is beside it (L5 / sacrum level).
    pub pelvis: bool,
    /// Cranio-caudal extent of the slices with a body (mm).
    pub height_mm: f64,
    /// The ROI on the middle slice of the vertebra, and that slice's SOP Instance UID.
    pub roi: RoiOutline,
    pub roi_sop_instance_uid: String,
    /// Much lower than its neighbours (< 75 % of their mean height): possibly a compression
    /// fracture. Its HU is reported but should not drive a classification.
    pub compressed: bool,
}

/// What the volume showed.
#[derive(Debug, Clone, Serialize)]
pub struct CtMeasurement {
    pub vertebrae: Vec<LevelMeasure>,
    /// How levels were assigned, or why they were not.
    pub labelling: String,
}

/// Find the vertebral body's trabecular region in one slice.
///
/// Bone (HU above `BONE_HU`, dilated 3 mm so that the pieces of one vertebra join) forms
/// components; the spine is the one nearest the midline, in the posterior part of the
/// image, with a vertebra's size. Its anterior edge is the front of the body; the body's
/// width is measured 8 mm behind that edge (only the body reaches that far forward) and
/// its depth taken as 0.8 x width (20-40 mm). The ROI is the central oval (half the width
/// and depth), cut at two thirds of the depth to stay clear of the basivertebral vein,
/// without cortex-level pixels: robust to open or faint cortices and hollow bodies.
pub fn find_body(frame: &Frame, spacing: (f64, f64), slice: usize) -> Option<SliceBody> {
    let (w, h) = (frame.columns, frame.rows);
    let bone: Vec<bool> = frame.values.iter().map(|v| *v > BONE_HU).collect();
    let steps = (3.0 / spacing.0.min(spacing.1)).round().max(1.0) as usize;
    let mut grown = bone;
    for _ in 0..steps {
        grown = dilate(&grown, w, h);
    }
    let pixel_mm2 = spacing.0 * spacing.1;
    let mut seen = vec![false; w * h];
    let mut best: Option<(f64, Vec<usize>)> = None;
    for start in 0..w * h {
        if !grown[start] || seen[start] {
            continue;
        }
        let region = component(start, w, h, |i| grown[i], &mut seen);
        let area = region.len() as f64 * pixel_mm2;
        let (cx, cy, bw, bh) = extent(&region, w);
        let (width_mm, depth_mm) = (bw * spacing.1, bh * spacing.0);
        let off_centre = (cx - w as f64 / 2.0).abs() * spacing.1;
        if !(VERTEBRA_AREA_MM2.0..VERTEBRA_AREA_MM2.1).contains(&area)
            || !(30.0..140.0).contains(&width_mm)
            || !(25.0..140.0).contains(&depth_mm)
            || cy < h as f64 * 0.35
            || off_centre > 60.0
        {
            continue;
        }
        let score = area / (1.0 + off_centre / 10.0);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, region));
        }
    }
    let (_, region) = best?;
    // Fill the component's holes: a body whose trabecular bone is below BONE_HU is a ring.
    let in_region = fill_holes(&region, w, h);
    // The dilation moved every edge out by `steps` pixels.
    let front = region.iter().map(|i| i / w).min()? + steps;
    // The run of region pixels nearest the centre column, widest between 4 and 16 mm
    // behind the front (only the body reaches that far forward).
    let (cx, _, _, _) = extent(&region, w);
    let centre = cx.round() as usize;
    let run_at = |r: usize| -> Option<(usize, usize)> {
        let row = &in_region[r * w..(r + 1) * w];
        let start = (0..w)
            .filter(|&c| row[c])
            .min_by_key(|&c| c.abs_diff(centre))?;
        let (mut c0, mut c1) = (start, start);
        while c0 > 0 && row[c0 - 1] {
            c0 -= 1;
        }
        while c1 + 1 < w && row[c1 + 1] {
            c1 += 1;
        }
        Some((c0, c1))
    };
    let mm = |d: f64| (d / spacing.0).round() as usize;
    // Something narrower may sit in front, joined by the dilation (an osteophyte, the
    // contrast-filled or calcified aorta, up to ~30 mm): the body starts at the first row
    // at least 30 mm wide. Rows wider than 75 mm hold transverse processes or ribs.
    let px = |d: f64| (d / spacing.1).round() as usize;
    let width_of = |r: usize| run_at(r).map_or(0, |(a, b)| b - a);
    let front = (front..(front + mm(50.0)).min(h)).find(|&r| width_of(r) >= px(30.0))?;
    let (c0, c1) = (front + mm(2.0)..(front + mm(14.0)).min(h))
        .filter_map(run_at)
        .filter(|(a, b)| b - a <= px(75.0))
        .max_by_key(|(a, b)| b - a)?;
    let (c0, c1) = (c0 + steps, c1.saturating_sub(steps));
    let width_mm = (c1.saturating_sub(c0)) as f64 * spacing.1;
    if !(18.0..70.0).contains(&width_mm) {
        return None;
    }
    let depth_px = ((0.7 * width_mm).clamp(18.0, 40.0) / spacing.0) as usize;
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

/// Measure every vertebra in the volume.
pub fn measure(volume: &Volume) -> CtMeasurement {
    use rayon::prelude::*;
    // Slices are independent: find the bodies on every core.
    let bodies: Vec<Option<SliceBody>> = volume
        .slices
        .par_iter()
        .enumerate()
        .map(|(k, f)| find_body(f, volume.spacing, k))
        .collect();
    // Group consecutive slices whose bodies line up.
    let mut groups: Vec<Vec<SliceBody>> = Vec::new();
    let mut last: Option<usize> = None;
    for body in bodies.into_iter().flatten() {
        let continues = last.is_some_and(|k| k + 1 == body.slice)
            && groups
                .last()
                .and_then(|g| g.last())
                .is_some_and(|prev: &SliceBody| {
                    (prev.centre.0 - body.centre.0).hypot(prev.centre.1 - body.centre.1)
                        * volume.spacing.0
                        < 15.0
                });
        last = Some(body.slice);
        if continues {
            groups
                .last_mut()
                .expect("continues implies a group")
                .push(body);
        } else {
            groups.push(vec![body]);
        }
    }
    // Endplate fragments (groups spanning under 8 mm) are not vertebrae.
    let span = |g: &Vec<SliceBody>| {
        let (a, b) = (g[0].slice, g[g.len() - 1].slice);
        (volume.z[a] - volume.z[b]).abs()
            + volume.z.get(1).map_or(2.0, |z1| (volume.z[0] - z1).abs())
    };
    let mut vertebrae: Vec<LevelMeasure> = groups
        .iter()
        .filter(|g| span(g) >= 8.0 || groups.len() == 1)
        .map(|g| {
            let mid = &g[g.len() / 2];
            let frame = &volume.slices[mid.slice];
            // Mid-body slices only: the outer fifths hold partial-volumed endplates.
            let cut = g.len() / 5;
            let central = &g[cut..g.len() - cut];
            let mut values: Vec<f64> = central
                .iter()
                .flat_map(|b| {
                    b.roi
                        .iter()
                        .map(|&i| volume.slices[b.slice].values[i] as f64)
                })
                .collect();
            values.sort_by(|a, b| a.total_cmp(b));
            let n = values.len();
            let (ribs, pelvis) = beside_the_spine(frame, mid, volume.spacing);
            let height_mm = span(g);
            LevelMeasure {
                level: None,
                slices: central.iter().map(|b| b.slice).collect(),
                mean_hu: values.iter().sum::<f64>() / n.max(1) as f64,
                median_hu: if n == 0 { f64::NAN } else { values[n / 2] },
                roi_pixels: n,
                roi_mm2: mid.roi.len() as f64 * volume.spacing.0 * volume.spacing.1,
                ribs,
                pelvis,
                height_mm,
                roi: mid.outline,
                roi_sop_instance_uid: volume.sop_uids.get(mid.slice).cloned().unwrap_or_default(),
                compressed: false,
            }
        })
        .collect();
    // Compare each vertebra's height with its neighbours'.
    let heights: Vec<f64> = vertebrae.iter().map(|v| v.height_mm).collect();
    for (k, v) in vertebrae.iter_mut().enumerate() {
        let neighbours: Vec<f64> = [k.checked_sub(1), Some(k + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| heights.get(j).copied())
            .collect();
        if !neighbours.is_empty() {
            let mean = neighbours.iter().sum::<f64>() / neighbours.len() as f64;
            v.compressed = v.height_mm < 0.75 * mean;
        }
    }
    let labelling = label(&mut vertebrae);
    CtMeasurement {
        vertebrae,
        labelling,
    }
}

/// What lies beside the spine in a slice: ribs (small separate pieces of cortical bone
/// 45-140 mm to both sides, level with or behind the body) and the pelvis (a large plate of
/// bone 50-170 mm to the side: the ilium).
fn beside_the_spine(frame: &Frame, body: &SliceBody, spacing: (f64, f64)) -> (bool, bool) {
    let (w, h) = (frame.columns, frame.rows);
    let bone: Vec<bool> = frame.values.iter().map(|v| *v > CORTEX_HU).collect();
    let pixel_mm2 = spacing.0 * spacing.1;
    let first_row = (body.centre.1 as usize).saturating_sub((15.0 / spacing.0) as usize);
    let mut seen = vec![false; w * h];
    let mut sides = [false; 2];
    let mut pelvis = false;
    for start in 0..w * h {
        if !bone[start] || seen[start] {
            continue;
        }
        let piece = component(start, w, h, |i| bone[i], &mut seen);
        let area = piece.len() as f64 * pixel_mm2;
        let (cx, cy, _, _) = extent(&piece, w);
        let dx = (cx - body.centre.0) * spacing.1;
        let level_or_behind = cy >= first_row as f64;
        if level_or_behind && (15.0..400.0).contains(&area) && (45.0..140.0).contains(&dx.abs()) {
            sides[(dx > 0.0) as usize] = true;
        }
        if area > 500.0 && (50.0..170.0).contains(&dx.abs()) {
            pelvis = true;
        }
    }
    (sides[0] && sides[1] && !pelvis, pelvis)
}

/// T12 is the lowest vertebra with ribs above the pelvis; the ones below are L1, L2, ...
fn label(vertebrae: &mut [LevelMeasure]) -> String {
    let above_pelvis = vertebrae
        .iter()
        .position(|v| v.pelvis)
        .unwrap_or(vertebrae.len());
    let Some(t12) = vertebrae[..above_pelvis].iter().rposition(|v| v.ribs) else {
        return "levels not determined: no rib-bearing vertebra above the pelvis".into();
    };
    let names = ["T12", "L1", "L2", "L3", "L4", "L5"];
    for (k, v) in vertebrae.iter_mut().enumerate().skip(t12) {
        v.level = names.get(k - t12).map(|s| s.to_string());
    }
    for (k, v) in vertebrae.iter_mut().enumerate().take(t12) {
        v.level = (t12 - k <= 11).then(|| format!("T{}", 12 - (t12 - k)));
    }
    "T12 = lowest vertebra with ribs above the pelvis; counted caudally from there".into()
}

fn extent(region: &[usize], w: usize) -> (f64, f64, f64, f64) {
    let (mut c0, mut c1, mut r0, mut r1) = (usize::MAX, 0, usize::MAX, 0);
    let (mut sx, mut sy) = (0.0, 0.0);
    for &i in region {
        let (r, c) = (i / w, i % w);
        c0 = c0.min(c);
        c1 = c1.max(c);
        r0 = r0.min(r);
        r1 = r1.max(r);
        sx += c as f64;
        sy += r as f64;
    }
    let n = region.len().max(1) as f64;
    (sx / n, sy / n, (c1 + 1 - c0) as f64, (r1 + 1 - r0) as f64)
}

fn component(
    start: usize,
    w: usize,
    h: usize,
    inside: impl Fn(usize) -> bool,
    seen: &mut [bool],
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![start];
    seen[start] = true;
    while let Some(i) = stack.pop() {
        out.push(i);
        let (r, c) = (i / w, i % w);
        let mut push = |j: usize| {
            if !seen[j] && inside(j) {
                seen[j] = true;
                stack.push(j);
            }
        };
        if r > 0 {
            push(i - w);
        }
        if r + 1 < h {
            push(i + w);
        }
        if c > 0 {
            push(i - 1);
        }
        if c + 1 < w {
            push(i + 1);
        }
    }
    out
}

/// Mask of `region` plus every pixel it encloses (within its bounding box).
fn fill_holes(region: &[usize], w: usize, h: usize) -> Vec<bool> {
    let (mut c0, mut c1, mut r0, mut r1) = (w, 0, h, 0);
    for &i in region {
        c0 = c0.min(i % w);
        c1 = c1.max(i % w);
        r0 = r0.min(i / w);
        r1 = r1.max(i / w);
    }
    let mut mask = vec![false; w * h];
    for &i in region {
        mask[i] = true;
    }
    let inside_box = |i: usize| (c0..=c1).contains(&(i % w)) && (r0..=r1).contains(&(i / w));
    let mut outside = vec![false; w * h];
    for r in r0..=r1 {
        for c in c0..=c1 {
            let i = r * w + c;
            let border = r == r0 || r == r1 || c == c0 || c == c1;
            if border && !mask[i] && !outside[i] {
                component(i, w, h, |j| inside_box(j) && !mask[j], &mut outside);
            }
        }
    }
    for r in r0..=r1 {
        for c in c0..=c1 {
            let i = r * w + c;
            if !outside[i] {
                mask[i] = true;
            }
        }
    }
    mask
}

/// 3x3 dilation: set where any neighbour is set.
fn dilate(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for r in 0..h {
        for c in 0..w {
            let mut any = false;
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    let v = rr >= 0
                        && cc >= 0
                        && (rr as usize) < h
                        && (cc as usize) < w
                        && mask[rr as usize * w + cc as usize];
                    any |= v;
                }
            }
            out[r * w + c] = any;
        }
    }
    out
}

/// The class by the L1 trabecular HU (Pickhardt 2013 thresholds by default), the contrast
/// offset subtracted first. The ROI median is used: an automatic ROI that grazes an
/// endplate or a pedicle in one slice moves the mean, not the median. Falls back to L2, then L3, when L1 is missing or compressed;
/// no class when no lumbar level was identified.
pub fn classify(
    m: &CtMeasurement,
    (osteoporosis_hu, normal_hu): (f64, f64),
    contrast_offset_hu: f64,
) -> (Option<super::finding::CtClass>, String) {
    use super::finding::CtClass;
    for name in ["L1", "L2", "L3"] {
        let Some(level) = m
            .vertebrae
            .iter()
            .find(|v| v.level.as_deref() == Some(name) && !v.compressed && v.roi_pixels > 0)
        else {
            continue;
        };
        let hu = level.median_hu - contrast_offset_hu;
        let class = if hu <= osteoporosis_hu {
            CtClass::OsteoporosisLikely
        } else if hu >= normal_hu {
            CtClass::NormalLikely
        } else {
            CtClass::Indeterminate
        };
        return (Some(class), format!("{name} median {hu:.1} HU"));
    }
    (
        None,
        "no class: L1-L3 not identified or all compressed (levels need a rib-bearing T12 in the volume)"
            .into(),
    )
}
