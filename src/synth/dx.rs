//! Synthetic lumbar radiographs (AP and lateral). Anatomy is modelled as X-ray path
//! lengths through simple solids (soft-tissue body, vertebral bodies as elliptic cylinders
//! with a cortical shell, pedicles, processes, ribs, ilium, sacrum, bowel gas); the
//! attenuation map then goes through exposure with a heel gradient, scatter and quantum
//! noise, a log transform and a window, with collimation and a lead marker on top.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::look::Look;
use super::raster::{chord, in_ellipse, random_quads, Raster, ValueNoise};
use super::subject::Subject;

/// Linear attenuation (1/mm) at an effective ~60 keV.
const MU_SOFT: f64 = 0.020;

/// Projection direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Antero-posterior: image x = patient's left (for display: patient's right on the left).
    Ap,
    /// Left lateral: image x = posterior.
    Lateral,
}

/// One rendered radiograph, ready for the DICOM writer.
pub struct Radiograph {
    pub width: usize,
    pub height: usize,
    /// mm per pixel.
    pub spacing: f64,
    /// 12-bit stored values; bone is bright in MONOCHROME2.
    pub pixels: Vec<u16>,
    pub monochrome1: bool,
    /// Centres of the L1..L5 bodies in pixels (column, row), for tests and previews.
    pub bodies: [(f64, f64); 5],
    pub window: (f64, f64),
}

/// Vertebra sizes (mm), T12 then L1..L5: height, lateral width, AP depth, disc below.
const T12_L5: [(f64, f64, f64, f64); 6] = [
    (23.0, 38.0, 27.0, 7.0),
    (25.0, 41.0, 29.0, 8.5),
    (26.5, 43.0, 30.0, 9.5),
    (27.5, 46.0, 31.5, 10.5),
    (28.0, 49.0, 32.5, 11.5),
    (27.0, 51.0, 32.0, 11.5),
];

/// A vertebral body placed in patient coordinates (mm): centre, size, tilt.
#[derive(Clone, Copy)]
struct Body {
    u: f64,
    v: f64,
    height: f64,
    width: f64,
    depth: f64,
    tilt: f64,
    /// Fraction of anterior height lost (wedge), 0 if intact.
    wedge: f64,
}

/// Per-study random choices shared by both views (so AP and lateral agree).
pub struct Pose {
    pub scoliosis_mm: f64,
    pub lordosis_mm: f64,
    pub body_half_width: f64,
    pub body_half_depth: f64,
    pub gas: Vec<(f64, f64, f64, f64)>,
}

impl Pose {
    pub fn draw(rng: &mut impl Rng, subject: &Subject) -> Pose {
        let bmi = subject.weight_kg / subject.height_m.powi(2);
        Pose {
            scoliosis_mm: rng.random_range(-9.0..9.0),
            lordosis_mm: rng.random_range(10.0..24.0),
            body_half_width: (120.0 + 2.2 * bmi).clamp(125.0, 190.0),
            body_half_depth: (70.0 + 2.0 * bmi).clamp(85.0, 150.0),
            gas: random_quads(
                rng,
                3..8,
                [-110.0..110.0, -120.0..110.0, 8.0..28.0, 6.0..18.0],
            ),
        }
    }
}

fn spine_bodies(subject: &Subject, pose: &Pose, view: Projection) -> Vec<Body> {
    let mut v = -128.0;
    let mut bodies = Vec::with_capacity(6);
    for (i, &(h, w, d, disc)) in T12_L5.iter().enumerate() {
        let fracture = subject.fracture.filter(|f| f.level + 1 == i);
        let loss = fracture.map_or(0.0, |f| f.height_loss());
        let t = (v + h / 2.0 + 20.0) / 120.0;
        let (u, slope) = match view {
            Projection::Ap => (
                pose.scoliosis_mm * (std::f64::consts::PI * t).sin(),
                pose.scoliosis_mm * std::f64::consts::PI / 120.0 * (std::f64::consts::PI * t).cos(),
            ),
            // Lordosis: the lumbar curve bulges anteriorly (negative u) around L3.
            Projection::Lateral => (
                -pose.lordosis_mm * (1.0 - t * t),
                2.0 * pose.lordosis_mm * t / 120.0,
            ),
        };
        bodies.push(Body {
            u,
            v: v + h / 2.0,
            height: if view == Projection::Ap {
                h * (1.0 - loss / 2.0)
            } else {
                h
            },
            width: w,
            depth: d,
            tilt: slope.atan(),
            wedge: if view == Projection::Lateral {
                loss
            } else {
                0.0
            },
        });
        v += h + disc;
    }
    bodies
}

/// Render one view of `subject`.
pub fn render(
    rng: &mut impl Rng,
    subject: &Subject,
    pose: &Pose,
    view: Projection,
    (width, height): (usize, usize),
    spacing: f64,
    monochrome1: bool,
) -> Radiograph {
    let mut canvas = Raster::new(width, height, spacing);
    canvas.set_pose(
        rng.random_range(-0.06..0.06),
        rng.random_range(0.95..1.08),
        (rng.random_range(-12.0..12.0), rng.random_range(-12.0..12.0)),
    );
    let q = subject.bone_quality();
    let look = Look::draw(rng, q);
    // Bone attenuation above soft tissue follows BMD; cortex and texture may (see Look).
    let mu_trab = 0.004 + 0.016 * q;
    let mu_cort = 0.030 + 0.012 * q;
    let cortex = look.cortex_mm;
    let tq = look.texture_quality;
    let texture = ValueNoise::new(rng, 260.0, 1.6 + 1.6 * (1.0 - tq));
    let texture_amp = (look.texture_gain * (0.18 + 0.35 * (1.0 - tq))) as f32;

    soft_tissue(&mut canvas, pose, view);
    for &(gu, gv, a, b) in &pose.gas {
        let gu = if view == Projection::Ap {
            gu
        } else {
            100.0 - pose.body_half_depth * 1.4 + gu * 0.3
        };
        canvas.splat(gu - a, gu + a, gv - b, gv + b, |u, v| {
            -(MU_SOFT * chord((u - gu).hypot((v - gv) * a / b), a, a * 0.9)) as f32
        });
    }
    let bodies = spine_bodies(subject, pose, view);
    for body in &bodies {
        vertebral_body(
            &mut canvas,
            body,
            view,
            mu_trab,
            mu_cort,
            cortex,
            &texture,
            texture_amp,
        );
        posterior_elements(&mut canvas, body, view, mu_trab, mu_cort);
    }
    ribs(&mut canvas, &bodies[0], view, mu_cort);
    pelvis(&mut canvas, &bodies[5], view, mu_trab, mu_cort);

    let mut centres = [(0.0, 0.0); 5];
    for (i, b) in bodies[1..].iter().enumerate() {
        centres[i] = canvas.to_pixel(b.u, b.v);
    }
    let window = expose(rng, &mut canvas, view, &look);
    let pixels = finish(rng, &canvas, monochrome1);
    Radiograph {
        width,
        height,
        spacing,
        pixels,
        monochrome1,
        bodies: centres,
        window,
    }
}

fn soft_tissue(canvas: &mut Raster, pose: &Pose, view: Projection) {
    let (across, along) = match view {
        Projection::Ap => (pose.body_half_width, pose.body_half_depth),
        Projection::Lateral => (pose.body_half_depth, pose.body_half_width),
    };
    // Lateral: the back's skin lies ~15 mm behind the spinous processes (u ≈ 85 mm).
    let offset = if view == Projection::Lateral {
        100.0 - across
    } else {
        0.0
    };
    canvas.splat(-400.0, 400.0, -400.0, 400.0, |u, _| {
        (MU_SOFT * chord(u - offset, across, along)) as f32
    });
}

/// Local coordinates of (u, v) in a body's frame (x across, y down), un-tilted.
fn local(body: &Body, u: f64, v: f64) -> (f64, f64) {
    let (du, dv) = (u - body.u, v - body.v);
    let (c, s) = (body.tilt.cos(), body.tilt.sin());
    (du * c + dv * s, -du * s + dv * c)
}

#[allow(clippy::too_many_arguments)]
fn vertebral_body(
    canvas: &mut Raster,
    body: &Body,
    view: Projection,
    mu_trab: f64,
    mu_cort: f64,
    cortex: f64,
    texture: &ValueNoise,
    texture_amp: f32,
) {
    let b = *body;
    // Across the beam: lateral width (AP view) or AP depth (lateral view).
    let (half_across, half_along) = match view {
        Projection::Ap => (b.width / 2.0, b.depth / 2.0),
        Projection::Lateral => (b.depth / 2.0, b.width / 2.0),
    };
    let r = half_across.max(b.height) + 4.0;
    canvas.splat(b.u - r, b.u + r, b.v - r, b.v + r, |u, v| {
        let (x, y) = local(&b, u, v);
        // Wedge: the anterior (x < 0 in the lateral view) top edge comes down.
        let frac = ((x + half_across) / (2.0 * half_across)).clamp(0.0, 1.0);
        let top = -b.height / 2.0 + b.wedge * b.height * (1.0 - frac);
        let bottom = b.height / 2.0;
        if y < top || y > bottom {
            return 0.0;
        }
        // Concave waist, narrowest at mid-height.
        let t = (y - top) / (bottom - top);
        let waist = 1.0 - 0.07 * (std::f64::consts::PI * t).sin();
        let a = half_across * waist;
        let outer = chord(x, a, half_along);
        if outer == 0.0 {
            return 0.0;
        }
        let endplate = (y - top).min(bottom - y) < cortex;
        let inner = if endplate {
            0.0
        } else {
            chord(x, a - cortex, half_along - cortex)
        };
        let tex = 1.0 + texture_amp * texture.at(u, v);
        ((mu_cort * (outer - inner)) as f32) + (mu_trab * inner) as f32 * tex
    });
}

fn posterior_elements(
    canvas: &mut Raster,
    body: &Body,
    view: Projection,
    mu_trab: f64,
    mu_cort: f64,
) {
    match view {
        Projection::Ap => arch_ap(canvas, body, mu_trab, mu_cort),
        Projection::Lateral => arch_lateral(canvas, body, mu_trab, mu_cort),
    }
}

/// The arch seen from the front: pedicles end-on, transverse processes, spinous process.
fn arch_ap(canvas: &mut Raster, body: &Body, mu_trab: f64, mu_cort: f64) {
    let b = *body;
    let top = -b.height / 2.0;
    // Pedicles: tubes along the beam, seen end-on as bright oval rings.
    for side in [-1.0, 1.0] {
        let (cx, cy) = (side * b.width * 0.33, top + 0.3 * b.height);
        let (ra, rb) = (5.0, 7.5);
        let r = rb + 2.0;
        canvas.splat(
            b.u - b.width,
            b.u + b.width,
            b.v - b.height,
            b.v + b.height,
            |u, v| {
                let (x, y) = local(&b, u, v);
                let (x, y) = (x - cx, y - cy);
                if x.abs() > r || y.abs() > r || !in_ellipse(x, y, ra, rb) {
                    return 0.0;
                }
                let ring = !in_ellipse(x, y, ra - 1.6, rb - 1.6);
                (18.0 * if ring { mu_cort * 0.8 } else { mu_trab }) as f32
            },
        );
        // Transverse process.
        let (x0, len) = (side * b.width / 2.0, 18.0 + 0.2 * b.width);
        canvas.splat(
            b.u - 90.0,
            b.u + 90.0,
            b.v - b.height,
            b.v + b.height,
            |u, v| {
                let (x, y) = local(&b, u, v);
                let along = (x - x0) * side;
                let half = 4.0 * (1.0 - 0.5 * along / len);
                if !(0.0..len).contains(&along) || (y - (top + 0.4 * b.height)).abs() > half {
                    return 0.0;
                }
                (mu_cort * 9.0) as f32
            },
        );
    }
    // Spinous process: a midline teardrop below the pedicles.
    canvas.splat(
        b.u - 10.0,
        b.u + 10.0,
        b.v - b.height,
        b.v + b.height,
        |u, v| {
            let (x, y) = local(&b, u, v);
            if in_ellipse(x, y - (top + 0.75 * b.height), 3.5, 9.0) {
                (mu_cort * 16.0) as f32
            } else {
                0.0
            }
        },
    );
}

/// The arch seen from the side: pedicles, laminae and facets, spinous process.
fn arch_lateral(canvas: &mut Raster, body: &Body, mu_trab: f64, mu_cort: f64) {
    let b = *body;
    let top = -b.height / 2.0;
    let back = b.depth / 2.0;
    canvas.splat(
        b.u - 10.0,
        b.u + back + 75.0,
        b.v - 40.0,
        b.v + 40.0,
        |u, v| {
            let (x, y) = local(&b, u, v);
            let x = x - back;
            // Pedicles (both sides overlap): upper half of the body height.
            if (0.0..15.0).contains(&x) && y > top + 0.08 * b.height && y < top + 0.5 * b.height {
                return (mu_trab * 16.0 + mu_cort * 4.0) as f32;
            }
            // Laminae and facets: a block behind the pedicles.
            if (15.0..34.0).contains(&x) && y > top - 2.0 && y < top + 1.05 * b.height {
                return (mu_cort * 9.0) as f32;
            }
            // Spinous process, pointing back and down.
            let sy = top + 0.55 * b.height + (x - 34.0) * 0.25;
            if (34.0..68.0).contains(&x) && (y - sy).abs() < 7.0 - (x - 34.0) * 0.08 {
                return (mu_cort * 6.0) as f32;
            }
            0.0
        },
    );
}

fn ribs(canvas: &mut Raster, t12: &Body, view: Projection, mu_cort: f64) {
    // The 11th and 12th ribs: arcs from the upper vertebrae going down and out.
    for (k, dv) in [(0, -32.0), (1, 0.0)] {
        let (start, reach) = match view {
            Projection::Ap => (t12.width / 2.0 + 4.0, 95.0 - 15.0 * k as f64),
            Projection::Lateral => (t12.depth / 2.0 + 20.0, 70.0),
        };
        let sides: &[f64] = if view == Projection::Ap {
            &[-1.0, 1.0]
        } else {
            &[1.0, -0.6]
        };
        for &side in sides {
            let pts: Vec<(f64, f64)> = (0..=40)
                .map(|i| {
                    let t = i as f64 / 40.0 * reach;
                    (
                        t12.u + side * (start + t),
                        t12.v + dv + 0.35 * t + 0.003 * t * t,
                    )
                })
                .collect();
            let (u0, u1) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (v0, v1) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            canvas.splat(u0 - 6.0, u1 + 6.0, v0 - 6.0, v1 + 6.0, |u, v| {
                let d = pts
                    .iter()
                    .map(|p| (p.0 - u).hypot(p.1 - v))
                    .fold(f64::MAX, f64::min);
                if d > 4.5 {
                    return 0.0;
                }
                // Brighter along the cortical edges of the rib.
                let edge = if d > 3.2 { 1.6 } else { 1.0 };
                (mu_cort * 7.0 * edge) as f32
            });
        }
    }
}

fn pelvis(canvas: &mut Raster, l5: &Body, view: Projection, mu_trab: f64, mu_cort: f64) {
    let top = l5.v + l5.height / 2.0 + 10.0;
    match view {
        Projection::Ap => {
            // Sacrum: an inverted trapezoid with sacral foramina.
            canvas.splat(l5.u - 70.0, l5.u + 70.0, top, top + 110.0, |u, v| {
                let d = v - top;
                let half = 52.0 - 0.3 * d;
                let x = u - l5.u;
                if x.abs() > half {
                    return 0.0;
                }
                let foramen = (0..4).any(|k| {
                    let fy = 14.0 + 20.0 * k as f64;
                    [-1.0, 1.0]
                        .iter()
                        .any(|s| (x - s * (22.0 - 2.0 * k as f64)).hypot(d - fy) < 4.5)
                });
                if foramen {
                    return (mu_trab * 8.0) as f32;
                }
                (mu_trab * 30.0 + mu_cort * 4.0) as f32
            });
            // Iliac wings, with a bright crest.
            for side in [-1.0, 1.0] {
                let (cx, cy) = (l5.u + side * 105.0, top + 62.0);
                canvas.splat(cx - 80.0, cx + 80.0, cy - 80.0, cy + 80.0, |u, v| {
                    let (x, y) = (u - cx, v - cy);
                    if !in_ellipse(x, y, 70.0, 75.0) {
                        return 0.0;
                    }
                    let crest = !in_ellipse(x, y, 66.0, 71.0) && y < 0.0;
                    (if crest {
                        mu_cort * 20.0
                    } else {
                        mu_trab * 14.0 + mu_cort * 3.0
                    }) as f32
                });
            }
        }
        Projection::Lateral => {
            // Sacrum tilted ~40°, and the ilia overlapping it faintly.
            let (s, c) = (40f64.to_radians().sin(), 40f64.to_radians().cos());
            canvas.splat(l5.u - 60.0, l5.u + 90.0, top - 20.0, top + 120.0, |u, v| {
                let (x, y) = (u - l5.u, v - top);
                let (xr, yr) = (x * c - y * s, x * s + y * c);
                let mut a = 0.0;
                if (-16.0..60.0).contains(&yr) && (-20.0 + 0.2 * yr..16.0 - 0.1 * yr).contains(&xr)
                {
                    a += mu_trab * 40.0 + mu_cort * 6.0;
                }
                if in_ellipse(x - 45.0, y - 60.0, 75.0, 65.0) {
                    a += mu_trab * 10.0;
                }
                a as f32
            });
        }
    }
}

/// Exposure with heel effect and scatter, quantum noise, log transform; returns the
/// window (centre, width) in stored values.
fn expose(rng: &mut impl Rng, canvas: &mut Raster, view: Projection, look: &Look) -> (f64, f64) {
    let base = if view == Projection::Ap { 6.0e4 } else { 3.0e5 } * rng.random_range(0.7..1.3);
    let heel = rng.random_range(-0.14..0.14);
    let scatter = rng.random_range(0.03..0.08);
    let (w, h) = (canvas.width, canvas.height);
    // Inside the body: at least ~2 cm of tissue on the ray. The window comes from there,
    // as a clinical system's would, so air does not take up the grey scale.
    let inside: Vec<bool> = canvas.data.iter().map(|a| *a > 0.4).collect();
    let mean_t: f64 = canvas
        .data
        .iter()
        .map(|a| (-(*a as f64)).exp())
        .sum::<f64>()
        / (w * h) as f64;
    for row in 0..h {
        let n0 = base * (1.0 + heel * (row as f64 / h as f64 - 0.5));
        for col in 0..w {
            let a = canvas.data[row * w + col] as f64;
            let (dx, dy) = (col as f64 / w as f64 - 0.5, row as f64 / h as f64 - 0.5);
            let bump = (-(dx * dx + dy * dy) * 6.0).exp();
            let i = n0 * ((-a).exp() + scatter * mean_t * bump);
            let z: f64 = StandardNormal.sample(rng);
            let noisy = (i + z * i.sqrt()).max(1.0);
            canvas.data[row * w + col] = (base / noisy).ln() as f32;
        }
    }
    equalize(canvas, look.equalize);
    let mut sample: Vec<f32> = canvas
        .data
        .iter()
        .zip(&inside)
        .step_by(31)
        .filter(|(_, inside)| **inside)
        .map(|(a, _)| *a)
        .collect();
    if sample.len() < 100 {
        sample = canvas.data.iter().step_by(31).copied().collect();
    }
    sample.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = look.window_permille;
    let lo = sample[sample.len() * lo / 1000] as f64;
    let hi = sample[(sample.len() * hi / 1000).min(sample.len() - 1)] as f64;
    let scale = 3800.0 / (hi - lo).max(1e-3);
    for a in canvas.data.iter_mut() {
        *a = ((*a as f64 - lo) * scale + 150.0).clamp(0.0, 4095.0) as f32;
    }
    (2048.0, 3700.0)
}

/// Clinical-style dynamic range compression: subtract `strength` x a heavily smoothed copy
/// (block means over ~1/24 of the image, bilinearly interpolated), so bone stays visible
/// through thick and thin parts of the body alike.
fn equalize(canvas: &mut Raster, strength: f32) {
    let (w, h) = (canvas.width, canvas.height);
    let block = (w.max(h) / 24).max(8);
    let (bw, bh) = (w.div_ceil(block), h.div_ceil(block));
    let mut means = vec![0f32; bw * bh];
    let mut counts = vec![0u32; bw * bh];
    for row in 0..h {
        for col in 0..w {
            let b = (row / block) * bw + col / block;
            means[b] += canvas.data[row * w + col];
            counts[b] += 1;
        }
    }
    for (m, c) in means.iter_mut().zip(&counts) {
        *m /= (*c).max(1) as f32;
    }
    let at = |bx: usize, by: usize| means[by.min(bh - 1) * bw + bx.min(bw - 1)];
    for row in 0..h {
        let fy = ((row as f32 + 0.5) / block as f32 - 0.5).max(0.0);
        let (by, ty) = (fy as usize, fy.fract());
        for col in 0..w {
            let fx = ((col as f32 + 0.5) / block as f32 - 0.5).max(0.0);
            let (bx, tx) = (fx as usize, fx.fract());
            let top = at(bx, by) * (1.0 - tx) + at(bx + 1, by) * tx;
            let bottom = at(bx, by + 1) * (1.0 - tx) + at(bx + 1, by + 1) * tx;
            canvas.data[row * w + col] -= strength * (top * (1.0 - ty) + bottom * ty);
        }
    }
}

/// Collimation, lead marker, photometric inversion; to 12-bit integers.
fn finish(rng: &mut impl Rng, canvas: &Raster, monochrome1: bool) -> Vec<u16> {
    let (w, h) = (canvas.width, canvas.height);
    let margin_x = rng.random_range(0.03..0.09) * w as f64;
    let margin_y = rng.random_range(0.02..0.06) * h as f64;
    // The lead "L" marker near the upper right corner of the field.
    let (mx, my) = (
        w as f64 - margin_x - 0.07 * w as f64,
        margin_y + 0.04 * h as f64,
    );
    let size = 0.035 * h as f64;
    canvas
        .data
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let outside =
                x < margin_x || x > w as f64 - margin_x || y < margin_y || y > h as f64 - margin_y;
            let (lx, ly) = (x - mx, y - my);
            let marker = (0.0..size).contains(&ly)
                && ((0.0..size * 0.22).contains(&lx)
                    || ((0.0..size * 0.65).contains(&lx) && ly > size * 0.78));
            let v = if outside {
                4000.0 - 40.0 * ((x + y) % 7.0) as f32
            } else if marker {
                4080.0
            } else {
                value
            };
            let v = v.clamp(0.0, 4095.0) as u16;
            if monochrome1 {
                4095 - v
            } else {
                v
            }
        })
        .collect()
}
