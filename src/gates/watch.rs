//! The gate state machine of one stage (SPEC §3), pure: the caller passes `now`.
//!
//! Per region, gates start when that region's deploy succeeded ([`StageWatch::region_ready`]).
//! Each gate is probed every `interval` after `delay`. A failed probe adds to the gate's
//! consecutive-failure count, a pass resets it; at `failures` the gate trips and its region
//! fails. A region is healthy when every gate passed at least once and `bake` has elapsed since
//! its deploy finished with no trip. A gate whose templates have no `{region}` is probed once
//! per stage and its result shared by every ready region.

use std::time::{Duration, Instant};

use super::ProbeResult;
use crate::config::{Gate, Severity};

/// Which probe to run: a gate, for one region or (shared gates) for the whole stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub gate: String,
    /// `None` for a shared gate (no `{region}` in its templates).
    pub region: Option<String>,
}

/// A change of a gate's state in a region, to record (a `gate` history record).
#[derive(Debug, Clone, PartialEq)]
pub struct GateEvent {
    pub region: String,
    pub gate: String,
    pub severity: Severity,
    /// `pass`, `fail` or `tripped`.
    pub result: &'static str,
    pub detail: String,
    pub consecutive_failures: u32,
}

/// Where a region stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RegionVerdict {
    /// Not yet deployed (gates not started).
    NotReady,
    /// Gates running. `passed` of `total` gates have passed at least once; `failing` lists gates
    /// with consecutive failures as (gate, count, trip_after).
    Watching {
        passed: usize,
        total: usize,
        failing: Vec<(String, u32, u32)>,
        baking: bool,
    },
    Healthy,
    /// A gate tripped: its name and the last probe's detail.
    Tripped {
        gate: String,
        detail: String,
    },
}

pub struct StageWatch {
    gates: Vec<Gate>,
    bake: Duration,
    regions: Vec<String>,
}

impl StageWatch {
    /// A watch over `regions` with these gates and bake time.
    pub fn new(gates: Vec<Gate>, bake: Duration, regions: Vec<String>) -> Self {
        StageWatch {
            gates,
            bake,
            regions,
        }
    }

    /// The region's deploy finished at `at`: its gates start (after each gate's `delay`).
    pub fn region_ready(&mut self, region: &str, at: Instant) {
        let _ = (region, at);
    }

    /// Probes due at `now` (each key at most once; a probe in flight is not due again until
    /// its result is recorded).
    pub fn due(&mut self, now: Instant) -> Vec<ProbeKey> {
        let _ = now;
        Vec::new()
    }

    /// When the next probe falls due, or a region's bake ends (for the caller's sleep).
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }

    /// Records a probe result; returns the state changes to record.
    pub fn record(&mut self, key: &ProbeKey, result: &ProbeResult, now: Instant) -> Vec<GateEvent> {
        let _ = (key, result, now);
        Vec::new()
    }

    pub fn verdict(&self, region: &str, now: Instant) -> RegionVerdict {
        let _ = (region, now, &self.gates, self.bake, &self.regions);
        RegionVerdict::NotReady
    }

    /// The last probe detail of each gate of `region`, for a stage-timeout message.
    pub fn last_details(&self, region: &str) -> Vec<(String, String)> {
        let _ = region;
        Vec::new()
    }
}
