//! Where each region a run changed stands right now, shared with the signal handler: the
//! `cancelling` record (first signal) and the `cancelled` record (second signal) are written from
//! it at once, while the engine's threads are still busy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::ledger::records::{DeployRegion, Position};

#[derive(Debug, Default)]
pub struct Progress {
    regions: Mutex<BTreeMap<String, DeployRegion>>,
    /// The deploy's final record is written (by the engine, or by the second signal's hook).
    finished: AtomicBool,
    /// The second signal's hook could not write the final record: why.
    final_lost: Mutex<Option<String>>,
}

impl Progress {
    fn regions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeployRegion>> {
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A region's deploy command is about to start: it may run the new version from now on,
    /// and goes back to `target`.
    pub fn changed(&self, region: &str, target: Option<&str>) {
        self.regions().insert(
            region.to_string(),
            DeployRegion {
                position: Position::Changed,
                target: target.map(str::to_string),
            },
        );
    }

    /// A region's deploy command never started: it was not changed after all.
    pub fn unchanged(&self, region: &str) {
        self.regions().remove(region);
    }

    /// Moves a region this run changed (no-op for a region it did not change).
    pub fn set(&self, region: &str, position: Position) {
        if let Some(r) = self.regions().get_mut(region) {
            r.position = position;
        }
    }

    /// Every changed region, where it stands, and its target.
    pub fn snapshot(&self) -> BTreeMap<String, DeployRegion> {
        self.regions().clone()
    }

    /// Claims the writing of the deploy's final record: true for the first caller only, so the
    /// engine and the second signal's hook never both write one.
    pub fn claim_final(&self) -> bool {
        !self.finished.swap(true, Ordering::SeqCst)
    }

    /// The final record claimed by the second signal's hook could not be written.
    pub fn set_final_lost(&self, why: String) {
        *self.final_lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub fn final_lost(&self) -> Option<String> {
        self.final_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_regions_move_and_the_final_record_is_claimed_once() {
        let p = Progress::default();
        p.changed("lhr", Some("v1"));
        p.set("nrt", Position::Back);
        p.set("lhr", Position::Unknown);
        let snap = p.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap["lhr"].position, Position::Unknown);
        assert_eq!(snap["lhr"].target.as_deref(), Some("v1"));
        assert!(p.claim_final());
        assert!(!p.claim_final());
    }
}
