//! Training images: each radiograph (DICOM or PNG) decoded once, windowed for display the
//! way the daemon does (`analysis::image::display`: bone bright, MONOCHROME1 inverted),
//! cut to the input's framing and box-filtered to its source side
//! (`model::preprocess::framed`, as the daemon's input is drawn) and kept in memory as
//! 16-bit grey. Augmentation and `model::preprocess::prepare` run on these for every epoch.

use std::path::Path;

use crate::analysis::finding::View;
use crate::analysis::{image, select};
use crate::model::preprocess::{framed, InputSpec};

/// A display image, 0..1 as 0..65535.
#[derive(Debug, Clone)]
pub struct Grey {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u16>,
}

impl Grey {
    pub fn from_f32(rows: usize, cols: usize, v: &[f32]) -> Grey {
        Grey {
            rows,
            cols,
            data: v
                .iter()
                .map(|x| (x.clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect(),
        }
    }

    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32 / 65535.0).collect()
    }
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    #[error("{0}: {1}")]
    Dicom(String, String),
    #[error("{0}: {1}")]
    Png(String, String),
}

/// Decode, display-window, frame and shrink one image as `input` reads it. `view`: the
/// dataset's word for it; when it has none, a DICOM header's View Position decides
/// whether the spine is looked for as on a lateral view.
pub fn load(path: &Path, view: Option<View>, input: InputSpec) -> Result<Grey, ImageLoadError> {
    let name = path.display().to_string();
    let mut lateral = view == Some(View::Lateral);
    let (rows, cols, values, spacing) = if is_png(path) {
        let (r, c, v) = read_png(path).map_err(|e| ImageLoadError::Png(name, e))?;
        (r, c, v, None)
    } else {
        let obj = crate::dicom::open::open_file(path, &Default::default())
            .map_err(|e| ImageLoadError::Dicom(name.clone(), e.to_string()))?;
        let (header, frame) =
            image::decode_first(&obj).map_err(|e| ImageLoadError::Dicom(name, e.to_string()))?;
        let shown = image::display(&frame, &header);
        if view.is_none() {
            let position =
                crate::dicom::text::text(&obj, dicom_dictionary_std::tags::VIEW_POSITION);
            lateral = select::view_from_position(&position) == Some(View::Lateral);
        }
        (
            frame.rows,
            frame.columns,
            shown,
            header.pixel_spacing.map(|s| s.1),
        )
    };
    let (r, c, v) = framed(&values, rows, cols, spacing, lateral, input);
    Ok(Grey::from_f32(r, c, &v))
}

/// Whether `path` names a PNG (by its extension); anything else is read as DICOM.
pub fn is_png(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// A greyscale (or RGB, as luma) 8- or 16-bit PNG as 0..1 values.
fn read_png(path: &Path) -> Result<(usize, usize, Vec<f32>), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let info = reader.info();
    let (w, h) = (info.width as usize, info.height as usize);
    if w == 0 || h == 0 || w * h > 64 << 20 {
        return Err(format!("implausible size {w}x{h}"));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let bytes = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let wide = frame.bit_depth == png::BitDepth::Sixteen;
    let sample = |i: usize| -> f32 {
        if wide {
            u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]) as f32 / 65535.0
        } else {
            bytes[i] as f32 / 255.0
        }
    };
    let values = (0..w * h)
        .map(|p| {
            let base = p * channels;
            if channels >= 3 {
                0.299 * sample(base) + 0.587 * sample(base + 1) + 0.114 * sample(base + 2)
            } else {
                sample(base)
            }
        })
        .collect();
    Ok((h, w, values))
}
