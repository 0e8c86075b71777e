//! The gate state machine of one stage (SPEC §3), pure: the caller passes `now`.
//!
//! Per region, gates start when that region's deploy succeeded ([`StageWatch::region_ready`]).
//! Each gate is probed every `interval` after `delay`. A failed probe adds to the gate's
//! consecutive-failure count, a pass resets it; at `failures` the gate trips and its region
//! fails. A region is healthy when every gate passed at least once and `bake` has elapsed since
//! its deploy finished with no trip. A gate whose templates have no `{region}` is probed once
//! per stage and its result shared by every ready region.
//!
//! Choices where SPEC §3 is silent:
//! - **Shared gates.** One probe serves the stage, but each region keeps its own view of the
//!   gate (passed once, consecutive failures, last detail) and applies a shared result as if it
//!   had probed itself, counting only probes that *started* after it became ready. So a region
//!   deployed later is not declared healthy on a pass seen before its own deploy, and its
//!   failure count starts at zero. When a region becomes ready, the shared probe is brought
//!   forward to that region's `ready + delay` (it never waits a whole interval for it).
//! - **Healthy needs the last probe of every gate to have passed**, not just one pass ever: a
//!   P1 gate in the middle of a failure streak when bake ends holds the region in `Watching`
//!   until it passes again (healthy) or trips.
//! - **Bake counts from the region's ready time** (SPEC §3: "since its deploy finished").
//! - Gates keep being probed after a region is healthy, until the caller stops watching: a
//!   trip then still turns the region `Tripped`. After a trip, that region's gates are no
//!   longer due (a shared gate stays due while any ready region is untripped).

use std::collections::BTreeMap;
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
    /// `pass`, `fail`, `tripped` or `inconclusive`.
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

/// When one probe key runs.
#[derive(Debug, Default)]
struct Slot {
    /// `None` until a region that needs it is ready.
    next_due: Option<Instant>,
    /// When the probe in flight was handed out by [`StageWatch::due`].
    in_flight: Option<Instant>,
    /// A region became ready while the shared probe was in flight: probe again from here.
    rerun_at: Option<Instant>,
}

/// One gate as one region sees it.
#[derive(Debug, Default)]
struct GateView {
    passed_once: bool,
    consecutive_failures: u32,
    last: Option<ProbeResult>,
    /// When the current run of inconclusive results began (a judge gate short of data).
    inconclusive_since: Option<Instant>,
}

#[derive(Debug)]
struct RegionState {
    ready_at: Instant,
    /// How long after `ready_at` it bakes (a step of a stepped stage pauses for its own time).
    bake: Duration,
    /// Parallel to `StageWatch::gates`.
    views: Vec<GateView>,
    /// The gate that tripped and its detail.
    tripped: Option<(String, String)>,
}

pub struct StageWatch {
    gates: Vec<Gate>,
    bake: Duration,
    /// The stage's regions, in order (events come out in this order).
    regions: Vec<String>,
    slots: BTreeMap<ProbeKey, Slot>,
    states: BTreeMap<String, RegionState>,
}

impl StageWatch {
    /// A watch over `regions` with these gates and bake time.
    pub fn new(gates: Vec<Gate>, bake: Duration, regions: Vec<String>) -> Self {
        StageWatch {
            gates,
            bake,
            regions,
            slots: BTreeMap::new(),
            states: BTreeMap::new(),
        }
    }

    /// The gate a [`ProbeKey`] names, to probe it.
    pub fn gate(&self, name: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.name == name)
    }

    /// When `region`'s deploy finished (its gates' start), once it is ready.
    pub fn ready_at(&self, region: &str) -> Option<Instant> {
        self.states.get(region).map(|s| s.ready_at)
    }

    /// The key that probes `gate` for `region`: shared gates have one key for the stage.
    pub fn key_for(gate: &Gate, region: &str) -> ProbeKey {
        ProbeKey {
            gate: gate.name.clone(),
            region: gate.uses_region().then(|| region.to_string()),
        }
    }

    /// The region's deploy finished at `at`: its gates start (after each gate's `delay`).
    /// Calling it again for a ready region changes nothing.
    pub fn region_ready(&mut self, region: &str, at: Instant) {
        self.region_ready_for(region, at, self.bake);
    }

    /// Like [`StageWatch::region_ready`], baking for `bake` instead of the stage's (a step of a
    /// stepped stage watches for its `step_pause`).
    pub fn region_ready_for(&mut self, region: &str, at: Instant, bake: Duration) {
        if self.states.contains_key(region) {
            return;
        }
        if !self.regions.iter().any(|r| r == region) {
            self.regions.push(region.to_string());
        }
        self.states.insert(
            region.to_string(),
            RegionState {
                ready_at: at,
                bake,
                views: self.gates.iter().map(|_| GateView::default()).collect(),
                tripped: None,
            },
        );
        for gate in &self.gates {
            let start = at + gate.delay;
            let slot = self.slots.entry(Self::key_for(gate, region)).or_default();
            if slot.in_flight.is_some() {
                slot.rerun_at = Some(slot.rerun_at.map_or(start, |r| r.min(start)));
            } else {
                slot.next_due = Some(slot.next_due.map_or(start, |d| d.min(start)));
            }
        }
    }

    /// The region moves on to its next step: it is not ready until that step's change is made,
    /// and then starts over (every gate must pass again; failure counts start at zero). A
    /// probe in flight now says nothing about the next step (it started before it).
    pub fn restart(&mut self, region: &str) {
        self.states.remove(region);
    }

    /// Whether a key still has a region to serve: its ready, untripped region, or for a shared
    /// gate any ready, untripped region.
    fn active(&self, key: &ProbeKey) -> bool {
        match &key.region {
            Some(r) => self.states.get(r).is_some_and(|s| s.tripped.is_none()),
            None => self.states.values().any(|s| s.tripped.is_none()),
        }
    }

    /// Probes due at `now` (each key at most once; a probe in flight is not due again until
    /// its result is recorded).
    pub fn due(&mut self, now: Instant) -> Vec<ProbeKey> {
        let due: Vec<ProbeKey> = self
            .slots
            .iter()
            .filter(|(key, slot)| {
                slot.in_flight.is_none()
                    && slot.next_due.is_some_and(|d| d <= now)
                    && self.active(key)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.in_flight = Some(now);
            }
        }
        due
    }

    /// When the next probe falls due, or a region's bake ends (for the caller's sleep).
    /// A time at or before `now` means "now". `None`: nothing will happen without a new
    /// `region_ready` or `record`.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let probes = self
            .slots
            .iter()
            .filter(|(key, slot)| slot.in_flight.is_none() && self.active(key))
            .filter_map(|(_, slot)| slot.next_due);
        let bakes = self
            .states
            .values()
            .filter(|s| s.tripped.is_none())
            .map(|s| s.ready_at + s.bake)
            .filter(|end| *end > now);
        probes.chain(bakes).min()
    }

    /// Records a probe result; returns the state changes to record, in region order.
    pub fn record(&mut self, key: &ProbeKey, result: &ProbeResult, now: Instant) -> Vec<GateEvent> {
        let Some(index) = self.gates.iter().position(|g| g.name == key.gate) else {
            return Vec::new();
        };
        let gate = &self.gates[index];
        let slot = self.slots.entry(key.clone()).or_default();
        let started = slot.in_flight.take().unwrap_or(now);
        let mut next = now + gate.interval;
        if let Some(rerun) = slot.rerun_at.take() {
            next = next.min(rerun.max(now));
        }
        slot.next_due = Some(next);

        let targets: Vec<String> = match &key.region {
            Some(r) => vec![r.clone()],
            None => self.regions.clone(),
        };
        let mut events = Vec::new();
        for region in targets {
            let Some(state) = self.states.get_mut(&region) else {
                continue;
            };
            // A shared probe that started before this region was ready says nothing about it.
            if state.tripped.is_some() || state.ready_at > started {
                continue;
            }
            let view = &mut state.views[index];
            let change = apply(view, gate, result, now);
            if let Some((kind, count)) = change {
                if kind == "tripped" {
                    state.tripped = Some((gate.name.clone(), result.detail.clone()));
                }
                events.push(GateEvent {
                    region,
                    gate: gate.name.clone(),
                    severity: gate.severity,
                    result: kind,
                    detail: result.detail.clone(),
                    consecutive_failures: count,
                });
            }
        }
        events
    }

    pub fn verdict(&self, region: &str, now: Instant) -> RegionVerdict {
        let Some(state) = self.states.get(region) else {
            return RegionVerdict::NotReady;
        };
        if let Some((gate, detail)) = &state.tripped {
            return RegionVerdict::Tripped {
                gate: gate.clone(),
                detail: detail.clone(),
            };
        }
        let passed = state.views.iter().filter(|v| v.passed_once).count();
        let failing: Vec<(String, u32, u32)> = self
            .gates
            .iter()
            .zip(&state.views)
            .filter(|(_, v)| v.consecutive_failures > 0)
            .map(|(g, v)| (g.name.clone(), v.consecutive_failures, g.trip_after()))
            .collect();
        let baking = now < state.ready_at + state.bake;
        if passed == self.gates.len() && failing.is_empty() && !baking {
            RegionVerdict::Healthy
        } else {
            RegionVerdict::Watching {
                passed,
                total: self.gates.len(),
                failing,
                baking,
            }
        }
    }

    /// Whether `region` tripped on a gate whose tripping probe was a configuration failure
    /// ([`ProbeResult::config_fault`]): the gate is broken, the region was not judged.
    pub fn tripped_broken(&self, region: &str) -> bool {
        let Some(state) = self.states.get(region) else {
            return false;
        };
        let Some((gate, _)) = &state.tripped else {
            return false;
        };
        self.gates
            .iter()
            .zip(&state.views)
            .any(|(g, v)| &g.name == gate && v.last.as_ref().is_some_and(|r| r.config_fault))
    }

    /// Why `region` is not healthy yet, one entry per gate, for a stage-timeout message:
    /// `gate api: last probe HTTP 503 in 41 ms`, or for a gate whose results have been
    /// inconclusive since some time, `gate errors: judge inconclusive for 10m: 12 canary
    /// requests < min_samples 50 …`. Empty while the region is not ready.
    pub fn waiting_reasons(&self, region: &str, now: Instant) -> Vec<String> {
        let Some(state) = self.states.get(region) else {
            return Vec::new();
        };
        self.gates
            .iter()
            .zip(&state.views)
            .map(|(g, view)| match (&view.last, view.inconclusive_since) {
                (Some(r), Some(since)) if r.inconclusive => {
                    let secs = now.saturating_duration_since(since).as_secs();
                    format!(
                        "gate {}: judge inconclusive for {}: {}",
                        g.name,
                        humantime::format_duration(Duration::from_secs(secs)),
                        r.detail
                    )
                }
                (Some(r), _) => format!("gate {}: last probe {}", g.name, r.detail),
                (None, _) => format!("gate {}: last probe none yet", g.name),
            })
            .collect()
    }
}

/// Applies one result to a region's view of a gate; returns the change to record, if any:
/// the first pass, a recovery, every failure (its count changes), the trip, and the start of
/// a run of inconclusive results (which are neither a pass nor a failure: the counts stay).
fn apply(
    view: &mut GateView,
    gate: &Gate,
    result: &ProbeResult,
    now: Instant,
) -> Option<(&'static str, u32)> {
    view.last = Some(result.clone());
    if result.inconclusive {
        let started = view.inconclusive_since.is_none();
        view.inconclusive_since.get_or_insert(now);
        return started.then_some(("inconclusive", view.consecutive_failures));
    }
    view.inconclusive_since = None;
    if result.pass {
        let changed = !view.passed_once || view.consecutive_failures > 0;
        view.passed_once = true;
        view.consecutive_failures = 0;
        changed.then_some(("pass", 0))
    } else {
        view.consecutive_failures += 1;
        let count = view.consecutive_failures;
        if count >= gate.trip_after() {
            Some(("tripped", count))
        } else {
            Some(("fail", count))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GateKind, HttpGate};

    const S: Duration = Duration::from_secs(1);

    /// A gate probing every 10 s; `per_region` puts `{region}` in its URL.
    fn gate(name: &str, severity: Severity, per_region: bool) -> Gate {
        let url = if per_region {
            "http://{region}.example/health"
        } else {
            "http://example/health"
        };
        Gate {
            name: name.into(),
            kind: GateKind::Http(HttpGate {
                url: url.into(),
                method: "GET".into(),
                headers: Default::default(),
                expect_status: vec![],
                body_contains: None,
                max_latency: None,
            }),
            interval: 10 * S,
            timeout: 5 * S,
            delay: Duration::ZERO,
            severity,
            failures: if severity == Severity::P0 { 1 } else { 3 },
        }
    }

    fn key(gate: &str, region: Option<&str>) -> ProbeKey {
        ProbeKey {
            gate: gate.into(),
            region: region.map(str::to_string),
        }
    }

    fn ok() -> ProbeResult {
        ProbeResult::pass("HTTP 200 in 5 ms")
    }

    fn down() -> ProbeResult {
        ProbeResult::fail("HTTP 503 in 41 ms")
    }

    fn watch(gates: Vec<Gate>, bake: Duration, regions: &[&str]) -> StageWatch {
        StageWatch::new(gates, bake, regions.iter().map(|r| r.to_string()).collect())
    }

    /// Hands out `key` at `now` and records `result`.
    fn probe(
        w: &mut StageWatch,
        k: &ProbeKey,
        result: ProbeResult,
        now: Instant,
    ) -> Vec<GateEvent> {
        assert!(w.due(now).contains(k), "{k:?} not due");
        w.record(k, &result, now)
    }

    fn kinds(events: &[GateEvent]) -> Vec<(&str, &str, u32)> {
        events
            .iter()
            .map(|e| (e.region.as_str(), e.result, e.consecutive_failures))
            .collect()
    }

    #[test]
    fn p0_trips_on_one_failure() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("api", Severity::P0, true)],
            Duration::ZERO,
            &["lhr"],
        );
        w.region_ready("lhr", t0);
        let k = key("api", Some("lhr"));
        let ev = probe(&mut w, &k, down(), t0);
        assert_eq!(kinds(&ev), vec![("lhr", "tripped", 1)]);
        assert_eq!(ev[0].detail, "HTTP 503 in 41 ms");
        assert_eq!(ev[0].severity, Severity::P0);
        assert_eq!(
            w.verdict("lhr", t0),
            RegionVerdict::Tripped {
                gate: "api".into(),
                detail: "HTTP 503 in 41 ms".into()
            }
        );
        // A tripped region's gates are no longer due.
        assert!(w.due(t0 + 100 * S).is_empty());
        assert_eq!(w.next_wake(t0), None);
    }

    #[test]
    fn p1_failures_reset_on_pass_and_trip_on_three_in_a_row() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("errors", Severity::P1, true)],
            Duration::ZERO,
            &["lhr"],
        );
        w.region_ready("lhr", t0);
        let k = key("errors", Some("lhr"));
        let mut at = t0;
        fn step(
            w: &mut StageWatch,
            k: &ProbeKey,
            at: &mut Instant,
            r: ProbeResult,
        ) -> Vec<(&'static str, u32)> {
            let ev = probe(w, k, r, *at);
            *at += 10 * S;
            ev.iter()
                .map(|e| (e.result, e.consecutive_failures))
                .collect()
        }
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 1)]);
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 2)]);
        assert!(
            matches!(w.verdict("lhr", at), RegionVerdict::Watching { ref failing, .. } if failing == &vec![("errors".to_string(), 2, 3)])
        );
        // A pass resets the count: recovery is recorded, and it is the first pass too.
        assert_eq!(step(&mut w, &k, &mut at, ok()), vec![("pass", 0)]);
        assert_eq!(w.verdict("lhr", at), RegionVerdict::Healthy);
        // Repeated passes are not state changes.
        assert_eq!(step(&mut w, &k, &mut at, ok()), Vec::<(&str, u32)>::new());
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 1)]);
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 2)]);
        assert_eq!(step(&mut w, &k, &mut at, ok()), vec![("pass", 0)]);
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 1)]);
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("fail", 2)]);
        assert_eq!(step(&mut w, &k, &mut at, down()), vec![("tripped", 3)]);
        assert!(
            matches!(w.verdict("lhr", at), RegionVerdict::Tripped { ref gate, .. } if gate == "errors")
        );
    }

    #[test]
    fn healthy_only_after_bake() {
        let t0 = Instant::now();
        let mut w = watch(vec![gate("api", Severity::P0, true)], 60 * S, &["lhr"]);
        w.region_ready("lhr", t0);
        let k = key("api", Some("lhr"));
        assert_eq!(
            kinds(&probe(&mut w, &k, ok(), t0)),
            vec![("lhr", "pass", 0)]
        );
        assert_eq!(
            w.verdict("lhr", t0 + 59 * S),
            RegionVerdict::Watching {
                passed: 1,
                total: 1,
                failing: vec![],
                baking: true
            }
        );
        assert_eq!(w.verdict("lhr", t0 + 60 * S), RegionVerdict::Healthy);
    }

    #[test]
    fn a_trip_during_bake_fails_the_region() {
        let t0 = Instant::now();
        let mut w = watch(vec![gate("api", Severity::P0, true)], 60 * S, &["lhr"]);
        w.region_ready("lhr", t0);
        let k = key("api", Some("lhr"));
        probe(&mut w, &k, ok(), t0);
        let ev = probe(&mut w, &k, down(), t0 + 10 * S);
        assert_eq!(kinds(&ev), vec![("lhr", "tripped", 1)]);
        assert!(matches!(
            w.verdict("lhr", t0 + 61 * S),
            RegionVerdict::Tripped { .. }
        ));
    }

    #[test]
    fn delay_postpones_the_first_probe() {
        let t0 = Instant::now();
        let mut g = gate("api", Severity::P0, true);
        g.delay = 30 * S;
        let mut w = watch(vec![g], Duration::ZERO, &["lhr"]);
        assert!(
            w.due(t0).is_empty(),
            "nothing is due before a region is ready"
        );
        assert_eq!(w.next_wake(t0), None);
        w.region_ready("lhr", t0);
        assert!(w.due(t0 + 29 * S).is_empty());
        assert_eq!(w.next_wake(t0), Some(t0 + 30 * S));
        assert_eq!(w.due(t0 + 30 * S), vec![key("api", Some("lhr"))]);
    }

    #[test]
    fn probes_repeat_every_interval_after_the_result() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("api", Severity::P1, true)],
            Duration::ZERO,
            &["lhr"],
        );
        w.region_ready("lhr", t0);
        let k = key("api", Some("lhr"));
        assert_eq!(w.due(t0), vec![k.clone()]);
        // The probe took 2 s; the next one is an interval after its result.
        w.record(&k, &ok(), t0 + 2 * S);
        assert_eq!(w.next_wake(t0 + 2 * S), Some(t0 + 12 * S));
        assert!(w.due(t0 + 11 * S).is_empty());
        assert_eq!(w.due(t0 + 12 * S), vec![k]);
    }

    #[test]
    fn a_probe_in_flight_is_not_due_again() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("api", Severity::P1, true)],
            Duration::ZERO,
            &["lhr"],
        );
        w.region_ready("lhr", t0);
        let k = key("api", Some("lhr"));
        assert_eq!(w.due(t0), vec![k.clone()]);
        assert!(w.due(t0).is_empty());
        assert!(
            w.due(t0 + 100 * S).is_empty(),
            "a slow probe is never handed out twice"
        );
        assert_eq!(w.next_wake(t0 + 100 * S), None);
        w.record(&k, &ok(), t0 + 100 * S);
        assert_eq!(w.due(t0 + 110 * S), vec![k]);
    }

    #[test]
    fn regions_start_independently() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("api", Severity::P0, true)],
            Duration::ZERO,
            &["lhr", "nrt"],
        );
        w.region_ready("lhr", t0);
        assert_eq!(w.due(t0), vec![key("api", Some("lhr"))]);
        assert_eq!(w.verdict("nrt", t0), RegionVerdict::NotReady);
        w.region_ready("nrt", t0 + 5 * S);
        assert_eq!(w.due(t0 + 5 * S), vec![key("api", Some("nrt"))]);
        // A trip in one region leaves the other alone.
        w.record(&key("api", Some("lhr")), &down(), t0 + 5 * S);
        w.record(&key("api", Some("nrt")), &ok(), t0 + 6 * S);
        assert!(matches!(
            w.verdict("lhr", t0 + 6 * S),
            RegionVerdict::Tripped { .. }
        ));
        assert_eq!(w.verdict("nrt", t0 + 6 * S), RegionVerdict::Healthy);
        assert_eq!(w.due(t0 + 16 * S), vec![key("api", Some("nrt"))]);
    }

    #[test]
    fn shared_gate_is_probed_once_for_every_ready_region() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![
                gate("dns", Severity::P0, false),
                gate("api", Severity::P0, true),
            ],
            Duration::ZERO,
            &["lhr", "nrt"],
        );
        w.region_ready("lhr", t0);
        w.region_ready("nrt", t0);
        let due = w.due(t0);
        assert_eq!(
            due,
            vec![
                key("api", Some("lhr")),
                key("api", Some("nrt")),
                key("dns", None)
            ]
        );
        let ev = w.record(&key("dns", None), &ok(), t0);
        assert_eq!(kinds(&ev), vec![("lhr", "pass", 0), ("nrt", "pass", 0)]);
        w.record(&key("api", Some("lhr")), &ok(), t0);
        w.record(&key("api", Some("nrt")), &ok(), t0);
        assert_eq!(w.verdict("lhr", t0), RegionVerdict::Healthy);
        assert_eq!(w.verdict("nrt", t0), RegionVerdict::Healthy);
        // A shared trip trips every ready region.
        assert!(w.due(t0 + 10 * S).contains(&key("dns", None)));
        let ev = w.record(&key("dns", None), &down(), t0 + 10 * S);
        assert_eq!(
            kinds(&ev),
            vec![("lhr", "tripped", 1), ("nrt", "tripped", 1)]
        );
        assert!(
            matches!(w.verdict("nrt", t0 + 10 * S), RegionVerdict::Tripped { ref gate, .. } if gate == "dns")
        );
        assert!(w.due(t0 + 100 * S).is_empty());
    }

    #[test]
    fn a_region_ready_later_needs_its_own_pass_of_a_shared_gate() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("dns", Severity::P1, false)],
            Duration::ZERO,
            &["lhr", "nrt"],
        );
        w.region_ready("lhr", t0);
        let k = key("dns", None);
        assert_eq!(
            kinds(&probe(&mut w, &k, ok(), t0)),
            vec![("lhr", "pass", 0)]
        );
        // nrt is ready 3 s later: the shared probe is brought forward instead of waiting 10 s.
        w.region_ready("nrt", t0 + 3 * S);
        assert_eq!(
            w.verdict("nrt", t0 + 3 * S),
            RegionVerdict::Watching {
                passed: 0,
                total: 1,
                failing: vec![],
                baking: false
            }
        );
        assert_eq!(w.next_wake(t0 + 3 * S), Some(t0 + 3 * S));
        let ev = probe(&mut w, &k, ok(), t0 + 3 * S);
        // Only nrt's state changed; lhr's repeated pass is not an event.
        assert_eq!(kinds(&ev), vec![("nrt", "pass", 0)]);
        assert_eq!(w.verdict("nrt", t0 + 3 * S), RegionVerdict::Healthy);
        assert_eq!(w.due(t0 + 13 * S), vec![k]);
    }

    #[test]
    fn a_shared_probe_started_before_a_region_was_ready_does_not_count_for_it() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("dns", Severity::P1, false)],
            Duration::ZERO,
            &["lhr", "nrt"],
        );
        w.region_ready("lhr", t0);
        let k = key("dns", None);
        assert_eq!(w.due(t0), vec![k.clone()]);
        w.region_ready("nrt", t0 + 1 * S);
        let ev = w.record(&k, &ok(), t0 + 2 * S);
        assert_eq!(kinds(&ev), vec![("lhr", "pass", 0)]);
        assert_eq!(
            w.verdict("nrt", t0 + 2 * S),
            RegionVerdict::Watching {
                passed: 0,
                total: 1,
                failing: vec![],
                baking: false
            }
        );
        // Probed again at once for nrt, not after a whole interval.
        assert_eq!(w.due(t0 + 2 * S), vec![k.clone()]);
        let ev = w.record(&k, &ok(), t0 + 2 * S);
        assert_eq!(kinds(&ev), vec![("nrt", "pass", 0)]);
    }

    #[test]
    fn a_stage_without_gates_is_healthy_after_bake() {
        let t0 = Instant::now();
        let mut w = watch(vec![], 30 * S, &["lhr"]);
        assert_eq!(w.verdict("lhr", t0), RegionVerdict::NotReady);
        w.region_ready("lhr", t0);
        assert!(w.due(t0).is_empty());
        assert_eq!(w.next_wake(t0), Some(t0 + 30 * S));
        assert!(matches!(
            w.verdict("lhr", t0 + 29 * S),
            RegionVerdict::Watching { baking: true, .. }
        ));
        assert_eq!(w.verdict("lhr", t0 + 30 * S), RegionVerdict::Healthy);
        assert_eq!(w.next_wake(t0 + 30 * S), None);
    }

    #[test]
    fn a_failing_p1_gate_holds_the_region_after_bake() {
        let t0 = Instant::now();
        let mut w = watch(vec![gate("errors", Severity::P1, true)], 10 * S, &["lhr"]);
        w.region_ready("lhr", t0);
        let k = key("errors", Some("lhr"));
        probe(&mut w, &k, ok(), t0);
        probe(&mut w, &k, down(), t0 + 10 * S);
        assert!(matches!(
            w.verdict("lhr", t0 + 11 * S),
            RegionVerdict::Watching { baking: false, .. }
        ));
        probe(&mut w, &k, ok(), t0 + 20 * S);
        assert_eq!(w.verdict("lhr", t0 + 20 * S), RegionVerdict::Healthy);
    }

    #[test]
    fn next_wake_is_the_earlier_of_probe_and_bake_end() {
        let t0 = Instant::now();
        let mut w = watch(vec![gate("api", Severity::P0, true)], 5 * S, &["lhr"]);
        w.region_ready("lhr", t0);
        probe(&mut w, &key("api", Some("lhr")), ok(), t0);
        assert_eq!(w.next_wake(t0), Some(t0 + 5 * S));
        assert_eq!(w.next_wake(t0 + 5 * S), Some(t0 + 10 * S));
    }

    #[test]
    fn waiting_reasons_explain_a_stage_timeout() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![
                gate("api", Severity::P1, true),
                gate("dns", Severity::P0, false),
            ],
            Duration::ZERO,
            &["lhr", "nrt"],
        );
        w.region_ready("lhr", t0);
        w.due(t0);
        w.record(&key("api", Some("lhr")), &down(), t0);
        assert_eq!(
            w.waiting_reasons("lhr", t0),
            vec![
                "gate api: last probe HTTP 503 in 41 ms".to_string(),
                "gate dns: last probe none yet".to_string()
            ]
        );
        assert!(
            w.waiting_reasons("nrt", t0).is_empty(),
            "nrt is still deploying"
        );
    }

    #[test]
    fn inconclusive_results_are_neither_a_pass_nor_a_failure() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("errors", Severity::P0, true)],
            Duration::ZERO,
            &["lhr"],
        );
        w.region_ready("lhr", t0);
        let k = key("errors", Some("lhr"));
        let short = ProbeResult::inconclusive("12 canary requests < min_samples 50");
        // The first of a run is recorded once; a P0 gate does not trip on it.
        let ev = probe(&mut w, &k, short.clone(), t0);
        assert_eq!(kinds(&ev), vec![("lhr", "inconclusive", 0)]);
        assert!(probe(&mut w, &k, short.clone(), t0 + 10 * S).is_empty());
        assert!(matches!(
            w.verdict("lhr", t0 + 10 * S),
            RegionVerdict::Watching { passed: 0, ref failing, .. } if failing.is_empty()
        ));
        assert_eq!(
            w.waiting_reasons("lhr", t0 + 600 * S),
            vec!["gate errors: judge inconclusive for 10m: 12 canary requests < min_samples 50"]
        );
        // Data arrives: a pass makes the region healthy.
        let ev = probe(&mut w, &k, ok(), t0 + 20 * S);
        assert_eq!(kinds(&ev), vec![("lhr", "pass", 0)]);
        assert_eq!(w.verdict("lhr", t0 + 20 * S), RegionVerdict::Healthy);
        // A new run of inconclusive results is recorded again, and counts from its start.
        let ev = probe(&mut w, &k, short, t0 + 30 * S);
        assert_eq!(kinds(&ev), vec![("lhr", "inconclusive", 0)]);
    }

    #[test]
    fn unknown_keys_and_regions_are_harmless() {
        let t0 = Instant::now();
        let mut w = watch(
            vec![gate("api", Severity::P0, true)],
            Duration::ZERO,
            &["lhr"],
        );
        assert!(w.record(&key("nope", Some("lhr")), &down(), t0).is_empty());
        assert!(w.record(&key("api", Some("zzz")), &down(), t0).is_empty());
        assert_eq!(w.verdict("zzz", t0), RegionVerdict::NotReady);
        w.region_ready("lhr", t0);
        w.region_ready("lhr", t0 + 50 * S);
        assert_eq!(
            w.due(t0),
            vec![key("api", Some("lhr"))],
            "ready twice changes nothing"
        );
    }
}
