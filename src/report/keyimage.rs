//! The key image of the Secondary Capture: the AP radiograph the model saw, or for CT a
//! mid-sagittal reformat through the vertebral bodies with each level's ROI outlined and
//! its HU printed; under it a banner with the result in words.

use std::path::PathBuf;

use super::render::{Canvas, AMBER, BANNER, WHITE, YELLOW};
use super::source::Source;
use crate::analysis::finding::{Finding, Status};
use crate::analysis::risk::Risk;
use crate::analysis::select::View;
use crate::analysis::{ct, image};

/// Long side of the image part (the banner adds to it).
const IMAGE_LONG_SIDE: f64 = 1536.0;
/// CT volumes shorter than this (mm) get an axial key image rather than a reformat.
const SHORT_VOLUME_MM: f64 = 100.0;

/// A composed key image and what a viewer needs to know about it.
pub struct KeyImage {
    pub canvas: Canvas,
    /// Row, column spacing (mm) of the image part, when meaningful.
    pub pixel_spacing: Option<(f64, f64)>,
    /// PatientOrientation (row direction, column direction), e.g. "P\F".
    pub orientation: String,
    /// SOP Instance UIDs of the images the picture was made from.
    pub derived_from: Vec<String>,
    pub description: String,
}

fn path_of(src: &Source, uid: &str) -> Option<PathBuf> {
    src.instances
        .iter()
        .find(|i| i.sop_instance_uid == uid)
        .map(|i| i.path.clone())
}

/// Compose the key image for an analysed study.
pub fn compose(f: &Finding, src: &Source, disclaimer: &str) -> Result<KeyImage, String> {
    if f.status != Status::Analysed {
        return Err("study was not analysed".into());
    }
    let mut key = if let Some(ct) = &f.ct {
        ct_reformat(ct, src)?
    } else if let Some(x) = &f.xray {
        let chosen = x
            .images
            .iter()
            .find(|i| i.view == View::Frontal)
            .or_else(|| x.images.first())
            .ok_or("no radiograph in the finding")?;
        radiograph(&chosen.sop_instance_uid, src)?
    } else {
        return Err("no method result to show".into());
    };
    let banner = banner(f, disclaimer, key.canvas.width);
    key.canvas = std::mem::replace(&mut key.canvas, Canvas::new(1, 1, BANNER)).above(banner);
    Ok(key)
}

fn scale_for(width_mm: f64, height_mm: f64) -> f64 {
    width_mm.max(height_mm) / IMAGE_LONG_SIDE
}

fn radiograph(uid: &str, src: &Source) -> Result<KeyImage, String> {
    let path = path_of(src, uid).ok_or("radiograph not among the sources")?;
    let obj = dicom_object::open_file(&path).map_err(|e| e.to_string())?;
    let (header, frame) = image::decode_first(&obj).map_err(|e| e.to_string())?;
    let shown = image::display(&frame, &header);
    let (rows, cols) = (frame.rows as f64, frame.columns as f64);
    let mm_per_px = scale_for(cols, rows);
    let (w, h) = (
        ((cols / mm_per_px).round() as usize).max(1),
        ((rows / mm_per_px).round() as usize).max(1),
    );
    let orientation = obj
        .element(dicom_dictionary_std::tags::PATIENT_ORIENTATION)
        .ok()
        .and_then(|e| e.value().to_str().ok().map(|s| s.trim().to_string()))
        // Copied only when it is a valid pair of direction letters.
        .filter(|s| {
            let parts: Vec<&str> = s.split('\\').collect();
            parts.len() == 2
                && parts.iter().all(|p| {
                    !p.is_empty() && p.len() <= 16 && p.chars().all(|c| "LRAPHF".contains(c))
                })
        })
        .unwrap_or_default();
    Ok(KeyImage {
        canvas: Canvas::from_grey(&shown, frame.columns, frame.rows, w, h),
        pixel_spacing: header
            .pixel_spacing
            .map(|(r, c)| (r * rows / h as f64, c * cols / w as f64)),
        orientation,
        derived_from: vec![uid.to_string()],
        description: "AP lumbar radiograph analysed by the X-ray model, result banner burned in"
            .into(),
    })
}

fn ct_reformat(
    finding: &crate::analysis::finding::CtFinding,
    src: &Source,
) -> Result<KeyImage, String> {
    let paths: Vec<PathBuf> = src
        .instances
        .iter()
        .filter(|i| i.series_uid == finding.series_uid)
        .map(|i| i.path.clone())
        .collect();
    let volume = ct::Volume::from_files(&paths)?;
    let iop = paths
        .first()
        .map(|p| orientation_cosines(p))
        .unwrap_or_default();
    let first = volume.slices.first().ok_or("empty CT volume")?;
    let (rows, cols, n) = (first.rows, first.columns, volume.slices.len());
    let extent_mm = match (volume.z.first(), volume.z.last()) {
        (Some(a), Some(b)) => (a - b).abs(),
        _ => 0.0,
    };
    // A short volume makes a sliver of a reformat: show the measured axial slice instead.
    if extent_mm < SHORT_VOLUME_MM {
        if let Some(level) = finding.levels.first() {
            return ct_axial(&volume, level, &iop);
        }
    }
    let centre = if finding.levels.is_empty() {
        cols as f64 / 2.0
    } else {
        finding.levels.iter().map(|l| l.roi.centre.0).sum::<f64>() / finding.levels.len() as f64
    };
    let x = (centre.round() as usize).min(cols - 1);
    // Mean of a 5-pixel slab through the body centres, bone window (level 300, width 1500).
    let mut grey = vec![0f32; n * rows];
    for (k, slice) in volume.slices.iter().enumerate() {
        for y in 0..rows {
            let (a, b) = (x.saturating_sub(2), (x + 2).min(cols - 1));
            let hu = (a..=b).map(|c| slice.values[y * cols + c]).sum::<f32>() / (b - a + 1) as f32;
            grey[k * rows + y] = ((hu + 450.0) / 1500.0).clamp(0.0, 1.0);
        }
    }
    let slice_mm = if n > 1 {
        (volume.z[0] - volume.z[n - 1]).abs() / (n - 1) as f64
    } else {
        1.0
    };
    let row_mm = volume.spacing.0;
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
        let label = format!(
            "{} {:.0} HU",
            l.level.as_deref().unwrap_or("?"),
            l.median_hu
        );
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
    Ok(KeyImage {
        canvas,
        pixel_spacing: Some((mm_per_px, mm_per_px)),
        // Across: the direction axial rows advance in; down: head to feet.
        orientation: if iop.len() == 6 {
            format!("{}\\F", direction_letter(&iop[3..6]))
        } else {
            String::new()
        },
        derived_from: volume.sop_uids.clone(),
        description: "Mid-sagittal CT reformat through the vertebral bodies, trabecular ROIs and HU burned in"
            .into(),
    })
}

/// The axial slice in the middle of `level`, its ROI outlined and its HU printed.
/// ImageOrientationPatient of a file (empty when absent or malformed).
fn orientation_cosines(path: &std::path::Path) -> Vec<f64> {
    dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .ok()
        .and_then(|o| {
            o.get(dicom_dictionary_std::tags::IMAGE_ORIENTATION_PATIENT)
                .and_then(|e| e.value().to_multi_float64().ok())
        })
        .filter(|v| v.len() == 6 && v.iter().all(|x| x.is_finite()))
        .unwrap_or_default()
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

fn ct_axial(
    volume: &ct::Volume,
    level: &ct::LevelMeasure,
    iop: &[f64],
) -> Result<KeyImage, String> {
    // The ROI's own slice, found by UID (not by index: this volume is rebuilt here).
    let k = volume
        .sop_uids
        .iter()
        .position(|u| *u == level.roi_sop_instance_uid)
        .ok_or("the ROI's slice is not among the sources")?;
    let frame = &volume.slices[k];
    let grey: Vec<f32> = frame
        .values
        .iter()
        .map(|hu| ((hu + 450.0) / 1500.0).clamp(0.0, 1.0))
        .collect();
    let (rows, cols) = (frame.rows as f64, frame.columns as f64);
    let scale = IMAGE_LONG_SIDE / rows.max(cols);
    let (w, h) = (
        ((cols * scale) as usize).max(1),
        ((rows * scale) as usize).max(1),
    );
    let mut canvas = Canvas::from_grey(&grey, frame.columns, frame.rows, w, h);
    let outline: Vec<(f32, f32)> = super::groups::roi_polygon(&level.roi)
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
        pixel_spacing: Some((volume.spacing.0 / scale, volume.spacing.1 / scale)),
        orientation: if iop.len() == 6 {
            format!(
                "{}\\{}",
                direction_letter(&iop[0..3]),
                direction_letter(&iop[3..6])
            )
        } else {
            String::new()
        },
        derived_from: volume.sop_uids.get(k).cloned().into_iter().collect(),
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
            .map(|l| format!("{} {:.0}", l.level.as_deref().unwrap_or("?"), l.median_hu))
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
            Risk::Known { index, band, .. } => {
                format!("OST clinical risk: {band:?} (index {index})")
            }
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
