//! 8-bit PNG previews of 16-bit images (downscaled by averaging, windowed), so a person
//! can look at what the generator made.

use std::path::Path;

/// Write `pixels` (width x height, stored values) windowed to [lo, hi] as a greyscale PNG
/// whose long side is at most `max_side`; `invert` for MONOCHROME1.
pub fn write_png(
    path: &Path,
    pixels: &[u16],
    (width, height): (usize, usize),
    (lo, hi): (f64, f64),
    invert: bool,
    max_side: usize,
) -> std::io::Result<()> {
    let factor = width.max(height).div_ceil(max_side).max(1);
    let (w, h) = (width / factor, height / factor);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0.0;
            for dy in 0..factor {
                for dx in 0..factor {
                    sum += pixels[(y * factor + dy) * width + x * factor + dx] as f64;
                }
            }
            let v = ((sum / (factor * factor) as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
            let v = if invert { 1.0 - v } else { v };
            out.push((v * 255.0).round() as u8);
        }
    }
    let file = std::fs::File::create(path)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&out)
        .map_err(std::io::Error::other)?;
    Ok(())
}
