//! Per-radiograph nuisance choices ("look"): how strongly the system equalises, how the
//! window is picked, and which bone cues besides attenuation follow BMD. Drawn at random so
//! that a model trained on synth must read bone density from attenuation relative to soft
//! tissue, the one cue any radiograph carries, and not from texture or processing alone.

use rand::Rng;

/// The bone quality and processing one radiograph is drawn with.
pub struct Look {
    /// Bone quality (0..1) the trabecular texture is drawn for: the subject's own, or an
    /// unrelated one so that texture carries no BMD signal in this image.
    pub texture_quality: f64,
    /// Multiplies the texture amplitude (0 = smooth trabecular bone).
    pub texture_gain: f64,
    /// Cortical shell thickness (mm): follows BMD, or drawn independently.
    pub cortex_mm: f64,
    /// Dynamic range compression, 0 (none, raw log image) to ~0.9.
    pub equalize: f32,
    /// Window percentiles of the in-body values (low, high), per mille.
    pub window_permille: (usize, usize),
}

impl Look {
    /// Draw a look for a subject of bone quality `q`.
    pub fn draw(rng: &mut impl Rng, q: f64) -> Look {
        let coupled_texture = rng.random_bool(0.5);
        let coupled_cortex = rng.random_bool(0.5);
        Look {
            texture_quality: if coupled_texture {
                q
            } else {
                rng.random_range(0.0..1.0)
            },
            texture_gain: rng.random_range(0.0..1.3),
            cortex_mm: if coupled_cortex {
                0.7 + 1.1 * q
            } else {
                rng.random_range(0.7..1.8)
            },
            equalize: rng.random_range(0.0..0.9),
            window_permille: (rng.random_range(5..50), rng.random_range(990..1000)),
        }
    }
}
