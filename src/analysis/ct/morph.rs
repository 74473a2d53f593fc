//! Binary morphology on one slice's masks (row-major, `w` columns, `h` rows): connected
//! components, their extent, hole filling, dilation and erosion.

/// Centre (column, row) and bounding-box width and height of a region, in pixels.
pub fn extent(region: &[usize], w: usize) -> (f64, f64, f64, f64) {
    let (mut c0, mut c1, mut r0, mut r1) = (usize::MAX, 0, usize::MAX, 0);
    let (mut sx, mut sy) = (0.0, 0.0);
    for &i in region {
        let (r, c) = (i / w, i % w);
        c0 = c0.min(c);
        c1 = c1.max(c);
        r0 = r0.min(r);
        r1 = r1.max(r);
        sx += c as f64;
        sy += r as f64;
    }
    let n = region.len().max(1) as f64;
    (sx / n, sy / n, (c1 + 1 - c0) as f64, (r1 + 1 - r0) as f64)
}

/// Every 4-connected component of the set pixels of `mask`, in raster order of their
/// first pixel.
pub fn components(mask: &[bool], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    for start in 0..w * h {
        if mask[start] && !seen[start] {
            out.push(component(start, w, h, |i| mask[i], &mut seen));
        }
    }
    out
}

/// The 4-connected component of `start` among pixels `inside`, marking them `seen`.
pub fn component(
    start: usize,
    w: usize,
    h: usize,
    inside: impl Fn(usize) -> bool,
    seen: &mut [bool],
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![start];
    seen[start] = true;
    while let Some(i) = stack.pop() {
        out.push(i);
        let (r, c) = (i / w, i % w);
        let mut push = |j: usize| {
            if !seen[j] && inside(j) {
                seen[j] = true;
                stack.push(j);
            }
        };
        if r > 0 {
            push(i - w);
        }
        if r + 1 < h {
            push(i + w);
        }
        if c > 0 {
            push(i - 1);
        }
        if c + 1 < w {
            push(i + 1);
        }
    }
    out
}

/// Mask of `region` plus every pixel it encloses (within its bounding box).
pub fn fill_holes(region: &[usize], w: usize, h: usize) -> Vec<bool> {
    let (mut c0, mut c1, mut r0, mut r1) = (w, 0, h, 0);
    for &i in region {
        c0 = c0.min(i % w);
        c1 = c1.max(i % w);
        r0 = r0.min(i / w);
        r1 = r1.max(i / w);
    }
    let mut mask = vec![false; w * h];
    for &i in region {
        mask[i] = true;
    }
    let inside_box = |i: usize| (c0..=c1).contains(&(i % w)) && (r0..=r1).contains(&(i / w));
    let mut outside = vec![false; w * h];
    for r in r0..=r1 {
        for c in c0..=c1 {
            let i = r * w + c;
            let border = r == r0 || r == r1 || c == c0 || c == c1;
            if border && !mask[i] && !outside[i] {
                component(i, w, h, |j| inside_box(j) && !mask[j], &mut outside);
            }
        }
    }
    for r in r0..=r1 {
        for c in c0..=c1 {
            let i = r * w + c;
            if !outside[i] {
                mask[i] = true;
            }
        }
    }
    mask
}

/// Dilation by a (2·`steps`+1)² square: set where any pixel within `steps` rows and columns
/// is set (the same as `steps` 3x3 dilations; outside the image counts as unset). Two
/// passes of running counts, each O(pixels) whatever `steps` is: the CT's bone masks are
/// dilated 3-6 mm, four to eight pixel steps at fine spacing, and repeated 3x3 passes were
/// three quarters of the CT analysis's time (BENCHMARKS.md, eighth session).
pub fn dilate_by(mask: &[bool], w: usize, h: usize, steps: usize) -> Vec<bool> {
    if steps == 0 {
        return mask.to_vec();
    }
    // Along rows: a prefix count per row.
    let mut rows = vec![false; w * h];
    let mut prefix = vec![0u32; w + 1];
    for r in 0..h {
        let line = &mask[r * w..(r + 1) * w];
        for c in 0..w {
            prefix[c + 1] = prefix[c] + line[c] as u32;
        }
        for (c, out) in rows[r * w..(r + 1) * w].iter_mut().enumerate() {
            let (lo, hi) = (c.saturating_sub(steps), (c + steps + 1).min(w));
            *out = prefix[hi] > prefix[lo];
        }
    }
    // Along columns: a running count per column of the set pixels in the window's rows.
    let mut count = vec![0u32; w];
    let mut out = vec![false; w * h];
    for r in 0..steps.min(h) {
        for (n, v) in count.iter_mut().zip(&rows[r * w..(r + 1) * w]) {
            *n += *v as u32;
        }
    }
    for r in 0..h {
        if r + steps < h {
            let add = &rows[(r + steps) * w..(r + steps + 1) * w];
            count.iter_mut().zip(add).for_each(|(n, v)| *n += *v as u32);
        }
        if r > steps {
            let gone = &rows[(r - steps - 1) * w..(r - steps) * w];
            count
                .iter_mut()
                .zip(gone)
                .for_each(|(n, v)| *n -= *v as u32);
        }
        out[r * w..(r + 1) * w]
            .iter_mut()
            .zip(&count)
            .for_each(|(o, n)| *o = *n > 0);
    }
    out
}

/// Erosion by a (2·`steps`+1)² square: set where every pixel within `steps` is set
/// (outside the image counts as set, so a mask touching the edge is not eaten from there).
pub fn erode_by(mask: &[bool], w: usize, h: usize, steps: usize) -> Vec<bool> {
    let inverse: Vec<bool> = mask.iter().map(|m| !m).collect();
    dilate_by(&inverse, w, h, steps)
        .iter()
        .map(|m| !m)
        .collect()
}

/// `mask` without isolated pixels: a set pixel stays when at least two of its eight
/// neighbours are set. Quantum noise of a low-dose scan puts single pixels of soft tissue
/// over a bone threshold; a cortex, even one pixel thin, is a line whose pixels have two.
pub fn despeckle(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for r in 1..h.saturating_sub(1) {
        for c in 1..w - 1 {
            let i = r * w + c;
            if !mask[i] {
                continue;
            }
            let neighbours = [
                i - w - 1,
                i - w,
                i - w + 1,
                i - 1,
                i + 1,
                i + w - 1,
                i + w,
                i + w + 1,
            ]
            .iter()
            .filter(|&&j| mask[j])
            .count();
            out[i] = neighbours >= 2;
        }
    }
    out
}

/// Quantum noise SD of a slice (HU), from the differences of horizontally adjacent
/// soft-tissue pixels (-100..200 HU): 1.4826 x their median absolute value / sqrt(2).
/// Anatomy changes slowly from pixel to pixel; noise does not.
pub fn noise_sd(values: &[f32], w: usize) -> f64 {
    let soft = |v: f32| (-100.0..200.0).contains(&v);
    let mut d: Vec<f32> = values
        .chunks(w)
        .flat_map(|row| row.windows(2))
        .step_by(3)
        .filter(|p| soft(p[0]) && soft(p[1]))
        .map(|p| (p[0] - p[1]).abs())
        .collect();
    if d.len() < 100 {
        return 0.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    1.4826 * *m as f64 / std::f64::consts::SQRT_2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set where any pixel of the (2·steps+1)² square around it, inside the image, is set.
    fn brute_dilate(mask: &[bool], w: usize, h: usize, steps: usize) -> Vec<bool> {
        (0..w * h)
            .map(|i| {
                let (r, c) = ((i / w) as i64, (i % w) as i64);
                let s = steps as i64;
                (r - s..=r + s).any(|rr| {
                    (c - s..=c + s).any(|cc| {
                        rr >= 0
                            && cc >= 0
                            && rr < h as i64
                            && cc < w as i64
                            && mask[rr as usize * w + cc as usize]
                    })
                })
            })
            .collect()
    }

    #[test]
    fn square_dilation_and_erosion_match_the_definition_at_every_size_and_edge() {
        let mut seed = 7u32;
        let mut random = |density: u32| {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 16) % 100 < density
        };
        for (w, h) in [(1, 1), (7, 3), (3, 9), (23, 17)] {
            for density in [3, 30, 90] {
                let mask: Vec<bool> = (0..w * h).map(|_| random(density)).collect();
                for steps in 0..6 {
                    assert_eq!(
                        dilate_by(&mask, w, h, steps),
                        brute_dilate(&mask, w, h, steps),
                        "dilation {w}x{h} density {density} steps {steps}"
                    );
                    let inverse: Vec<bool> = mask.iter().map(|m| !m).collect();
                    let want: Vec<bool> = brute_dilate(&inverse, w, h, steps)
                        .iter()
                        .map(|m| !m)
                        .collect();
                    assert_eq!(erode_by(&mask, w, h, steps), want, "erosion");
                }
            }
        }
    }
}
