//! What an encapsulated frame's own header declares, checked before a codec sees it.
//! Codecs size their buffers from the codestream, not from the DICOM header we already
//! bounded (`image::header`): a JPEG, JPEG-LS or JPEG 2000 frame that claims more pixels
//! than Rows x Columns, or an RLE header that claims more than 15 segments, is refused
//! here. Found by fuzzing: dicom-rs's RLE adapter allocated 8.5 GB from one header, and
//! C codecs (outside Rust's allocator) reached 17 GB of resident memory.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

const RLE: &str = "1.2.840.10008.1.2.5";

/// Check every fragment that starts a codestream against `rows` x `columns` and the
/// header's samples per pixel.
pub fn check(
    obj: &DefaultDicomObject,
    ts: &str,
    rows: u32,
    columns: u32,
    samples: u16,
) -> Result<(), String> {
    let Ok(element) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let Some(fragments) = element.value().fragments() else {
        return Ok(()); // native pixel data: its size was checked with the header
    };
    let allowed = u64::from(rows) * u64::from(columns);
    for (i, fragment) in fragments.iter().enumerate() {
        if ts == RLE {
            rle(fragment)?;
            continue;
        }
        let Some(frame) = declared(fragment, i == 0)? else {
            continue; // the continuation of a frame begun in an earlier fragment
        };
        let (width, height) = (frame.width, frame.height);
        if u64::from(width) * u64::from(height) > allowed || width == 0 || height == 0 {
            return Err(format!(
                "codestream declares {width} x {height} pixels, the header {columns} x {rows}"
            ));
        }
        if frame.components == 0 || frame.components > u32::from(samples) {
            return Err(format!(
                "codestream declares {} components, the header {samples} samples per pixel",
                frame.components
            ));
        }
    }
    Ok(())
}

/// What a frame header declares.
#[derive(Debug, PartialEq)]
struct Declared {
    width: u32,
    height: u32,
    components: u32,
    /// Bits per sample of a JPEG / JPEG-LS frame (P); JPEG 2000 gives it per component.
    precision: Option<u8>,
}

/// The sample precision a JPEG codestream's frame header declares (`None` for a fragment
/// that starts no JPEG frame or whose frame header cannot be read): which JPEG Extended
/// frames are 12-bit (`jpeg12`) rather than dicom-pixeldata's 8-bit.
pub fn jpeg_precision(fragment: &[u8]) -> Option<u8> {
    declared(fragment, true).ok().flatten()?.precision
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

/// The frame header of a fragment that starts a codestream: a JPEG / JPEG-LS frame
/// header (SOFn) or a JPEG 2000 SIZ marker. `None` for a fragment that starts none (the
/// rest of a frame); an error for a codestream whose frame header cannot be read, since
/// the codecs would read one anyway (they skip stray bytes and join fragments), and for a
/// JP2 file, which DICOM does not carry (PS3.5 A.4.4) and a codec would open. Packet
/// data may hold FF 4F, so after the `first` fragment only SOC + SIZ starts a JPEG 2000
/// frame (entropy-coded JPEG and JPEG-LS never hold FF D8).
fn declared(f: &[u8], first: bool) -> Result<Option<Declared>, String> {
    let be16 = |i: usize| {
        f.get(i..i + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let be32 = |i: usize| Some(u32::from_be_bytes(f.get(i..i + 4)?.try_into().ok()?));
    let unreadable = |what: &str| Err(format!("{what}: frame header not readable"));
    match (f.first(), f.get(1)) {
        // JPEG 2000 codestream: SOC, SIZ (FF51), Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz,
        // XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
        (Some(0xFF), Some(0x4F)) if first || f.get(2..4) == Some(&[0xFF, 0x51][..]) => {
            let size = (|| {
                if f.get(2..4)? != [0xFF, 0x51] {
                    return None;
                }
                let (x, y, x0, y0) = (be32(8)?, be32(12)?, be32(16)?, be32(20)?);
                Some(Declared {
                    width: x.saturating_sub(x0),
                    height: y.saturating_sub(y0),
                    components: be16(40)?,
                    precision: None,
                })
            })();
            size.map(Some).map_or_else(|| unreadable("JPEG 2000"), Ok)
        }
        // JPEG / JPEG-LS: SOI, then segments until a frame header.
        (Some(0xFF), Some(0xD8)) => {
            let mut i = 2;
            while i + 1 < f.len() {
                if f[i] != 0xFF {
                    i += 1; // a stray byte, skipped as decoders do
                    continue;
                }
                let marker = f[i + 1];
                match marker {
                    0xFF | 0x00 | 0x01 | 0xD0..=0xD7 => {
                        i += if marker == 0xFF { 1 } else { 2 }; // fill or standalone
                        continue;
                    }
                    0xDA | 0xD9 => return unreadable("JPEG (scan before any frame header)"),
                    _ => {}
                }
                let Some(len) = be16(i + 2) else { break };
                let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if sof || marker == 0xF7 {
                    // Lf (2), P (1), Y (2), X (2), Nf (1)
                    let frame = (|| {
                        Some(Declared {
                            width: be16(i + 7)?,
                            height: be16(i + 5)?,
                            components: u32::from(*f.get(i + 9)?),
                            precision: Some(*f.get(i + 4)?),
                        })
                    })();
                    return frame.map(Some).map_or_else(|| unreadable("JPEG"), Ok);
                }
                i += 2 + len as usize;
            }
            unreadable("JPEG")
        }
        // A JP2 file: signature box (length 12, type "jP  ").
        _ if f.starts_with(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20]) => {
            Err("a JP2 file, not a bare JPEG 2000 codestream (PS3.5 A.4.4)".into())
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(f: &[u8]) -> Option<(u32, u32, u32)> {
        declared(f, true)
            .unwrap()
            .map(|d| (d.width, d.height, d.components))
    }

    #[test]
    fn frame_headers_are_read() {
        // JPEG: SOI, APP0 (length 4), SOF0 with Y = 300, X = 400, one component.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x2C, 0x01, 0x90, 1,
        ];
        assert_eq!(size(&jpeg), Some((400, 300, 1)));
        // A stray byte between segments is skipped, as jpeg-decoder does.
        let stray = [
            0xFF, 0xD8, 0x00, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x2C, 0x01, 0x90, 3,
        ];
        assert_eq!(size(&stray), Some((400, 300, 3)));
        // JPEG 2000: SOC, SIZ with Xsiz 70000, Ysiz 70000, offsets 0, 1 component.
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        j2k.extend_from_slice(&70000u32.to_be_bytes());
        j2k.extend_from_slice(&70000u32.to_be_bytes());
        j2k.extend_from_slice(&[0; 24]);
        j2k.extend_from_slice(&[0, 1]);
        assert_eq!(size(&j2k), Some((70000, 70000, 1)));
        assert_eq!(size(&[1, 2, 3]), None);
        assert!(rle(&[0; 64]).is_err());
        let mut ok = vec![0u8; 64];
        ok[0] = 1;
        assert!(rle(&ok).is_ok());
    }

    fn declared_first(f: &[u8]) -> Result<Option<Declared>, String> {
        declared(f, true)
    }

    #[test]
    fn unreadable_frame_headers_are_refused() {
        // Later fragments: FF 4F inside J2K packet data is a continuation.
        assert_eq!(declared(&[0xFF, 0x4F, 0x12, 0x34], false), Ok(None));
        // A frame header cut off at the fragment's end.
        assert!(declared_first(&[0xFF, 0xD8, 0xFF, 0xF7, 0, 11, 8, 0x40]).is_err());
        // A scan with no frame header before it.
        assert!(declared_first(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0]).is_err());
        // JPEG 2000 without its SIZ, and a JP2 file.
        assert!(declared_first(&[0xFF, 0x4F, 0xFF, 0x52, 0, 0]).is_err());
        assert!(declared_first(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A]).is_err());
    }
}
