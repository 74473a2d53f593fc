//! Spinal hardware for the synthetic CT: a pair of pedicle screws in a vertebra, and the
//! streaks they cast. Screws run from the back of each pedicle forward and inward into the
//! anterior third of the body, at pedicle height; metal saturates the scale. The streaks
//! follow what filtered back-projection does to metal: a dark band where the beam crossed
//! both screws (beam hardening, photon starvation) and alternating bright and dark rays
//! fanning out from each screw, fading over a few cm and a few mm above and below.

use super::ct::Vertebra;

/// What the scanner stores for metal: the top of a 12-bit scale (4095 - 1024).
pub const METAL_HU: f64 = 3071.0;
/// Screw radius (a 6.5 mm lumbar pedicle screw), mm.
const SCREW_RADIUS: f64 = 3.25;
/// Streaks fade to nothing this far above and below the screws' plane, mm.
const STREAK_Z_MM: f64 = 8.0;

/// Both screws of one instrumented vertebra.
#[derive(Debug, Clone, Copy)]
pub struct ScrewPair {
    /// (entry, tip) of the left and right screws, (x, y) in mm.
    screws: [((f64, f64), (f64, f64)); 2],
    /// The screws' axial plane.
    z: f64,
}

impl ScrewPair {
    /// Screws in `vb` at 60 % of its height from the bottom (pedicle level).
    pub fn in_vertebra(vb: &Vertebra) -> ScrewPair {
        let back = vb.y + vb.half_depth;
        let screw = |side: f64| {
            (
                (vb.x + side * 16.0, back + 14.0),
                (vb.x + side * 5.0, vb.y - 0.45 * vb.half_depth),
            )
        };
        ScrewPair {
            screws: [screw(-1.0), screw(1.0)],
            z: vb.z_bottom + 0.6 * (vb.z_top - vb.z_bottom),
        }
    }

    /// Whether (x, y, z) lies in a screw.
    pub fn contains(&self, x: f64, y: f64, z: f64) -> bool {
        let dz = z - self.z;
        self.screws.iter().any(|&(a, b)| {
            let d = distance_to_segment((x, y), a, b);
            d * d + dz * dz < SCREW_RADIUS * SCREW_RADIUS
        })
    }

    /// The artefact added at (x, y, z), in HU.
    pub fn streaks(&self, x: f64, y: f64, z: f64) -> f64 {
        let fade = 1.0 - (z - self.z).abs() / STREAK_Z_MM;
        if fade <= 0.0 {
            return 0.0;
        }
        let [(l_entry, l_tip), (r_entry, r_tip)] = self.screws;
        let mid = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
        // Dark where the rays between the two screws ran: across their tips and middles.
        let band = |a, b| {
            let d = distance_to_segment((x, y), a, b);
            -320.0 * (-d * d / (2.0 * 3.5 * 3.5)).exp()
        };
        let dark = band(l_tip, r_tip) + band(mid(l_entry, l_tip), mid(r_entry, r_tip));
        // Rays from each screw's middle: alternating sign with angle, fading with distance.
        let rays: f64 = [mid(l_entry, l_tip), mid(r_entry, r_tip)]
            .iter()
            .map(|&(cx, cy)| {
                let (dx, dy) = (x - cx, y - cy);
                let r = (dx * dx + dy * dy).sqrt();
                140.0 * (12.0 * dy.atan2(dx) + 0.7).cos() * (-r / 35.0).exp()
            })
            .sum();
        fade * (dark + rays)
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn distance_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len2 = vx * vx + vy * vy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * vx + (p.1 - a.1) * vy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * vx - p.0, a.1 + t * vy - p.1);
    (qx * qx + qy * qy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screws_sit_in_the_pedicles_and_body_and_streak_only_near_their_plane() {
        let vb = Vertebra {
            z_top: 0.0,
            z_bottom: -28.0,
            x: 0.0,
            y: 40.0,
            half_width: 23.0,
            half_depth: 16.0,
        };
        let pair = ScrewPair::in_vertebra(&vb);
        let z = pair.z;
        // In the anterior third of the body, left of the centre; not at the centre.
        assert!(pair.contains(-5.5, 40.0 - 0.4 * 16.0, z));
        assert!(!pair.contains(0.0, 40.0, z));
        // Not 5 mm above the screws' plane.
        assert!(!pair.contains(-5.5, 40.0 - 0.4 * 16.0, z + 5.0));
        assert!(pair.streaks(0.0, 40.0 - 0.45 * 16.0, z) < -200.0);
        assert_eq!(pair.streaks(0.0, 40.0, z + STREAK_Z_MM + 0.1), 0.0);
    }
}
