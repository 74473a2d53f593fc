//! Binary morphology on one slice's masks (row-major, `w` columns, `h` rows): connected
//! components, their extent, hole filling and dilation.

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

/// 3x3 dilation: set where any neighbour is set.
pub fn dilate(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for r in 0..h {
        for c in 0..w {
            let mut any = false;
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    let v = rr >= 0
                        && cc >= 0
                        && (rr as usize) < h
                        && (cc as usize) < w
                        && mask[rr as usize * w + cc as usize];
                    any |= v;
                }
            }
            out[r * w + c] = any;
        }
    }
    out
}
