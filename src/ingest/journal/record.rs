//! A journal record on disk: the 512-byte header that says what the instance is (and
//! holds the CRCs that tell a torn write), the chain of records in a segment, and a
//! window onto a record's data set.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::{align, HEADER, MAGIC};

/// What a record says of its instance: enough to place and record it without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Order of acknowledgement across all segments (a re-sent instance: the later wins).
    pub seq: u64,
    pub received_at_ms: i64,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub modality: String,
    pub transfer_syntax: String,
    pub calling_ae: String,
}

/// The records of a segment's chain, with the segment's generation.
pub(super) fn read_chain(file: &File, size: u64) -> (u64, Vec<(u64, u64, u32, RecordMeta)>) {
    let mut records = Vec::new();
    let mut generation = None;
    let mut at = 0;
    let mut header = [0u8; HEADER as usize];
    while at + HEADER <= size {
        if file.read_exact_at(&mut header, at).is_err() {
            break;
        }
        let Some((record_generation, len, crc, meta)) = decode(&header) else {
            break;
        };
        if *generation.get_or_insert(record_generation) != record_generation
            || at + HEADER + len > size
            || Some(crc) != crc_of(file, at + HEADER, len)
        {
            break;
        }
        records.push((at, len, crc, meta));
        at = align(at + HEADER + len);
    }
    (generation.unwrap_or(0), records)
}

/// CRC32 of `len` bytes of `file` from `start`.
pub fn crc_of(file: &File, start: u64, len: u64) -> Option<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut window = Window::new(file, start, len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match window.read(&mut buf) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Header layout: magic, generation, seq, length, data CRC, received-at, then the seven
/// strings (u16 length + bytes); the last 4 bytes are the CRC of the rest.
pub(super) fn encode(
    generation: u64,
    len: u64,
    crc: u32,
    meta: &RecordMeta,
) -> Option<[u8; HEADER as usize]> {
    let mut out = Vec::with_capacity(HEADER as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&meta.seq.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&meta.received_at_ms.to_le_bytes());
    for text in strings(meta) {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let body = HEADER as usize - 4;
    if out.len() > body {
        return None;
    }
    out.resize(body, 0);
    let check = crc32fast::hash(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out.try_into().ok()
}

fn strings(meta: &RecordMeta) -> [&str; 7] {
    [
        &meta.sop_class_uid,
        &meta.sop_instance_uid,
        &meta.study_uid,
        &meta.series_uid,
        &meta.modality,
        &meta.transfer_syntax,
        &meta.calling_ae,
    ]
}

/// (generation, length, data CRC, meta) of a valid header.
pub(super) fn decode(header: &[u8; HEADER as usize]) -> Option<(u64, u64, u32, RecordMeta)> {
    let body = HEADER as usize - 4;
    if header[..8] != MAGIC || crc32fast::hash(&header[..body]).to_le_bytes() != header[body..] {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    let generation = u64_at(8);
    let seq = u64_at(16);
    let len = u64_at(24);
    let crc = u32::from_le_bytes(header[32..36].try_into().expect("4 bytes"));
    let received_at_ms = u64_at(36) as i64;
    let mut pos = 44;
    let mut text = || -> Option<String> {
        let n = usize::from(u16::from_le_bytes(
            header.get(pos..pos + 2)?.try_into().ok()?,
        ));
        let s = std::str::from_utf8(header.get(pos + 2..pos + 2 + n)?).ok()?;
        pos += 2 + n;
        Some(s.to_string())
    };
    let meta = RecordMeta {
        seq,
        received_at_ms,
        sop_class_uid: text()?,
        sop_instance_uid: text()?,
        study_uid: text()?,
        series_uid: text()?,
        modality: text()?,
        transfer_syntax: text()?,
        calling_ae: text()?,
    };
    Some((generation, len, crc, meta))
}

/// A read-only view of `len` bytes of a file from `start`, as a seekable reader.
pub struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Window<'a> {
        Window {
            file,
            start,
            len,
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start")
        })?;
        self.pos = target;
        Ok(target)
    }
}
