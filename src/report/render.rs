//! An RGB canvas for key images: greyscale pixels in, outlines and anti-aliased text
//! (the bundled DejaVu Sans, rasterised by ab_glyph) on top, 8-bit RGB out.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

/// DejaVu Sans (Bitstream Vera licence, assets/fonts/DejaVu-LICENSE.txt).
const REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// The bundled face, parsed once per process (text is measured per character when fitting).
fn font(bold: bool) -> &'static FontRef<'static> {
    static FONTS: std::sync::OnceLock<[FontRef<'static>; 2]> = std::sync::OnceLock::new();
    let fonts = FONTS.get_or_init(|| {
        [REGULAR, BOLD].map(|bytes| FontRef::try_from_slice(bytes).expect("bundled font parses"))
    });
    &fonts[usize::from(bold)]
}

pub type Colour = [u8; 3];
pub const WHITE: Colour = [255, 255, 255];
pub const AMBER: Colour = [255, 191, 0];
pub const YELLOW: Colour = [255, 230, 40];
pub const BANNER: Colour = [24, 24, 28];

/// Row-major RGB8 pixels.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: Colour) -> Canvas {
        Canvas {
            width,
            height,
            rgb: fill.repeat(width * height),
        }
    }

    /// Greyscale values (0..1) resampled bilinearly to `width` x `height`.
    pub fn from_grey(
        values: &[f32],
        cols: usize,
        rows: usize,
        width: usize,
        height: usize,
    ) -> Canvas {
        let mut c = Canvas::new(width, height, [0, 0, 0]);
        let sx = cols as f32 / width as f32;
        let sy = rows as f32 / height as f32;
        for y in 0..height {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (rows - 1) as f32);
            let (y0, ty) = (fy as usize, fy.fract());
            let y1 = (y0 + 1).min(rows - 1);
            for x in 0..width {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (cols - 1) as f32);
                let (x0, tx) = (fx as usize, fx.fract());
                let x1 = (x0 + 1).min(cols - 1);
                let at = |r: usize, k: usize| values[r * cols + k];
                let v = (at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx) * (1.0 - ty)
                    + (at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx) * ty;
                let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                c.put(x as i64, y as i64, [g, g, g], 1.0);
            }
        }
        c
    }

    /// Blend `colour` into one pixel with opacity `alpha` (0..1); outside is ignored.
    pub fn put(&mut self, x: i64, y: i64, colour: Colour, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        for (px, c) in self.rgb[i..i + 3].iter_mut().zip(colour) {
            let old = *px as f32;
            *px = (old + (c as f32 - old) * alpha.clamp(0.0, 1.0)).round() as u8;
        }
    }

    pub fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: Colour) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.put(x as i64, y as i64, colour, 1.0);
            }
        }
    }

    /// A line `thickness` pixels wide.
    pub fn line(&mut self, a: (f32, f32), b: (f32, f32), colour: Colour, thickness: f32) {
        let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) * 2.0)
            .ceil()
            .max(1.0) as usize;
        let r = (thickness / 2.0).max(0.5);
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            let ri = r.ceil() as i64;
            for dy in -ri..=ri {
                for dx in -ri..=ri {
                    if ((dx * dx + dy * dy) as f32) <= r * r {
                        self.put(x.round() as i64 + dx, y.round() as i64 + dy, colour, 1.0);
                    }
                }
            }
        }
    }

    /// A closed outline through `points`.
    pub fn polygon(&mut self, points: &[(f32, f32)], colour: Colour, thickness: f32) {
        for (k, &p) in points.iter().enumerate() {
            self.line(p, points[(k + 1) % points.len()], colour, thickness);
        }
    }

    /// Draw `text` with its baseline at `y`, starting at `x`; returns the width drawn.
    pub fn text(
        &mut self,
        text: &str,
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        colour: Colour,
    ) -> f32 {
        let font = font(bold);
        let scaled = font.as_scaled(PxScale::from(size));
        let mut caret = x;
        let mut previous = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = previous {
                caret += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(size, point(caret, y));
            caret += scaled.h_advance(id);
            previous = Some(id);
            if let Some(outlined) = font.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                outlined.draw(|gx, gy, coverage| {
                    self.put(
                        bounds.min.x as i64 + gx as i64,
                        bounds.min.y as i64 + gy as i64,
                        colour,
                        coverage,
                    );
                });
            }
        }
        caret - x
    }

    /// Width `text` would take.
    pub fn text_width(text: &str, size: f32, bold: bool) -> f32 {
        let font = font(bold);
        let scaled = font.as_scaled(PxScale::from(size));
        text.chars()
            .map(|c| scaled.h_advance(scaled.glyph_id(c)))
            .sum()
    }

    /// Stack `bottom` under `self` (same width expected; the narrower is padded).
    pub fn above(self, bottom: Canvas) -> Canvas {
        let width = self.width.max(bottom.width);
        let mut out = Canvas::new(width, self.height + bottom.height, BANNER);
        for (src, y0) in [(&self, 0), (&bottom, self.height)] {
            for y in 0..src.height {
                let from = &src.rgb[y * src.width * 3..(y + 1) * src.width * 3];
                let at = ((y0 + y) * width) * 3;
                out.rgb[at..at + from.len()].copy_from_slice(from);
            }
        }
        out
    }

    /// PNG bytes (for looking at a key image outside a DICOM viewer).
    pub fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("png header to memory");
            w.write_image_data(&self.rgb).expect("png data to memory");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_marks_pixels_inside_its_box_only() {
        let mut c = Canvas::new(200, 60, [0, 0, 0]);
        let w = c.text("L1 81 HU", 10.0, 40.0, 24.0, true, WHITE);
        assert!(w > 60.0 && w < 190.0, "{w}");
        let lit: Vec<(usize, usize)> = (0..60)
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .filter(|&(x, y)| c.rgb[(y * 200 + x) * 3] > 128)
            .collect();
        assert!(lit.len() > 100, "{} pixels lit", lit.len());
        assert!(lit
            .iter()
            .all(|&(x, y)| x >= 10 && (x as f32) <= 12.0 + w && y < 46));
    }
}
