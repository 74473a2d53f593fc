//! 12-bit lossy JPEG (ISO 10918-1 extended sequential DCT, Huffman coded, one component):
//! DICOM's transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended, Process 2 & 4), which
//! computed-radiography archives use for lossy radiographs. jpeg-decoder and zune-jpeg
//! refuse a 12-bit frame and dicom-pixeldata has no other pure-Rust path, so this decoder
//! reads exactly that case; 8-bit frames of the same transfer syntax still go to
//! dicom-pixeldata. Input comes from the network: every count and index is checked,
//! nothing panics, and the output size is the frame header's (which `codestream::check`
//! has already bounded by the DICOM header).

/// Why a codestream could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Jpeg12Error {
    #[error("12-bit JPEG: {0}")]
    Corrupt(String),
    #[error("12-bit JPEG: {0} is not supported (one greyscale component, sequential Huffman)")]
    Unsupported(String),
}

fn corrupt<T>(why: impl Into<String>) -> Result<T, Jpeg12Error> {
    Err(Jpeg12Error::Corrupt(why.into()))
}

/// Natural (row-major) index of the k-th coefficient in zigzag order.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// A Huffman table in the form of ISO 10918-1 F.2.2.3 (codes of each length are
/// consecutive): for length l, codes mincode[l]..=maxcode[l] map to values from valptr[l].
#[derive(Clone)]
struct Huffman {
    mincode: [i32; 17],
    maxcode: [i32; 17],
    valptr: [usize; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Huffman, Jpeg12Error> {
        let (mut mincode, mut maxcode, mut valptr) = ([0; 17], [-1; 17], [0; 17]);
        let (mut code, mut k) = (0i32, 0usize);
        for l in 1..=16 {
            let n = counts[l - 1] as usize;
            if n > 0 {
                valptr[l] = k;
                mincode[l] = code;
                code += n as i32;
                k += n;
                maxcode[l] = code - 1;
                // libjpeg also refuses the all-ones code (`>=`); allowing it costs
                // nothing, since decoding still ends within 16 bits.
                if code > (1 << l) {
                    return corrupt("a Huffman table has more codes than its lengths allow");
                }
            }
            code <<= 1;
        }
        if k != values.len() {
            return corrupt("a Huffman table's counts and values disagree");
        }
        Ok(Huffman {
            mincode,
            maxcode,
            valptr,
            values,
        })
    }
}

/// Entropy-coded bits, with byte stuffing undone; stops at a marker. Bits asked for
/// past a marker read as zeros (as libjpeg does for a short segment), up to a bound, so
/// a truncated stream still fails rather than decoding a picture of zeros.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    acc: u64,
    n: u32,
    marker: Option<u8>,
    padded: u32,
}

/// Zero bits allowed past the end of a segment: a few symbols' worth (each fill may add
/// up to 64 that are never read).
const MAX_PADDING: u32 = 256;

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], at: usize) -> Bits<'a> {
        Bits {
            data,
            at,
            acc: 0,
            n: 0,
            marker: None,
            padded: 0,
        }
    }

    fn fill(&mut self) -> Result<(), Jpeg12Error> {
        while self.n <= 56 {
            let byte = if self.marker.is_some() || self.at >= self.data.len() {
                self.padded += 8;
                if self.padded > MAX_PADDING {
                    return corrupt("the entropy-coded data ends early");
                }
                0
            } else {
                let b = self.data[self.at];
                if b == 0xFF {
                    let next = self.data.get(self.at + 1).copied().unwrap_or(0xD9);
                    if next == 0x00 {
                        self.at += 2;
                        0xFF
                    } else if next == 0xFF {
                        self.at += 1; // fill byte before a marker
                        continue;
                    } else {
                        self.marker = Some(next);
                        continue;
                    }
                } else {
                    self.at += 1;
                    b
                }
            };
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
        }
        Ok(())
    }

    fn bit(&mut self) -> Result<i32, Jpeg12Error> {
        if self.n == 0 {
            self.fill()?;
        }
        let b = (self.acc >> 63) as i32;
        self.acc <<= 1;
        self.n -= 1;
        Ok(b)
    }

    fn receive(&mut self, s: u8) -> Result<i32, Jpeg12Error> {
        if s == 0 {
            return Ok(0);
        }
        if self.n < s as u32 {
            self.fill()?;
        }
        let v = (self.acc >> (64 - s as u32)) as i32;
        self.acc <<= s;
        self.n -= s as u32;
        Ok(v)
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, Jpeg12Error> {
        let mut code = self.bit()?;
        for l in 1..=16 {
            if code <= h.maxcode[l] {
                let i = h.valptr[l] + (code - h.mincode[l]) as usize;
                return h
                    .values
                    .get(i)
                    .copied()
                    .map_or_else(|| corrupt("a Huffman code points past its table"), Ok);
            }
            code = (code << 1) | self.bit()?;
        }
        corrupt("no Huffman code matches the data")
    }

    /// At a restart interval's end: drop the partial byte and step over RSTn.
    fn restart(&mut self) -> Result<(), Jpeg12Error> {
        if self.marker.is_none() {
            // Only the last byte's padding bits are left: read on to the marker.
            (self.acc, self.n) = (0, 0);
            self.fill()?;
        }
        match self.marker {
            Some(0xD0..=0xD7) => {
                self.at += 2;
                (self.acc, self.n, self.marker, self.padded) = (0, 0, None, 0);
                Ok(())
            }
            _ => corrupt("a restart marker is missing"),
        }
    }
}

/// Value of `s` received bits as a signed coefficient (F.2.2.1, EXTEND).
fn extend(v: i32, s: u8) -> i32 {
    if s == 0 {
        0
    } else if v < 1 << (s - 1) {
        v - (1 << s) + 1
    } else {
        v
    }
}

/// cos table of the 8-point inverse DCT: C(u)/2 x cos((2x+1) u pi / 16).
fn idct_table() -> [[f32; 8]; 8] {
    let mut c = [[0f32; 8]; 8];
    for (x, row) in c.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let cu = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = (cu / 2.0 * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos())
                as f32;
        }
    }
    c
}

/// Frame header fields this decoder uses.
struct Frame {
    width: usize,
    height: usize,
    quant_table: usize,
}

/// Decode one 12-bit codestream (a whole frame: its fragments joined) of `width x height`
/// pixels, the size the DICOM header gives: a frame header that says otherwise is refused
/// before anything is allocated.
/// Returns `width x height` samples, 0..4095, row-major.
pub fn decode(data: &[u8], width: usize, height: usize) -> Result<Vec<u16>, Jpeg12Error> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return corrupt("no start-of-image marker");
    }
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let (mut dc, mut ac): ([Option<Huffman>; 4], [Option<Huffman>; 4]) = Default::default();
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0usize;
    let mut at = 2;
    loop {
        // Fill bytes may precede a marker, and stray bytes are skipped as libjpeg (and
        // `codestream::check`, which routed this stream here) skip them.
        while data
            .get(at)
            .is_some_and(|&b| b != 0xFF || data.get(at + 1) == Some(&0xFF))
        {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(at), data.get(at + 1)) else {
            return corrupt("a marker was expected");
        };
        match marker {
            0xD9 => return corrupt("the image ends before any scan"),
            0xD8 => return corrupt("a second start-of-image marker"),
            // Markers without a length (as `codestream::check` reads them too).
            0x01 | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let Some(len) = data.get(at + 2..at + 4) else {
            return corrupt("a segment is cut short");
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let Some(body) = data.get(at + 4..(at + 2 + len).max(at + 4)) else {
            return corrupt("a segment runs past the end of the data");
        };
        if len < 2 {
            return corrupt("a segment has an impossible length");
        }
        match marker {
            0xDB => read_quant(body, &mut quant)?,
            0xC4 => read_huffman(body, &mut dc, &mut ac)?,
            0xDD => {
                let [a, b, ..] = body else {
                    return corrupt("a restart interval segment is cut short");
                };
                restart_interval = u16::from_be_bytes([*a, *b]) as usize;
            }
            0xC0 | 0xC1 if frame.is_some() => return corrupt("two frame headers"),
            0xC0 | 0xC1 => frame = Some(read_frame(body, width, height)?),
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(Jpeg12Error::Unsupported(format!(
                    "coding process SOF{}",
                    marker - 0xC0
                )))
            }
            0xDA => {
                let Some(frame) = frame else {
                    return corrupt("a scan comes before the frame header");
                };
                let [1, _, tables, ..] = body else {
                    return Err(Jpeg12Error::Unsupported(
                        "a scan of more than one component".into(),
                    ));
                };
                let (td, ta) = ((tables >> 4) as usize, (tables & 15) as usize);
                let (Some(Some(dc)), Some(Some(ac))) = (dc.get(td), ac.get(ta)) else {
                    return corrupt("a scan names a Huffman table that was not defined");
                };
                let Some(Some(q)) = quant.get(frame.quant_table) else {
                    return corrupt("the frame names a quantisation table that was not defined");
                };
                let tables = Tables { dc, ac, q };
                return scan(data, at + 2 + len, &frame, &tables, restart_interval);
            }
            _ => {} // APPn, COM and the rest: nothing this decoder needs
        }
        at += 2 + len;
    }
}

fn read_quant(mut body: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), Jpeg12Error> {
    while let [pq_tq, rest @ ..] = body {
        let (wide, id) = (pq_tq >> 4 == 1, (pq_tq & 15) as usize);
        if pq_tq >> 4 > 1 {
            return corrupt("a quantisation table of unknown precision");
        }
        let size = if wide { 128 } else { 64 };
        let (Some(values), Some(slot)) = (rest.get(..size), quant.get_mut(id)) else {
            return corrupt("a quantisation table is cut short or misnumbered");
        };
        let mut table = [0u16; 64];
        for (k, t) in table.iter_mut().enumerate() {
            *t = if wide {
                u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
            } else {
                values[k] as u16
            };
        }
        *slot = Some(table);
        body = &rest[size..];
    }
    Ok(())
}

type Tables4 = [Option<Huffman>; 4];

fn read_huffman(mut body: &[u8], dc: &mut Tables4, ac: &mut Tables4) -> Result<(), Jpeg12Error> {
    while let [tc_th, rest @ ..] = body {
        let Some(counts) = rest.get(..16) else {
            return corrupt("a Huffman table is cut short");
        };
        let counts: [u8; 16] = counts.try_into().expect("16 bytes");
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let Some(values) = rest.get(16..16 + n) else {
            return corrupt("a Huffman table's values are cut short");
        };
        let table = Huffman::new(&counts, values.to_vec())?;
        let slot = match tc_th >> 4 {
            0 => dc.get_mut((tc_th & 15) as usize),
            1 => ac.get_mut((tc_th & 15) as usize),
            _ => None,
        };
        let Some(slot) = slot else {
            return corrupt("a Huffman table is misnumbered");
        };
        *slot = Some(table);
        body = &rest[16 + n..];
    }
    Ok(())
}

fn read_frame(body: &[u8], width: usize, height: usize) -> Result<Frame, Jpeg12Error> {
    let [precision, y0, y1, x0, x1, components, ..] = body else {
        return corrupt("the frame header is cut short");
    };
    if *precision != 12 {
        return Err(Jpeg12Error::Unsupported(format!("{precision}-bit samples")));
    }
    if *components != 1 {
        return Err(Jpeg12Error::Unsupported(format!("{components} components")));
    }
    let Some(&quant_table) = body.get(8) else {
        return corrupt("the frame header is cut short");
    };
    let (h, w) = (
        u16::from_be_bytes([*y0, *y1]) as usize,
        u16::from_be_bytes([*x0, *x1]) as usize,
    );
    if (w, h) != (width, height) && h != 0 {
        return corrupt(format!(
            "a frame of {w} x {h} pixels in an image of {width} x {height}"
        ));
    }
    if h == 0 {
        return Err(Jpeg12Error::Unsupported(
            "a height given after the scan (DNL)".into(),
        ));
    }
    Ok(Frame {
        width,
        height,
        quant_table: quant_table as usize,
    })
}

/// The tables one scan decodes with.
struct Tables<'a> {
    dc: &'a Huffman,
    ac: &'a Huffman,
    q: &'a [u16; 64],
}

/// Decode the scan's blocks (one component: one block per MCU), dequantise, inverse
/// DCT, level-shift by 2048 and clamp to 12 bits.
fn scan(
    data: &[u8],
    start: usize,
    frame: &Frame,
    t: &Tables,
    restart_interval: usize,
) -> Result<Vec<u16>, Jpeg12Error> {
    let (bw, bh) = (frame.width.div_ceil(8), frame.height.div_ceil(8));
    let mut samples = vec![0u16; frame.width * frame.height];
    let cos = idct_table();
    let mut bits = Bits::new(data, start);
    let mut pred = 0i32;
    for block in 0..bw * bh {
        if restart_interval > 0 && block > 0 && block % restart_interval == 0 {
            bits.restart()?;
            pred = 0;
        }
        let mut coef = [0f32; 64];
        let s = bits.decode(t.dc)?;
        if s > 15 {
            return corrupt("a DC difference is too large");
        }
        pred = pred.wrapping_add(extend(bits.receive(s)?, s));
        coef[0] = pred as f32 * t.q[0] as f32;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(t.ac)?;
            let (run, size) = ((rs >> 4) as usize, rs & 15);
            if size == 0 {
                if run != 15 {
                    break; // end of block
                }
                k += 16;
                continue;
            }
            k += run;
            if k > 63 {
                return corrupt("a block has more than 64 coefficients");
            }
            coef[ZIGZAG[k]] = extend(bits.receive(size)?, size) as f32 * t.q[k] as f32;
            k += 1;
        }
        let (bx, by) = (block % bw, block / bw);
        put_block(&coef, &cos, bx, by, frame, &mut samples);
    }
    Ok(samples)
}

/// Inverse DCT of one block (rows, then columns) into the image, cut to its edges.
fn put_block(
    coef: &[f32; 64],
    cos: &[[f32; 8]; 8],
    bx: usize,
    by: usize,
    frame: &Frame,
    out: &mut [u16],
) {
    let mut rows = [0f32; 64];
    for v in 0..8 {
        for x in 0..8 {
            rows[v * 8 + x] = (0..8).map(|u| cos[x][u] * coef[v * 8 + u]).sum();
        }
    }
    for (y, cos_y) in cos.iter().enumerate() {
        let py = by * 8 + y;
        if py >= frame.height {
            break;
        }
        for x in 0..8 {
            let px = bx * 8 + x;
            if px >= frame.width {
                break;
            }
            let value: f32 = (0..8).map(|v| cos_y[v] * rows[v * 8 + x]).sum();
            out[py * frame.width + px] = (value + 2048.0).round().clamp(0.0, 4095.0) as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_block_inverts_to_its_dc_level() {
        let mut coef = [0f32; 64];
        coef[0] = 8.0 * 100.0; // DC of a block of 100 above the level shift
        let frame = Frame {
            width: 8,
            height: 8,
            quant_table: 0,
        };
        let mut out = vec![0u16; 64];
        put_block(&coef, &idct_table(), 0, 0, &frame, &mut out);
        assert!(out.iter().all(|&v| v == 2148), "{out:?}");
    }

    #[test]
    fn extend_follows_the_standard() {
        assert_eq!(extend(0, 1), -1);
        assert_eq!(extend(1, 1), 1);
        assert_eq!(extend(0, 3), -7);
        assert_eq!(extend(5, 3), 5);
        assert_eq!(extend(0, 0), 0);
    }

    #[test]
    fn hostile_codestreams_are_errors() {
        assert!(decode(&[], 8, 8).is_err());
        assert!(decode(&[0xFF, 0xD8], 8, 8).is_err());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xD9], 8, 8).is_err());
        // A segment whose length runs past the data.
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xFF, 0], 8, 8).is_err());
        // A 12-bit frame header, then a scan with no tables.
        let sof = [0xFF, 0xC1, 0, 11, 12, 0, 8, 0, 8, 1, 1, 0x11, 0];
        let sos = [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0];
        let stream: Vec<u8> = [&[0xFF, 0xD8][..], &sof, &sos, &[0, 0, 0xFF, 0xD9]].concat();
        assert!(matches!(
            decode(&stream, 8, 8),
            Err(Jpeg12Error::Corrupt(_))
        ));
        // 8-bit frames are not this decoder's.
        let mut eight = stream.clone();
        eight[6] = 8;
        assert!(matches!(
            decode(&eight, 8, 8),
            Err(Jpeg12Error::Unsupported(_))
        ));
        assert_eq!(super::super::codestream::jpeg_precision(&stream), Some(12));
        // A frame header bigger than the DICOM header's image, or a second one after a
        // small one (which `codestream::check` reads first): refused before allocating.
        let huge = [0xFF, 0xC1, 0, 11, 12, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0];
        let one: Vec<u8> = [&[0xFF, 0xD8][..], &huge, &sos].concat();
        let err = decode(&one, 8, 8).unwrap_err().to_string();
        assert!(err.contains("65535 x 65535"), "{err}");
        let two: Vec<u8> = [&[0xFF, 0xD8][..], &sof, &huge, &sos].concat();
        let err = decode(&two, 8, 8).unwrap_err().to_string();
        assert!(err.contains("two frame headers"), "{err}");
        // A quantisation table of precision 2 (only 0 and 1 exist).
        let dqt: Vec<u8> = [
            &[0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0x20][..],
            &[1; 64],
            &sof,
            &sos,
        ]
        .concat();
        let err = decode(&dqt, 8, 8).unwrap_err().to_string();
        assert!(err.contains("unknown precision"), "{err}");
    }

    #[test]
    fn huffman_tables_with_too_many_codes_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes
        assert!(Huffman::new(&counts, vec![0, 1, 2]).is_err());
        counts[0] = 2;
        assert!(Huffman::new(&counts, vec![0, 1]).is_ok());
        assert!(Huffman::new(&counts, vec![0]).is_err());
    }
}
