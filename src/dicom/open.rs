//! Opening a DICOM file that nobody here wrote (a received instance, a file a user names):
//! the meta group and the data set pass `scan` first, a deflated data set is inflated under
//! a cap, and only then does dicom-rs parse it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::scan::{scan, scan_bytes, Encoding, Layout, ScanError};

/// Caps on what one file may make us hold in memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A deflated data set's inflated size.
    pub max_inflated: u64,
    /// The data set before its Pixel Data (or all of it, without pixel data): what a
    /// header read keeps in memory.
    pub max_header: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_inflated: 64 << 20,
            max_header: 16 << 20,
        }
    }
}

/// Why a file cannot be opened safely.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a DICOM Part 10 file: {0}")]
    NotPart10(&'static str),
    #[error("file meta group: {0}")]
    Meta(ScanError),
    #[error("data set: {0}")]
    DataSet(ScanError),
    #[error("deflated data set inflates past {0} bytes")]
    InflateCap(u64),
    #[error("deflated data set does not inflate: {0}")]
    Inflate(std::io::Error),
    #[error("header (data set before the pixel data) is {size} bytes, over the {cap}-byte cap")]
    HeaderTooLarge { size: u64, cap: u64 },
    #[error("does not parse: {0}")]
    Parse(String),
}

/// What the checks learned about a file.
#[derive(Debug, Clone)]
pub struct Checked {
    pub transfer_syntax: String,
    /// Where the data set starts in the file.
    pub data_set_at: u64,
    pub layout: Layout,
}

const DEFLATED: [&str; 2] = ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"];
/// A meta group is a few hundred bytes; anything past this is not one.
const MAX_META: u64 = 64 << 10;

/// Check `path`: Part 10 framing, meta group, data set lengths and nesting, header size.
pub fn check_file(path: &Path, limits: &Limits) -> Result<Checked, OpenError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    check_reader(file, size, limits)
}

/// `check_file` on `size` bytes read from `source` (a file, or a window into one).
pub fn check_reader(
    source: impl Read + Seek,
    size: u64,
    limits: &Limits,
) -> Result<Checked, OpenError> {
    let mut reader = BufReader::with_capacity(64 << 10, source);
    let meta_at = preamble(&mut reader)?;
    let (transfer_syntax, data_set_at) = meta(&mut reader, meta_at, size)?;
    let data_len = size - data_set_at;
    reader.seek(SeekFrom::Start(data_set_at))?;
    let layout = if DEFLATED.contains(&transfer_syntax.as_str()) {
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(reader)
            .take(limits.max_inflated + 1)
            .read_to_end(&mut inflated)
            .map_err(OpenError::Inflate)?;
        if inflated.len() as u64 > limits.max_inflated {
            return Err(OpenError::InflateCap(limits.max_inflated));
        }
        scan_bytes(&inflated, Encoding::EXPLICIT_LE).map_err(OpenError::DataSet)?
    } else {
        scan(&mut reader, data_len, encoding_of(&transfer_syntax)).map_err(OpenError::DataSet)?
    };
    let header = layout.pixel_data_at.unwrap_or(data_len);
    if header > limits.max_header {
        return Err(OpenError::HeaderTooLarge {
            size: header,
            cap: limits.max_header,
        });
    }
    Ok(Checked {
        transfer_syntax,
        data_set_at,
        layout,
    })
}

/// `check_file`, then the whole object.
pub fn open_file(path: &Path, limits: &Limits) -> Result<DefaultDicomObject, OpenError> {
    check_file(path, limits)?;
    parse(|| OpenFileOptions::new().open_file(path))
}

/// `check_file`, then the object up to (without) its Pixel Data.
pub fn open_header(path: &Path, limits: &Limits) -> Result<DefaultDicomObject, OpenError> {
    check_file(path, limits)?;
    parse(|| {
        OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
    })
}

/// The parser is third-party code fed by the outside world: contain any panic.
fn parse(
    open: impl FnOnce() -> Result<DefaultDicomObject, dicom_object::ReadError>,
) -> Result<DefaultDicomObject, OpenError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(OpenError::Parse(e.to_string())),
        Err(_) => Err(OpenError::Parse("parser failure".into())),
    }
}

/// The byte offset of the meta group: after the 128-byte preamble and "DICM", or at 0
/// for a file without a preamble.
fn preamble(reader: &mut (impl Read + Seek)) -> Result<u64, OpenError> {
    let mut head = [0u8; 132];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    if got == 132 && &head[128..132] == b"DICM" {
        return Ok(132);
    }
    if got >= 4 && &head[..4] == b"DICM" {
        return Ok(4);
    }
    Err(OpenError::NotPart10("no DICM prefix"))
}

/// The meta group at `at`: its group length, then elements of group 0002 filling exactly
/// that length (as dicom-rs reads it: by the length, not by the group number), each one
/// fitting; the transfer syntax read, and where the data set begins.
fn meta(reader: &mut (impl Read + Seek), at: u64, size: u64) -> Result<(String, u64), OpenError> {
    reader.seek(SeekFrom::Start(at))?;
    let bad = |why: &'static str| OpenError::NotPart10(why);
    let mut first = [0u8; 12];
    reader
        .read_exact(&mut first)
        .map_err(|_| bad("meta group cut short"))?;
    if first[..8] != [0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0] {
        return Err(bad("meta group does not start with its group length"));
    }
    let group_len = u64::from(u32::from_le_bytes([
        first[8], first[9], first[10], first[11],
    ]));
    let end = at + 12 + group_len;
    if group_len > MAX_META || end > size {
        return Err(bad("meta group length runs past the file"));
    }
    let mut pos = at + 12;
    let mut transfer_syntax = None;
    while pos < end {
        let mut head = [0u8; 8];
        if pos + 8 > end {
            return Err(bad("meta group length ends inside an element"));
        }
        reader.read_exact(&mut head)?;
        let group = u16::from_le_bytes([head[0], head[1]]);
        let element = u16::from_le_bytes([head[2], head[3]]);
        if group != 0x0002 {
            return Err(bad("meta group length covers elements outside group 0002"));
        }
        // An unknown VR code reads as UN, with a 4-byte length, as dicom-rs reads it.
        let vr = dicom_core::VR::from_binary([head[4], head[5]]).unwrap_or(dicom_core::VR::UN);
        let long = super::scan::has_long_length(vr);
        let (len, header) = if long {
            let mut l = [0u8; 4];
            reader.read_exact(&mut l)?;
            (u64::from(u32::from_le_bytes(l)), 12)
        } else {
            (u64::from(u16::from_le_bytes([head[6], head[7]])), 8)
        };
        let value_at = pos + header;
        if value_at + len > end {
            return Err(OpenError::Meta(ScanError::Overrun {
                tag: dicom_core::Tag(group, element),
                declared: len,
                available: end.saturating_sub(value_at),
            }));
        }
        if element == 0x0010 {
            let mut value = vec![0u8; len as usize];
            reader.read_exact(&mut value)?;
            let text = String::from_utf8_lossy(&value);
            transfer_syntax = Some(text.trim_end_matches(['\0', ' ']).to_string());
        } else {
            reader.seek(SeekFrom::Current(len as i64))?;
        }
        pos = value_at + len;
    }
    let transfer_syntax = transfer_syntax.ok_or(bad("no Transfer Syntax UID in the meta group"))?;
    Ok((transfer_syntax, end))
}

/// The encoding of a (non-deflated) transfer syntax's data set.
pub fn encoding_of(transfer_syntax: &str) -> Encoding {
    match transfer_syntax {
        "1.2.840.10008.1.2" => Encoding::IMPLICIT_LE,
        "1.2.840.10008.1.2.2" => Encoding {
            explicit_vr: true,
            big_endian: true,
        },
        _ => Encoding::EXPLICIT_LE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_pass_and_a_bomb_does_not() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/real");
        let files: Vec<_> = crate::dicom::files::collect_files(&[dir])
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "dcm"))
            .collect();
        assert!(files.len() > 100, "{} real files", files.len());
        // Every real file passes except the four that are broken on purpose.
        let mut failing: Vec<String> = files
            .iter()
            .filter(|f| check_file(f, &Limits::default()).is_err())
            .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
            .collect();
        failing.sort();
        assert_eq!(
            failing,
            [
                "MR_truncated.dcm",
                "emri_small_jpeg_2k_lossless_too_short.dcm",
                "meta_missing_tsyntax.dcm",
                "no_meta.dcm"
            ]
        );

        let work = tempfile::tempdir().unwrap();
        let bomb = work.path().join("bomb.dcm");
        let mut bytes = meta_group(*b"UI");
        bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        std::fs::write(&bomb, &bytes).unwrap();
        assert!(matches!(
            open_file(&bomb, &Limits::default()),
            Err(OpenError::DataSet(ScanError::Overrun { .. }))
        ));
    }

    /// Preamble, DICM and a meta group of two elements: the group length and the transfer
    /// syntax (Explicit VR LE), the latter written with VR bytes `vr`.
    fn meta_group(vr: [u8; 2]) -> Vec<u8> {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        bytes.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        bytes.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, vr[0], vr[1]]);
        bytes.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        bytes.extend_from_slice(ts);
        bytes
    }

    /// Found by the fuzzer: a meta element whose VR bytes are not a VR. dicom-rs reads it
    /// as UN with a 4-byte length (here the first bytes of the UID, ~775 MB) and allocated
    /// that much before this check read it the same way.
    #[test]
    fn a_meta_element_with_an_unknown_vr_is_read_as_dicom_rs_reads_it() {
        let work = tempfile::tempdir().unwrap();
        let path = work.path().join("meta.dcm");
        let bytes = meta_group([0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open_file(&path, &Limits::default()),
            Err(OpenError::Meta(ScanError::Overrun { .. }))
        ));
    }
}
