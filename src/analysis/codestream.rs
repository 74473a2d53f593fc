//! What an encapsulated frame's own header declares, checked before a codec sees it.
//! Codecs size their buffers from the codestream, not from the DICOM header we already
//! bounded (`image::header`): a JPEG, JPEG-LS or JPEG 2000 frame that claims more pixels
//! than Rows x Columns, or an RLE header that claims more than 15 segments, is refused
//! here. Found by fuzzing: dicom-rs's RLE adapter allocated 8.5 GB from one header, and
//! C codecs (outside Rust's allocator) reached 17 GB of resident memory.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

const RLE: &str = "1.2.840.10008.1.2.5";

/// Check every fragment that starts a codestream against `rows` x `columns`.
pub fn check(obj: &DefaultDicomObject, ts: &str, rows: u32, columns: u32) -> Result<(), String> {
    let Ok(element) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let Some(fragments) = element.value().fragments() else {
        return Ok(()); // native pixel data: its size was checked with the header
    };
    let allowed = u64::from(rows) * u64::from(columns);
    for fragment in fragments {
        if ts == RLE {
            rle(fragment)?;
            continue;
        }
        if let Some((width, height)) = declared_size(fragment) {
            if u64::from(width) * u64::from(height) > allowed || width == 0 || height == 0 {
                return Err(format!(
                    "codestream declares {width} x {height} pixels, the header {columns} x {rows}"
                ));
            }
        }
    }
    Ok(())
}

/// RLE Lossless: 1-15 segments (PS3.5 G.5) in a 64-byte header.
fn rle(fragment: &[u8]) -> Result<(), String> {
    let header = fragment
        .get(..64)
        .ok_or("RLE fragment shorter than its header")?;
    let segments = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if segments == 0 || segments > 15 {
        return Err(format!("RLE header declares {segments} segments (1-15)"));
    }
    Ok(())
}

/// (width, height) from a JPEG / JPEG-LS frame header (SOFn) or a JPEG 2000 SIZ marker,
/// when the fragment starts a codestream.
fn declared_size(f: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| Some(u32::from(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?])));
    let be32 = |i: usize| Some(u32::from_be_bytes(f.get(i..i + 4)?.try_into().ok()?));
    match (f.first(), f.get(1)) {
        // JPEG 2000 codestream: SOC then SIZ (FF51): Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz.
        (Some(0xFF), Some(0x4F)) => {
            if f.get(2..4)? != [0xFF, 0x51] {
                return None;
            }
            let (x, y, x0, y0) = (be32(8)?, be32(12)?, be32(16)?, be32(20)?);
            Some((x.saturating_sub(x0), y.saturating_sub(y0)))
        }
        // JPEG / JPEG-LS: SOI, then segments until a frame header.
        (Some(0xFF), Some(0xD8)) => {
            let mut i = 2;
            while i + 4 <= f.len() {
                if f[i] != 0xFF {
                    return None;
                }
                let marker = f[i + 1];
                if marker == 0xFF {
                    i += 1; // fill byte
                    continue;
                }
                let len = be16(i + 2)? as usize;
                let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if sof || marker == 0xF7 {
                    // Lf (2), P (1), Y (2), X (2)
                    return Some((be16(i + 7)?, be16(i + 5)?));
                }
                i += 2 + len;
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_are_read() {
        // JPEG: SOI, APP0 (length 4), SOF0 with Y = 300, X = 400.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x2C, 0x01, 0x90, 1,
        ];
        assert_eq!(declared_size(&jpeg), Some((400, 300)));
        // JPEG 2000: SOC, SIZ with Xsiz 70000, Ysiz 70000, offsets 0.
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        j2k.extend_from_slice(&70000u32.to_be_bytes());
        j2k.extend_from_slice(&70000u32.to_be_bytes());
        j2k.extend_from_slice(&[0; 8]);
        assert_eq!(declared_size(&j2k), Some((70000, 70000)));
        assert_eq!(declared_size(&[1, 2, 3]), None);
        assert!(rle(&[0; 64]).is_err());
        let mut ok = vec![0u8; 64];
        ok[0] = 1;
        assert!(rle(&ok).is_ok());
    }
}
