//! Manual gates: in-memory open/closed flags keyed by `<name>.<namespace>` (and
//! `rollback.<name>.<namespace>`), lost on restart like Flagger's "in-memory" gate storage.

use std::collections::HashSet;
use std::sync::Mutex;

/// Open gates kept at most; only open gates take memory, since an unknown key reads as closed.
pub const MAX_OPEN_GATES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[error("too many open gates (limit {MAX_OPEN_GATES}); close some first")]
pub struct TooManyGates;

#[derive(Debug, Default)]
pub struct Gates {
    open: Mutex<HashSet<String>>,
}

impl Gates {
    pub fn is_open(&self, key: &str) -> bool {
        self.lock().contains(key)
    }

    pub fn open(&self, key: &str) -> Result<(), TooManyGates> {
        let mut open = self.lock();
        if open.len() >= MAX_OPEN_GATES && !open.contains(key) {
            return Err(TooManyGates);
        }
        open.insert(key.to_owned());
        Ok(())
    }

    pub fn close(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set half-updated, so poison is harmless.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn rollback_key(canary: &str) -> String {
    format!("rollback.{canary}")
}
