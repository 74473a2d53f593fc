//! Which studies an open association is still contributing to. Ingest enters and leaves
//! studies as associations deliver them; the assembler holds those studies back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Studies that an open association is contributing to (counted per association).
#[derive(Clone, Default)]
pub struct ActiveStudies {
    inner: Arc<Mutex<HashMap<String, usize>>>,
}

impl ActiveStudies {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An association started contributing to `study_uid`.
    pub fn enter(&self, study_uid: &str) {
        *self.map().entry(study_uid.to_string()).or_insert(0) += 1;
    }

    /// An association that entered `study_uid` has closed.
    pub fn leave(&self, study_uid: &str) {
        let mut map = self.map();
        if let Some(n) = map.get_mut(study_uid) {
            *n -= 1;
            if *n == 0 {
                map.remove(study_uid);
            }
        }
    }

    pub fn is_active(&self, study_uid: &str) -> bool {
        self.map().contains_key(study_uid)
    }
}

/// The studies one association has entered; dropping it (the association ended, or its
/// task panicked) leaves them all, so a study is never held back forever.
pub struct Entered {
    active: ActiveStudies,
    studies: std::collections::HashSet<String>,
}

impl Entered {
    pub fn new(active: &ActiveStudies) -> Entered {
        Entered {
            active: active.clone(),
            studies: Default::default(),
        }
    }

    /// This association contributes to `study_uid` (entered once however many instances).
    pub fn enter(&mut self, study_uid: &str) {
        if self.studies.insert(study_uid.to_string()) {
            self.active.enter(study_uid);
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        for study in &self.studies {
            self.active.leave(study);
        }
    }
}
