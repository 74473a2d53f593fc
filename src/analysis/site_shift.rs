//! The look of the radiographs a site sends, watched against the X-ray model's training
//! images. One image's out-of-distribution distance is mostly its patient; a detector or
//! vendor processing the weights never learned shows in the mean features of many images
//! (`FeatureProfile::shift`), and then the model's T-scores come out compressed and biased
//! until `osteoscreen adapt` re-measures its statistics on the site's own radiographs
//! (BENCHMARKS.md, twenty-third session). In memory only: a restart starts counting again.

use std::sync::Mutex;

use crate::model::card::{FeatureProfile, SITE_SHIFT_WARNING};

/// The mean is over about this many most recent radiographs (an exponential average).
pub const WINDOW: usize = 200;

/// Radiographs before a shift is reported: fewer are mostly their patients.
pub const MIN_IMAGES: usize = 32;

/// The running mean of the pooled features of the radiographs analysed so far.
#[derive(Default)]
pub struct SiteShift {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    mean: Vec<f32>,
    seen: usize,
    warned: bool,
    /// The shift after the latest images, once `MIN_IMAGES` were seen.
    shift: Option<f32>,
}

impl SiteShift {
    /// Add one study's radiographs (their features) and return the shift once
    /// `MIN_IMAGES` have been seen. Logs a warning (no patient data: numbers only) when the
    /// shift first rises above `SITE_SHIFT_WARNING`, and a note when it falls back.
    pub fn observe(&self, profile: &FeatureProfile, features: &[Vec<f32>]) -> Option<f32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // A feature vector of another model, or a non-finite one, would poison the mean.
        let usable =
            |f: &&Vec<f32>| f.len() == profile.mean.len() && f.iter().all(|x| x.is_finite());
        for f in features.iter().filter(usable) {
            if s.mean.len() != f.len() {
                s.mean = f.clone();
                s.seen = 0;
            }
            s.seen += 1;
            let w = 1.0 / s.seen.min(WINDOW) as f32;
            for (m, x) in s.mean.iter_mut().zip(f) {
                *m += w * (x - *m);
            }
        }
        if s.seen < MIN_IMAGES {
            return None;
        }
        let shift = profile.distance(&s.mean);
        s.shift = Some(shift);
        if shift > SITE_SHIFT_WARNING && !s.warned {
            s.warned = true;
            tracing::warn!(
                shift = format!("{shift:.2}"),
                radiographs = s.seen.min(WINDOW),
                "the radiographs received look unlike the X-ray model's training images (feature shift above {SITE_SHIFT_WARNING}); its T-scores may be compressed and biased here: consider `osteoscreen adapt` on this site's radiographs"
            );
        } else if shift < SITE_SHIFT_WARNING - 0.05 && s.warned {
            s.warned = false;
            tracing::info!(
                shift = format!("{shift:.2}"),
                "the radiographs received look like the X-ray model's training images again"
            );
        }
        Some(shift)
    }

    /// Start counting again (the model reading the radiographs changed).
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }

    /// The shift after the latest images (None before `MIN_IMAGES`).
    pub fn current(&self) -> Option<f32> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> FeatureProfile {
        FeatureProfile {
            mean: vec![0.0; 4],
            sd: vec![1.0; 4],
            threshold: 3.0,
        }
    }

    #[test]
    fn the_shift_appears_after_enough_images_and_follows_the_recent_ones() {
        let (p, site) = (profile(), SiteShift::default());
        let like = |k: usize| vec![if k % 2 == 0 { 1.0 } else { -1.0 }; 4];
        let batch: Vec<Vec<f32>> = (0..MIN_IMAGES - 1).map(like).collect();
        assert_eq!(site.observe(&p, &batch), None);
        let s = site.observe(&p, &[like(MIN_IMAGES - 1)]).unwrap();
        assert!(s < 0.1, "{s}");
        // A new look: after six windows of it the old images keep e^-5 of their weight.
        let unlike: Vec<Vec<f32>> = (0..6 * WINDOW).map(|_| vec![0.8; 4]).collect();
        let s = site.observe(&p, &unlike).unwrap();
        assert!((s - 0.8).abs() < 0.01, "{s}");
        assert_eq!(site.current(), Some(s));
        // Features of another width (another model's) or not finite are not mixed in.
        assert!(site.observe(&p, &[vec![9.0; 7]]).unwrap() < 0.81);
        assert!(site.observe(&p, &[vec![f32::NAN; 4]]).unwrap() < 0.81);
    }
}
