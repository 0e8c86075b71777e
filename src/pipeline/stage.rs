//! One stage (SPEC §3): regions deploy in parallel up to `max_parallel` (fly: one call per
//! batch), each region's gates start when its deploy finishes, verdicts follow the pure gate
//! state machine of [`crate::gates::StageWatch`], and the stage `timeout` bounds all of it. The
//! same loop verifies a rollback (no deploys, no bake).
//!
//! The loop is [`StageRun`]; each turn runs its named steps: follow the signal, start deploys,
//! start due probes, apply verdicts, expire the stage, then wait for the next message.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::thread::Scope;
use std::time::{Duration, Instant};

use crate::config::{Gate, OnFailure, Stage};
use crate::error::Error;
use crate::exec::Cancel;
use crate::gates::{self, GateEvent, ProbeCtx, ProbeKey, ProbeResult, RegionVerdict, StageWatch};
use crate::ledger::records::*;
use crate::report::result::{RegionResult, StageResult};
use crate::report::Phase;

use super::actor::now_rfc3339;
use super::engine::{first_line, secs, Engine};

/// How one region ended a stage (or a verification).
#[derive(Debug, Clone)]
pub struct RegionOutcome {
    pub region: String,
    /// The deploy command ran (so the region may run the new version).
    pub changed: bool,
    /// `None` while unresolved; `Some(Ok)` healthy; `Some(Err(reason))` failed.
    pub result: Option<Result<(), String>>,
    /// Its deploy was cut short by a signal.
    pub cancelled: bool,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
    /// Gate → last result.
    pub gates: BTreeMap<String, String>,
    /// It failed on a broken gate (a configuration failure): the gate's name. The region
    /// itself was not judged.
    pub broken_gate: Option<String>,
}

impl RegionOutcome {
    fn new(region: &str) -> Self {
        RegionOutcome {
            region: region.to_string(),
            changed: false,
            result: None,
            cancelled: false,
            started: None,
            finished: None,
            gates: BTreeMap::new(),
            broken_gate: None,
        }
    }
    pub fn healthy(&self) -> bool {
        matches!(self.result, Some(Ok(())))
    }
    pub fn error(&self) -> Option<&str> {
        match &self.result {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
    /// Its state in the stage record, before any rollback.
    pub fn state(&self) -> RegionState {
        match &self.result {
            _ if self.cancelled => RegionState::Cancelled,
            Some(Ok(())) => RegionState::Success,
            Some(Err(_)) => RegionState::Failed,
            None if self.changed => RegionState::Cancelled,
            None => RegionState::Skipped,
        }
    }
    fn duration(&self) -> f64 {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// What the stage loop watches: a deploy, or a rollback's verification.
#[derive(Clone, Copy)]
enum Mode<'v> {
    Deploy,
    /// Region → the version it was rolled back to.
    Verify(&'v BTreeMap<String, String>),
}

enum Msg {
    Deployed(Vec<(String, Result<(), Error>)>),
    Probed(ProbeKey, ProbeResult),
}

impl Engine<'_> {
    /// Deploys `stage` and watches its gates until every region is healthy, a region fails (and
    /// the policy stops the stage), or the stage times out. `previous` holds each region's
    /// rollback target, recorded before its deploy command starts.
    pub fn run_stage(
        &self,
        stage: &Stage,
        previous: &BTreeMap<String, String>,
    ) -> Vec<RegionOutcome> {
        let stop_on_failure = matches!(
            stage.on_failure,
            OnFailure::Rollback | OnFailure::RollbackStage
        );
        let cancel = Cancel::new();
        StageRun::new(
            self,
            stage,
            &stage.regions,
            Mode::Deploy,
            stop_on_failure,
            &cancel,
            &self.signals.work,
            previous,
        )
        .run()
    }

    /// Verifies `rolled` (region → the version it went back to) with the stage's gates; `from`
    /// is what each region ran before (for `{previous_version}`). `outer` abandons it.
    pub fn verify_stage(
        &self,
        stage: &Stage,
        rolled: &BTreeMap<String, String>,
        from: &BTreeMap<String, String>,
        outer: &Cancel,
    ) -> Vec<RegionOutcome> {
        let regions: Vec<String> = stage
            .regions
            .iter()
            .filter(|r| rolled.contains_key(*r))
            .cloned()
            .collect();
        let cancel = Cancel::new();
        StageRun::new(
            self,
            stage,
            &regions,
            Mode::Verify(rolled),
            false,
            &cancel,
            outer,
            from,
        )
        .run()
    }
}

/// The state of one stage's loop.
struct StageRun<'r, 'e> {
    engine: &'r Engine<'e>,
    stage: &'r Stage,
    mode: Mode<'r>,
    stop_on_failure: bool,
    /// Cancels this stage's commands and probes.
    cancel: &'r Cancel,
    /// The run's token: when it is cancelled, so is this stage.
    outer: &'r Cancel,
    previous: &'r BTreeMap<String, String>,
    gates: Vec<Gate>,
    watch: StageWatch,
    outcomes: BTreeMap<String, RegionOutcome>,
    /// Deploy batches not started yet (with the step they make, in a stepped stage), and how
    /// many may run at once.
    pending: VecDeque<(Vec<String>, Option<usize>)>,
    /// A stepped stage: the step (index into `stage.steps`) each region is at.
    step_at: BTreeMap<String, usize>,
    limit: usize,
    deadline: Instant,
    in_flight_deploys: usize,
    in_flight_probes: usize,
    stop_new: bool,
    timed_out: bool,
}

impl<'r, 'e> StageRun<'r, 'e> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        engine: &'r Engine<'e>,
        stage: &'r Stage,
        regions: &[String],
        mode: Mode<'r>,
        stop_on_failure: bool,
        cancel: &'r Cancel,
        outer: &'r Cancel,
        previous: &'r BTreeMap<String, String>,
    ) -> Self {
        let gates: Vec<Gate> = stage
            .gates
            .iter()
            .filter_map(|g| engine.config.gates.get(g).cloned())
            .collect();
        let bake = match mode {
            Mode::Deploy => stage.bake,
            Mode::Verify(_) => Duration::ZERO,
        };
        let mut run = StageRun {
            engine,
            stage,
            mode,
            stop_on_failure,
            cancel,
            outer,
            previous,
            watch: StageWatch::new(gates.clone(), bake, regions.to_vec()),
            gates,
            outcomes: regions
                .iter()
                .map(|r| (r.clone(), RegionOutcome::new(r)))
                .collect(),
            pending: VecDeque::new(),
            step_at: BTreeMap::new(),
            limit: 0,
            deadline: Instant::now() + stage.timeout,
            in_flight_deploys: 0,
            in_flight_probes: 0,
            stop_new: false,
            timed_out: false,
        };
        match mode {
            Mode::Deploy => run.plan_batches(regions),
            Mode::Verify(_) => run.start_verifying(regions),
        }
        run
    }

    /// Deploy batches: fly deploys up to `max_parallel` regions per call, one call at a time;
    /// the others one region per call, up to `max_parallel` at once.
    fn plan_batches(&mut self, regions: &[String]) {
        let parallel = match self.stage.max_parallel {
            0 => regions.len(),
            n => n,
        };
        if self.stage.stepped() {
            // Each region steps on its own; a batching adapter still makes one call at a time.
            self.pending
                .extend(regions.iter().map(|r| (vec![r.clone()], Some(0))));
            self.limit = match self.engine.adapter.batches_regions() {
                true => 1,
                false => parallel,
            };
        } else if self.engine.adapter.batches_regions() {
            for chunk in regions.chunks(parallel.max(1)) {
                self.pending.push_back((chunk.to_vec(), None));
            }
            self.limit = 1;
        } else {
            self.pending
                .extend(regions.iter().map(|r| (vec![r.clone()], None)));
            self.limit = parallel;
        }
    }

    /// The share a step gives the new version.
    fn weight(&self, step: usize) -> u8 {
        self.stage.steps.get(step).copied().unwrap_or(100)
    }

    /// The region passed its step (its gates held for `step_pause`): the next step's change is
    /// queued, and its gates start over once it is made.
    fn next_step(&mut self, region: &str) {
        let step = self.step_at.get(region).copied().unwrap_or(0) + 1;
        self.watch.restart(region);
        self.engine.reporter.line(&format!(
            "{region:<8} step {}% held for {}: next {}%",
            self.weight(step - 1),
            humantime::format_duration(self.stage.step_pause),
            self.weight(step),
        ));
        self.pending
            .push_back((vec![region.to_string()], Some(step)));
    }

    /// Whether the region is at a step before the last (its verdict moves it on, never ends it).
    fn before_last_step(&self, region: &str) -> bool {
        self.stage.stepped()
            && self
                .step_at
                .get(region)
                .is_some_and(|s| s + 1 < self.stage.steps.len())
    }

    /// A verification starts with every region ready (it runs its target already).
    fn start_verifying(&mut self, regions: &[String]) {
        let now = Instant::now();
        for r in regions {
            self.watch.region_ready(r, now);
            if let Some(o) = self.outcomes.get_mut(r) {
                o.started = Some(now);
            }
            self.engine.reporter.phase(r, &Phase::Verifying);
        }
    }

    fn run(mut self) -> Vec<RegionOutcome> {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::scope(|scope| loop {
            let now = Instant::now();
            self.follow_signal();
            self.start_deploys(scope, &tx, now);
            self.start_due_probes(scope, &tx, now);
            self.apply_verdicts(now);
            self.expire(now);
            if self.done() {
                break;
            }
            match rx.recv_timeout(self.wait(now)) {
                Ok(Msg::Deployed(results)) => self.on_deployed(results),
                Ok(Msg::Probed(key, result)) => self.on_probed(key, result),
                Err(_) => {}
            }
        });
        // A region still unresolved when the loop ends (cut short by a signal or the deadline
        // while baking) was at it until now.
        let now = Instant::now();
        for o in self.outcomes.values_mut() {
            if o.started.is_some() && o.finished.is_none() {
                o.finished = Some(now);
            }
        }
        self.outcomes.into_values().collect()
    }

    /// A signal stops new work and terminates this stage's commands; a failed record stops new
    /// work.
    fn follow_signal(&mut self) {
        if self.outer.is_cancelled() && !self.stop_new {
            self.stop_new = true;
            self.cancel.cancel();
        }
        // A record that could not be written stops new work too; what runs finishes, so it can
        // be rolled back from a known state.
        if !self.stop_new
            && matches!(self.mode, Mode::Deploy)
            && self.engine.ledger.cannot_record().is_some()
        {
            self.stop_new = true;
        }
    }

    /// Starts deploy batches while the limit allows. Before they start, one `stage` record with
    /// status `started` names their regions: a deploy killed from now on is known to have
    /// touched them (they "may run" the new version).
    fn start_deploys<'s>(&mut self, scope: &'s Scope<'s, 'r>, tx: &mpsc::Sender<Msg>, now: Instant)
    where
        'e: 'r,
    {
        let mut batches = Vec::new();
        while !self.stop_new
            && matches!(self.mode, Mode::Deploy)
            && self.in_flight_deploys + batches.len() < self.limit.max(1)
        {
            match self.pending.pop_front() {
                Some(batch) => batches.push(batch),
                None => break,
            }
        }
        if batches.is_empty() {
            return;
        }
        // Nothing starts that cannot be recorded: once a record failed, the deploy stops here.
        let regions: Vec<String> = batches.iter().flat_map(|(b, _)| b.clone()).collect();
        let step = batches.first().and_then(|(_, s)| *s);
        if self.engine.ledger.cannot_record().is_some() || !self.record_started(&regions, step) {
            self.stop_new = true;
            for batch in batches.into_iter().rev() {
                self.pending.push_front(batch);
            }
            return;
        }
        for (batch, step) in batches {
            for r in &batch {
                let o = self.outcomes.get_mut(r).expect("a region of the stage");
                o.changed = true;
                o.started.get_or_insert(now);
                self.engine.reporter.phase(r, &Phase::Deploying);
                if let Some(step) = step {
                    self.step_at.insert(r.clone(), step);
                }
            }
            let weight = step.map(|s| self.weight(s));
            self.in_flight_deploys += 1;
            let tx = tx.clone();
            let remaining = self
                .deadline
                .saturating_duration_since(now)
                .min(self.stage.command_timeout);
            let single = (batch.len() == 1).then(|| batch[0].clone());
            let prev = single.as_ref().and_then(|r| self.previous.get(r).cloned());
            let (engine, stage, cancel) = (self.engine, self.stage, self.cancel);
            scope.spawn(move || {
                let label = batch.join(",");
                let on_line = |_: crate::exec::Stream, line: &str| {
                    engine.reporter.command_output(Some(&label), line)
                };
                let mut vars = engine.vars(
                    Some(&stage.name),
                    single.as_deref(),
                    &engine.version,
                    prev.as_deref(),
                );
                let ctx = engine.ctx(cancel, remaining, &on_line);
                let results = match weight {
                    Some(w) => {
                        vars.set(crate::config::placeholder::WEIGHT, w.to_string());
                        engine.adapter.deploy_step(&batch, &vars, &ctx)
                    }
                    None => engine.adapter.deploy(&batch, &vars, &ctx),
                };
                let _ = tx.send(Msg::Deployed(results));
            });
        }
    }

    /// The `started` stage record of `batch` (in a stepped stage, one per step, with its
    /// weight); false when it cannot be written (then the batch must not start).
    fn record_started(&self, batch: &[String], step: Option<usize>) -> bool {
        let engine = self.engine;
        let recorded = engine.record(HistoryRecord::Stage(StageRecord {
            deploy_id: engine.deploy_id.clone(),
            stage: self.stage.name.clone(),
            version: engine.version.clone(),
            regions: batch.to_vec(),
            status: StageStatus::Started,
            start_time: now_rfc3339(),
            regions_detail: batch
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        RegionDetail {
                            status: RegionState::Deploying,
                            previous_version: self.previous.get(r).cloned(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            weight: step.map(|s| self.weight(s)),
            ..Default::default()
        }));
        if recorded {
            for r in batch {
                engine
                    .progress
                    .changed(r, self.previous.get(r).map(String::as_str));
            }
        }
        recorded
    }

    /// Starts every probe that is due.
    fn start_due_probes<'s>(
        &mut self,
        scope: &'s Scope<'s, 'r>,
        tx: &mpsc::Sender<Msg>,
        now: Instant,
    ) where
        'e: 'r,
    {
        if self.stop_new {
            return;
        }
        for key in self.watch.due(now) {
            self.in_flight_probes += 1;
            let tx = tx.clone();
            let gate = self.gates.iter().find(|g| g.name == key.gate).cloned();
            let version = self.version_of(key.region.as_deref());
            let prev = key
                .region
                .as_ref()
                .and_then(|r| self.previous.get(r).cloned());
            // The wall-clock time the region became ready: a judge's window starts there.
            let deployed_at = key
                .region
                .as_deref()
                .and_then(|r| self.watch.ready_at(r))
                .map(|at| {
                    chrono::Utc::now()
                        - chrono::Duration::from_std(now.saturating_duration_since(at))
                            .unwrap_or_default()
                });
            let (engine, stage, cancel) = (self.engine, self.stage, self.cancel);
            scope.spawn(move || {
                let result = match gate {
                    Some(g) => {
                        let vars = engine.vars(
                            Some(&stage.name),
                            key.region.as_deref(),
                            &version,
                            prev.as_deref(),
                        );
                        let mut ctx = ProbeCtx::new(engine.config.base_dir.clone(), cancel);
                        if let Some(r) = key.region.as_deref() {
                            ctx.later_regions = engine.config.later_regions(r);
                        }
                        ctx.deployed_at = deployed_at;
                        gates::probe(&g, &vars, &ctx)
                    }
                    None => ProbeResult::fail(format!("unknown gate {}", key.gate)),
                };
                let _ = tx.send(Msg::Probed(key, result));
            });
        }
    }

    /// The version a probe checks: the deploy's, or the one a region was rolled back to.
    fn version_of(&self, region: Option<&str>) -> String {
        match (self.mode, region) {
            (Mode::Deploy, _) => self.engine.version.clone(),
            (Mode::Verify(to), Some(r)) => to.get(r).cloned().unwrap_or_default(),
            (Mode::Verify(to), None) => to.values().next().cloned().unwrap_or_default(),
        }
    }

    /// Turns the gate state machine's verdicts into region results. A healthy region is still
    /// watched while the stage runs: a later trip fails it (SPEC §3).
    fn apply_verdicts(&mut self, now: Instant) {
        let reporter = self.engine.reporter;
        let stepping: Vec<String> = self
            .outcomes
            .keys()
            .filter(|r| self.before_last_step(r))
            .cloned()
            .collect();
        let at_step: BTreeMap<String, u8> = self
            .step_at
            .iter()
            .map(|(r, s)| (r.clone(), self.weight(*s)))
            .collect();
        let mut advance = Vec::new();
        for (region, o) in self.outcomes.iter_mut() {
            if o.started.is_none() || matches!(o.result, Some(Err(_))) {
                continue;
            }
            let already_healthy = o.healthy();
            match self.watch.verdict(region, now) {
                RegionVerdict::Healthy if already_healthy => {}
                RegionVerdict::Healthy if stepping.contains(region) => advance.push(region.clone()),
                RegionVerdict::Healthy => {
                    o.result = Some(Ok(()));
                    o.finished = Some(now);
                    reporter.phase(region, &Phase::Healthy);
                }
                RegionVerdict::Tripped { gate, detail } => {
                    let broken = self.watch.tripped_broken(region);
                    let msg = if broken {
                        o.broken_gate = Some(gate.clone());
                        broken_gate_message(&gate, &detail)
                    } else {
                        match at_step.get(region) {
                            Some(w) => format!("gate {gate} tripped at step {w}%: {detail}"),
                            None => format!("gate {gate} tripped: {detail}"),
                        }
                    };
                    let title = if broken {
                        format!("gate {gate} is misconfigured ({region})")
                    } else {
                        format!("gate {gate} tripped in {region}")
                    };
                    reporter.error(&title, &detail);
                    reporter.phase(region, &Phase::Failed(msg.clone()));
                    o.result = Some(Err(msg));
                    o.finished = Some(now);
                    if self.stop_on_failure {
                        self.stop_new = true;
                    }
                }
                RegionVerdict::Watching { .. } if already_healthy => {}
                RegionVerdict::Watching {
                    passed,
                    total,
                    failing,
                    baking,
                } => reporter.phase(
                    region,
                    &Phase::Gates {
                        passed,
                        total,
                        failing,
                        baking,
                    },
                ),
                RegionVerdict::NotReady => {}
            }
        }
        if !self.stop_new {
            for region in advance {
                self.next_step(&region);
            }
        }
    }

    /// At the stage's deadline every unresolved region fails, naming each gate's last probe.
    fn expire(&mut self, now: Instant) {
        if now < self.deadline || self.timed_out {
            return;
        }
        self.timed_out = true;
        self.stop_new = true;
        self.cancel.cancel();
        let reporter = self.engine.reporter;
        for (region, o) in self.outcomes.iter_mut() {
            if o.result.is_some() || o.started.is_none() {
                continue;
            }
            let reasons = self.watch.waiting_reasons(region, now);
            let last = if reasons.is_empty() {
                "its deploy had not finished".to_string()
            } else {
                reasons.join("; ")
            };
            let msg = format!(
                "stage {} timed out after {} before {region} was healthy ({last})",
                self.stage.name,
                humantime::format_duration(self.stage.timeout)
            );
            reporter.error(
                &format!("stage {} timed out in {region}", self.stage.name),
                &last,
            );
            reporter.phase(region, &Phase::Failed(msg.clone()));
            o.result = Some(Err(msg));
            o.finished = Some(now);
        }
    }

    /// Done when nothing is unresolved (or new work stopped) and nothing is in flight.
    fn done(&self) -> bool {
        let unresolved = self
            .outcomes
            .values()
            .any(|o| o.result.is_none() && (o.started.is_some() || !self.stop_new));
        (!unresolved || self.stop_new) && self.in_flight_deploys == 0 && self.in_flight_probes == 0
    }

    /// How long to wait for the next message: until the next probe or bake end, the deadline,
    /// or 250 ms (to look at the signal state).
    fn wait(&self, now: Instant) -> Duration {
        let mut wake = now + Duration::from_millis(250);
        if !self.stop_new {
            if let Some(w) = self.watch.next_wake(now) {
                wake = wake.min(w);
            }
        }
        if !self.timed_out {
            wake = wake.min(self.deadline);
        }
        wake.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// A deploy batch finished: its healthy regions start their gates.
    fn on_deployed(&mut self, results: Vec<(String, Result<(), Error>)>) {
        self.in_flight_deploys -= 1;
        let at = Instant::now();
        let engine = self.engine;
        for (region, result) in results {
            let Some(o) = self.outcomes.get_mut(&region) else {
                continue;
            };
            if o.result.is_some() {
                continue;
            }
            match result {
                Ok(()) => {
                    let bake = match self.step_at.get(&region) {
                        Some(s) if s + 1 < self.stage.steps.len() => self.stage.step_pause,
                        _ => self.stage.bake,
                    };
                    self.watch.region_ready_for(&region, at, bake);
                    engine.reporter.phase(
                        &region,
                        &Phase::Gates {
                            passed: 0,
                            total: self.gates.len(),
                            failing: vec![],
                            baking: false,
                        },
                    );
                }
                Err(_) if self.outer.is_cancelled() => {
                    // Terminated by the signal: not a platform failure.
                    engine
                        .reporter
                        .phase(&region, &Phase::Failed("cancelled".into()));
                    o.result = Some(Err("deploy cancelled by a signal".into()));
                    o.cancelled = true;
                    o.finished = Some(at);
                }
                Err(e) => {
                    if e.not_started {
                        // The program could not even start (removed since the preflight
                        // check): nothing changed here, so there is nothing to roll back.
                        o.changed = false;
                        engine.progress.unchanged(&region);
                    }
                    let text = crate::redact::redact(&e.render(false));
                    engine
                        .reporter
                        .error(&format!("deploy failed in {region}"), &text);
                    engine
                        .reporter
                        .phase(&region, &Phase::Failed(first_line(&e.to_string())));
                    o.result = Some(Err(format!("deploy failed: {e}")));
                    o.finished = Some(at);
                    if self.stop_on_failure {
                        self.stop_new = true;
                    }
                }
            }
        }
    }

    /// A probe finished: record what changed.
    fn on_probed(&mut self, key: ProbeKey, result: ProbeResult) {
        self.in_flight_probes -= 1;
        // A probe cut short by a signal or the stage deadline says nothing about the region's
        // health: never count it as a failure.
        if self.cancel.is_cancelled() {
            return;
        }
        for ev in self.watch.record(&key, &result, Instant::now()) {
            self.gate_event(&ev);
        }
    }

    fn gate_event(&mut self, ev: &GateEvent) {
        let engine = self.engine;
        let version = self.version_of(Some(&ev.region));
        let verifying = matches!(self.mode, Mode::Verify(_));
        if let Some(o) = self.outcomes.get_mut(&ev.region) {
            o.gates.insert(ev.gate.clone(), ev.result.to_string());
        }
        if ev.result == "inconclusive" {
            engine.reporter.line(&format!(
                "{:<8} gate {} inconclusive (neither a pass nor a failure): {}",
                ev.region, ev.gate, ev.detail
            ));
        } else if ev.result != "pass" {
            engine.reporter.line(&format!(
                "{:<8} gate {} {} ({}/{}): {}",
                ev.region,
                ev.gate,
                ev.result,
                ev.consecutive_failures,
                engine
                    .config
                    .gates
                    .get(&ev.gate)
                    .map(|g| g.trip_after())
                    .unwrap_or(0),
                ev.detail
            ));
        }
        engine.record(HistoryRecord::Gate(GateRecord {
            deploy_id: engine.deploy_id.clone(),
            stage: self.stage.name.clone(),
            region: ev.region.clone(),
            gate: ev.gate.clone(),
            severity: ev.severity.as_str().to_string(),
            result: ev.result.to_string(),
            detail: ev.detail.clone(),
            consecutive_failures: ev.consecutive_failures,
            trip_after: engine.config.gates.get(&ev.gate).map(|g| g.trip_after()),
            version: Some(version.clone()),
            verifying,
        }));
        if ev.result == "tripped" {
            engine.notify(
                crate::config::Priority::P0,
                format!(
                    "gate {} tripped in {}{}: {} {version}",
                    ev.gate,
                    ev.region,
                    if verifying { " verifying its rollback" } else { "" },
                    engine.config.app.name,
                ),
                ev.detail.clone(),
                serde_json::json!({"stage": self.stage.name, "region": ev.region, "gate": ev.gate, "severity": ev.severity.as_str(), "version": version, "verifying": verifying, "run_url": engine.invocation.run_url}),
            );
        }
    }
}

/// What a region's failure on a broken gate says: the gate, not the region, is at fault.
pub fn broken_gate_message(gate: &str, detail: &str) -> String {
    format!("gate `{gate}` is misconfigured: {detail} — the regions were not judged")
}

/// The per-stage result rows: each region's state and what it runs now, as far as known.
pub fn stage_result(
    stage: &Stage,
    status: StageStatus,
    outcomes: &[RegionOutcome],
    detail: &BTreeMap<String, RegionDetail>,
    duration: Duration,
) -> StageResult {
    StageResult {
        name: stage.name.clone(),
        status: status.as_str().to_string(),
        duration_seconds: secs(duration),
        regions: outcomes
            .iter()
            .map(|o| {
                let d = detail.get(&o.region).cloned().unwrap_or_default();
                RegionResult {
                    region: o.region.clone(),
                    status: d.status.as_str().into(),
                    previous_version: d.previous_version,
                    version: d.version,
                    error: d.error,
                    gates: o.gates.clone(),
                    duration_seconds: o.duration(),
                }
            })
            .collect(),
    }
}
