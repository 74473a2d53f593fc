//! DICOM RLE Lossless encoding (PS3.5 Annex G) of 16-bit monochrome frames. dicom-rs
//! decodes RLE but has no encoder; the format is small: one PackBits-coded segment per
//! byte plane (most significant first), each row coded on its own, behind a 64-byte header.

/// Encode one frame of `width` x `height` 16-bit samples as an RLE fragment.
pub fn encode_frame(pixels: &[u16], width: usize, height: usize) -> Vec<u8> {
    let mut segments: Vec<Vec<u8>> = Vec::with_capacity(2);
    for shift in [8u32, 0] {
        let mut seg = Vec::with_capacity(pixels.len() / 2);
        let mut row = Vec::with_capacity(width);
        for r in 0..height {
            row.clear();
            row.extend(
                pixels[r * width..(r + 1) * width]
                    .iter()
                    .map(|p| (p >> shift) as u8),
            );
            pack_bits(&row, &mut seg);
        }
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        segments.push(seg);
    }
    let mut out = Vec::with_capacity(64 + segments.iter().map(Vec::len).sum::<usize>());
    let mut header = [0u32; 16];
    header[0] = segments.len() as u32;
    let mut offset = 64u32;
    for (i, seg) in segments.iter().enumerate() {
        header[i + 1] = offset;
        offset += seg.len() as u32;
    }
    for h in header {
        out.extend_from_slice(&h.to_le_bytes());
    }
    for seg in segments {
        out.extend_from_slice(&seg);
    }
    out
}

/// PackBits: runs of 2-128 equal bytes as (1 - n, byte); other bytes as literals of up to 128.
fn pack_bits(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let mut run = 1;
        while i + run < data.len() && run < 128 && data[i + run] == data[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((257 - run) as u8);
            out.push(data[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < data.len() && i - start < 128 {
            if i + 1 < data.len() && data[i + 1] == data[i] {
                break;
            }
            i += 1;
        }
        if i == start {
            i += 1; // a lone byte before a run
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&data[start..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(mut data: &[u8], n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < n {
            let h = data[0] as i8;
            if h >= 0 {
                let len = h as usize + 1;
                out.extend_from_slice(&data[1..1 + len]);
                data = &data[1 + len..];
            } else if h != -128 {
                out.extend(std::iter::repeat_n(data[1], (1 - h as isize) as usize));
                data = &data[2..];
            } else {
                data = &data[1..];
            }
        }
        out
    }

    #[test]
    fn pack_bits_round_trips() {
        let mut rows: Vec<Vec<u8>> = vec![vec![], vec![7], vec![1, 1], vec![1, 2, 2, 2, 3, 4, 4]];
        rows.push((0..300).map(|i| (i % 3) as u8).collect());
        rows.push(vec![9; 300]);
        for row in rows {
            let mut packed = Vec::new();
            pack_bits(&row, &mut packed);
            assert_eq!(unpack(&packed, row.len()), row);
        }
    }
}
