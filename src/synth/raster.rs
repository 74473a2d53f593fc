//! Drawing helpers shared by the radiograph and CT generators: a float image in
//! millimetre coordinates, shapes splatted within their bounding boxes, and smooth
//! value noise for trabecular texture.

use rand::Rng;

/// A float image whose pixels are addressed in millimetres through a pose (rotation,
/// scale, shift) around the image centre.
pub struct Raster {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
    /// mm per pixel at the detector.
    pub spacing: f64,
    cos: f64,
    sin: f64,
    scale: f64,
    shift: (f64, f64),
}

impl Raster {
    pub fn new(width: usize, height: usize, spacing: f64) -> Raster {
        Raster {
            width,
            height,
            data: vec![0.0; width * height],
            spacing,
            cos: 1.0,
            sin: 0.0,
            scale: 1.0,
            shift: (0.0, 0.0),
        }
    }

    /// Patient coordinates are rotated by `angle` (rad), magnified by `scale` and moved by
    /// `shift` (mm) on the detector.
    pub fn set_pose(&mut self, angle: f64, scale: f64, shift: (f64, f64)) {
        self.cos = angle.cos();
        self.sin = angle.sin();
        self.scale = scale;
        self.shift = shift;
    }

    /// Patient mm -> pixel (column, row).
    pub fn to_pixel(&self, u: f64, v: f64) -> (f64, f64) {
        let (x, y) = (u * self.cos - v * self.sin, u * self.sin + v * self.cos);
        let x = x * self.scale + self.shift.0;
        let y = y * self.scale + self.shift.1;
        (
            x / self.spacing + self.width as f64 / 2.0,
            y / self.spacing + self.height as f64 / 2.0,
        )
    }

    /// Pixel (column, row) centre -> patient mm.
    pub fn to_patient(&self, col: usize, row: usize) -> (f64, f64) {
        let x = ((col as f64 + 0.5 - self.width as f64 / 2.0) * self.spacing - self.shift.0)
            / self.scale;
        let y = ((row as f64 + 0.5 - self.height as f64 / 2.0) * self.spacing - self.shift.1)
            / self.scale;
        (x * self.cos + y * self.sin, -x * self.sin + y * self.cos)
    }

    /// Call `f(u, v)` for every pixel whose centre may fall in the patient-space box
    /// [u0, u1] x [v0, v1]; the value returned is added to the pixel.
    pub fn splat(
        &mut self,
        u0: f64,
        u1: f64,
        v0: f64,
        v1: f64,
        mut f: impl FnMut(f64, f64) -> f32,
    ) {
        let corners = [(u0, v0), (u1, v0), (u0, v1), (u1, v1)];
        let (mut c0, mut c1, mut r0, mut r1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (u, v) in corners {
            let (c, r) = self.to_pixel(u, v);
            c0 = c0.min(c);
            c1 = c1.max(c);
            r0 = r0.min(r);
            r1 = r1.max(r);
        }
        let clamp = |x: f64, n: usize| x.max(0.0).min(n as f64) as usize;
        let (c0, c1) = (
            clamp(c0.floor(), self.width),
            clamp(c1.ceil() + 1.0, self.width),
        );
        let (r0, r1) = (
            clamp(r0.floor(), self.height),
            clamp(r1.ceil() + 1.0, self.height),
        );
        for row in r0..r1 {
            for col in c0..c1 {
                let (u, v) = self.to_patient(col, row);
                if u < u0 || u > u1 || v < v0 || v > v1 {
                    continue;
                }
                let add = f(u, v);
                if add != 0.0 {
                    self.data[row * self.width + col] += add;
                }
            }
        }
    }
}

/// Chord length through an ellipse of semi-axes (a across, b along the ray) at offset x
/// across: 2 b sqrt(1 - (x/a)^2), or 0 outside.
pub fn chord(x: f64, a: f64, b: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    let t = 1.0 - (x / a).powi(2);
    if t <= 0.0 {
        0.0
    } else {
        2.0 * b * t.sqrt()
    }
}

/// Inside the ellipse centred at the origin with semi-axes (a, b)?
pub fn in_ellipse(x: f64, y: f64, a: f64, b: f64) -> bool {
    (x / a).powi(2) + (y / b).powi(2) <= 1.0
}

/// `count` random 4-tuples (e.g. centre x, y and two radii of a blob), each value drawn
/// from its range in order.
pub fn random_quads(
    rng: &mut impl Rng,
    count: std::ops::Range<usize>,
    ranges: [std::ops::Range<f64>; 4],
) -> Vec<(f64, f64, f64, f64)> {
    let n = rng.random_range(count);
    (0..n)
        .map(|_| {
            let [a, b, c, d] = ranges.clone().map(|r| rng.random_range(r));
            (a, b, c, d)
        })
        .collect()
}

/// Smooth random field in [-1, 1]: bilinear value noise on a grid of `cell` mm, summed
/// over two octaves.
pub struct ValueNoise {
    size: usize,
    grid: Vec<f32>,
    cell: f64,
}

impl ValueNoise {
    /// A field covering ±`extent` mm.
    pub fn new(rng: &mut impl Rng, extent: f64, cell: f64) -> ValueNoise {
        let size = (2.0 * extent / cell).ceil() as usize + 3;
        let grid = (0..size * size)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        ValueNoise { size, grid, cell }
    }

    fn lookup(&self, u: f64, v: f64) -> f32 {
        let half = (self.size as f64 - 3.0) * self.cell / 2.0;
        let x = ((u + half) / self.cell).clamp(0.0, self.size as f64 - 2.001);
        let y = ((v + half) / self.cell).clamp(0.0, self.size as f64 - 2.001);
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = ((x - i as f64) as f32, (y - j as f64) as f32);
        let g = |i: usize, j: usize| self.grid[j * self.size + i];
        let top = g(i, j) * (1.0 - fx) + g(i + 1, j) * fx;
        let bottom = g(i, j + 1) * (1.0 - fx) + g(i + 1, j + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// Two octaves (cell and cell/2.3), normalised to roughly [-1, 1].
    pub fn at(&self, u: f64, v: f64) -> f32 {
        0.65 * self.lookup(u, v) + 0.35 * self.lookup(u * 2.3 + 17.0, v * 2.3 - 11.0)
    }
}
