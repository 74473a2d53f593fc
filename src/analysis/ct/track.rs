//! Following the spine along z: the per-slice bodies that `body` found become vertebrae.
//! Three steps, each robust to what one slice gets wrong on a real scan:
//! - `on_the_spine` drops detections off the spine's course (a slice where the body's
//!   ring did not close finds the arch or the canal instead, ~30-45 mm behind);
//! - `group_slices` joins consecutive bodies into runs, bridging a missed slice;
//! - `split_at_discs` cuts each run at endplates (slices much denser than the run) and at
//!   discs (much less dense), and keeps the pieces tall enough to be a vertebral body.
//!   An osteoporotic body can be less dense than its discs, so the discs between two
//!   endplates are recognised by their height (under 8 mm), not by their HU alone.

use super::body::SliceBody;
use super::volume::Volume;

/// Neighbours within this distance along z describe the spine's course at a slice (mm).
const COURSE_WINDOW_MM: f64 = 30.0;
/// A body further than this from the course is not on the spine (mm).
const OFF_COURSE_MM: f64 = 12.0;
/// Consecutive bodies this close in z belong to one run even with a slice missed (mm).
const BRIDGE_MM: f64 = 4.5;
/// The shortest run that can be a vertebral body, endplates excluded (mm).
pub const MIN_BODY_MM: f64 = 8.0;

/// A body with its slice's ROI median (HU), what the z profile is read from.
#[derive(Debug, Clone)]
pub struct Located {
    pub body: SliceBody,
    pub median_hu: f64,
}

impl Located {
    pub fn new(body: SliceBody, volume: &Volume) -> Located {
        let values = &volume.slices[body.slice].values;
        let median_hu = median(body.roi.iter().map(|&i| values[i] as f64).collect());
        Located { body, median_hu }
    }

    /// Centre in mm (x, y).
    fn centre_mm(&self, spacing: (f64, f64)) -> (f64, f64) {
        (
            self.body.centre.0 * spacing.1,
            self.body.centre.1 * spacing.0,
        )
    }
}

/// The upper median (NaN for none): the CT module's one definition of it.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Keep the bodies that lie on the spine's course: within `OFF_COURSE_MM` of the median
/// centre of the bodies within `COURSE_WINDOW_MM` along z. With fewer than three
/// neighbours there is no course to judge by, and the body is kept. A slice whose body
/// was off the course is searched again for a body where the course says it is
/// (`body::find_body_near`); a part of the body that was missed would otherwise cut it
/// in two, or leave it measured short.
pub fn on_the_spine(bodies: Vec<Located>, volume: &Volume) -> Vec<Located> {
    let on: Vec<bool> = bodies
        .iter()
        .map(|b| {
            let (x, y) = b.centre_mm(volume.spacing);
            course_at(&bodies, volume.z[b.body.slice], volume)
                .is_none_or(|(mx, my)| (x - mx).hypot(y - my) <= OFF_COURSE_MM)
        })
        .collect();
    let (kept, off): (Vec<_>, Vec<_>) = bodies.into_iter().zip(on).partition(|(_, on)| *on);
    let mut kept: Vec<Located> = kept.into_iter().map(|(b, _)| b).collect();
    let found: Vec<Located> = off
        .into_iter()
        .filter_map(|(b, _)| {
            let s = b.body.slice;
            let (x, y) = course_at(&kept, volume.z[s], volume)?;
            let near = (x / volume.spacing.1, y / volume.spacing.0);
            let body = super::body::find_body_near(&volume.slices[s], volume.spacing, s, near)?;
            let b = Located::new(body, volume);
            let (bx, by) = b.centre_mm(volume.spacing);
            ((bx - x).hypot(by - y) <= OFF_COURSE_MM).then_some(b)
        })
        .collect();
    kept.extend(found);
    kept.sort_by_key(|b| b.body.slice);
    kept
}

/// The median body centre (mm) of `bodies` within `COURSE_WINDOW_MM` of `z`, from at
/// least three of them.
fn course_at(bodies: &[Located], z: f64, volume: &Volume) -> Option<(f64, f64)> {
    let near: Vec<(f64, f64)> = bodies
        .iter()
        .filter(|b| (volume.z[b.body.slice] - z).abs() <= COURSE_WINDOW_MM)
        .map(|b| b.centre_mm(volume.spacing))
        .collect();
    (near.len() >= 3).then(|| {
        (
            median(near.iter().map(|c| c.0).collect()),
            median(near.iter().map(|c| c.1).collect()),
        )
    })
}

/// Consecutive bodies (a missed slice bridged when the gap is under `BRIDGE_MM`) whose
/// centres line up within 15 mm form one run.
pub fn group_slices(bodies: Vec<Located>, volume: &Volume) -> Vec<Vec<Located>> {
    let spacing = volume.spacing;
    let mut groups: Vec<Vec<Located>> = Vec::new();
    for b in bodies {
        let continues = groups.last().and_then(|g| g.last()).is_some_and(|prev| {
            let (p, n) = (prev.body.slice, b.body.slice);
            let adjacent = n == p + 1 || (volume.z[p] - volume.z[n]).abs() <= BRIDGE_MM;
            let (px, py) = prev.centre_mm(spacing);
            let (bx, by) = b.centre_mm(spacing);
            adjacent && (px - bx).hypot(py - by) < 15.0
        });
        match groups.last_mut() {
            Some(group) if continues => group.push(b),
            _ => groups.push(vec![b]),
        }
    }
    groups
}

/// The density profile the runs are cut by: the median of every body slice's ROI median
/// and a robust spread (MAD x 1.4826). Most slices of a spine are mid-body, so the median
/// is the bodies' level and endplates and discs stand out from it.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub level: f64,
    pub spread: f64,
}

impl Profile {
    pub fn of(bodies: &[Located]) -> Profile {
        let level = median(bodies.iter().map(|b| b.median_hu).collect());
        let spread = 1.4826 * median(bodies.iter().map(|b| (b.median_hu - level).abs()).collect());
        Profile { level, spread }
    }

    /// Neither an endplate (80 HU or 3 spreads above the level) nor a disc (60 HU or 3
    /// spreads below).
    fn mid_body(&self, hu: f64) -> bool {
        hu.is_finite()
            && hu < self.level + (3.0 * self.spread).max(80.0)
            && hu > self.level - (3.0 * self.spread).max(60.0)
    }
}

/// A vertebral body along z: its mid-body slices (what is measured) and its extent with
/// the endplate slices beside them (what its height is read from).
#[derive(Debug, Clone)]
pub struct Piece {
    pub bodies: Vec<Located>,
    /// First and last volume slice, endplates included.
    pub extent: (usize, usize),
}

impl Piece {
    fn whole(bodies: Vec<Located>) -> Piece {
        let extent = (bodies[0].body.slice, bodies[bodies.len() - 1].body.slice);
        Piece { bodies, extent }
    }

    /// Cranio-caudal extent, endplates included, one slice interval added (mm).
    pub fn height_mm(&self, volume: &Volume) -> f64 {
        extent_mm(self.extent, volume)
    }

    /// (upper, lower) edge along z (mm), half a slice interval beyond the first and last
    /// slice: their difference is `height_mm`.
    pub fn z_range(&self, volume: &Volume) -> (f64, f64) {
        let (a, b) = (volume.z[self.extent.0], volume.z[self.extent.1]);
        let half = (extent_mm(self.extent, volume) - (a - b).abs()) / 2.0;
        (a.max(b) + half, a.min(b) - half)
    }
}

/// Cut a run at its endplates and discs: slices the profile calls neither mid-body are
/// left out of the measurement, and the pieces between them that span at least
/// `MIN_BODY_MM` are vertebral bodies. Endplate slices next to a piece (up to a disc, or
/// halfway to the next piece) count in its height. A run of fewer than three slices is
/// kept whole (too thin a profile to cut).
pub fn split_at_discs(run: Vec<Located>, profile: Profile, volume: &Volume) -> Vec<Piece> {
    let mid: Vec<bool> = run.iter().map(|b| profile.mid_body(b.median_hu)).collect();
    if run.len() < 3 || mid.iter().all(|m| *m) {
        return vec![Piece::whole(run)];
    }
    let plate: Vec<bool> = run.iter().map(|b| b.median_hu > profile.level).collect();
    // Runs of mid-body slices: (first, last) indices into `run`.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, _) in mid.iter().enumerate().filter(|(_, m)| **m) {
        match spans.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => spans.push((i, i)),
        }
    }
    let extents: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .map(|(j, &(first, last))| {
            let before = j.checked_sub(1).map(|p| spans[p].1);
            let after = spans.get(j + 1).map(|n| n.0);
            let mut lo = first;
            // Ties go to the piece above.
            while lo > 0
                && !mid[lo - 1]
                && plate[lo - 1]
                && before.is_none_or(|b| first - (lo - 1) < (lo - 1) - b)
            {
                lo -= 1;
            }
            let mut hi = last;
            while hi + 1 < run.len()
                && !mid[hi + 1]
                && plate[hi + 1]
                && after.is_none_or(|a| (hi + 1) - last <= a - (hi + 1))
            {
                hi += 1;
            }
            (run[lo].body.slice, run[hi].body.slice)
        })
        .collect();
    let mut run = run.into_iter().map(Some).collect::<Vec<_>>();
    spans
        .iter()
        .zip(extents)
        .map(|(&(first, last), extent)| Piece {
            bodies: (first..=last).filter_map(|i| run[i].take()).collect(),
            extent,
        })
        .filter(|p| span_mm(&p.bodies, volume) >= MIN_BODY_MM)
        .collect()
}

/// Cranio-caudal extent of a group of slices, one slice interval included (mm).
pub fn span_mm(group: &[Located], volume: &Volume) -> f64 {
    extent_mm(
        (group[0].body.slice, group[group.len() - 1].body.slice),
        volume,
    )
}

/// Cranio-caudal extent from slice `a` to slice `b`, one slice interval included (mm).
fn extent_mm((a, b): (usize, usize), volume: &Volume) -> f64 {
    (volume.z[a] - volume.z[b]).abs() + volume.z.get(1).map_or(2.0, |z1| (volume.z[0] - z1).abs())
}

/// Drop disc remnants from the pieces (in z order): a piece at most 12 mm tall and under
/// 0.6 of a typical piece's height (the upper quartile), whose two neighbours' centres are
/// less than 1.5 pitches apart. The pitch (body + disc) is the median distance between
/// consecutive tall pieces, and whose median HU lies beyond both neighbours' (by 5 HU) on
/// the same side. Two vertebrae around a third are two pitches apart; around a disc and
/// its partial-volumed endplates, one; and a disc is denser or less dense than both
/// bodies. A short body (compressed, or cut at a dense endplate) keeps its place unless
/// it is all of that. An end piece more than three pitches from its neighbour goes too,
/// and a short one more than two.
pub fn drop_disc_remnants(pieces: Vec<Piece>, volume: &Volume) -> Vec<Piece> {
    if pieces.len() < 3 {
        return pieces;
    }
    let spans: Vec<f64> = pieces.iter().map(|p| span_mm(&p.bodies, volume)).collect();
    let centres: Vec<f64> = pieces
        .iter()
        .map(|p| (volume.z[p.extent.0] + volume.z[p.extent.1]) / 2.0)
        .collect();
    // The upper quartile: disc remnants can be as many as the bodies.
    let typical = {
        let mut s = spans.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() * 3 / 4]
    };
    let short = |k: usize| spans[k] <= 12.0 && spans[k] < 0.6 * typical;
    let tall: Vec<f64> = (0..pieces.len())
        .filter(|&k| !short(k))
        .map(|k| centres[k])
        .collect();
    if tall.len() < 2 {
        return pieces;
    }
    let pitch = median(tall.windows(2).map(|w| (w[0] - w[1]).abs()).collect());
    let hu: Vec<f64> = pieces
        .iter()
        .map(|p| median(p.bodies.iter().map(|b| b.median_hu).collect()))
        .collect();
    let last = pieces.len() - 1;
    let disc = |k: usize| {
        if k == 0 || k == last || !short(k) {
            return false;
        }
        let close = (centres[k - 1] - centres[k + 1]).abs() < 1.5 * pitch;
        // A disc differs from both bodies around it the same way; a compressed body's
        // trabecular bone lies between or near them.
        let (a, b) = (hu[k - 1], hu[k + 1]);
        let apart = hu[k] > a.max(b) + 5.0 || hu[k] < a.min(b) - 5.0;
        close && apart
    };
    let mut keep: Vec<bool> = (0..pieces.len()).map(|k| !disc(k)).collect();
    // An end piece more than three pitches from the rest (two bodies missed in between
    // would be two) is not on this spine: the pubis, a hip, the scan's edge. A short one
    // more than two pitches away is not either (on a real PET-CT, an 8.5 mm piece at
    // -20 HU in the pelvis, 2.6 pitches below L5, was taken for L5). Ends are stripped
    // until the end pieces stand: one stray piece can lie beyond another.
    let far = |k: usize, j: usize| {
        let apart = (centres[k] - centres[j]).abs() / pitch;
        apart > 3.0 || (short(k) && apart > 2.0)
    };
    loop {
        let kept: Vec<usize> = (0..pieces.len()).filter(|&k| keep[k]).collect();
        let n = kept.len();
        if n < 3 {
            break;
        }
        if far(kept[0], kept[1]) {
            keep[kept[0]] = false;
        } else if far(kept[n - 1], kept[n - 2]) {
            keep[kept[n - 1]] = false;
        } else {
            break;
        }
    }
    pieces
        .into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::finding::RoiOutline;

    /// A piece over slices `a..=b` (4 mm apart) whose slices all measure `hu`.
    fn piece(a: usize, b: usize, hu: f64) -> Piece {
        let bodies = (a..=b)
            .map(|slice| Located {
                body: SliceBody {
                    slice,
                    roi: Vec::new(),
                    centre: (0.0, 0.0),
                    area_mm2: 0.0,
                    outline: RoiOutline {
                        centre: (0.0, 0.0),
                        radii: (1.0, 1.0),
                        posterior_row: 0.0,
                    },
                },
                median_hu: hu,
            })
            .collect();
        Piece {
            bodies,
            extent: (a, b),
        }
    }

    /// Five bodies 9 slices (36 mm) apart, then a short piece 2.6 pitches below the last
    /// and a tall one three pitches further: both ends go, the short one although it lies
    /// within three pitches of the last body, once the far one beyond it is gone.
    #[test]
    fn stray_end_pieces_go_one_after_another() {
        let volume = Volume {
            slices: Vec::new(),
            z: (0..120).map(|k| -4.0 * k as f64).collect(),
            sop_uids: Vec::new(),
            spacing: (1.0, 1.0),
            orientation: Vec::new(),
        };
        let mut pieces: Vec<Piece> = (0..5).map(|k| piece(9 * k, 9 * k + 6, 200.0)).collect();
        pieces.push(piece(60, 61, -20.0));
        pieces.push(piece(88, 94, 250.0));
        let kept = drop_disc_remnants(pieces.clone(), &volume);
        let firsts: Vec<usize> = kept.iter().map(|p| p.extent.0).collect();
        assert_eq!(firsts, [0, 9, 18, 27, 36]);
        // A short piece under two pitches below is a body after one missed (or a cut one):
        // kept.
        pieces.truncate(5);
        pieces.push(piece(54, 55, 150.0));
        let kept = drop_disc_remnants(pieces, &volume);
        assert_eq!(kept.len(), 6);
    }
}
