//! The exposed field of a radiograph: edge rows and columns outside it are trimmed before
//! the image is fitted into the network's input, so that the anatomy fills the input and
//! the collimator's grey does not set the normalisation's range. Two kinds of border are
//! trimmed: a shutter or padding (flat: one grey level), and unmasked collimation, which
//! many CR and DX images keep: lead-blocked, so near the brightest grey of a bone-bright
//! display, and without anatomy (only quantum noise, leakage and the heel effect's slope).

/// An edge line flatter than this (standard deviation of display values) is a shutter or
/// padding.
const FLAT: f32 = 0.02;

/// An edge line is unmasked collimator when its mean is within this fraction of the
/// image's grey range below the top grey (the band fades inwards: scatter under the
/// blades, the heel effect and vendors' vignetting take it a fifth of the range down)...
const NEAR_TOP: f32 = 0.25;

/// ...and its standard deviation is below this fraction of that range: no anatomy.
const QUIET: f32 = 0.15;

/// Never trim a side to fewer than this many lines, nor below a third of its length: a
/// bright, quiet image is read whole rather than cut to a sliver.
const MIN_LINES: usize = 8;

/// A collimator ends in a step: its last lines are brighter than the field a few lines
/// further in by at least this fraction of the grey range. Bright, quiet anatomy (a
/// vendor's tone curve saturating the pelvis) fades instead, and is kept.
const STEP: f32 = 0.15;

/// Bounds (r0, r1, c0, c1) of the field in `v` (rows x cols display values, 0..1, bone
/// bright), after trimming shutter and collimator lines from the edges.
pub fn exposed_field(v: &[f32], rows: usize, cols: usize) -> (usize, usize, usize, usize) {
    let (low, top) = grey_range(v);
    let edge = Edge {
        top,
        range: (top - low).max(1e-3),
    };
    let (mut r0, mut r1, mut c0, mut c1) = (0, rows, 0, cols);
    let min_rows = MIN_LINES.max(rows / 3);
    let min_cols = MIN_LINES.max(cols / 3);
    let row = |r: usize, c0: usize, c1: usize| stats(v[r * cols + c0..r * cols + c1].iter());
    let col = |c: usize, r0: usize, r1: usize| stats((r0..r1).map(|r| &v[r * cols + c]));
    // Twice: a column is judged only over the rows still in the field, so that a top
    // collimator band does not hide a side one's uniformity (and the other way round).
    for _ in 0..2 {
        let (n, spare) = (r1 - r0, (r1 - r0).saturating_sub(min_rows));
        r0 += edge.trim(|k| row(r0 + k, c0, c1), n, spare);
        let (n, spare) = (r1 - r0, (r1 - r0).saturating_sub(min_rows));
        r1 -= edge.trim(|k| row(r1 - 1 - k, c0, c1), n, spare);
        let (n, spare) = (c1 - c0, (c1 - c0).saturating_sub(min_cols));
        c0 += edge.trim(|k| col(c0 + k, r0, r1), n, spare);
        let (n, spare) = (c1 - c0, (c1 - c0).saturating_sub(min_cols));
        c1 -= edge.trim(|k| col(c1 - 1 - k, r0, r1), n, spare);
    }
    (r0, r1, c0, c1)
}

/// The image's grey range, which an unmasked collimator is judged in.
struct Edge {
    top: f32,
    range: f32,
}

impl Edge {
    /// How many of a side's `n` lines (`line(0)` the outermost) to trim, at most `spare`:
    /// flat lines, then collimator lines if they end in a step.
    fn trim(&self, line: impl Fn(usize) -> LineStats, n: usize, spare: usize) -> usize {
        // Each line's statistics once: the scans and the step test share them.
        let mut seen: Vec<LineStats> = Vec::new();
        let mut at = |i: usize| {
            while seen.len() <= i {
                seen.push(line(seen.len()));
            }
            seen[i]
        };
        let mut flat = 0;
        while flat < spare && at(flat).sd < FLAT {
            flat += 1;
        }
        let mut k = flat;
        while k < spare && self.is_collimator(at(k)) {
            k += 1;
        }
        if k == flat {
            return flat;
        }
        let mut mean = |from: usize, to: usize| {
            let to = to.min(n);
            (from..to).map(&mut at).map(|s| s.mean).sum::<f32>() / (to - from).max(1) as f32
        };
        let band = mean(k.saturating_sub(3).max(flat), k);
        let inside = mean((k + 2).min(n), k + 6);
        if band - inside > STEP * self.range {
            k
        } else {
            flat
        }
    }

    fn is_collimator(&self, s: LineStats) -> bool {
        s.mean > self.top - NEAR_TOP * self.range && s.sd < QUIET * self.range
    }
}

#[derive(Debug, Clone, Copy)]
struct LineStats {
    mean: f32,
    sd: f32,
}

fn stats<'a>(values: impl Iterator<Item = &'a f32>) -> LineStats {
    let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for &x in values {
        s += x as f64;
        s2 += (x as f64) * (x as f64);
        n += 1.0;
    }
    let mean = s / n.max(1.0);
    let sd = (s2 / n.max(1.0) - mean * mean).max(0.0).sqrt();
    LineStats {
        mean: mean as f32,
        sd: sd as f32,
    }
}

/// The 0.5 % and 99.5 % greys of the image (every fourth pixel: a 384-pixel image has
/// plenty), the range an unmasked collimator is judged in.
fn grey_range(v: &[f32]) -> (f32, f32) {
    let mut sample: Vec<f32> = v.iter().step_by(4).copied().collect();
    if sample.is_empty() {
        return (0.0, 1.0);
    }
    // Two order statistics: selected, not a full sort.
    let index = |q: usize| (sample.len() - 1) * q / 1000;
    let (lo, hi) = (index(5), index(995));
    let top = *sample.select_nth_unstable_by(hi, |a, b| a.total_cmp(b)).1;
    let low = *sample[..=hi]
        .select_nth_unstable_by(lo, |a, b| a.total_cmp(b))
        .1;
    (low, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise value in -0.5..0.5 for pixel i.
    fn noise(i: usize) -> f32 {
        let x = (i as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17);
        (x % 10_000) as f32 / 10_000.0 - 0.5
    }

    /// 300 x 200: anatomy-like field (a bright spine column on soft tissue, with structure
    /// in every row and column) inside borders of `border` px, drawn by `edge(i)`.
    fn framed(border: usize, edge: impl Fn(usize) -> f32) -> Vec<f32> {
        let (rows, cols) = (300, 200);
        (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                let inside =
                    (border..rows - border).contains(&r) && (border..cols - border).contains(&c);
                if !inside {
                    return edge(i);
                }
                let spine = if (80..120).contains(&c) { 0.35 } else { 0.0 };
                let body = if (r / 30) % 2 == 0 { 0.1 } else { 0.0 };
                0.3 + spine
                    + body * f32::from(spine > 0.0)
                    + 0.05 * ((c as f32) / 9.0).sin()
                    + 0.06 * ((r as f32) / 7.0).sin()
                    + 0.03 * noise(i)
            })
            .collect()
    }

    #[test]
    fn a_flat_shutter_is_trimmed() {
        let v = framed(20, |_| 0.0);
        assert_eq!(exposed_field(&v, 300, 200), (20, 280, 20, 180));
    }

    #[test]
    fn an_unmasked_collimator_with_noise_and_a_slope_is_trimmed() {
        // Near white, with quantum noise (sd ~0.03) and a heel-effect slope along the rows:
        // the flat rule alone keeps it.
        let v = framed(25, |i| {
            0.93 + 0.04 * (i / 200) as f32 / 300.0 + 0.1 * noise(i)
        });
        assert_eq!(exposed_field(&v, 300, 200), (25, 275, 25, 175));
    }

    #[test]
    fn an_unmasked_collimator_that_fades_inwards_is_trimmed() {
        // As a vendor's vignetting and the scatter under the blades leave it: 0.95 at the
        // image's edge, 0.80 where the field begins, a fifth of the grey range lower.
        let v = framed(25, |i| {
            let (r, c) = (i / 200, i % 200);
            let depth = r.min(299 - r).min(c).min(199 - c) as f32;
            0.95 - 0.15 * depth / 24.0 + 0.02 * noise(i)
        });
        assert_eq!(exposed_field(&v, 300, 200), (25, 275, 25, 175));
    }

    #[test]
    fn anatomy_at_the_edge_is_kept() {
        // No border: soft tissue at the edges, the spine bright but with structure.
        let v = framed(0, |_| 0.0);
        assert_eq!(exposed_field(&v, 300, 200), (0, 300, 0, 200));
        // A uniformly white image is not cut below a third of each side.
        let white = vec![1.0; 300 * 200];
        let (r0, r1, c0, c1) = exposed_field(&white, 300, 200);
        assert!(r1 - r0 >= 100 && c1 - c0 >= 66, "{r0} {r1} {c0} {c1}");
    }
}
