//! Running a deploy (SPEC §3): stages in order, regions in parallel up to `max_parallel`, gates
//! per region as each region's deploy finishes, the stage `timeout` over all of it, the
//! `on_failure` policy, verified rollbacks, records at every step.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::adapters::{Adapter, Live, RunCtx};
use crate::config::placeholder::Vars;
use crate::config::{Config, Gate, OnFailure, Priority, Stage};
use crate::error::Error;
use crate::exec::Cancel;
use crate::gates::{self, GateEvent, ProbeCtx, ProbeKey, ProbeResult, RegionVerdict, StageWatch};
use crate::ledger::records::*;
use crate::ledger::Ledger;
use crate::notify::queue::Queue;
use crate::notify::Notification;
use crate::report::result::{RegionResult, RunResult, StageResult};
use crate::report::{Phase, Reporter};

use super::actor::{now_rfc3339, Invocation};
use super::signals::Signals;

/// Everything a run needs, borrowed from the command that set it up.
pub struct Engine<'a> {
    pub config: &'a Config,
    pub adapter: &'a dyn Adapter,
    pub ledger: &'a Ledger,
    /// Notifications and events are queued, never delivered on the deploy's path.
    pub notify: &'a Queue,
    pub reporter: &'a Reporter,
    pub signals: &'a Signals,
    pub invocation: &'a Invocation,
    /// The deploy's id (or a manual rollback's own id).
    pub deploy_id: String,
    /// The version being deployed (empty for a manual rollback).
    pub version: String,
}

/// How one region ended a stage (or a verification).
#[derive(Debug, Clone)]
pub struct RegionOutcome {
    pub region: String,
    /// The deploy command ran (so the region may run the new version).
    pub changed: bool,
    /// `None` while unresolved; `Some(Ok)` healthy; `Some(Err(reason))` failed.
    pub result: Option<Result<(), String>>,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
    /// Gate → last result.
    pub gates: BTreeMap<String, String>,
}

impl RegionOutcome {
    fn new(region: &str) -> Self {
        RegionOutcome {
            region: region.to_string(),
            changed: false,
            result: None,
            started: None,
            finished: None,
            gates: BTreeMap::new(),
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
    fn duration(&self) -> f64 {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// What the stage loop watches: a deploy, or a rollback's verification.
enum Mode<'v> {
    Deploy,
    /// Region → the version it was rolled back to.
    Verify(&'v BTreeMap<String, String>),
}

enum Msg {
    Deployed(Vec<(String, Result<(), Error>)>),
    Probed(ProbeKey, ProbeResult),
}

/// One region to roll back.
#[derive(Debug, Clone)]
pub struct RollbackTarget {
    pub region: String,
    /// What it runs now (for the record and `{previous_version}`).
    pub from: Option<String>,
    /// What to return it to; `None` asks the platform to undo, where it can.
    pub to: Option<String>,
}

/// The outcome of rolling back some regions.
#[derive(Debug, Default)]
pub struct RollbackOutcome {
    pub ok: Vec<String>,
    /// Region → why its rollback (or its verification) failed.
    pub failed: BTreeMap<String, String>,
    /// The rollback was abandoned by a second signal; these regions were not finished.
    pub abandoned: Vec<String>,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

impl Engine<'_> {
    /// Placeholder values for a region (or a shared gate when `region` is `None`).
    pub fn vars(
        &self,
        stage: Option<&str>,
        region: Option<&str>,
        version: &str,
        previous: Option<&str>,
    ) -> Vars {
        let mut vars = Vars::new();
        vars.set("app", self.config.app.name.clone())
            .set("version", version)
            .set("deploy_id", self.deploy_id.clone());
        if let Some(s) = stage {
            vars.set("stage", s);
        }
        if let Some(r) = region {
            vars.set("region", r);
        }
        vars.set("previous_version", previous.unwrap_or(""));
        if let Some(image) = &self.config.target.image {
            let rendered = vars.render(image);
            vars.set("image", rendered);
        }
        vars
    }

    fn ctx<'c>(
        &'c self,
        cancel: &'c Cancel,
        timeout: Duration,
        on_line: &'c (dyn Fn(crate::exec::Stream, &str) + Sync),
    ) -> RunCtx<'c> {
        RunCtx {
            cancel,
            command_timeout: timeout,
            cwd: self.config.base_dir.clone(),
            on_line: Some(on_line),
        }
    }

    /// Records a history line; a ledger failure is shown, never silently dropped.
    pub fn record(&self, record: HistoryRecord) {
        if let Err(e) = self.ledger.append_history(&record) {
            self.reporter.warn(&format!(
                "cannot write a {} record to history: {e}",
                record.kind()
            ));
        }
    }

    pub fn notify(
        &self,
        priority: Priority,
        title: String,
        message: String,
        context: serde_json::Value,
    ) {
        let n = Notification {
            priority,
            title,
            message,
            context,
            deploy_id: Some(self.deploy_id.clone()),
        };
        self.notify.send(n);
    }

    /// Reads what runs in each region now, in parallel. Regions whose read fails are returned
    /// with their error.
    pub fn capture(
        &self,
        regions: &[String],
        cancel: &Cancel,
    ) -> BTreeMap<String, Result<Live, Error>> {
        if !self.adapter.reads_live_version() {
            // No way to ask the platform (exec without `current`): history says what runs.
            let status = self.ledger.status(&mut Vec::new()).unwrap_or_default();
            return regions
                .iter()
                .map(|r| {
                    let recorded = status
                        .regions
                        .get(r)
                        .map(|s| s.version.clone())
                        .filter(|v| !v.is_empty() && v != "unknown");
                    let v = recorded.or_else(|| {
                        self.ledger
                            .successful_versions(r)
                            .ok()
                            .and_then(|v| v.into_iter().next())
                    });
                    (r.clone(), Ok(v.map(Live::Version).unwrap_or(Live::Absent)))
                })
                .collect();
        }
        let on_line = |_: crate::exec::Stream, _: &str| {};
        std::thread::scope(|s| {
            let handles: Vec<_> = regions
                .iter()
                .map(|r| {
                    let stage = self.config.stage_of(r).map(|s| s.name.clone());
                    let timeout = self
                        .config
                        .stage_of(r)
                        .map(|s| s.command_timeout)
                        .unwrap_or(self.config.defaults.command_timeout);
                    let on_line = &on_line;
                    s.spawn(move || {
                        let vars = self.vars(stage.as_deref(), Some(r), &self.version, None);
                        let ctx = self.ctx(cancel, timeout, on_line);
                        (r.clone(), self.adapter.current(r, &vars, &ctx))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("capture thread panicked"))
                .collect()
        })
    }

    /// Deploys `stage` and watches its gates until every region is healthy, a region fails (and
    /// the policy stops the stage), or the stage times out.
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
        self.watch_loop(
            stage,
            &stage.regions,
            Mode::Deploy,
            stop_on_failure,
            &cancel,
            &self.signals.work,
            previous,
        )
    }

    /// The loop shared by deploys and rollback verification.
    #[allow(clippy::too_many_arguments)]
    fn watch_loop(
        &self,
        stage: &Stage,
        regions: &[String],
        mode: Mode<'_>,
        stop_on_failure: bool,
        cancel: &Cancel,
        outer: &Cancel,
        previous: &BTreeMap<String, String>,
    ) -> Vec<RegionOutcome> {
        let start = Instant::now();
        let deadline = start + stage.timeout;
        let gates: Vec<Gate> = stage
            .gates
            .iter()
            .filter_map(|g| self.config.gates.get(g).cloned())
            .collect();
        let mut watch = StageWatch::new(
            gates.clone(),
            if matches!(mode, Mode::Deploy) {
                stage.bake
            } else {
                Duration::ZERO
            },
            regions.to_vec(),
        );
        let mut outcomes: BTreeMap<String, RegionOutcome> = regions
            .iter()
            .map(|r| (r.clone(), RegionOutcome::new(r)))
            .collect();
        let version_of = |region: Option<&str>| -> String {
            match (&mode, region) {
                (Mode::Deploy, _) => self.version.clone(),
                (Mode::Verify(to), Some(r)) => to.get(r).cloned().unwrap_or_default(),
                (Mode::Verify(to), None) => to.values().next().cloned().unwrap_or_default(),
            }
        };
        let mut pending: VecDeque<Vec<String>> = VecDeque::new();
        let limit;
        match mode {
            Mode::Deploy => {
                if self.adapter.batches_regions() {
                    let size = if stage.max_parallel == 0 {
                        regions.len()
                    } else {
                        stage.max_parallel
                    };
                    for chunk in regions.chunks(size.max(1)) {
                        pending.push_back(chunk.to_vec());
                    }
                    limit = 1;
                } else {
                    pending.extend(regions.iter().map(|r| vec![r.clone()]));
                    limit = if stage.max_parallel == 0 {
                        regions.len()
                    } else {
                        stage.max_parallel
                    };
                }
            }
            Mode::Verify(_) => {
                limit = 0;
                let now = Instant::now();
                for r in regions {
                    watch.region_ready(r, now);
                    let o = outcomes.get_mut(r).unwrap();
                    o.started = Some(now);
                    self.reporter.phase(r, &Phase::Verifying);
                }
            }
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let reporter = self.reporter;
        let probe_ctx = ProbeCtx {
            cwd: self.config.base_dir.clone(),
            cancel,
        };

        std::thread::scope(|scope| {
            let mut in_flight_deploys = 0usize;
            let mut in_flight_probes = 0usize;
            let mut stop_new = false;
            let mut timed_out = false;
            loop {
                let now = Instant::now();
                if outer.is_cancelled() && !stop_new {
                    stop_new = true;
                    cancel.cancel();
                }
                // Start deploys.
                while !stop_new && in_flight_deploys < limit.max(1) && matches!(mode, Mode::Deploy)
                {
                    let Some(batch) = pending.pop_front() else {
                        break;
                    };
                    for r in &batch {
                        let o = outcomes.get_mut(r).unwrap();
                        o.changed = true;
                        o.started = Some(now);
                        self.reporter.phase(r, &Phase::Deploying);
                    }
                    in_flight_deploys += 1;
                    let tx = tx.clone();
                    let remaining = deadline
                        .saturating_duration_since(now)
                        .min(stage.command_timeout);
                    let single = (batch.len() == 1).then(|| batch[0].clone());
                    let prev = single.as_ref().and_then(|r| previous.get(r).cloned());
                    scope.spawn(move || {
                        let label = batch.join(",");
                        let on_line = |_: crate::exec::Stream, line: &str| {
                            reporter.command_output(Some(&label), line)
                        };
                        let vars = self.vars(
                            Some(&stage.name),
                            single.as_deref(),
                            &self.version,
                            prev.as_deref(),
                        );
                        let ctx = self.ctx(cancel, remaining, &on_line);
                        let results = self.adapter.deploy(&batch, &vars, &ctx);
                        let _ = tx.send(Msg::Deployed(results));
                    });
                }
                // Start due probes.
                if !stop_new {
                    for key in watch.due(now) {
                        in_flight_probes += 1;
                        let tx = tx.clone();
                        let gate = gates.iter().find(|g| g.name == key.gate).cloned();
                        let version = version_of(key.region.as_deref());
                        let prev = key.region.as_ref().and_then(|r| previous.get(r).cloned());
                        let probe_ctx = &probe_ctx;
                        scope.spawn(move || {
                            let result = match gate {
                                Some(g) => {
                                    let vars = self.vars(
                                        Some(&stage.name),
                                        key.region.as_deref(),
                                        &version,
                                        prev.as_deref(),
                                    );
                                    gates::probe(&g, &vars, probe_ctx)
                                }
                                None => ProbeResult {
                                    pass: false,
                                    detail: format!("unknown gate {}", key.gate),
                                },
                            };
                            let _ = tx.send(Msg::Probed(key, result));
                        });
                    }
                }
                // Verdicts.
                for (region, o) in outcomes.iter_mut() {
                    // A healthy region is still watched while the stage runs: a later trip
                    // fails it (SPEC §3: a tripped gate fails its region).
                    if o.started.is_none() || matches!(o.result, Some(Err(_))) {
                        continue;
                    }
                    let already_healthy = o.healthy();
                    match watch.verdict(region, now) {
                        RegionVerdict::Healthy if already_healthy => {}
                        RegionVerdict::Healthy => {
                            o.result = Some(Ok(()));
                            o.finished = Some(now);
                            self.reporter.phase(region, &Phase::Healthy);
                        }
                        RegionVerdict::Tripped { gate, detail } => {
                            let msg = format!("gate {gate} tripped: {detail}");
                            self.reporter
                                .error(&format!("gate {gate} tripped in {region}"), &detail);
                            self.reporter.phase(region, &Phase::Failed(msg.clone()));
                            o.result = Some(Err(msg));
                            o.finished = Some(now);
                            if stop_on_failure {
                                stop_new = true;
                            }
                        }
                        RegionVerdict::Watching { .. } if already_healthy => {}
                        RegionVerdict::Watching {
                            passed,
                            total,
                            failing,
                            baking,
                        } => {
                            self.reporter.phase(
                                region,
                                &Phase::Gates {
                                    passed,
                                    total,
                                    failing,
                                    baking,
                                },
                            );
                        }
                        RegionVerdict::NotReady => {}
                    }
                }
                // Stage timeout.
                if now >= deadline && !timed_out {
                    timed_out = true;
                    stop_new = true;
                    cancel.cancel();
                    for (region, o) in outcomes.iter_mut() {
                        if o.result.is_none() && o.started.is_some() {
                            let details = watch.last_details(region);
                            let last = if details.is_empty() {
                                "its deploy had not finished".to_string()
                            } else {
                                details
                                    .iter()
                                    .map(|(g, d)| format!("gate {g}: last probe {d}"))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            };
                            let msg = format!(
                                "stage {} timed out after {} before {region} was healthy ({last})",
                                stage.name,
                                humantime::format_duration(stage.timeout)
                            );
                            self.reporter.error(
                                &format!("stage {} timed out in {region}", stage.name),
                                &last,
                            );
                            self.reporter.phase(region, &Phase::Failed(msg.clone()));
                            o.result = Some(Err(msg));
                            o.finished = Some(now);
                        }
                    }
                }
                let unresolved = outcomes
                    .values()
                    .any(|o| o.result.is_none() && (o.started.is_some() || !stop_new));
                if (!unresolved || stop_new) && in_flight_deploys == 0 && in_flight_probes == 0 {
                    break;
                }
                // Wait for the next message or the next thing due.
                let mut wake = now + Duration::from_millis(250);
                if !stop_new {
                    if let Some(w) = watch.next_wake(now) {
                        wake = wake.min(w);
                    }
                }
                if !timed_out {
                    wake = wake.min(deadline);
                }
                let wait = wake
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                match rx.recv_timeout(wait) {
                    Ok(Msg::Deployed(results)) => {
                        in_flight_deploys -= 1;
                        let at = Instant::now();
                        for (region, result) in results {
                            let Some(o) = outcomes.get_mut(&region) else {
                                continue;
                            };
                            match result {
                                Ok(()) if o.result.is_none() => {
                                    watch.region_ready(&region, at);
                                    self.reporter.phase(
                                        &region,
                                        &Phase::Gates {
                                            passed: 0,
                                            total: gates.len(),
                                            failing: vec![],
                                            baking: false,
                                        },
                                    );
                                }
                                Ok(()) => {}
                                Err(e) => {
                                    let text = crate::redact::redact(&e.render(false));
                                    if o.result.is_none() && outer.is_cancelled() {
                                        // Terminated by the signal: not a platform failure.
                                        self.reporter
                                            .phase(&region, &Phase::Failed("cancelled".into()));
                                        o.result = Some(Err("deploy cancelled by a signal".into()));
                                        o.finished = Some(at);
                                    } else if o.result.is_none() {
                                        if e.not_started {
                                            // The program could not even start (removed
                                            // since the preflight check): nothing changed
                                            // here, so there is nothing to roll back.
                                            o.changed = false;
                                        }
                                        self.reporter
                                            .error(&format!("deploy failed in {region}"), &text);
                                        self.reporter.phase(
                                            &region,
                                            &Phase::Failed(first_line(&e.to_string())),
                                        );
                                        o.result = Some(Err(format!("deploy failed: {}", e)));
                                        o.finished = Some(at);
                                        if stop_on_failure {
                                            stop_new = true;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Ok(Msg::Probed(key, result)) => {
                        in_flight_probes -= 1;
                        // A probe cut short by a signal or the stage deadline says nothing
                        // about the region's health: never count it as a failure.
                        if cancel.is_cancelled() {
                            continue;
                        }
                        let events = watch.record(&key, &result, Instant::now());
                        for ev in events {
                            self.gate_event(stage, &ev, &mut outcomes);
                        }
                    }
                    Err(_) => {}
                }
            }
        });
        outcomes.into_values().collect()
    }

    fn gate_event(
        &self,
        stage: &Stage,
        ev: &GateEvent,
        outcomes: &mut BTreeMap<String, RegionOutcome>,
    ) {
        if let Some(o) = outcomes.get_mut(&ev.region) {
            o.gates.insert(ev.gate.clone(), ev.result.to_string());
        }
        if ev.result != "pass" {
            self.reporter.line(&format!(
                "{:<8} gate {} {} ({}/{}): {}",
                ev.region,
                ev.gate,
                ev.result,
                ev.consecutive_failures,
                self.config
                    .gates
                    .get(&ev.gate)
                    .map(|g| g.failures)
                    .unwrap_or(0),
                ev.detail
            ));
        }
        self.record(HistoryRecord::Gate(GateRecord {
            deploy_id: self.deploy_id.clone(),
            stage: stage.name.clone(),
            region: ev.region.clone(),
            gate: ev.gate.clone(),
            severity: ev.severity.as_str().to_string(),
            result: ev.result.to_string(),
            detail: ev.detail.clone(),
            consecutive_failures: ev.consecutive_failures,
        }));
        if ev.result == "tripped" {
            self.notify(
                Priority::P0,
                format!("gate {} tripped in {}: {} {}", ev.gate, ev.region, self.config.app.name, self.version),
                ev.detail.clone(),
                serde_json::json!({"stage": stage.name, "region": ev.region, "gate": ev.gate, "severity": ev.severity.as_str(), "version": self.version, "run_url": self.invocation.run_url}),
            );
        }
    }

    /// Returns `targets` to their earlier versions, then verifies them with their stages' gates
    /// (unless `verify` is false or the stage says `verify_rollback = false`). Writes the
    /// `rollback` record.
    pub fn rollback(
        &self,
        targets: &[RollbackTarget],
        reason: &str,
        automatic: bool,
        verify: bool,
    ) -> RollbackOutcome {
        let mut outcome = RollbackOutcome::default();
        if targets.is_empty() {
            return outcome;
        }
        let start_time = now_rfc3339();
        let started = Instant::now();
        let cancel = &self.signals.rollback;
        let reporter = self.reporter;
        // A region that ran nothing before this deploy has nothing to go back to: it keeps
        // the version it runs, and a human decides (the deploy ends with exit 3).
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        let mut jobs: BTreeMap<(String, String), Vec<&RollbackTarget>> = BTreeMap::new();
        for t in targets {
            match &t.to {
                None => {
                    let now_runs = t.from.clone().unwrap_or_else(|| "unknown".into());
                    let msg = format!("nothing ran here before, so there is nothing to roll back to: it still runs {now_runs}");
                    self.reporter
                        .error(&format!("rollback impossible in {}", t.region), &msg);
                    self.reporter
                        .phase(&t.region, &Phase::RollbackFailed(msg.clone()));
                    outcome.failed.insert(t.region.clone(), msg);
                    kept.insert(t.region.clone(), now_runs);
                }
                Some(to) => {
                    self.reporter
                        .phase(&t.region, &Phase::RollingBack(to.clone()));
                    // fly rolls a whole group back in one call, one call at a time per app.
                    let stage = if self.adapter.batches_regions() {
                        String::new()
                    } else {
                        self.config
                            .stage_of(&t.region)
                            .map(|s| s.name.clone())
                            .unwrap_or_default()
                    };
                    jobs.entry((stage, to.clone())).or_default().push(t);
                }
            }
        }
        let run_job = |to: &str, batch: &[&RollbackTarget]| -> Vec<(String, Result<(), Error>)> {
            let regions: Vec<String> = batch.iter().map(|t| t.region.clone()).collect();
            if cancel.is_cancelled() {
                return regions
                    .into_iter()
                    .map(|r| {
                        (
                            r,
                            Err(Error::failed("rollback abandoned by a second signal")),
                        )
                    })
                    .collect();
            }
            let label = regions.join(",");
            let on_line =
                |_: crate::exec::Stream, line: &str| reporter.command_output(Some(&label), line);
            let stage = self.config.stage_of(&regions[0]);
            let timeout = stage
                .map(|s| s.command_timeout)
                .unwrap_or(self.config.defaults.command_timeout);
            let single = (regions.len() == 1).then(|| regions[0].clone());
            let from = batch.first().and_then(|t| t.from.clone());
            let vars = self.vars(
                stage.map(|s| s.name.as_str()),
                single.as_deref(),
                from.as_deref().unwrap_or(""),
                from.as_deref(),
            );
            let ctx = self.ctx(cancel, timeout, &on_line);
            self.adapter.rollback(&regions, Some(to), &vars, &ctx)
        };
        let results: Vec<(String, Result<(), Error>)> = if self.adapter.batches_regions() {
            jobs.iter()
                .flat_map(|((_, to), batch)| run_job(to, batch))
                .collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .iter()
                    .flat_map(|((_, to), group)| group.iter().map(move |t| (to, *t)))
                    .map(|(to, t)| {
                        let run_job = &run_job;
                        s.spawn(move || run_job(to, &[t]))
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("rollback thread panicked"))
                    .collect()
            })
        };
        let mut rolled: BTreeMap<String, String> = BTreeMap::new();
        for (region, result) in results {
            let to = targets
                .iter()
                .find(|t| t.region == region)
                .and_then(|t| t.to.clone());
            match result {
                Ok(()) => {
                    rolled.insert(
                        region.clone(),
                        to.unwrap_or_else(|| "previous release".into()),
                    );
                }
                Err(e) => {
                    if self.signals.abandoned() {
                        outcome.abandoned.push(region.clone());
                    }
                    let text = crate::redact::redact(&e.render(false));
                    self.reporter
                        .error(&format!("rollback failed in {region}"), &text);
                    self.reporter
                        .phase(&region, &Phase::RollbackFailed(first_line(&e.to_string())));
                    outcome.failed.insert(region, e.to_string());
                }
            }
        }
        // Verify, stage by stage.
        if verify && !rolled.is_empty() && !self.signals.abandoned() {
            for stage in &self.config.stages {
                if !stage.verify_rollback {
                    continue;
                }
                let regions: Vec<String> = stage
                    .regions
                    .iter()
                    .filter(|r| rolled.contains_key(*r))
                    .cloned()
                    .collect();
                if regions.is_empty() {
                    continue;
                }
                let from: BTreeMap<String, String> = targets
                    .iter()
                    .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
                    .collect();
                let verdicts = self.watch_loop(
                    stage,
                    &regions,
                    Mode::Verify(&rolled),
                    false,
                    &Cancel::new(),
                    cancel,
                    &from,
                );
                for v in verdicts {
                    if let Some(err) = v.error() {
                        let msg = format!(
                            "rolled back to {} but verification failed: {err}",
                            rolled[&v.region]
                        );
                        self.reporter
                            .phase(&v.region, &Phase::RollbackFailed(msg.clone()));
                        outcome.failed.insert(v.region.clone(), msg);
                        rolled.remove(&v.region);
                    } else if v.result.is_none() {
                        outcome.failed.insert(
                            v.region.clone(),
                            "verification did not finish (abandoned)".into(),
                        );
                        outcome.abandoned.push(v.region.clone());
                        rolled.remove(&v.region);
                    }
                }
            }
        }
        for (region, to) in &rolled {
            self.reporter.phase(region, &Phase::RolledBack(to.clone()));
            outcome.ok.push(region.clone());
        }
        let status = if outcome.failed.is_empty() {
            "success"
        } else {
            "failed"
        };
        self.record(HistoryRecord::Rollback(RollbackRecord {
            deploy_id: self.deploy_id.clone(),
            regions: targets.iter().map(|t| t.region.clone()).collect(),
            from_version: targets
                .iter()
                .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
                .collect(),
            to_version: rolled.clone(),
            status: status.into(),
            automatic,
            reason: Some(reason.to_string()),
            start_time,
            end_time: Some(now_rfc3339()),
            duration_seconds: Some(secs(started.elapsed())),
            actor: self.invocation.actor.clone(),
            errors: outcome.failed.clone(),
        }));
        // status.json: where each region stands now.
        let now = now_rfc3339();
        let deploy_id = self.deploy_id.clone();
        let actor = self.invocation.actor.clone();
        let failed = outcome.failed.clone();
        if let Err(e) = self.ledger.update_status(|s| {
            s.app = self.config.app.name.clone();
            for (region, to) in &rolled {
                s.regions.insert(
                    region.clone(),
                    RegionStatus {
                        version: to.clone(),
                        deployed_at: now.clone(),
                        deploy_id: deploy_id.clone(),
                        status: "rolled_back".into(),
                        actor: actor.clone(),
                    },
                );
            }
            for region in failed.keys() {
                let entry = s.regions.entry(region.clone()).or_default();
                entry.status = "rollback_failed".into();
                entry.version = kept
                    .get(region)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into());
                entry.deploy_id = deploy_id.clone();
                entry.deployed_at = now.clone();
                entry.actor = actor.clone();
            }
        }) {
            self.reporter
                .warn(&format!("cannot update status.json: {e}"));
        }
        outcome
    }
}

/// Builds the per-stage result rows.
pub fn stage_result(
    stage: &Stage,
    status: &str,
    outcomes: &[RegionOutcome],
    previous: &BTreeMap<String, String>,
    version: &str,
    duration: Duration,
) -> StageResult {
    StageResult {
        name: stage.name.clone(),
        status: status.to_string(),
        duration_seconds: secs(duration),
        regions: outcomes
            .iter()
            .map(|o| RegionResult {
                region: o.region.clone(),
                status: match &o.result {
                    Some(Ok(())) => "success".into(),
                    Some(Err(_)) => "failed".into(),
                    None if o.changed => "cancelled".into(),
                    None => "skipped".into(),
                },
                previous_version: previous.get(&o.region).cloned(),
                version: if o.changed {
                    Some(version.to_string())
                } else {
                    previous.get(&o.region).cloned()
                },
                error: o.error().map(str::to_string),
                gates: o.gates.clone(),
                duration_seconds: o.duration(),
            })
            .collect(),
    }
}

/// A whole result, for commands that finish early.
pub fn empty_result(command: &str, deploy_id: &str, app: &str, version: &str) -> RunResult {
    RunResult {
        command: command.into(),
        deploy_id: deploy_id.into(),
        app: app.into(),
        version: version.into(),
        ..Default::default()
    }
}
