//! The CT series as a volume: decoded axial slices in HU, ordered head to feet.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use crate::analysis::image::{self, Frame, ImageError};
use crate::dicom::text;

/// Why a series could not be made into a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        // Boxed: the reader's error is large, and errors travel by value.
        source: Box<crate::dicom::open::OpenError>,
    },
    #[error("{path}: {source}")]
    Decode { path: PathBuf, source: ImageError },
    #[error("slices of different matrix sizes in one series")]
    MixedMatrix,
    #[error("no PixelSpacing")]
    NoPixelSpacing,
    #[error("{path}: {why}")]
    Implausible { path: PathBuf, why: String },
    #[error("the series would decode to more than 768 Mi voxels (3 GiB)")]
    TooLarge,
}

/// Largest CT matrix side: diagnostic CT is 512 or 1024; a larger header is hostile or
/// not a CT, and each slice is decoded whole.
const MAX_CT_SIDE: u32 = 2048;
/// Voxels one series may decode to (3,072 slices of 512 x 512): every slice stays in
/// memory as f32 while the volume is measured.
const MAX_VOXELS: u64 = 768 << 20;
/// Table positions beyond this (mm) are not positions.
const MAX_Z_MM: f64 = 100_000.0;

/// An axial volume: slices ordered head to feet, with their z positions (mm).
pub struct Volume {
    pub slices: Vec<Frame>,
    pub z: Vec<f64>,
    /// SOP Instance UID of each slice (empty when the header has none).
    pub sop_uids: Vec<String>,
    /// (row spacing, column spacing) in mm.
    pub spacing: (f64, f64),
    /// ImageOrientationPatient of the first slice (six finite cosines), or empty.
    pub orientation: Vec<f64>,
}

/// One decoded slice, what orders it, and the header facts the volume keeps.
struct Slice {
    z: f64,
    frame: Frame,
    uid: String,
    spacing: Option<(f64, f64)>,
    /// ImageOrientationPatient (six finite cosines), or empty.
    orientation: Vec<f64>,
}

impl Volume {
    /// Decode axial slices from files and order them head to feet by ImagePositionPatient
    /// (InstanceNumber when positions are missing). Pixel spacing from the first slice.
    pub fn from_files(paths: &[PathBuf]) -> Result<Volume, VolumeError> {
        let mut slices = Vec::with_capacity(paths.len());
        let mut spacing = None;
        let mut orientation = Vec::new();
        let mut voxels = 0u64;
        for path in paths {
            let slice = read_slice(path, &mut voxels)?;
            spacing = spacing.or(slice.spacing);
            if orientation.is_empty() {
                orientation = slice.orientation.clone();
            }
            slices.push(slice);
        }
        // Head to feet; equal positions by UID, so every caller builds the same order.
        slices.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.uid.cmp(&b.uid)));
        // The same instance given twice (two copies of an export) counts once.
        slices.dedup_by(|a, b| !a.uid.is_empty() && a.uid == b.uid);
        // One matrix size for the whole series: later stages index every slice with it.
        if let Some(first) = slices.first() {
            let size = (first.frame.rows, first.frame.columns);
            if slices
                .iter()
                .any(|s| (s.frame.rows, s.frame.columns) != size)
            {
                return Err(VolumeError::MixedMatrix);
            }
        }
        Ok(Volume {
            z: slices.iter().map(|s| s.z).collect(),
            sop_uids: slices.iter().map(|s| s.uid.clone()).collect(),
            slices: slices.into_iter().map(|s| s.frame).collect(),
            spacing: spacing.ok_or(VolumeError::NoPixelSpacing)?,
            orientation,
        })
    }

    /// Cranio-caudal extent from the first to the last slice (mm).
    pub fn extent_mm(&self) -> f64 {
        match (self.z.first(), self.z.last()) {
            (Some(a), Some(b)) => (a - b).abs(),
            _ => 0.0,
        }
    }
}

/// One file's slice; `voxels` counts what the series has decoded so far, checked from
/// the header before this slice is decoded.
fn read_slice(path: &Path, voxels: &mut u64) -> Result<Slice, VolumeError> {
    let obj = crate::dicom::open::open_file(path, &Default::default()).map_err(|source| {
        VolumeError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    })?;
    let implausible = |why: String| VolumeError::Implausible {
        path: path.to_path_buf(),
        why,
    };
    let decode_error = |source| VolumeError::Decode {
        path: path.to_path_buf(),
        source,
    };
    let header = image::header(&obj).map_err(decode_error)?;
    if header.rows > MAX_CT_SIDE || header.columns > MAX_CT_SIDE {
        return Err(implausible(format!(
            "a CT slice of {} x {} pixels (at most {MAX_CT_SIDE} a side)",
            header.rows, header.columns
        )));
    }
    *voxels += u64::from(header.rows) * u64::from(header.columns);
    if *voxels > MAX_VOXELS {
        return Err(VolumeError::TooLarge);
    }
    let (header, frame) = image::decode_first_of(&obj, header).map_err(decode_error)?;
    let floats = |tag| obj.get(tag).and_then(|e| e.value().to_multi_float64().ok());
    let z = floats(tags::IMAGE_POSITION_PATIENT)
        .and_then(|v| v.get(2).copied())
        .or_else(|| {
            obj.get(tags::INSTANCE_NUMBER)
                .and_then(|e| e.value().to_float64().ok())
                .map(|n| -n)
        })
        .unwrap_or(0.0);
    if !z.is_finite() || z.abs() > MAX_Z_MM {
        return Err(implausible(format!("slice position {z:e} mm")));
    }
    let iop = floats(tags::IMAGE_ORIENTATION_PATIENT)
        .filter(|v| v.len() == 6 && v.iter().all(|x| x.is_finite()))
        .unwrap_or_default();
    let uid = text(&obj, tags::SOP_INSTANCE_UID);
    Ok(Slice {
        z,
        frame,
        uid,
        spacing: header.pixel_spacing,
        orientation: iop,
    })
}
