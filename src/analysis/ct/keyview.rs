//! What of the CT the key image will show, taken while the volume is decoded so that
//! reporting decodes nothing again: a sagittal slab through the vertebral bodies, or the
//! measured axial slice when the volume is too short for a useful reformat.

use super::Volume;
use crate::analysis::finding::{AxialPixels, KeyPixels, LevelMeasure, SagittalPixels};

/// CT volumes shorter than this (mm) get an axial key image rather than a reformat.
const SHORT_VOLUME_MM: f64 = 100.0;

/// Columns either side of the body centres averaged into the sagittal slab.
const SLAB_HALF_WIDTH: usize = 2;

/// The key pixels for a measured volume; None for an empty volume.
pub fn key_pixels(volume: &Volume, levels: &[LevelMeasure]) -> Option<KeyPixels> {
    let first = volume.slices.first()?;
    if volume.extent_mm() < SHORT_VOLUME_MM {
        if let Some(level) = levels.first() {
            if let Some(axial) = axial(volume, level) {
                return Some(axial);
            }
        }
    }
    let (rows, cols, n) = (first.rows, first.columns, volume.slices.len());
    let centre = if levels.is_empty() {
        cols as f64 / 2.0
    } else {
        levels.iter().map(|l| l.roi.centre.0).sum::<f64>() / levels.len() as f64
    };
    let x = (centre.round().max(0.0) as usize).min(cols - 1);
    let (a, b) = (
        x.saturating_sub(SLAB_HALF_WIDTH),
        (x + SLAB_HALF_WIDTH).min(cols - 1),
    );
    let mut hu = vec![0f32; n * rows];
    for (k, slice) in volume.slices.iter().enumerate() {
        for y in 0..rows {
            let sum: f32 = (a..=b).map(|c| slice.values[y * cols + c]).sum();
            hu[k * rows + y] = sum / (b - a + 1) as f32;
        }
    }
    let slice_mm = if n > 1 {
        volume.extent_mm() / (n - 1) as f64
    } else {
        1.0
    };
    Some(KeyPixels::CtSagittal(SagittalPixels {
        hu,
        rows,
        slices: n,
        row_mm: volume.spacing.0,
        slice_mm,
        orientation: volume.orientation.clone(),
        sop_uids: volume.sop_uids.clone(),
    }))
}

/// The slice holding `level`'s ROI, found by UID.
fn axial(volume: &Volume, level: &LevelMeasure) -> Option<KeyPixels> {
    let k = volume
        .sop_uids
        .iter()
        .position(|u| *u == level.roi_sop_instance_uid)?;
    let frame = &volume.slices[k];
    Some(KeyPixels::CtAxial(AxialPixels {
        hu: frame.values.clone(),
        rows: frame.rows,
        columns: frame.columns,
        spacing: volume.spacing,
        orientation: volume.orientation.clone(),
        sop_instance_uid: volume.sop_uids[k].clone(),
        level: 0,
    }))
}
