//! Ribs followed in 3D to the vertebra they articulate with. The mid-slice test in
//! `levels::beside_the_spine` sees a rib only where its cut lies level with the body; the
//! 11th and 12th ribs slope down so steeply that at their own vertebra's middle they lie
//! far out to the side and behind it (140-150 mm out, 45-55 mm behind on a real contrast
//! CT), and were missed. Here the bone beside the spine is joined across slices: a rib is
//! a thin piece that starts beside a vertebra (its head, at the costovertebral joint) and
//! runs out past where any transverse process ends. Its vertebra is the one level with
//! its head. A shorter piece from beside a vertebra that is not a rib is a transverse
//! process (`processes` reads the lumbar ones as an anchor).

use super::volume::Volume;

/// In-plane cell size (mm): bone is marked per cell, whatever the pixel size, so thin and
/// thick pixels are followed alike.
const CELL_MM: f64 = 2.0;
/// Within this distance to the side of the body's centre lies the spine itself (body,
/// pedicles, laminae): left out, so each rib is a piece of its own.
const SPINE_HALF_WIDTH_MM: f64 = 25.0;
/// A rib's head lies within this distance to the side of the body's centre.
const HEAD_MM: f64 = 35.0;
/// A rib reaches at least this far out; lumbar transverse processes end within about
/// 58 mm (the real contrast CT in the tests), its 12th ribs reach 105 mm.
const REACH_MM: f64 = 70.0;
/// The box searched, relative to the body's centre: to each side, before it, behind it.
const SIDE_MM: f64 = 160.0;
const FRONT_MM: f64 = 60.0;
const BACK_MM: f64 = 80.0;
/// Wider than this in one slice is the ilium or a shoulder blade, not a rib (ribs
/// 100-760 mm², the ilium 2,100 mm² on the real contrast CT).
const MAX_SLICE_MM2: f64 = 1000.0;
/// A transverse process reaches at least this far out: lumbar processes reach 31-48 mm on
/// the real contrast CT and the independent phantoms; the articular and mammillary
/// processes end within 25 mm.
const PROCESS_MM: f64 = 30.0;
/// A rib's head lies beside the back half of the body and the pedicles: from this far
/// before the body's centre to this far behind it (mm). Contrast in a ureter, which runs
/// down in front of the transverse processes, does not.
const HEAD_FRONT_MM: f64 = 20.0;
const HEAD_BACK_MM: f64 = 50.0;

/// A vertebra as the search needs it: its first and last slice and its body's centre
/// (column, row) on its middle slice.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub extent: (usize, usize),
    pub centre: (f64, f64),
}

/// What starts beside one vertebra, on the (right, left) side of the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outgrowths {
    /// A rib's head.
    pub ribs: [bool; 2],
    /// A transverse process: bone from beside the spine that ends 30-70 mm out. The
    /// stubs of short 12th ribs look alike.
    pub processes: [bool; 2],
}

impl Outgrowths {
    /// On how many sides a transverse process was found.
    pub fn process_sides(&self) -> u8 {
        self.processes.iter().filter(|&&p| p).count() as u8
    }
}

/// For each vertebra, the ribs and transverse processes that start beside it.
pub fn outgrowths(volume: &Volume, spans: &[Span]) -> Vec<Outgrowths> {
    let mut found = vec![Outgrowths::default(); spans.len()];
    if spans.is_empty() || volume.slices.is_empty() {
        return found;
    }
    let grid = Grid::new(volume, spans);
    let cells = grid.mark(volume);
    let mut sets = grid.join(&cells);
    for piece in grid.pieces(&cells, &mut sets, volume) {
        let (rib, process) = (piece.is_rib(), piece.is_process());
        if !rib && !process {
            continue;
        }
        if let Some(k) = level_with(piece.head_z(), spans, volume) {
            let side = piece.side();
            found[k].ribs[side] |= rib;
            found[k].processes[side] |= process;
        }
    }
    found
}

/// The vertebra whose centre is nearest `z`, if `z` lies within its height or halfway to
/// its neighbours.
fn level_with(z: f64, spans: &[Span], volume: &Volume) -> Option<usize> {
    let centre = |s: &Span| (volume.z[s.extent.0] + volume.z[s.extent.1]) / 2.0;
    let (k, near) = spans
        .iter()
        .enumerate()
        .map(|(k, s)| (k, (centre(s) - z).abs()))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let s = &spans[k];
    let half = (volume.z[s.extent.0] - volume.z[s.extent.1]).abs() / 2.0 + 3.0;
    let neighbour = [k.checked_sub(1), Some(k + 1)]
        .into_iter()
        .flatten()
        .filter_map(|j| spans.get(j))
        .map(|n| (centre(n) - centre(s)).abs() / 2.0)
        .fold(half, f64::max);
    (near <= neighbour).then_some(k)
}

/// The cell grid: per slice, cells of `CELL_MM` around the nearest vertebra's centre.
struct Grid {
    nx: usize,
    ny: usize,
    /// Pixels per cell (rows, columns).
    step: (usize, usize),
    /// Cell size (mm) along rows and columns.
    cell: (f64, f64),
    /// Per slice: the body centre the box is placed around (column, row).
    centres: Vec<(f64, f64)>,
    threshold: f32,
}

impl Grid {
    fn new(volume: &Volume, spans: &[Span]) -> Grid {
        let (row_mm, col_mm) = volume.spacing;
        let step = (
            (CELL_MM / row_mm).round().max(1.0) as usize,
            (CELL_MM / col_mm).round().max(1.0) as usize,
        );
        let cell = (step.0 as f64 * row_mm, step.1 as f64 * col_mm);
        let centres = (0..volume.slices.len())
            .map(|s| {
                spans
                    .iter()
                    .min_by_key(|v| s.abs_diff((v.extent.0 + v.extent.1) / 2))
                    .map(|v| v.centre)
                    .unwrap_or_default()
            })
            .collect();
        Grid {
            nx: (2.0 * SIDE_MM / cell.1).ceil() as usize,
            ny: ((FRONT_MM + BACK_MM) / cell.0).ceil() as usize,
            step,
            cell,
            centres,
            threshold: super::levels::cortex_hu(volume.spacing),
        }
    }

    fn per_slice(&self) -> usize {
        self.nx * self.ny
    }

    /// (mm to the side, mm behind) of cell (x, y) from the body's centre.
    fn offset(&self, x: usize, y: usize) -> (f64, f64) {
        (
            (x as f64 + 0.5) * self.cell.1 - SIDE_MM,
            (y as f64 + 0.5) * self.cell.0 - FRONT_MM,
        )
    }

    /// Which cells hold cortical bone outside the spine, slice after slice.
    fn mark(&self, volume: &Volume) -> Vec<bool> {
        use rayon::prelude::*;
        let mut cells = vec![false; volume.slices.len() * self.per_slice()];
        cells
            .par_chunks_mut(self.per_slice())
            .enumerate()
            .for_each(|(s, out)| self.mark_slice(volume, s, out));
        cells
    }

    fn mark_slice(&self, volume: &Volume, s: usize, out: &mut [bool]) {
        let frame = &volume.slices[s];
        let (cx, cy) = self.centres[s];
        // Pixel of the box's corner: cells start there.
        let col0 = (cx - SIDE_MM / volume.spacing.1).round() as i64;
        let row0 = (cy - FRONT_MM / volume.spacing.0).round() as i64;
        for y in 0..self.ny {
            for x in 0..self.nx {
                if self.offset(x, y).0.abs() < SPINE_HALF_WIDTH_MM {
                    continue;
                }
                let r = row0 + (y * self.step.0) as i64;
                let c = col0 + (x * self.step.1) as i64;
                out[y * self.nx + x] = (r.max(0)..(r + self.step.0 as i64).min(frame.rows as i64))
                    .any(|r| {
                        (c.max(0)..(c + self.step.1 as i64).min(frame.columns as i64)).any(|c| {
                            frame.values[r as usize * frame.columns + c as usize] > self.threshold
                        })
                    });
            }
        }
    }

    /// Join touching bone cells, in the slice and across to the slice before (26-connected).
    /// Only bone cells get a set, numbered in scan order; two slices of numbers are kept.
    fn join(&self, cells: &[bool]) -> Sets {
        const NONE: u32 = u32::MAX;
        let (nx, ny) = (self.nx as i64, self.ny as i64);
        let mut sets = Sets::default();
        let mut before = vec![NONE; self.per_slice()];
        let mut now = vec![NONE; self.per_slice()];
        for slice in cells.chunks(self.per_slice()) {
            for (i, _) in slice.iter().enumerate().filter(|(_, &b)| b) {
                let id = sets.add();
                now[i] = id;
                let (x, y) = ((i % self.nx) as i64, (i / self.nx) as i64);
                for (ds, dy, dx) in BEFORE {
                    let (y2, x2) = (y + dy, x + dx);
                    if y2 < 0 || y2 >= ny || x2 < 0 || x2 >= nx {
                        continue;
                    }
                    let j = (y2 * nx + x2) as usize;
                    let other = if ds < 0 { before[j] } else { now[j] };
                    if other != NONE {
                        sets.union(id as usize, other as usize);
                    }
                }
            }
            std::mem::swap(&mut before, &mut now);
            now.fill(NONE);
        }
        sets
    }

    /// Each piece's extent and where its medial end lies.
    fn pieces(&self, cells: &[bool], sets: &mut Sets, volume: &Volume) -> Vec<Piece> {
        const NONE: u32 = u32::MAX;
        let cell_mm2 = self.cell.0 * self.cell.1;
        // Each root's piece, numbered as met.
        let mut piece_of = vec![NONE; sets.parent.len()];
        let mut pieces: Vec<Piece> = Vec::new();
        // The sets were numbered in this same scan order.
        let mut id = 0;
        for (s, slice) in cells.chunks(self.per_slice()).enumerate() {
            for (i, _) in slice.iter().enumerate().filter(|(_, &b)| b) {
                let root = sets.find(id);
                id += 1;
                if piece_of[root] == NONE {
                    piece_of[root] = pieces.len() as u32;
                    pieces.push(Piece::default());
                }
                let p = &mut pieces[piece_of[root] as usize];
                let (side, behind) = self.offset(i % self.nx, i / self.nx);
                p.reach = p.reach.max(side.abs());
                if side.abs() <= HEAD_MM && (-HEAD_FRONT_MM..=HEAD_BACK_MM).contains(&behind) {
                    p.head_cells += 1;
                    p.head_z += volume.z[s];
                    p.head_side += side.signum();
                }
                if p.slice != Some(s) {
                    (p.slice, p.in_slice) = (Some(s), 0);
                }
                p.in_slice += 1;
                p.widest_mm2 = p.widest_mm2.max(p.in_slice as f64 * cell_mm2);
            }
        }
        pieces
    }
}

/// The cells before a cell in scan order: the slice before (all nine), and the row above
/// and the cell to the left in its own slice.
const BEFORE: [(i64, i64, i64); 13] = [
    (-1, -1, -1),
    (-1, -1, 0),
    (-1, -1, 1),
    (-1, 0, -1),
    (-1, 0, 0),
    (-1, 0, 1),
    (-1, 1, -1),
    (-1, 1, 0),
    (-1, 1, 1),
    (0, -1, -1),
    (0, -1, 0),
    (0, -1, 1),
    (0, 0, -1),
];

/// One connected piece of bone beside the spine.
#[derive(Default)]
struct Piece {
    /// Furthest distance to the side of the body's centre (mm).
    reach: f64,
    /// Cells near the spine, behind the body's front: the rib's head, if it is one.
    head_cells: usize,
    head_z: f64,
    head_side: f64,
    /// Its largest area in one slice (mm²).
    widest_mm2: f64,
    /// The slice being counted, and its cells so far.
    slice: Option<usize>,
    in_slice: usize,
}

impl Piece {
    fn is_rib(&self) -> bool {
        self.head_cells > 0 && self.reach >= REACH_MM && self.widest_mm2 <= MAX_SLICE_MM2
    }

    fn is_process(&self) -> bool {
        self.head_cells > 0
            && (PROCESS_MM..REACH_MM).contains(&self.reach)
            && self.widest_mm2 <= MAX_SLICE_MM2
    }

    fn head_z(&self) -> f64 {
        self.head_z / self.head_cells as f64
    }

    /// 0: the image's left half (the patient's right), 1: its right half.
    fn side(&self) -> usize {
        usize::from(self.head_side > 0.0)
    }
}

/// Disjoint sets over the bone cells, in scan order (union by size, path halving).
#[derive(Default)]
struct Sets {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl Sets {
    /// A new set of one; its number.
    fn add(&mut self) -> u32 {
        let id = self.parent.len() as u32;
        self.parent.push(id);
        self.size.push(1);
        id
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] as usize != i {
            let grand = self.parent[self.parent[i] as usize];
            self.parent[i] = grand;
            i = grand as usize;
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a as u32;
        self.size[a] += self.size[b];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::image::Frame;

    const N: usize = 200;

    /// 40 slices 2 mm apart, 1 mm pixels, four vertebrae of ten slices around (100, 100).
    fn volume(draw: impl Fn(usize, usize, usize) -> Option<f32>) -> (Volume, Vec<Span>) {
        let slices = (0..40)
            .map(|s| Frame {
                rows: N,
                columns: N,
                values: (0..N * N)
                    .map(|i| draw(s, i / N, i % N).unwrap_or(40.0))
                    .collect(),
            })
            .collect();
        let volume = Volume {
            slices,
            z: (0..40).map(|s| 100.0 - 2.0 * s as f64).collect(),
            sop_uids: Vec::new(),
            spacing: (1.0, 1.0),
            orientation: Vec::new(),
        };
        let spans = (0..4)
            .map(|k| Span {
                extent: (10 * k, 10 * k + 8),
                centre: (100.0, 100.0),
            })
            .collect();
        (volume, spans)
    }

    /// The spine: a body and its arch, in every slice.
    fn spine(r: usize, c: usize) -> Option<f32> {
        let (dx, dy) = (c as f64 - 100.0, r as f64 - 100.0);
        (dx.hypot(dy) < 16.0 || (dx.abs() < 20.0 && (15.0..40.0).contains(&dy))).then_some(500.0)
    }

    #[test]
    fn a_rib_sloping_down_is_a_rib_a_short_process_is_a_process_and_the_ilium_neither() {
        let (volume, spans) = volume(|s, r, c| {
            let (dx, dy) = (c as f64 - 100.0, r as f64 - 100.0);
            // Ribs of vertebra 1 (slices 10-18), heads at slices 13-15, sloping down one
            // slice (2 mm) every 8 mm out to 110 mm on both sides.
            let drop = ((dx.abs() - 24.0) / 8.0).max(0.0) as usize;
            let rib = (24.0..110.0).contains(&dx.abs())
                && (13 + drop..16 + drop).contains(&s)
                && (5.0..15.0).contains(&dy);
            // Transverse processes of vertebra 2 (slices 20-28), out to 55 mm.
            let process = (20.0..55.0).contains(&dx.abs())
                && (23..26).contains(&s)
                && (20.0..28.0).contains(&dy);
            // The ilium beside vertebra 3 (slices 30-38), joined to the spine.
            let ilium = (20.0..150.0).contains(&dx) && s >= 31 && (0.0..40.0).contains(&dy);
            spine(r, c).or((rib || process || ilium).then_some(900.0))
        });
        let found = outgrowths(&volume, &spans);
        let ribs: Vec<[bool; 2]> = found.iter().map(|o| o.ribs).collect();
        assert_eq!(ribs, vec![[false; 2], [true; 2], [false; 2], [false; 2]]);
        let sides: Vec<u8> = found.iter().map(Outgrowths::process_sides).collect();
        assert_eq!(sides, vec![0, 0, 2, 0], "the processes are vertebra 2's");
    }

    #[test]
    fn nothing_beside_the_spine_is_no_ribs() {
        let (volume, spans) = volume(|_, r, c| spine(r, c));
        assert_eq!(outgrowths(&volume, &spans), vec![Outgrowths::default(); 4]);
        assert!(outgrowths(&volume, &[]).is_empty());
    }
}
