//! The key image of the Secondary Capture: the AP radiograph the model saw, or for CT a
//! mid-sagittal reformat through the vertebral bodies with each level's ROI outlined and
//! its HU printed (the measured axial slice for short volumes); under it a banner with
//! the result in words. The pixels come with the Finding: nothing is decoded here.

use super::render::{Canvas, AMBER, BANNER, WHITE, YELLOW};
use crate::analysis::finding::{
    AxialPixels, CtFinding, Finding, KeyPixels, RadiographPixels, Risk, SagittalPixels, Status,
};

/// Long side of the image part (the banner adds to it).
const IMAGE_LONG_SIDE: f64 = 1536.0;

/// Why no key image could be composed.
#[derive(Debug, thiserror::Error)]
pub enum KeyImageError {
    #[error("study was not analysed")]
    NotAnalysed,
    #[error("the finding carries no pixels for a key image")]
    NoPixels,
    #[error("the axial key image's level is not in the finding")]
    NoLevel,
}

/// A composed key image and what a viewer needs to know about it.
pub struct KeyImage {
    pub canvas: Canvas,
    /// Row, column spacing (mm) of the image part, when meaningful.
    pub pixel_spacing: Option<(f64, f64)>,
    /// PatientOrientation (row direction, column direction), e.g. "P\\F".
    pub orientation: String,
    /// SOP Instance UIDs of the images the picture was made from.
    pub derived_from: Vec<String>,
    pub description: String,
}

/// Compose the key image for an analysed study.
pub fn compose(f: &Finding, disclaimer: &str) -> Result<KeyImage, KeyImageError> {
    if f.status != Status::Analysed {
        return Err(KeyImageError::NotAnalysed);
    }
    let mut key = match (&f.key_pixels, &f.ct) {
        (Some(KeyPixels::Radiograph(p)), _) => radiograph(p),
        (Some(KeyPixels::CtSagittal(p)), Some(ct)) => ct_reformat(p, ct),
        (Some(KeyPixels::CtAxial(p)), Some(ct)) => ct_axial(p, ct)?,
        _ => return Err(KeyImageError::NoPixels),
    };
    let banner = banner(f, disclaimer, key.canvas.width);
    key.canvas = std::mem::replace(&mut key.canvas, Canvas::new(1, 1, BANNER)).above(banner);
    Ok(key)
}

fn scale_for(width_mm: f64, height_mm: f64) -> f64 {
    width_mm.max(height_mm) / IMAGE_LONG_SIDE
}

/// Bone window (level 300, width 1500) to 0..1.
fn bone_window(hu: f32) -> f32 {
    ((hu + 450.0) / 1500.0).clamp(0.0, 1.0)
}

fn radiograph(p: &RadiographPixels) -> KeyImage {
    let RadiographPixels {
        sop_instance_uid,
        grey,
        rows,
        columns,
        pixel_spacing,
        patient_orientation,
    } = p;
    let (rows_f, cols_f) = (*rows as f64, *columns as f64);
    let mm_per_px = scale_for(cols_f, rows_f);
    let (w, h) = (
        ((cols_f / mm_per_px).round() as usize).max(1),
        ((rows_f / mm_per_px).round() as usize).max(1),
    );
    KeyImage {
        canvas: Canvas::from_grey(grey, *columns, *rows, w, h),
        pixel_spacing: pixel_spacing.map(|(r, c)| (r * rows_f / h as f64, c * cols_f / w as f64)),
        orientation: patient_orientation.clone(),
        derived_from: vec![sop_instance_uid.clone()],
        description: "AP lumbar radiograph analysed by the X-ray model, result banner burned in"
            .into(),
    }
}

fn ct_reformat(p: &SagittalPixels, finding: &CtFinding) -> KeyImage {
    let SagittalPixels {
        hu,
        rows,
        slices,
        row_mm,
        slice_mm,
        orientation,
        sop_uids,
    } = p;
    let (rows, n, row_mm, slice_mm) = (*rows, *slices, *row_mm, *slice_mm);
    let grey: Vec<f32> = hu.iter().map(|v| bone_window(*v)).collect();
    let mm_per_px = scale_for(rows as f64 * row_mm, n as f64 * slice_mm);
    let w = ((rows as f64 * row_mm / mm_per_px).round() as usize).max(1);
    let h = (n as f64 * slice_mm / mm_per_px).round().max(1.0) as usize;
    // Horizontal: axial rows (anterior left); vertical: slices head to feet.
    let mut canvas = Canvas::from_grey(&grey, rows, n, w, h);
    let size = (w as f32 / 42.0).clamp(18.0, 32.0);
    for l in &finding.levels {
        let (Some(&s0), Some(&s1)) = (l.slices.iter().min(), l.slices.iter().max()) else {
            continue;
        };
        if s1 >= n {
            continue;
        }
        let px = |row: f64| (row * row_mm / mm_per_px) as f32;
        let pz = |slice: f64| (slice * slice_mm / mm_per_px) as f32;
        let (x0, x1) = (
            px(l.roi.centre.1 - l.roi.radii.1),
            px((l.roi.centre.1 + l.roi.radii.1).min(l.roi.posterior_row)),
        );
        let (y0, y1) = (pz(s0 as f64), pz(s1 as f64 + 1.0));
        canvas.polygon(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1)], YELLOW, 2.0);
        let name = l.level.as_deref().unwrap_or("?");
        let label = if l.metal {
            format!("{name} metal")
        } else {
            format!("{name} {:.0} HU", l.median_hu)
        };
        let tw = Canvas::text_width(&label, size, true);
        // Left of the body's front (the ROI is the central half of the body's depth).
        let front = px(l.roi.centre.1 - 2.2 * l.roi.radii.1);
        canvas.text(
            &label,
            (front - tw - 12.0).max(4.0),
            (y0 + y1) / 2.0 + size / 3.0,
            size,
            true,
            YELLOW,
        );
    }
    KeyImage {
        canvas,
        pixel_spacing: Some((mm_per_px, mm_per_px)),
        // Across: the direction axial rows advance in; down: head to feet.
        orientation: if orientation.len() == 6 {
            format!("{}\\F", direction_letter(&orientation[3..6]))
        } else {
            String::new()
        },
        derived_from: sop_uids.clone(),
        description: "Mid-sagittal CT reformat through the vertebral bodies, trabecular ROIs and HU burned in"
            .into(),
    }
}

/// The PatientOrientation letter of a direction (patient axes: +x left, +y posterior,
/// +z head), by its dominant component.
fn direction_letter(v: &[f64]) -> char {
    let k = (0..3)
        .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
        .expect("three components");
    let (plus, minus) = [('L', 'R'), ('P', 'A'), ('H', 'F')][k];
    if v[k] >= 0.0 {
        plus
    } else {
        minus
    }
}

/// The axial slice of a level, its ROI outlined and its HU printed.
fn ct_axial(p: &AxialPixels, finding: &CtFinding) -> Result<KeyImage, KeyImageError> {
    let AxialPixels {
        hu,
        rows,
        columns,
        spacing,
        orientation,
        sop_instance_uid,
        level,
    } = p;
    let level = finding.levels.get(*level).ok_or(KeyImageError::NoLevel)?;
    let grey: Vec<f32> = hu.iter().map(|v| bone_window(*v)).collect();
    let (rows_f, cols_f) = (*rows as f64, *columns as f64);
    let scale = IMAGE_LONG_SIDE / rows_f.max(cols_f);
    let (w, h) = (
        ((cols_f * scale) as usize).max(1),
        ((rows_f * scale) as usize).max(1),
    );
    let mut canvas = Canvas::from_grey(&grey, *columns, *rows, w, h);
    let outline: Vec<(f32, f32)> = level
        .roi
        .polygon()
        .into_iter()
        .map(|(x, y)| (x * scale as f32, y * scale as f32))
        .collect();
    canvas.polygon(&outline, YELLOW, 2.5);
    let size = (w as f32 / 42.0).clamp(18.0, 32.0);
    let label = format!(
        "{} {:.0} HU (median)",
        level.level.as_deref().unwrap_or("?"),
        level.median_hu
    );
    let (cx, cy) = (level.roi.centre.0 * scale, level.roi.centre.1 * scale);
    let tw = Canvas::text_width(&label, size, true);
    let top = (cy - level.roi.radii.1 * scale) as f32 - size;
    canvas.text(
        &label,
        (cx as f32 - tw / 2.0).max(4.0),
        top.max(size),
        size,
        true,
        YELLOW,
    );
    Ok(KeyImage {
        canvas,
        pixel_spacing: Some((spacing.0 / scale, spacing.1 / scale)),
        orientation: if orientation.len() == 6 {
            format!(
                "{}\\{}",
                direction_letter(&orientation[0..3]),
                direction_letter(&orientation[3..6])
            )
        } else {
            String::new()
        },
        derived_from: vec![sop_instance_uid.clone()],
        description: "Axial CT slice with the trabecular ROI and its HU burned in".into(),
    })
}

/// Cut `text` with an ellipsis until it fits `max_w` pixels.
fn fit(text: &str, size: f32, bold: bool, max_w: f32) -> String {
    if Canvas::text_width(text, size, bold) <= max_w {
        return text.to_string();
    }
    // No glyph is narrower than a quarter of the size: cut long texts before measuring.
    let most = (max_w / (0.25 * size)).ceil() as usize + 1;
    let mut chars: Vec<char> = text.chars().take(most).collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if Canvas::text_width(&s, size, bold) <= max_w {
            return s;
        }
    }
    String::new()
}

/// The lines of the banner: (text, bold, colour).
pub fn banner_lines(f: &Finding, disclaimer: &str) -> Vec<(String, bool, [u8; 3])> {
    let mut lines = vec![(disclaimer.to_string(), true, AMBER)];
    if let Some(c) = &f.conclusion {
        let p = c
            .probability
            .map_or(String::new(), |p| format!(" (probability {p:.2})"));
        lines.push((
            format!("Result: {}{p}", c.class.words().to_uppercase()),
            true,
            WHITE,
        ));
        if f.ct.is_some() {
            lines.push((c.basis.clone(), false, WHITE));
        }
    } else {
        lines.push(("Result: NO CLASS".into(), true, WHITE));
        let why =
            f.ct.as_ref()
                .map_or("see the flags".to_string(), |ct| ct.class_basis.clone());
        lines.push((why, false, WHITE));
    }
    if let Some(ct) = &f.ct {
        let levels: Vec<String> = ct
            .levels
            .iter()
            .map(|l| {
                let name = l.level.as_deref().unwrap_or("?");
                if l.metal {
                    format!("{name} metal")
                } else {
                    format!("{name} {:.0}", l.median_hu)
                }
            })
            .collect();
        lines.push((
            format!("CT trabecular median HU: {}", levels.join("  ·  ")),
            false,
            WHITE,
        ));
    }
    if let Some(x) = &f.xray {
        lines.push((
            format!(
                "Estimated T-score {:+.1}, BMD {:.3} g/cm² (estimate from radiographs, not DXA)",
                x.t_score, x.bmd_g_cm2
            ),
            false,
            WHITE,
        ));
        lines.push((
            format!(
                "Model {} {} · {}",
                x.model.name, x.model.version, f.software
            ),
            false,
            WHITE,
        ));
    } else {
        lines.push((
            format!("Method: CT trabecular attenuation · {}", f.software),
            false,
            WHITE,
        ));
    }
    lines.push((
        match &f.risk {
            Risk::Known {
                index,
                band,
                fitted,
                ..
            } => match fitted {
                Some(r) => format!(
                    "OST clinical risk: {band:?} (index {index}) · {}: P(osteoporosis) {:.0} %",
                    r.model,
                    r.probabilities[2] * 100.0
                ),
                None => format!("OST clinical risk: {band:?} (index {index})"),
            },
            Risk::Unknown { reason } => format!("OST clinical risk: unknown ({reason})"),
        },
        false,
        WHITE,
    ));
    // One line per flag (three at most), so none is cut off unseen.
    for flag in f.flags.iter().take(3) {
        lines.push((format!("Flag: {flag}"), false, AMBER));
    }
    if f.flags.len() > 3 {
        lines.push((
            format!("… {} more flags: see the SR", f.flags.len() - 3),
            false,
            AMBER,
        ));
    }
    lines
}

fn banner(f: &Finding, disclaimer: &str, width: usize) -> Canvas {
    let width = width.max(1024);
    let size = (width as f32 / 48.0).clamp(20.0, 34.0);
    let lines = banner_lines(f, disclaimer);
    let line_h = size * 1.45;
    let height = (line_h * lines.len() as f32 + size) as usize;
    let mut c = Canvas::new(width, height, BANNER);
    let margin = size;
    for (k, (text, bold, colour)) in lines.iter().enumerate() {
        let s = fit(text, size, *bold, width as f32 - 2.0 * margin);
        c.text(
            &s,
            margin,
            size * 1.2 + k as f32 * line_h,
            size,
            *bold,
            *colour,
        );
    }
    c
}
