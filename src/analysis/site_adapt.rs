//! The daemon adapting its X-ray model to the site by itself: after the first
//! `[model] site_adaptation_images` radiographs it received, the configured weights'
//! batch-norm statistics are measured again on them (`model::adabn`, what
//! `osteoscreen adapt` does with a folder) and later studies are read with the result;
//! once more, from the configured weights, on the first `REFINE` times as many (more
//! images, steadier statistics), then never again. A
//! site's detector and processing are one look; the bundled weights' statistics are those
//! of a mixture of looks, right for none. Re-measured on one look they read a generator
//! no training set had 5-13 points more accurately and most learned ones better too
//! (BENCHMARKS.md, thirty-second session). The adapted weights and their card go to
//! `<storage dir>/model/`, so a restart reads with them at once; new configured weights
//! start the count again. Every report names the model that read it (its card's version
//! ends in "+adapted", its sha256 is the adapted file's).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use candle_core::Device;

use super::site_shift::SiteShift;
use crate::model::adabn::{self, Adaptation};
use crate::model::card::short_sha;
use crate::model::{ModelCard, ModelError, ModelSettings, XrayModel};

/// The X-ray model studies are read with now; replaced once by the site's adaptation.
/// Each analysis takes its own handle, so a study is read by one model throughout.
#[derive(Default)]
pub struct ModelSlot(RwLock<Option<Arc<XrayModel>>>);

impl ModelSlot {
    pub fn new(model: Option<XrayModel>) -> ModelSlot {
        ModelSlot(RwLock::new(model.map(Arc::new)))
    }

    pub fn get(&self) -> Option<Arc<XrayModel>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_some(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn replace(&self, model: XrayModel) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(model));
    }
}

/// File name of the adapted weights under the storage dir (the card beside it, .json).
pub const ADAPTED_WEIGHTS: &str = "model/site-adapted.safetensors";

/// The second, final adaptation uses this many times the first one's radiographs (at most
/// `adabn::MAX_IMAGES`).
pub const REFINE: usize = 4;

/// Collects the site's first radiographs (as the model reads them) and adapts on them:
/// after `first`, again after `last`, then never.
pub struct SiteAdaptation {
    /// The configured weights, which every adaptation starts from.
    base: PathBuf,
    base_card: ModelCard,
    out: PathBuf,
    /// Radiographs of the first adaptation and of the final one.
    first: usize,
    last: usize,
    device: Device,
    state: Mutex<State>,
    /// Signalled when an adaptation ends.
    ended: Condvar,
}

/// Longest a study waits for an adaptation under way (one takes 10-15 s on two cores).
const LONGEST_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct State {
    pool: Vec<Vec<f32>>,
    phase: Phase,
    /// Radiographs the next adaptation waits for.
    target: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Phase {
    #[default]
    Collecting,
    Adapting,
    /// Adapted, or the attempt failed (logged; not tried again until a restart).
    Finished,
}

impl SiteAdaptation {
    /// Adapt the weights `base` (card `base_card`, checked at load) after `images`
    /// radiographs, writing under `storage_dir`.
    pub fn new(
        base: &Path,
        base_card: ModelCard,
        storage_dir: &Path,
        images: usize,
        device: Device,
    ) -> SiteAdaptation {
        SiteAdaptation {
            base: base.to_path_buf(),
            base_card,
            out: storage_dir.join(ADAPTED_WEIGHTS),
            first: images.max(adabn::MIN_IMAGES),
            last: (images * REFINE).clamp(adabn::MIN_IMAGES, adabn::MAX_IMAGES),
            device,
            state: Mutex::new(State {
                target: images.max(adabn::MIN_IMAGES),
                ..State::default()
            }),
            ended: Condvar::new(),
        }
    }

    /// The adaptation `[model]` asks for, of the model in `slot`, writing under
    /// `storage_dir`: None when `site_adaptation` is off or there is no X-ray model.
    pub fn configured(
        model: &ModelSettings,
        slot: &ModelSlot,
        storage_dir: &Path,
    ) -> Result<Option<SiteAdaptation>, ModelError> {
        let Some(configured) = slot.get().filter(|_| model.site_adaptation) else {
            return Ok(None);
        };
        Ok(Some(SiteAdaptation::new(
            &model.weights,
            configured.card.clone(),
            storage_dir,
            model.site_adaptation_images,
            crate::model::device(&model.device)?,
        )))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether studies are now read with adapted weights.
    pub fn adapted(&self, slot: &ModelSlot) -> bool {
        slot.get()
            .is_some_and(|m| adabn::adapted_from(&m.card) == Some(&self.base_card.weights_sha256))
    }

    /// At start: read with the weights an earlier run adapted to this site, when they were
    /// adapted from the configured weights. Anything else there (weights adapted from other
    /// weights, a file that fails its sha256 check) is left to be replaced by the next
    /// adaptation, and said so.
    pub fn restore(&self, slot: &ModelSlot) {
        let card_path = self.out.with_extension("json");
        if !card_path.exists() {
            return;
        }
        let loaded = ModelCard::read(&card_path).and_then(|card| {
            if adabn::adapted_from(&card) != Some(&self.base_card.weights_sha256) {
                return Ok(None);
            }
            XrayModel::load(&self.out, None, self.device.clone()).map(Some)
        });
        match loaded {
            Ok(Some(mut model)) => {
                self.read_as_configured(&mut model);
                tracing::info!(
                    weights = %self.out.display(),
                    sha256 = short_sha(&model.card.weights_sha256),
                    "reading radiographs with the weights adapted to this site earlier"
                );
                let done = adabn::adapted_images(&model.card);
                slot.replace(model);
                let mut s = self.state();
                if done >= self.last {
                    s.phase = Phase::Finished;
                } else {
                    s.target = self.last;
                }
            }
            Ok(None) => tracing::info!(
                weights = %self.out.display(),
                "the site-adapted weights there were adapted from other weights; adapting the configured ones again after {} radiographs",
                self.first
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "the site-adapted weights cannot be used; adapting again after {} radiographs",
                self.first
            ),
        }
    }

    /// Before reading a study's radiographs: while an adaptation is under way, wait for it
    /// (at most `LONGEST_WAIT`), so that a burst of studies arriving meanwhile is read with
    /// the adapted model, as a trickle would be.
    pub fn wait_while_adapting(&self) {
        let deadline = Instant::now() + LONGEST_WAIT;
        let mut s = self.state();
        while s.phase == Phase::Adapting {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            s = match self.ended.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// One study's radiographs as the model read them. The call that brings the pool to
    /// its target adapts (in the caller's thread: 10-20 seconds on two cores) and then puts the adapted model in `slot`; studies of other workers
    /// wait for it (`wait_while_adapting`).
    pub fn offer(&self, inputs: Vec<Vec<f32>>, slot: &ModelSlot, site: &SiteShift) {
        let pool = {
            let mut s = self.state();
            if s.phase != Phase::Collecting {
                return;
            }
            let room = self.last.saturating_sub(s.pool.len());
            s.pool.extend(inputs.into_iter().take(room));
            if s.pool.len() < s.target {
                return;
            }
            s.phase = Phase::Adapting;
            if s.target == self.last {
                std::mem::take(&mut s.pool)
            } else {
                // Collecting goes on for the final adaptation: it needs these too.
                s.pool[..s.target].to_vec()
            }
        };
        let started = Instant::now();
        let adapted = self.adapt(&pool);
        let mut s = self.state();
        match adapted {
            Ok(model) => {
                tracing::info!(
                    radiographs = pool.len(),
                    seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                    sha256 = short_sha(&model.card.weights_sha256),
                    weights = %self.out.display(),
                    "X-ray model adapted to this site's radiographs (batch-norm statistics measured again, weights as trained); later studies are read with it"
                );
                slot.replace(model);
                // The look is now measured against the adapted model's features.
                site.reset();
                if pool.len() < self.last {
                    s.target = self.last;
                    s.phase = Phase::Collecting;
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                "adapting the X-ray model to this site failed; studies are read with the weights before"
            ),
        }
        if s.phase == Phase::Adapting {
            s.phase = Phase::Finished;
            s.pool = Vec::new();
        }
        drop(s);
        self.ended.notify_all();
    }

    fn adapt(&self, pool: &[Vec<f32>]) -> Result<XrayModel, ModelError> {
        if let Some(dir) = self.out.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ModelError::WeightsFile {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let name = format!("{}-site", self.base_card.name);
        let how = Adaptation {
            name: &name,
            description: "the first radiographs this daemon received",
            seed: 1,
        };
        adabn::adapt_inputs(
            &self.base,
            &self.base_card,
            pool,
            &self.out,
            &how,
            &self.device,
        )?;
        let mut model = XrayModel::load(&self.out, None, self.device.clone())?;
        self.read_as_configured(&mut model);
        Ok(model)
    }

    /// The configured card decides how results are read (its read-out, covariate model
    /// and polarity probe may have been refitted, or turned off, since the adapted card
    /// was written); the adaptation only changed batch-norm statistics.
    fn read_as_configured(&self, model: &mut XrayModel) {
        model.card.readout = self.base_card.readout.clone();
        model.card.covariates = self.base_card.covariates.clone();
        model.card.polarity = self.base_card.polarity.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::polarity::PolarityProbe;

    /// An untrained model saved in `dir` as `name`, its card, and a slot reading with it.
    fn untrained(dir: &Path, name: &str) -> (PathBuf, ModelCard, ModelSlot) {
        let weights = dir.join(format!("{name}.safetensors"));
        let card = XrayModel::create_untrained(&weights).unwrap();
        let model = XrayModel::load(&weights, None, Device::Cpu).unwrap();
        (weights, card, ModelSlot::new(Some(model)))
    }

    #[test]
    fn adapts_at_the_first_target_again_at_the_last_then_never_and_a_restart_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (base, card, slot) = untrained(dir.path(), "base");
        let side = card.input_spec().side;
        let site = SiteShift::default();
        let storage = dir.path().join("var");
        let a = SiteAdaptation::new(&base, card.clone(), &storage, 32, Device::Cpu);
        let image = |k: usize| -> Vec<f32> {
            (0..side * side)
                .map(|i| 0.5 + ((i * 3 + k * 11) % 17) as f32 / 8.0)
                .collect()
        };
        let images_of = |slot: &ModelSlot| adabn::adapted_images(&slot.get().unwrap().card);
        a.offer((0..30).map(image).collect(), &slot, &site);
        assert!(!a.adapted(&slot));
        // A study's worth more reaches 32: the first adaptation, on exactly 32.
        a.offer((30..34).map(image).collect(), &slot, &site);
        assert!(a.adapted(&slot));
        assert_eq!(images_of(&slot), 32);
        let first = slot.get().unwrap().card.weights_sha256.clone();
        // Up to 4 x 32: the final adaptation, from the configured weights again.
        a.offer((34..128).map(image).collect(), &slot, &site);
        assert_eq!(images_of(&slot), 128);
        let last = slot.get().unwrap().card.weights_sha256.clone();
        assert_ne!(first, last);
        assert_eq!(
            adabn::adapted_from(&slot.get().unwrap().card),
            Some(card.weights_sha256.as_str())
        );
        a.offer((128..200).map(image).collect(), &slot, &site);
        assert_eq!(slot.get().unwrap().card.weights_sha256, last);

        // A restart reads with them; other configured weights do not.
        let again = ModelSlot::new(Some(XrayModel::load(&base, None, Device::Cpu).unwrap()));
        SiteAdaptation::new(&base, card.clone(), &storage, 32, Device::Cpu).restore(&again);
        assert_eq!(again.get().unwrap().card.weights_sha256, last);

        // The configured card decides the polarity check after a restart, whatever the
        // adapted card kept: a probe fitted (or refitted) since is used, one turned off
        // (`polarity_check = false`) stays off.
        let probe = PolarityProbe::uniform(0.0, &card.weights_sha256);
        let probed = ModelCard {
            polarity: Some(probe.clone()),
            ..card.clone()
        };
        let restored = |base_card: &ModelCard| {
            let slot = ModelSlot::new(Some(XrayModel::load(&base, None, Device::Cpu).unwrap()));
            SiteAdaptation::new(&base, base_card.clone(), &storage, 32, Device::Cpu).restore(&slot);
            slot.get().unwrap().card.clone()
        };
        assert_eq!(restored(&probed).polarity, Some(probe.clone()));
        let on_disk = storage.join("model/site-adapted.json");
        let kept = ModelCard {
            polarity: Some(probe),
            ..ModelCard::read(&on_disk).unwrap()
        };
        kept.write(&on_disk).unwrap();
        let off = restored(&card);
        assert_eq!(off.weights_sha256, last);
        assert_eq!(off.polarity, None);
        let (other, other_card, fresh) = untrained(dir.path(), "other");
        let b = SiteAdaptation::new(&other, other_card.clone(), &storage, 32, Device::Cpu);
        b.restore(&fresh);
        assert_eq!(
            fresh.get().unwrap().card.weights_sha256,
            other_card.weights_sha256
        );
        assert!(!b.adapted(&fresh));
    }

    #[test]
    fn a_study_read_while_the_model_adapts_waits_for_the_adapted_model() {
        let dir = tempfile::tempdir().unwrap();
        let (base, card, slot) = untrained(dir.path(), "base");
        let side = card.input_spec().side;
        let a = SiteAdaptation::new(&base, card, &dir.path().join("var"), 32, Device::Cpu);
        a.wait_while_adapting(); // nothing under way: returns at once
        let images: Vec<Vec<f32>> = (0..32)
            .map(|k| (0..side * side).map(|i| ((i + k) % 7) as f32).collect())
            .collect();
        std::thread::scope(|scope| {
            scope.spawn(|| a.offer(images, &slot, &SiteShift::default()));
            // Until the adaptation has begun (or, on a fast machine, already ended).
            while a.state().phase == Phase::Collecting && !a.adapted(&slot) {
                std::thread::sleep(Duration::from_millis(1));
            }
            a.wait_while_adapting();
            assert!(a.adapted(&slot));
        });
    }
}
