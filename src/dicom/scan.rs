//! A structural pre-scan of a data set before any parser sees it. It walks the element
//! headers (tag, VR, length) without reading values and checks that every declared length
//! fits in the bytes that are actually there, that sequences nest at most `MAX_DEPTH` deep
//! and that the header holds a bounded number of elements.
//!
//! Why: dicom-rs (0.10) allocates and zero-fills a value's declared length before reading
//! it, so a 200-byte data set that declares a 4 GiB value makes it allocate 4 GiB. Nothing
//! from the network (or a file a user names) reaches the parser before this scan passes.

use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Sequences nested deeper than this are refused (the parser recurses once per level).
pub const MAX_DEPTH: usize = 24;
/// Elements before the pixel data (all levels): real headers hold a few thousand; each one
/// costs the parser ~100 bytes of memory.
pub const MAX_ELEMENTS: usize = 200_000;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// How the data set is encoded (its transfer syntax, after any deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
    };
    pub const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
}

/// Why a data set fails the scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("element {tag} declares {declared} bytes but only {available} remain")]
    Overrun {
        tag: Tag,
        declared: u64,
        available: u64,
    },
    #[error("element header at byte {0} is cut off")]
    CutHeader(u64),
    #[error("sequences nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("unexpected {found} at byte {at} (expected an item)")]
    NotAnItem { found: Tag, at: u64 },
    #[error("undefined length on {0}, which is not a sequence or pixel data")]
    UndefinedLength(Tag),
    #[error("element {tag} ({vr:?}) has length {len}, not a multiple of {size}")]
    Misaligned {
        tag: Tag,
        vr: VR,
        len: u32,
        size: u32,
    },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the scan learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Offset of the top-level Pixel Data element from the start of the data set.
    pub pixel_data_at: Option<u64>,
    /// Elements seen before the pixel data, all levels.
    pub elements: usize,
}

/// Scan `len` bytes of data set from `reader` (positioned at its start).
pub fn scan<R: Skip>(reader: R, len: u64, encoding: Encoding) -> Result<Layout, ScanError> {
    let mut walker = Walker {
        reader,
        pos: 0,
        elements: 0,
        pixel_data_at: None,
    };
    walker.elements_until(Some(len), len, encoding, 0)?;
    Ok(Layout {
        pixel_data_at: walker.pixel_data_at,
        elements: walker.elements,
    })
}

/// A reader the scan can move forward over a value without reading it.
pub trait Skip: Read {
    fn skip(&mut self, len: i64) -> std::io::Result<()>;
}

impl<R: Read + Seek> Skip for BufReader<R> {
    /// Within the buffer when the value is short: a plain `seek` would throw the buffer
    /// away at every element and read it again, which made the scan of a 0.5 MB CT slice
    /// read several MB (about a millisecond on the ingest path).
    fn skip(&mut self, len: i64) -> std::io::Result<()> {
        self.seek_relative(len)
    }
}

impl<T: AsRef<[u8]>> Skip for Cursor<T> {
    fn skip(&mut self, len: i64) -> std::io::Result<()> {
        self.seek(SeekFrom::Current(len)).map(drop)
    }
}

impl<S: Skip + ?Sized> Skip for &mut S {
    fn skip(&mut self, len: i64) -> std::io::Result<()> {
        (**self).skip(len)
    }
}

/// `scan` over bytes in memory.
pub fn scan_bytes(bytes: &[u8], encoding: Encoding) -> Result<Layout, ScanError> {
    scan(std::io::Cursor::new(bytes), bytes.len() as u64, encoding)
}

struct Walker<R> {
    reader: R,
    /// Bytes consumed from the start of the data set.
    pos: u64,
    elements: usize,
    pixel_data_at: Option<u64>,
}

impl<R: Skip> Walker<R> {
    /// Elements until `end` (a defined length) or, with `None`, until an Item
    /// Delimitation Item (consumed); nothing may pass `limit`, the innermost defined end.
    fn elements_until(
        &mut self,
        end: Option<u64>,
        limit: u64,
        enc: Encoding,
        depth: usize,
    ) -> Result<(), ScanError> {
        let limit = end.unwrap_or(limit);
        loop {
            if self.pos >= limit && end.is_some() {
                return Ok(());
            }
            let at = self.pos;
            let tag = self.tag(enc, limit)?;
            if tag == ITEM_END && end.is_none() {
                self.u32(enc, limit)?;
                return Ok(());
            }
            let (vr, len) = self.vr_and_length(tag, enc, limit)?;
            if depth == 0 && tag == PIXEL_DATA {
                self.pixel_data_at = Some(at);
            } else if self.pixel_data_at.is_none() {
                self.elements += 1;
                if self.elements > MAX_ELEMENTS {
                    return Err(ScanError::TooManyElements);
                }
            }
            let sequence = vr == Some(VR::SQ)
                || (vr.is_none() && dictionary_vr(tag) == Some(VR::SQ))
                || (vr == Some(VR::UN) && len == UNDEFINED);
            if len == UNDEFINED {
                // By VR first, as dicom-rs decides: Pixel Data written as SQ is parsed as a
                // sequence (found by fuzzing), only OB/OW Pixel Data as fragments.
                if tag == PIXEL_DATA && !sequence {
                    self.fragments(limit)?;
                } else if sequence {
                    // An undefined-length UN holds Implicit VR Little Endian (PS3.5 6.2.2).
                    let inner = if vr == Some(VR::UN) {
                        Encoding::IMPLICIT_LE
                    } else {
                        enc
                    };
                    self.items(None, limit, inner, depth + 1)?;
                } else {
                    return Err(ScanError::UndefinedLength(tag));
                }
                continue;
            }
            // A binary value whose length is not a whole number of values: the parser
            // would read fewer bytes than declared and lose its place in the stream.
            let effective = vr.or_else(|| dictionary_vr(tag));
            if let Some(size) = effective.and_then(value_size) {
                if len % size != 0 {
                    return Err(ScanError::Misaligned {
                        tag,
                        vr: effective.unwrap_or(VR::UN),
                        len,
                        size,
                    });
                }
            }
            let len = u64::from(len);
            self.fits(tag, len, limit)?;
            if sequence {
                self.items(Some(self.pos + len), limit, enc, depth + 1)?;
            } else {
                self.skip(len)?;
            }
        }
    }

    /// A sequence's items until `end`, or until its Sequence Delimitation Item.
    fn items(
        &mut self,
        end: Option<u64>,
        limit: u64,
        enc: Encoding,
        depth: usize,
    ) -> Result<(), ScanError> {
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        let limit = end.unwrap_or(limit);
        loop {
            if self.pos >= limit && end.is_some() {
                return Ok(());
            }
            let at = self.pos;
            let tag = self.tag(enc, limit)?;
            let len = self.u32(enc, limit)?;
            match tag {
                SEQUENCE_END if end.is_none() => return Ok(()),
                ITEM if len == UNDEFINED => self.elements_until(None, limit, enc, depth)?,
                ITEM => {
                    let len = u64::from(len);
                    self.fits(tag, len, limit)?;
                    self.elements_until(Some(self.pos + len), limit, enc, depth)?;
                }
                found => return Err(ScanError::NotAnItem { found, at }),
            }
        }
    }

    /// Encapsulated pixel data: the offset table and fragments, then the delimiter.
    fn fragments(&mut self, limit: u64) -> Result<(), ScanError> {
        // Items and delimiters are always little endian in encapsulated syntaxes.
        let enc = Encoding::EXPLICIT_LE;
        loop {
            let at = self.pos;
            let tag = self.tag(enc, limit)?;
            let len = self.u32(enc, limit)?;
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len != UNDEFINED => {
                    let len = u64::from(len);
                    self.fits(tag, len, limit)?;
                    self.skip(len)?;
                }
                found => return Err(ScanError::NotAnItem { found, at }),
            }
        }
    }

    /// The VR (explicit syntaxes; none for items and delimiters) and the value length.
    fn vr_and_length(
        &mut self,
        tag: Tag,
        enc: Encoding,
        limit: u64,
    ) -> Result<(Option<VR>, u32), ScanError> {
        if !enc.explicit_vr || tag.group() == 0xFFFE {
            return Ok((None, self.u32(enc, limit)?));
        }
        let mut code = [0u8; 2];
        self.read(&mut code, limit)?;
        // An unknown VR code is read as UN with a 4-byte length, as dicom-rs does.
        let vr = VR::from_binary(code).unwrap_or(VR::UN);
        let len = if has_long_length(vr) {
            self.u16(enc, limit)?;
            self.u32(enc, limit)?
        } else {
            u32::from(self.u16(enc, limit)?)
        };
        Ok((Some(vr), len))
    }

    fn fits(&self, tag: Tag, len: u64, limit: u64) -> Result<(), ScanError> {
        let available = limit.saturating_sub(self.pos);
        if len > available {
            return Err(ScanError::Overrun {
                tag,
                declared: len,
                available,
            });
        }
        Ok(())
    }

    fn tag(&mut self, enc: Encoding, limit: u64) -> Result<Tag, ScanError> {
        let group = self.u16(enc, limit)?;
        let element = self.u16(enc, limit)?;
        Ok(Tag(group, element))
    }

    fn u16(&mut self, enc: Encoding, limit: u64) -> Result<u16, ScanError> {
        let mut b = [0u8; 2];
        self.read(&mut b, limit)?;
        Ok(if enc.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self, enc: Encoding, limit: u64) -> Result<u32, ScanError> {
        let mut b = [0u8; 4];
        self.read(&mut b, limit)?;
        Ok(if enc.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn read(&mut self, buf: &mut [u8], limit: u64) -> Result<(), ScanError> {
        if self.pos + buf.len() as u64 > limit {
            return Err(ScanError::CutHeader(self.pos));
        }
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ScanError::CutHeader(self.pos)
            } else {
                ScanError::Io(e)
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, len: u64) -> Result<(), ScanError> {
        let len_i64 = i64::try_from(len).map_err(|_| ScanError::CutHeader(self.pos))?;
        self.reader.skip(len_i64)?;
        self.pos += len;
        Ok(())
    }
}

/// Whether an explicit VR element of this VR has a reserved field and a 4-byte length.
pub fn has_long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

/// The size of one value of a binary VR (the parser reads whole values only).
fn value_size(vr: VR) -> Option<u32> {
    match vr {
        VR::US | VR::SS | VR::OW => Some(2),
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OL | VR::OF => Some(4),
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => Some(8),
        _ => None,
    }
}

/// The dictionary's VR for a tag (implicit VR syntaxes need it to find sequences).
fn dictionary_vr(tag: Tag) -> Option<VR> {
    StandardDataDictionary
        .by_tag(tag)
        .and_then(|entry| entry.vr().exact())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_length_bomb_is_refused_before_any_allocation() {
        let mut data = explicit((0x0008, 0x0060), b"CS", b"DX");
        data.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        data.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        data.extend_from_slice(&[0; 100]);
        let err = scan_bytes(&data, Encoding::EXPLICIT_LE).unwrap_err();
        assert!(
            matches!(
                err,
                ScanError::Overrun {
                    declared: 0xFFFF_FFF0,
                    available: 100,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn well_formed_sets_pass_and_find_the_pixel_data() {
        let mut item = explicit((0x0008, 0x0100), b"SH", b"T-11170 ");
        item.extend(explicit((0x0008, 0x0102), b"SH", b"SRT "));
        let mut seq_value = vec![0xFE, 0xFF, 0x00, 0xE0];
        seq_value.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq_value.extend_from_slice(&item);
        let mut data = explicit((0x0008, 0x0060), b"CS", b"DX");
        data.extend(explicit((0x0008, 0x2218), b"SQ", &seq_value));
        let at = data.len() as u64;
        data.extend(explicit((0x7FE0, 0x0010), b"OB", &[7; 16]));
        let layout = scan_bytes(&data, Encoding::EXPLICIT_LE).unwrap();
        assert_eq!(layout.pixel_data_at, Some(at));
        assert_eq!(layout.elements, 4);
        // Cut anywhere inside the sequence or the pixel data: refused, never a panic.
        for cut in (11..at as usize).chain(at as usize + 1..data.len()) {
            assert!(
                scan_bytes(&data[..cut], Encoding::EXPLICIT_LE).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_binary_length_that_is_not_whole_values_is_refused() {
        // (0000,0000) UL with 7 bytes: the parser would read one value and lose its place.
        let mut data = vec![0, 0, 0, 0, 7, 0, 0, 0];
        data.extend_from_slice(&[0; 7]);
        assert!(matches!(
            scan_bytes(&data, Encoding::IMPLICIT_LE),
            Err(ScanError::Misaligned { size: 4, .. })
        ));
    }

    /// Found by fuzzing: Pixel Data with VR SQ and undefined length is parsed by dicom-rs
    /// as a sequence, so its items' contents are elements whose lengths must be checked.
    #[test]
    fn pixel_data_written_as_a_sequence_is_scanned_as_one() {
        let mut data = vec![
            0xE0, 0x7F, 0x10, 0x00, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        let inner = [
            0x00, 0x00, 0x00, 0x00, b'U', b'N', 0, 0, 0x81, 0x5C, 0x81, 0xF4,
        ];
        data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        data.extend_from_slice(&(inner.len() as u32 + 4).to_le_bytes());
        data.extend_from_slice(&inner);
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(matches!(
            scan_bytes(&data, Encoding::EXPLICIT_LE),
            Err(ScanError::Overrun { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Undefined-length sequences of undefined-length items, 100 deep.
        let mut data = Vec::new();
        for _ in 0..100 {
            data.extend_from_slice(&[
                0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(matches!(
            scan_bytes(&data, Encoding::EXPLICIT_LE),
            Err(ScanError::TooDeep)
        ));
    }

    #[test]
    fn implicit_sequences_are_found_through_the_dictionary() {
        // (0008,1115) Referenced Series Sequence, implicit VR, defined length, holding an
        // item whose element claims more than the item holds.
        let mut inner = vec![0x20, 0x00, 0x0E, 0x00];
        inner.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        let mut data = vec![0x08, 0x00, 0x15, 0x11];
        data.extend_from_slice(&(item.len() as u32).to_le_bytes());
        data.extend_from_slice(&item);
        assert!(matches!(
            scan_bytes(&data, Encoding::IMPLICIT_LE),
            Err(ScanError::Overrun { .. })
        ));
    }
}
