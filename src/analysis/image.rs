//! Image decoding for analysis: any greyscale (or RGB) DICOM image a PACS could send,
//! native or compressed, to frames of f32 in modality units (Modality LUT applied: HU
//! for CT). The header is checked before anything large is allocated; a codec problem is
//! a typed error naming the transfer syntax; nothing panics.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dicom::text::text_opt;

/// Largest image accepted: 32k per side, 4096 frames, 2 GiB of decoded samples.
const MAX_SIDE: u32 = 32_768;
const MAX_FRAMES: u32 = 4096;
const MAX_DECODED_BYTES: u64 = 2 << 30;

/// Why an image could not be decoded; each message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no {0} in the header")]
    Missing(&'static str),
    #[error("implausible image header: {0}")]
    Implausible(String),
    #[error("cannot decode pixel data in transfer syntax {ts} ({name}): {reason}")]
    Codec {
        ts: String,
        name: String,
        reason: String,
    },
    #[error("{0}")]
    Conversion(String),
}

/// The image attributes that matter before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHeader {
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub photometric: String,
    /// Row spacing, column spacing (mm): PixelSpacing, else ImagerPixelSpacing.
    pub pixel_spacing: Option<(f64, f64)>,
    /// First WindowCenter / WindowWidth, if any.
    pub window: Option<(f64, f64)>,
    /// Presentation LUT Shape (2050,0020) is INVERSE.
    pub presentation_inverse: bool,
}

impl ImageHeader {
    pub fn monochrome1(&self) -> bool {
        self.photometric == "MONOCHROME1"
    }

    /// The lowest values are meant to show white: MONOCHROME1, or MONOCHROME2 under an
    /// INVERSE Presentation LUT Shape. MONOCHROME1 with INVERSE is still one inversion:
    /// the DX Image module pairs the two (PS3.3 C.8.11.6), and viewers that inverted
    /// twice showed such radiographs black on white (Weasis #372). MONOCHROME1 under
    /// IDENTITY stays MONOCHROME1, where DCMTK follows the shape: CR writers are known to
    /// get the shape wrong (dcm4chee-arc #3155 lets archives ignore it), and the polarity
    /// check catches either mistake.
    pub fn shows_low_white(&self) -> bool {
        self.monochrome1() || (self.photometric == "MONOCHROME2" && self.presentation_inverse)
    }
}

/// One decoded frame: `rows x columns` values in modality units, row-major.
#[derive(Debug, Clone)]
pub struct Frame {
    pub rows: usize,
    pub columns: usize,
    pub values: Vec<f32>,
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    obj.get(tag).and_then(|e| e.value().to_int::<i64>().ok())
}

fn floats(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<Vec<f64>> {
    obj.get(tag)
        .and_then(|e| e.value().to_multi_float64().ok())
        .filter(|v| !v.is_empty())
}

/// Read and check the image attributes; nothing is decoded or allocated here.
pub fn header(obj: &DefaultDicomObject) -> Result<ImageHeader, ImageError> {
    let rows = int(obj, tags::ROWS).ok_or(ImageError::Missing("Rows"))?;
    let columns = int(obj, tags::COLUMNS).ok_or(ImageError::Missing("Columns"))?;
    let frames = text_opt(obj, tags::NUMBER_OF_FRAMES)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(1);
    let samples = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits_allocated =
        int(obj, tags::BITS_ALLOCATED).ok_or(ImageError::Missing("Bits Allocated"))?;
    let bits_stored = int(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
    let photometric = text_opt(obj, tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or(ImageError::Missing("Photometric Interpretation"))?;
    let bad = |why: String| Err(ImageError::Implausible(why));
    if rows <= 0 || columns <= 0 || rows > MAX_SIDE as i64 || columns > MAX_SIDE as i64 {
        return bad(format!("{rows} x {columns} pixels"));
    }
    if !(1..=MAX_FRAMES as i64).contains(&frames) {
        return bad(format!("{frames} frames"));
    }
    if samples != 1 && samples != 3 {
        return bad(format!("{samples} samples per pixel"));
    }
    if ![1, 8, 16, 32].contains(&bits_allocated) || bits_stored <= 0 || bits_stored > bits_allocated
    {
        return bad(format!("{bits_stored} of {bits_allocated} bits"));
    }
    let (rows, columns, frames) = (rows as u32, columns as u32, frames as u32);
    let (samples, bits_allocated, bits_stored) =
        (samples as u16, bits_allocated as u16, bits_stored as u16);
    let decoded = rows as u64 * columns as u64 * frames as u64 * samples as u64 * 4;
    if decoded > MAX_DECODED_BYTES {
        return bad(format!(
            "{rows} x {columns} x {frames} frames would need {} MiB decoded",
            decoded >> 20
        ));
    }
    let header = ImageHeader {
        rows,
        columns,
        frames,
        samples_per_pixel: samples,
        bits_allocated,
        bits_stored,
        photometric,
        pixel_spacing: pixel_spacing(obj),
        window: window(obj),
        presentation_inverse: text_opt(obj, tags::PRESENTATION_LUT_SHAPE)
            .is_some_and(|shape| shape == "INVERSE"),
    };
    check_pixel_data(obj, &header)?;
    Ok(header)
}

/// Pixel Data must be there and, when native, hold at least what the header declares.
fn check_pixel_data(obj: &DefaultDicomObject, h: &ImageHeader) -> Result<(), ImageError> {
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or(ImageError::Missing("Pixel Data"))?;
    match pixel_data.value() {
        dicom_core::DicomValue::PixelSequence(seq) if seq.fragments().is_empty() => Err(
            ImageError::Implausible("encapsulated Pixel Data without fragments".into()),
        ),
        dicom_core::DicomValue::PixelSequence(_) => Ok(()),
        value => {
            let expected = (h.rows as u64
                * h.columns as u64
                * h.frames as u64
                * h.samples_per_pixel as u64
                * h.bits_allocated as u64)
                .div_ceil(8);
            let actual = value.to_bytes().map(|b| b.len() as u64).unwrap_or(0);
            if actual < expected {
                return Err(ImageError::Implausible(format!(
                    "Pixel Data has {actual} bytes, Rows x Columns x Frames x Bits declare {expected}"
                )));
            }
            Ok(())
        }
    }
}

/// PixelSpacing, else ImagerPixelSpacing, when plausible.
fn pixel_spacing(obj: &DefaultDicomObject) -> Option<(f64, f64)> {
    floats(obj, tags::PIXEL_SPACING)
        .or_else(|| floats(obj, tags::IMAGER_PIXEL_SPACING))
        // 0.01-20 mm covers film scanners to coarse CT; anything else is a broken header
        // (and would make mm-based loops run forever or index nonsense).
        .filter(|v| v.len() >= 2 && v[..2].iter().all(|s| (0.01..=20.0).contains(s)))
        .map(|v| (v[0], v[1]))
}

/// The first WindowCenter / WindowWidth pair, when the width is positive.
fn window(obj: &DefaultDicomObject) -> Option<(f64, f64)> {
    match (
        floats(obj, tags::WINDOW_CENTER),
        floats(obj, tags::WINDOW_WIDTH),
    ) {
        // A NaN or infinite window from the header must not reach the model.
        (Some(c), Some(w)) => match (c.first(), w.first()) {
            (Some(&c), Some(&w)) if c.is_finite() && w.is_finite() && w > 0.0 => Some((c, w)),
            _ => None,
        },
        _ => None,
    }
}

/// Decode every frame to modality values (RGB is reduced to luminance).
pub fn decode(obj: &DefaultDicomObject) -> Result<(ImageHeader, Vec<Frame>), ImageError> {
    decode_frames(obj, header(obj)?, false)
}

/// Decode the first frame only (radiographs and CT slices use no other): a multi-frame
/// file costs one frame of memory, not all of them.
pub fn decode_first(obj: &DefaultDicomObject) -> Result<(ImageHeader, Frame), ImageError> {
    decode_first_of(obj, header(obj)?)
}

/// `decode_first` with the header already read by `header` (and judged by the caller).
pub fn decode_first_of(
    obj: &DefaultDicomObject,
    header: ImageHeader,
) -> Result<(ImageHeader, Frame), ImageError> {
    let (header, mut frames) = decode_frames(obj, header, true)?;
    if frames.is_empty() {
        return Err(ImageError::Conversion("no frame decoded".into()));
    }
    Ok((header, frames.swap_remove(0)))
}

fn decode_frames(
    obj: &DefaultDicomObject,
    header: ImageHeader,
    first_only: bool,
) -> Result<(ImageHeader, Vec<Frame>), ImageError> {
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let codec_error = |reason: String| ImageError::Codec {
        name: TransferSyntaxRegistry
            .get(&ts)
            .map(|t| t.name().to_string())
            .unwrap_or_else(|| "unknown".into()),
        ts: ts.clone(),
        reason,
    };
    super::codestream::check(
        obj,
        &ts,
        header.rows,
        header.columns,
        header.samples_per_pixel,
    )
    .map_err(codec_error)?;
    // 12-bit lossy JPEG has no codec in dicom-pixeldata: decoded here to native samples,
    // which then take the same path (Modality LUT, sign) as any other image.
    let native = if ts == JPEG_EXTENDED {
        twelve_bit_as_native(obj, &header, first_only).map_err(|e| codec_error(e.to_string()))?
    } else {
        None
    };
    let obj = native.as_ref().unwrap_or(obj);
    // Third-party codecs see bytes from the network: contain any panic.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if first_only {
            obj.decode_pixel_data_frame(0)
        } else {
            obj.decode_pixel_data()
        }
    }))
    .map_err(|_| codec_error("decoder failure".into()))?
    .map_err(|e| codec_error(crate::error_chain(&e)))?;
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Default)
        .with_voi_lut(VoiLutOption::Identity);
    let (rows, columns) = (header.rows as usize, header.columns as usize);
    let mut frames = Vec::with_capacity(header.frames as usize);
    for f in 0..decoded.number_of_frames() {
        let values: Vec<f32> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoded.to_vec_frame_with_options::<f32>(f, &options)
        }))
        .map_err(|_| ImageError::Conversion("pixel conversion failed".into()))?
        .map_err(|e| ImageError::Conversion(e.to_string()))?;
        let values = if header.samples_per_pixel == 3 {
            values
                .chunks_exact(3)
                .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
                .collect()
        } else {
            values
        };
        if values.len() != rows * columns {
            return Err(ImageError::Conversion(format!(
                "frame {f} decoded to {} values, expected {}",
                values.len(),
                rows * columns
            )));
        }
        frames.push(Frame {
            rows,
            columns,
            values,
        });
    }
    Ok((header, frames))
}

/// JPEG Extended (Process 2 & 4): 8- or 12-bit lossy JPEG.
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// `obj` with its 12-bit JPEG frames (all, or the first) decoded into native 16-bit pixel
/// data in Explicit VR Little Endian; `None` when its frames are 8-bit (dicom-pixeldata
/// decodes those). Samples are clamped to Bits Stored, since a lossy codec may overshoot
/// the range the header declares.
fn twelve_bit_as_native(
    obj: &DefaultDicomObject,
    header: &ImageHeader,
    first_only: bool,
) -> Result<Option<DefaultDicomObject>, super::jpeg12::Jpeg12Error> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let Some(fragments) = obj
        .element(tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.value().fragments())
    else {
        return Ok(None);
    };
    // A frame starts at a fragment that starts a codestream (SOI); later fragments that
    // do not continue it. Only the frames wanted are gathered.
    let wanted = if first_only {
        1
    } else {
        header.frames as usize
    };
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for fragment in fragments {
        // One frame: every fragment is part of it (PS3.5 A.4), whatever its first bytes.
        let starts = fragment.starts_with(&[0xFF, 0xD8]) && header.frames > 1;
        if starts && frames.len() == wanted {
            break;
        }
        match frames.last_mut() {
            Some(frame) if !starts => frame.extend_from_slice(fragment),
            _ => frames.push(fragment.clone()),
        }
    }
    if frames
        .first()
        .and_then(|f| super::codestream::jpeg_precision(f))
        != Some(12)
    {
        return Ok(None);
    }
    if frames.len() < wanted {
        return Err(super::jpeg12::Jpeg12Error::Corrupt(format!(
            "{} frames in the pixel data, {wanted} in the header",
            frames.len()
        )));
    }
    let signed = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let top = if signed {
        4095
    } else {
        (1u32 << header.bits_stored.min(12)) - 1
    } as u16;
    let (width, height) = (header.columns as usize, header.rows as usize);
    if header.samples_per_pixel != 1 {
        return Err(super::jpeg12::Jpeg12Error::Unsupported(format!(
            "{} samples per pixel",
            header.samples_per_pixel
        )));
    }
    let mut samples = Vec::with_capacity(frames.len() * width * height);
    for frame in &frames {
        let decoded = super::jpeg12::decode(frame, width, height)?;
        samples.extend(decoded.into_iter().map(|v| v.min(top)));
    }
    let mut native = obj.clone();
    native.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(samples.into()),
    ));
    native.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    native.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(frames.len().to_string()),
    ));
    native
        .meta_mut()
        .set_transfer_syntax(&dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN);
    Ok(Some(native))
}

/// For display-oriented processing: window (the header's first, else the 1st-99th
/// percentile), scale to 0..1 and invert what shows low values white (MONOCHROME1,
/// `ImageHeader::shows_low_white`) so that bone is bright.
pub fn display(frame: &Frame, header: &ImageHeader) -> Vec<f32> {
    let (lo, hi) = match header.window {
        Some((c, w)) => (c - w / 2.0, c + w / 2.0),
        None => {
            let mut sample: Vec<f32> = frame.values.iter().step_by(7).copied().collect();
            sample.sort_by(|a, b| a.total_cmp(b));
            let n = sample.len().max(1);
            (
                sample.get(n / 100).copied().unwrap_or(0.0) as f64,
                sample.get(n * 99 / 100).copied().unwrap_or(1.0) as f64,
            )
        }
    };
    let span = (hi - lo).max(1e-6) as f32;
    let lo = lo as f32;
    let invert = header.shows_low_white();
    frame
        .values
        .iter()
        .map(|v| {
            // NaN (a NaN rescale or window in the header) shows as black, never reaches
            // the model as NaN.
            let x = ((v - lo) / span).clamp(0.0, 1.0);
            let x = if x.is_nan() { 0.0 } else { x };
            if invert {
                1.0 - x
            } else {
                x
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(photometric: &str, presentation_inverse: bool) -> ImageHeader {
        ImageHeader {
            rows: 1,
            columns: 2,
            frames: 1,
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored: 12,
            photometric: photometric.into(),
            pixel_spacing: None,
            window: Some((50.0, 100.0)),
            presentation_inverse,
        }
    }

    #[test]
    fn low_values_show_white_under_monochrome1_or_an_inverse_shape_once() {
        let frame = Frame {
            rows: 1,
            columns: 2,
            values: vec![0.0, 100.0],
        };
        for (photometric, inverse, low_white) in [
            ("MONOCHROME2", false, false),
            ("MONOCHROME2", true, true),
            ("MONOCHROME1", true, true),
            ("MONOCHROME1", false, true),
        ] {
            let h = header(photometric, inverse);
            assert_eq!(h.shows_low_white(), low_white, "{photometric} {inverse}");
            let shown = display(&frame, &h);
            let want = if low_white { [1.0, 0.0] } else { [0.0, 1.0] };
            assert_eq!(shown, want, "{photometric} {inverse}");
        }
    }
}
