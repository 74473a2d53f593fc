//! Synthetic axial abdominal CT in Hounsfield units: body with subcutaneous fat and
//! muscle, liver, spleen, kidneys, aorta, IVC, psoas, bowel gas, and the spine T12-S1
//! (vertebral bodies with cortical shell, per-level trabecular HU from the truth, a
//! basivertebral vein, discs, canal, posterior elements), ribs at the top and the pelvis
//! at the bottom, plus noise. Patient coordinates are DICOM LPS in mm.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::hardware::{ScrewPair, METAL_HU};
use super::raster::{in_ellipse, random_quads, ValueNoise};
use super::subject::Subject;

pub const MATRIX: usize = 512;

/// T12, L1..L5: body height, lateral width, AP depth, disc below (mm).
const LEVELS: [(f64, f64, f64, f64); 6] = [
    (23.0, 38.0, 27.0, 7.0),
    (25.0, 41.0, 29.0, 8.5),
    (26.5, 43.0, 30.0, 9.5),
    (27.5, 46.0, 31.5, 10.5),
    (28.0, 49.0, 32.5, 11.5),
    (27.0, 51.0, 32.0, 11.5),
];

/// What a study may change in the phantom beyond its random draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtVariant {
    pub ribs: bool,
    /// Quantum noise SD (HU) at least this (low-dose scans reach ~100).
    pub noise_hu: Option<f64>,
    /// Lumbar vertebrae between T12 and the sacrum: 5, or 4 / 6 (lumbosacral transitional
    /// anatomy: a sacralised L5 or a lumbarised S1).
    pub lumbar: usize,
    /// The discs' attenuation (nucleus; the annulus 25 HU more) instead of 75/100 HU:
    /// desiccated discs are near water, calcified ones far denser.
    pub disc_hu: Option<f64>,
    /// Positive oral contrast in the ascending and descending colon, layering behind gas,
    /// beside every lumbar vertebra: dense lateral pieces that are not ribs.
    pub bowel_contrast: bool,
    /// Lateral curve of the lumbar spine: the bodies' sideways offset peaks at this many
    /// mm at mid-lumbar (a C-shaped scoliosis).
    pub scoliosis_mm: f64,
    /// The patient lies this many mm to the side of the scanner's centre (the field of
    /// view is not centred on the spine, and may cut the body wall).
    pub shift_mm: f64,
    /// Pedicle screws in these vertebrae: bit i for vertebra i (T12 = 0, L1 = 1, ...).
    pub metal: u8,
}

impl Default for CtVariant {
    fn default() -> Self {
        CtVariant {
            ribs: true,
            noise_hu: None,
            lumbar: 5,
            disc_hu: None,
            bowel_contrast: false,
            scoliosis_mm: 0.0,
            shift_mm: 0.0,
            metal: 0,
        }
    }
}

/// Where a vertebral body sits: z range (head is +z), axial centre, size.
#[derive(Debug, Clone, Copy)]
pub struct Vertebra {
    pub z_top: f64,
    pub z_bottom: f64,
    pub x: f64,
    pub y: f64,
    pub half_width: f64,
    pub half_depth: f64,
}

impl Vertebra {
    pub fn z_mid(&self) -> f64 {
        (self.z_top + self.z_bottom) / 2.0
    }
}

/// The geometry of one synthetic CT.
pub struct Phantom {
    pub slices: usize,
    pub pixel_spacing: f64,
    pub slice_spacing: f64,
    /// z of slice 0 (the most cranial); slice k is at z0 - k * spacing.
    pub z0: f64,
    /// x, y of the first pixel's centre.
    pub origin: (f64, f64),
    /// T12, L1..L5 (L4 or L6 last with `CtVariant::lumbar`).
    pub vertebrae: Vec<Vertebra>,
    noise_sd: f64,
    disc_hu: Option<f64>,
    bowel_contrast: bool,
    /// Draw the 11th and 12th ribs (off: a phantom whose T12 has no anchor).
    ribs: bool,
    /// Pedicle screws, one pair per instrumented vertebra.
    hardware: Vec<ScrewPair>,
    body: (f64, f64),
    fat: f64,
    lordosis: f64,
    gas: Vec<(f64, f64, f64, f64)>,
    /// Fat between bowel loops: (x, y, a, b) ellipses in the anterior abdomen.
    mesentery: Vec<(f64, f64, f64, f64)>,
    texture: ValueNoise,
    seed: u64,
}

impl Phantom {
    pub fn plan(
        rng: &mut impl Rng,
        subject: &Subject,
        slice_spacing: f64,
        variant: CtVariant,
    ) -> Phantom {
        let bmi = subject.weight_kg / subject.height_m.powi(2);
        let pixel_spacing = rng.random_range(0.68..0.80);
        let lordosis = rng.random_range(6.0..14.0);
        let y_spine = 45.0;
        let mut z = 0.0;
        // A sixth lumbar vertebra repeats L5's size; with four, L5 is left out.
        let lumbar = variant.lumbar.clamp(4, 6);
        let sizes: Vec<_> = LEVELS
            .iter()
            .chain(std::iter::repeat(&LEVELS[5]))
            .take(lumbar + 1)
            .copied()
            .collect();
        let mut vertebrae = Vec::with_capacity(sizes.len());
        for (i, &(h, w, d, disc)) in sizes.iter().enumerate() {
            let loss = subject
                .fracture
                .filter(|f| f.level + 1 == i)
                .map_or(0.0, |f| f.height_loss());
            let h = h * (1.0 - loss);
            let t = (i as f64 - 3.0) / 3.0;
            let curve =
                variant.scoliosis_mm * (std::f64::consts::PI * i as f64 / lumbar as f64).sin();
            vertebrae.push(Vertebra {
                z_top: z,
                z_bottom: z - h,
                x: rng.random_range(-2.0..2.0) + curve,
                // Lordosis: mid-lumbar bodies sit further anterior (smaller y).
                y: y_spine - lordosis * (1.0 - t * t),
                half_width: w / 2.0,
                half_depth: d / 2.0,
            });
            z -= h + disc;
        }
        let z0 = vertebrae[0].z_top + rng.random_range(8.0..20.0);
        let last = vertebrae[vertebrae.len() - 1];
        let z_end = last.z_bottom - rng.random_range(25.0..40.0);
        let slices = ((z0 - z_end) / slice_spacing).ceil() as usize;
        let fov = pixel_spacing * MATRIX as f64;
        let hardware = vertebrae
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 8 && variant.metal & (1 << i) != 0)
            .map(|(_, vb)| ScrewPair::in_vertebra(vb))
            .collect();
        Phantom {
            slices,
            pixel_spacing,
            slice_spacing,
            z0,
            origin: (
                -fov / 2.0 + pixel_spacing / 2.0 - variant.shift_mm,
                -fov / 2.0 + pixel_spacing / 2.0 + 10.0,
            ),
            vertebrae,
            noise_sd: variant
                .noise_hu
                .unwrap_or(0.0)
                .max(rng.random_range(9.0..16.0)),
            disc_hu: variant.disc_hu,
            bowel_contrast: variant.bowel_contrast,
            ribs: variant.ribs,
            hardware,
            body: (
                (118.0 + 2.4 * bmi).clamp(125.0, 185.0),
                (78.0 + 2.1 * bmi).clamp(90.0, 150.0),
            ),
            fat: (bmi - 16.0).clamp(4.0, 30.0),
            lordosis,
            gas: random_quads(
                rng,
                4..10,
                [-90.0..90.0, -80.0..-10.0, -200.0..40.0, 5.0..16.0],
            ),
            mesentery: random_quads(
                rng,
                10..20,
                [-100.0..100.0, -90.0..10.0, 4.0..14.0, 3.0..10.0],
            ),
            texture: ValueNoise::new(rng, 300.0, 2.0),
            seed: rng.random(),
        }
    }

    pub fn slice_z(&self, k: usize) -> f64 {
        self.z0 - k as f64 * self.slice_spacing
    }

    /// (x, y) of pixel (column, row).
    pub fn xy(&self, col: usize, row: usize) -> (f64, f64) {
        (
            self.origin.0 + col as f64 * self.pixel_spacing,
            self.origin.1 + row as f64 * self.pixel_spacing,
        )
    }

    /// Pixel (column, row) nearest to (x, y).
    pub fn pixel(&self, x: f64, y: f64) -> (usize, usize) {
        (
            ((x - self.origin.0) / self.pixel_spacing).round() as usize,
            ((y - self.origin.1) / self.pixel_spacing).round() as usize,
        )
    }

    /// Render slice `k` as stored values (HU + 1024, 12 bits).
    pub fn render_slice(&self, subject: &Subject, k: usize) -> Vec<u16> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let noise = Normal::new(0.0, self.noise_sd).unwrap();
        let z = self.slice_z(k);
        let q = subject.bone_quality();
        let mut out = Vec::with_capacity(MATRIX * MATRIX);
        let spine = self.spine_at(z);
        let third = self.slice_spacing / 3.0;
        for row in 0..MATRIX {
            for col in 0..MATRIX {
                let (x, y) = self.xy(col, row);
                // Partial volume: around the spine, average three depths across the slice
                // so thin endplates and the edges of bodies and discs blend as in a scan.
                let near_spine = (x - spine.0).abs() < 75.0 && (y - spine.1).abs() < 90.0;
                let hu = if near_spine {
                    (self.hu(subject, q, x, y, z - third)
                        + self.hu(subject, q, x, y, z)
                        + self.hu(subject, q, x, y, z + third))
                        / 3.0
                } else {
                    self.hu(subject, q, x, y, z)
                };
                let n = if hu > -950.0 {
                    noise.sample(&mut rng)
                } else {
                    noise.sample(&mut rng) * 0.3
                };
                out.push((hu + n + 1024.0).round().clamp(0.0, 4095.0) as u16);
            }
        }
        out
    }

    /// Noise-free attenuation at (x, y, z).
    fn hu(&self, subject: &Subject, q: f64, x: f64, y: f64, z: f64) -> f64 {
        let (a, b) = self.body;
        if !in_ellipse(x, y, a, b) {
            return -1000.0;
        }
        if !in_ellipse(x, y, a - self.fat, b - self.fat * 0.8) {
            return -100.0;
        }
        if self.hardware.iter().any(|s| s.contains(x, y, z)) {
            return METAL_HU;
        }
        let hu = self.beside_spine(self.abdomen(x, y, z), x, y, z);
        let hu = self.bone(subject, q, x, y, z).unwrap_or(hu);
        hu + self
            .hardware
            .iter()
            .map(|s| s.streaks(x, y, z))
            .sum::<f64>()
    }

    /// Soft tissue, organs and gas at (x, y, z): what lies away from the spine.
    fn abdomen(&self, x: f64, y: f64, z: f64) -> f64 {
        let (a, b) = self.body;
        let mut hu = if in_ellipse(x, y, a - self.fat - 9.0, b - self.fat * 0.8 - 9.0) {
            32.0
        } else {
            52.0
        };
        let v = &self.vertebrae;
        // Organs by height: liver and spleen above L2, kidneys L1-L3.
        if z > v[2].z_mid() && in_ellipse(x + 70.0, y + 5.0, 68.0, 58.0) {
            hu = 58.0;
        }
        if z > v[1].z_bottom && in_ellipse(x - 78.0, y - 25.0, 34.0, 40.0) {
            hu = 47.0;
        }
        for &(fx, fy, fa, fb) in &self.mesentery {
            if in_ellipse(x - fx, y - fy, fa, fb) {
                hu = -85.0;
            }
        }
        if z < v[1].z_top + 8.0 && z > v[3].z_bottom - 8.0 {
            for side in [-1.0, 1.0] {
                // Kidney inside its perirenal fat.
                if in_ellipse(x - side * 68.0, y - 50.0, 34.0, 46.0) {
                    hu = -90.0;
                }
            }
        }
        if z < v[1].z_top && z > v[3].z_bottom {
            for side in [-1.0, 1.0] {
                if in_ellipse(x - side * 68.0, y - 50.0, 26.0, 38.0) {
                    hu = if in_ellipse(x - side * 60.0, y - 45.0, 7.0, 12.0) {
                        -40.0
                    } else {
                        33.0
                    };
                }
            }
        }
        if self.bowel_contrast {
            // Colon 28 mm across, 88 mm to each side, level with the spine: supine, the
            // contrast fills its posterior part (~220 mm² in a slice) under gas.
            let y = y - self.spine_at(z).1 + 10.0;
            for side in [-1.0, 1.0] {
                if in_ellipse(x - side * 88.0, y, 14.0, 14.0) {
                    hu = if y > 3.0 { 420.0 } else { -1000.0 };
                }
            }
        }
        for &(gx, gy, gz, r) in &self.gas {
            if (x - gx).powi(2) + (y - gy).powi(2) + (z - gz).powi(2) < r * r {
                hu = -900.0;
            }
        }
        hu
    }

    /// Aorta, IVC and psoas over `hu`: the soft tissue right beside the spine.
    fn beside_spine(&self, mut hu: f64, x: f64, y: f64, z: f64) -> f64 {
        let v = &self.vertebrae;
        let spine = self.spine_at(z);
        if in_ellipse(
            x - spine.0 - 14.0,
            y - spine.1 + v[3].half_depth + 13.0,
            11.0,
            11.0,
        ) {
            hu = 42.0;
        }
        if in_ellipse(
            x - spine.0 + 22.0,
            y - spine.1 + v[3].half_depth + 10.0,
            10.0,
            8.0,
        ) {
            hu = 38.0;
        }
        if z < v[1].z_top {
            let grow = ((v[1].z_top - z) / 120.0).clamp(0.2, 1.0);
            for side in [-1.0, 1.0] {
                if in_ellipse(
                    x - spine.0 - side * 36.0,
                    y - spine.1 - 4.0,
                    12.0 * grow + 4.0,
                    14.0 * grow + 5.0,
                ) {
                    hu = 50.0;
                }
            }
        }
        hu
    }

    /// Axial centre of the spine at height z (interpolated between bodies).
    fn spine_at(&self, z: f64) -> (f64, f64) {
        let v = &self.vertebrae;
        for w in v.windows(2) {
            if z <= w[0].z_mid() && z >= w[1].z_mid() {
                let t = (w[0].z_mid() - z) / (w[0].z_mid() - w[1].z_mid());
                return (
                    w[0].x + t * (w[1].x - w[0].x),
                    w[0].y + t * (w[1].y - w[0].y),
                );
            }
        }
        let end = if z > v[0].z_mid() {
            v[0]
        } else {
            v[v.len() - 1]
        };
        (
            end.x,
            end.y
                + if z > v[0].z_mid() {
                    0.0
                } else {
                    self.lordosis * 0.3
                },
        )
    }

    fn bone(&self, subject: &Subject, q: f64, x: f64, y: f64, z: f64) -> Option<f64> {
        let cortical = 650.0 + 350.0 * q;
        let p = (x, y, z);
        (0..self.vertebrae.len())
            .find_map(|i| self.vertebra(subject, i, q, cortical, p))
            .or_else(|| self.ribs.then(|| self.ribs(cortical, p)).flatten())
            .or_else(|| self.pelvis(cortical, p))
    }

    /// Vertebra `i` (T12 = 0): its body with shell and vein, its arch, the disc below.
    fn vertebra(
        &self,
        subject: &Subject,
        i: usize,
        q: f64,
        cortical: f64,
        (x, y, z): (f64, f64, f64),
    ) -> Option<f64> {
        let vb = self.vertebrae[i];
        let (dx, dy) = (x - vb.x, y - vb.y);
        if z <= vb.z_top && z >= vb.z_bottom {
            // A sixth lumbar vertebra has L5's density.
            let level_hu = if i == 0 {
                subject.level_hu[0] + 6.0
            } else {
                subject.level_hu[(i - 1).min(subject.level_hu.len() - 1)]
            };
            if in_ellipse(dx, dy, vb.half_width, vb.half_depth) {
                let shell = 1.2 + 1.3 * q;
                let endplate = (vb.z_top - z).min(z - vb.z_bottom) < shell;
                if endplate || !in_ellipse(dx, dy, vb.half_width - shell, vb.half_depth - shell) {
                    return Some(cortical);
                }
                // Basivertebral vein: posterior, central.
                if in_ellipse(dx, dy - vb.half_depth + 5.5, 4.0, 2.5) {
                    return Some(45.0);
                }
                return Some(level_hu + 14.0 * self.texture.at(x * 1.3, y * 1.3 + z) as f64);
            }
            if let Some(hu) = arch(&vb, i, cortical, (dx, dy), y, z) {
                return Some(hu);
            }
        }
        // Disc below this body.
        let next = self.vertebrae.get(i + 1)?;
        if z < vb.z_bottom && z > next.z_top && in_ellipse(dx, dy, vb.half_width, vb.half_depth) {
            let nucleus = self.disc_hu.unwrap_or(75.0);
            return Some(
                if in_ellipse(dx, dy, vb.half_width * 0.5, vb.half_depth * 0.45) {
                    nucleus
                } else {
                    nucleus + 25.0
                },
            );
        }
        None
    }

    /// Ribs around T12/L1: small cortical ovals along the posterior-lateral body wall.
    /// The 11th and 12th ribs belong to T11/T12: they end at the lower edge of T12.
    fn ribs(&self, cortical: f64, (x, y, z): (f64, f64, f64)) -> Option<f64> {
        let t12 = self.vertebrae[0];
        if z <= t12.z_bottom - 2.0 {
            return None;
        }
        let (a, b) = self.body;
        for k in 0..5 {
            let ang = std::f64::consts::PI * (0.62 + 0.07 * k as f64) + (z - t12.z_mid()) * 0.004;
            for side in [-1.0, 1.0] {
                let (rx, ry) = (
                    side * (a - self.fat - 16.0) * ang.cos().abs(),
                    (b - self.fat - 14.0) * ang.sin().abs() * 0.9,
                );
                if in_ellipse(x - rx, y - ry, 7.0, 4.5) {
                    return Some(if in_ellipse(x - rx, y - ry, 5.0, 2.8) {
                        220.0
                    } else {
                        cortical * 0.9
                    });
                }
            }
        }
        None
    }

    /// Sacrum and iliac wings below the last lumbar vertebra.
    fn pelvis(&self, cortical: f64, (x, y, z): (f64, f64, f64)) -> Option<f64> {
        let l5 = self.vertebrae[self.vertebrae.len() - 1];
        let s1_top = l5.z_bottom - 11.5;
        if z <= s1_top {
            let (dx, dy) = (x - l5.x, y - l5.y - 6.0);
            let depth = s1_top - z;
            if in_ellipse(dx, dy, 26.0 + depth * 0.3, 16.0) {
                return Some(if in_ellipse(dx, dy, 23.0 + depth * 0.3, 13.5) {
                    230.0
                } else {
                    cortical
                });
            }
        }
        if z < l5.z_mid() + 10.0 {
            for side in [-1.0, 1.0] {
                let (dx, dy) = (x - side * 95.0, y - l5.y + 5.0);
                if in_ellipse(dx, dy, 45.0, 14.0) && !in_ellipse(dx, dy, 41.0, 10.0) {
                    return Some(cortical * 0.85);
                }
                if in_ellipse(dx, dy, 41.0, 10.0) {
                    return Some(200.0);
                }
            }
        }
        None
    }
}

/// The posterior elements of vertebra `i` at (dx, dy) from its body's centre: canal,
/// pedicles, laminae, spinous process, transverse processes.
fn arch(
    vb: &Vertebra,
    i: usize,
    cortical: f64,
    (dx, dy): (f64, f64),
    y: f64,
    z: f64,
) -> Option<f64> {
    let (cy, back) = (vb.y + vb.half_depth + 10.0, vb.half_depth);
    if in_ellipse(dx, y - cy, 11.0, 8.5) {
        return Some(15.0);
    }
    let upper = z > vb.z_bottom + 0.35 * (vb.z_top - vb.z_bottom);
    if upper && dy > back - 2.0 && dy < back + 14.0 && (dx.abs() - 13.0).abs() < 4.5 {
        return Some(cortical * 0.8);
    }
    // Laminae over the upper two thirds; the spinous process slopes down and back
    // from the lower half of the body's height (so it is no taller than ~12 mm).
    let h = vb.z_top - vb.z_bottom;
    let from_bottom = z - vb.z_bottom;
    let lamina = from_bottom > 0.3 * h;
    if lamina && dy > back + 14.0 && dy < back + 22.0 && dx.abs() < 20.0 - (dy - back - 14.0) {
        return Some(cortical * 0.8);
    }
    let tip_drop = (dy - back - 20.0) * 0.35;
    let centre = 0.35 * h - tip_drop;
    if dy >= back + 20.0 && dy < back + 50.0 && dx.abs() < 4.0 && (from_bottom - centre).abs() < 6.0
    {
        return Some(cortical * 0.75);
    }
    // Transverse processes leave the arch behind the body, at pedicle level.
    if upper
        && i > 0
        && (dx.abs() - vb.half_width - 8.0).abs() < 16.0
        && (dy - back - 9.0).abs() < 4.0
    {
        return Some(cortical * 0.7);
    }
    None
}
