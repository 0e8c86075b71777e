//! `deploy` from start to finish: capture the rollback targets, the `started` record, the
//! stages with their `on_failure` policy, the cancellation rollback, the verdict, the final
//! record, notifications and events.
//!
//! The steps are [`DeployRun`]'s methods; what a stage does inside is `stage.rs`, what a
//! rollback does is `rollback.rs`, and the verdict is `outcome.rs`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::adapters::Live;
use crate::config::{Approval, OnFailure, OnTimeout, Priority, Stage};
use crate::error::Error;
use crate::ledger::records::*;
use crate::notify::queue::Kind;
use crate::report::result::{RunResult, StageResult};

use super::actor::now_rfc3339;
use super::approval::{await_approval, Wait};
use super::engine::Engine;
use super::outcome::{judge_deploy, DeployFacts, Verdict};
use super::rollback::{RollbackOptions, RollbackOutcome, RollbackPlan};
use super::stage::{stage_result, RegionOutcome};

/// Options of one deploy.
pub struct DeployOptions<'a> {
    pub stages: Vec<&'a Stage>,
    pub allow_partial: bool,
    pub dirty: bool,
    pub reason: Option<String>,
    /// The policy each later stage is checked against before it starts.
    pub policy: Option<PolicyWatch>,
}

/// The stage name an override's approval is asked for.
pub const OVERRIDE_STAGE: &str = "policy-override";

/// Windows and freezes during a deploy: a stage that is closed when its turn comes is not
/// started; the deploy ends `blocked` (exit 7) with the stages before it as they are.
pub struct PolicyWatch {
    pub clock: crate::policy::Clock,
    /// `--override-policy`: the deploy goes through, and this is what the record says.
    pub overridden: Option<Box<PolicyOverride>>,
    /// The stopped line in force when the deploy was admitted (an override goes through it,
    /// not through one stopped later).
    pub line_at_start: Option<ActiveFreeze>,
}

/// Runs the deploy. The lock is already held. Returns the result (with its exit code).
pub fn deploy(engine: &Engine<'_>, opts: &DeployOptions<'_>) -> Result<RunResult, Error> {
    let started = Instant::now();
    let regions: Vec<String> = opts.stages.iter().flat_map(|s| s.regions.clone()).collect();
    engine.reporter.line(&format!(
        "reading the current version of {} region(s)",
        regions.len()
    ));
    let previous = capture_targets(engine, &regions, &mut |w| engine.reporter.warn(w))?;
    if engine.signals.state().cancelled() {
        return Err(Error::new(
            engine.signals.exit_code(),
            "interrupted before anything was changed",
        ));
    }
    let mut run = DeployRun::new(engine, opts, regions, previous);
    run.start()?;
    let baseline_unhealthy = run.baseline_unhealthy();
    for (i, stage) in opts.stages.iter().enumerate() {
        if baseline_unhealthy || engine.signals.state().cancelled() || run.stopped_unrecorded() {
            break;
        }
        // Checked again now that the lock is held (a freeze may have started while this
        // deploy waited for it), and again after a wait for an approval.
        if run.blocked_before(stage) {
            break;
        }
        if i == 0 && !run.override_approved(stage) {
            break;
        }
        if let Some(approval) = &stage.approval {
            if !run.approval(stage, approval) || run.blocked_before(stage) {
                break;
            }
        }
        let go_on = run.stage(i, stage);
        if !go_on {
            break;
        }
    }
    engine.reporter.end_group();
    run.roll_back_if_stopped();
    Ok(run.finish(started))
}

/// `text` with every line after the first indented, to sit under a `region: ` prefix.
pub(crate) fn indent_rest(text: &str) -> String {
    text.trim_end().replace('\n', "\n    ")
}

/// Each region's rollback target, read before the first change: what the platform says runs
/// there. An empty or unreadable answer about a region history says runs a version never
/// erases that knowledge: it is a warning, and history's version is the target. A region with
/// no version known anywhere is deployed only after `warn` says so. A platform that cannot be
/// asked at all (a failed command) refuses the deploy: nothing was changed.
pub fn capture_targets(
    engine: &Engine<'_>,
    regions: &[String],
    warn: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, String>, Error> {
    let captured = engine.capture(regions, &engine.signals.work);
    let recorded = engine.ledger.status(&mut Vec::new()).unwrap_or_default();
    let from_history = |region: &str| -> Option<String> {
        let known = recorded
            .regions
            .get(region)
            .and_then(|s| (!s.needs_human()).then(|| s.known_version().map(str::to_string))?);
        known.or_else(|| {
            engine
                .ledger
                .successful_versions(region)
                .ok()
                .and_then(|v| v.into_iter().next())
        })
    };
    let mut previous = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (region, live) in captured {
        let answer = match live {
            Ok(Live::Version(v)) => {
                previous.insert(region, v);
                continue;
            }
            Ok(Live::Mixed(vs)) => format!("runs a mix of versions ({})", vs.join(", ")),
            Ok(Live::Absent) => "reports nothing deployed".to_string(),
            Err(e) if e.unreadable => format!(
                "gave an answer that cannot be read ({})",
                crate::redact::redact(&e.to_string())
            ),
            // With the platform's own words (the stderr tail): "context does not exist",
            // "not authorized" say what to fix.
            Err(e) => {
                unreadable.push(format!(
                    "{region}: {}",
                    indent_rest(&crate::redact::redact(&e.with_detail_text()))
                ));
                continue;
            }
        };
        match from_history(&region) {
            Some(v) => {
                warn(&format!(
                    "{region}: the platform {answer}, but history says it runs {v}: rollback target {v}"
                ));
                previous.insert(region, v);
            }
            None => warn(&format!(
                "{region}: the platform {answer} and history knows no version there: it is \
                 deployed without a rollback target (a failure there needs a human)"
            )),
        }
    }
    if !unreadable.is_empty() {
        return Err(Error::failed("cannot read what runs in every region; nothing was changed")
            .with_detail(unreadable.join("\n"))
            .with_hint("a deploy needs each region's current version to be able to roll back; check the platform CLI and its credentials"));
    }
    Ok(previous)
}

/// One deploy's state between its steps.
struct DeployRun<'r, 'e> {
    engine: &'r Engine<'e>,
    opts: &'r DeployOptions<'r>,
    regions: Vec<String>,
    /// Region → its rollback target.
    previous: BTreeMap<String, String>,
    base: DeployRecord,
    result: RunResult,
    facts: DeployFacts,
    /// Result rows whose version nobody can tell (exec without `current`, deploy failed).
    unsure: Vec<String>,
}

impl<'r, 'e> DeployRun<'r, 'e> {
    fn new(
        engine: &'r Engine<'e>,
        opts: &'r DeployOptions<'r>,
        regions: Vec<String>,
        previous: BTreeMap<String, String>,
    ) -> Self {
        let config = engine.config;
        let base = DeployRecord {
            deploy_id: engine.deploy_id.clone(),
            app: config.app.name.clone(),
            version: engine.version.clone(),
            previous_versions: previous.clone(),
            status: DeployStatus::Started,
            stages: opts.stages.iter().map(|s| s.name.clone()).collect(),
            regions: regions.clone(),
            start_time: now_rfc3339(),
            actor: engine.invocation.actor.clone(),
            trigger: engine.invocation.trigger.clone(),
            run_url: engine.invocation.run_url.clone(),
            commit: engine.invocation.commit.clone(),
            dirty: opts.dirty,
            reason: opts.reason.clone(),
            policy_override: opts.policy.as_ref().and_then(|p| p.overridden.clone()),
            simulated_now: opts.policy.as_ref().and_then(|p| p.clock.simulated()),
            ..Default::default()
        };
        let result = RunResult {
            command: "deploy".into(),
            deploy_id: engine.deploy_id.clone(),
            app: config.app.name.clone(),
            version: engine.version.clone(),
            previous_versions: previous.clone(),
            ..Default::default()
        };
        let facts = DeployFacts {
            version: engine.version.clone(),
            regions: regions.clone(),
            allow_partial: opts.allow_partial,
            ..Default::default()
        };
        DeployRun {
            engine,
            opts,
            regions,
            previous,
            base,
            result,
            facts,
            unsure: Vec::new(),
        }
    }

    /// The `started` record, the signal hooks, the P3 notification and the start event.
    fn start(&mut self) -> Result<(), Error> {
        let engine = self.engine;
        engine
            .ledger
            .append_history(&HistoryRecord::Deploy(self.base.clone()))
            .map_err(|e| {
                e.within("cannot write the deploy's `started` record; nothing was changed")
            })?;
        self.install_signal_hooks();
        let config = engine.config;
        engine.notify(
            Priority::P3,
            format!("deploy started: {} {}", config.app.name, engine.version),
            format!("{} is deploying {} to {} through {}", engine.invocation.actor, engine.version, self.regions.join(", "), self.base.stages.join(" → ")),
            serde_json::json!({"version": engine.version, "regions": self.regions, "stages": self.base.stages, "run_url": engine.invocation.run_url, "outcome": "started"}),
        );
        publish_event(engine, "start", &self.result);
        Ok(())
    }

    /// First signal: `cancelling`, naming the regions changed and their targets. Second
    /// signal: `cancelled`, each region back, mixed or unknown, written before anything waits.
    fn install_signal_hooks(&self) {
        let engine = self.engine;
        let progress_record = |status: DeployStatus, reason: String| {
            let ledger = engine.ledger.clone();
            let mut rec = self.base.clone();
            rec.status = status;
            rec.reason = Some(reason);
            (ledger, rec)
        };
        // The hooks run on the signal thread: they own what they need.
        let progress = engine.progress.clone();
        let (ledger, rec) = progress_record(DeployStatus::Cancelling, String::new());
        let first = progress.clone();
        engine.signals.on_first(move |sig| {
            let mut rec = rec;
            rec.reason = Some(format!("received {}", super::signals::name(sig)));
            rec.regions_detail = first.snapshot();
            if let Err(e) = ledger.append_history(&HistoryRecord::Deploy(rec)) {
                // The ledger latches it: the rollback goes on, and the final record (with
                // where every region stands) is what history must not lose.
                crate::say!("error: cannot record the cancel in history: {e}");
            }
        });
        let (ledger, rec) = progress_record(DeployStatus::Cancelled, String::new());
        let started = Instant::now();
        engine.signals.on_second(move |sig| {
            if !progress.claim_final() {
                return;
            }
            let mut rec = rec;
            rec.regions_detail = progress.snapshot();
            let left: Vec<String> = rec
                .regions_detail
                .iter()
                .filter(|(_, r)| r.position != Position::Back)
                .map(|(region, r)| format!("{region} {}", r.position))
                .collect();
            rec.reason = Some(format!(
                "cancelled: a second signal ({}) abandoned the rollback; {}",
                super::signals::name(sig),
                if left.is_empty() {
                    "every changed region is back".to_string()
                } else {
                    format!("not back: {}", left.join(", "))
                }
            ));
            rec.mixed_regions = rec
                .regions_detail
                .iter()
                .filter(|(_, r)| r.position != Position::Back)
                .map(|(region, _)| region.clone())
                .collect();
            rec.end_time = Some(now_rfc3339());
            rec.duration_seconds = Some(started.elapsed().as_secs_f64());
            if let Err(e) = ledger.append_history(&HistoryRecord::Deploy(rec)) {
                // Said now (shipgate may be killed before the engine returns), and again with
                // exit 3 by the engine if it gets there.
                crate::say!(
                    "error: cannot write the deploy's final `cancelled` record: {e}; history does \
                     not say what runs where: {}",
                    if left.is_empty() {
                        "every changed region is back".to_string()
                    } else {
                        format!("not back: {}", left.join(", "))
                    }
                );
                progress.set_final_lost(e.to_string());
            }
        });
    }

    /// With `[policy] override_requires = "approval"`, an override waits for an approval of
    /// the pseudo-stage `policy-override` before anything deploys (`shipgate approve ID --stage
    /// policy-override`, signed when `[approvals] allowed_signers` is set); a rejection or a
    /// timeout stops the deploy `blocked` with nothing changed.
    fn override_approved(&mut self, first: &Stage) -> bool {
        let needs = self
            .opts
            .policy
            .as_ref()
            .is_some_and(|p| p.overridden.is_some())
            && self.engine.config.policy.override_requires
                == crate::config::OverrideRequires::Approval;
        if !needs {
            return true;
        }
        let mut pseudo = first.clone();
        pseudo.name = OVERRIDE_STAGE.into();
        pseudo.regions = self.regions.clone();
        let approval = crate::config::Approval {
            required: 1,
            timeout: self.engine.config.policy.override_timeout,
            remind_every: None,
            on_timeout: crate::config::OnTimeout::Stop,
        };
        self.approval(&pseudo, &approval)
    }

    /// The stages' `preflight` gates against what runs now, before anything changes: a trip
    /// blocks the deploy (exit 7) and the final record says which gate, where, and why.
    fn baseline_unhealthy(&mut self) -> bool {
        let engine = self.engine;
        let trips =
            super::preflight_gates::check_baseline(engine, &self.opts.stages, &self.previous);
        if trips.is_empty() || engine.signals.state().cancelled() {
            return false;
        }
        let why = format!(
            "{}: the baseline is unhealthy",
            trips
                .iter()
                .map(|t| t.describe())
                .collect::<Vec<_>>()
                .join("; ")
        );
        engine.reporter.error_line("blocked by preflight", &why);
        self.facts.blocked_by = Some(why);
        self.facts.baseline_unhealthy = true;
        true
    }

    /// Whether policy closed `stage` since the deploy started (a window closed, someone
    /// stopped the line): then the deploy stops here, `blocked`, the stages before it as they
    /// are, and a later deploy of the same version resumes from here.
    fn blocked_before(&mut self, stage: &Stage) -> bool {
        let Some(watch) = &self.opts.policy else {
            return false;
        };
        let engine = self.engine;
        // Unreadable: the deploy cannot tell whether the line was stopped, so it stops.
        let blocks = match engine.ledger.status(&mut Vec::new()) {
            Ok(status) => {
                let line = status.freeze.map(|f| *f);
                let mut blocks = crate::policy::blocks(
                    engine.config,
                    line.as_ref(),
                    &stage.name,
                    watch.clock.now(),
                );
                // An override goes through what it overrode: the windows and freezes of the
                // config, and the line stopped when it was granted; not a line stopped since.
                if watch.overridden.is_some() {
                    blocks.retain(|b| match b {
                        crate::policy::Block::Line(l) => {
                            watch.line_at_start.as_ref().map(|s| &s.since) != Some(&l.since)
                        }
                        _ => false,
                    });
                }
                blocks
            }
            Err(e) => {
                let why = format!("cannot read whether the line is stopped ({e})");
                let message = format!("stopped before stage {}: {why}", stage.name);
                engine.reporter.error_line("blocked by policy", &message);
                self.facts.blocked_by = Some(message);
                return true;
            }
        };
        if blocks.is_empty() {
            return false;
        }
        let why = blocks
            .iter()
            .map(|b| b.describe(engine.config))
            .collect::<Vec<_>>()
            .join("; ");
        let message = format!(
            "stopped before stage {}: {why} (a later deploy of {} resumes from {})",
            stage.name, engine.version, stage.name
        );
        engine.reporter.error_line("blocked by policy", &message);
        self.facts.blocked_by = Some(message);
        true
    }

    /// Waits for `stage`'s approval before it deploys; false when the deploy stops here. A
    /// timeout or a rejection stops the deploy: `on_timeout = "stop"` leaves earlier stages as
    /// they are (`blocked`, exit 7); `rollback` rolls back every region the deploy changed, as
    /// a failed stage under `on_failure = "rollback"` does. A signal stops it as anywhere else
    /// (the cancellation rollback after the loop).
    fn approval(&mut self, stage: &Stage, approval: &Approval) -> bool {
        let engine = self.engine;
        let why = match await_approval(engine, stage, approval, &self.base.actor) {
            Wait::Approved { by } => {
                engine.reporter.line(&format!(
                    "stage {}: approved by {}",
                    stage.name,
                    by.join(", ")
                ));
                return true;
            }
            Wait::Cancelled => return false,
            Wait::Rejected { by, reason } => {
                format!("stage {} rejected by {by}: {reason}", stage.name)
            }
            Wait::TimedOut { approvals } => format!(
                "stage {}: approval timed out after {} ({approvals} of {} approvals)",
                stage.name,
                humantime::format_duration(approval.timeout),
                approval.required
            ),
        };
        let already: Vec<String> = self.facts.rollbacks.iter().flat_map(|r| r.ok()).collect();
        let scope: Vec<String> = self
            .facts
            .changed
            .iter()
            .filter(|r| !already.contains(r))
            .cloned()
            .collect();
        if approval.on_timeout == OnTimeout::Rollback && !scope.is_empty() {
            engine
                .reporter
                .line(&format!("{why}: rolling back {}", scope.join(", ")));
            let rb = self.roll_back(&scope, &why);
            self.facts.rollbacks.push(rb);
            self.facts.stopped_by = Some(why);
        } else {
            engine.reporter.line(&format!(
                "{why}: the deploy stops here; earlier stages are left as they are"
            ));
            self.facts.blocked_by = Some(why);
        }
        false
    }

    /// Runs one stage and applies its `on_failure` policy; false when the deploy stops here.
    fn stage(&mut self, index: usize, stage: &Stage) -> bool {
        let engine = self.engine;
        let total = self.opts.stages.len();
        engine
            .reporter
            .stage_started(index, total, &stage.name, &stage.regions);
        let stage_start = now_rfc3339();
        let t0 = Instant::now();
        let outcomes = engine.run_stage(stage, &self.previous);
        self.facts.changed.extend(
            outcomes
                .iter()
                .filter(|o| o.changed)
                .map(|o| o.region.clone()),
        );
        let mut detail = self.stage_detail(&outcomes);
        // Read once: a signal (or a failed record) arriving later is handled after the loop.
        let cancelled = engine.signals.state().cancelled() || self.stopped_unrecorded();
        let failed: Vec<&RegionOutcome> = outcomes.iter().filter(|o| !o.healthy()).collect();
        let mut status = StageStatus::Success;
        let mut go_on = true;
        if cancelled {
            // SPEC §4 stage statuses have no "cancelled": the regions' details say it.
            status = StageStatus::Failed;
            go_on = false;
        } else if !failed.is_empty() {
            (status, go_on) = self.on_failure(stage, &outcomes, &failed, &mut detail);
        }
        let mut rows = stage_result(stage, status, &outcomes, &detail, t0.elapsed());
        for row in rows.regions.iter_mut() {
            if self.unsure.contains(&row.region) {
                row.version = None;
            }
        }
        engine.record(HistoryRecord::Stage(StageRecord {
            deploy_id: engine.deploy_id.clone(),
            stage: stage.name.clone(),
            version: engine.version.clone(),
            regions: stage.regions.clone(),
            status,
            start_time: stage_start,
            end_time: Some(now_rfc3339()),
            duration_seconds: Some(t0.elapsed().as_secs_f64()),
            regions_detail: detail,
            commands: Vec::new(),
            weight: None,
        }));
        // Recorded as failed (SPEC §4 has no cancelled stage), but said as what it was.
        let said = if cancelled {
            "cancelled".to_string()
        } else {
            status.to_string()
        };
        engine
            .reporter
            .line(&format!("stage {} {said}", stage.name));
        self.result.stages.push(rows);
        if status == StageStatus::Success && index + 1 < total {
            let config = engine.config;
            engine.notify(
                Priority::P2,
                format!("stage {} promoted: {} {}", stage.name, config.app.name, engine.version),
                format!("{} is healthy on {}; next: {}", engine.version, stage.regions.join(", "), self.opts.stages[index + 1].name),
                serde_json::json!({"stage": stage.name, "regions": stage.regions, "version": engine.version, "outcome": "success", "run_url": engine.invocation.run_url}),
            );
        }
        go_on
    }

    /// Each region's state after the stage and what it runs, before any rollback.
    fn stage_detail(&mut self, outcomes: &[RegionOutcome]) -> BTreeMap<String, RegionDetail> {
        let engine = self.engine;
        outcomes
            .iter()
            .map(|o| {
                let before = self.previous.get(&o.region).cloned();
                let version = match o.state() {
                    RegionState::Success => Some(engine.version.clone()),
                    RegionState::Skipped => before.clone(),
                    _ if !o.changed => before.clone(),
                    // A cut-short deploy: unknown until the rollback says.
                    RegionState::Cancelled => None,
                    _ if !engine.adapter.reads_live_version() && o.gates.is_empty() => {
                        // Without a way to ask (exec without `current`), a region whose deploy
                        // command failed is not claimed to run the new version.
                        self.unsure.push(o.region.clone());
                        before.clone()
                    }
                    _ => Some(engine.version.clone()),
                };
                (
                    o.region.clone(),
                    RegionDetail {
                        status: o.state(),
                        previous_version: before,
                        version,
                        error: o.error().map(str::to_string),
                    },
                )
            })
            .collect()
    }

    /// SPEC §3 "On failure": which regions go back, and whether the deploy stops.
    fn on_failure(
        &mut self,
        stage: &Stage,
        outcomes: &[RegionOutcome],
        failed: &[&RegionOutcome],
        detail: &mut BTreeMap<String, RegionDetail>,
    ) -> (StageStatus, bool) {
        let engine = self.engine;
        let names: Vec<String> = failed.iter().map(|o| o.region.clone()).collect();
        let why: Vec<String> = failed
            .iter()
            .map(|o| format!("{}: {}", o.region, o.error().unwrap_or("not finished")))
            .collect();
        let changed_here = |only_failed: bool| -> Vec<String> {
            outcomes
                .iter()
                .filter(|o| o.changed && (!only_failed || !o.healthy()))
                .map(|o| o.region.clone())
                .collect()
        };
        // A broken gate judges nothing from here on: whatever the policy, the deploy stops
        // and every region it changed goes back (README "Where shipgate differs").
        let broken: Vec<String> = failed
            .iter()
            .filter_map(|o| o.broken_gate.clone())
            .collect();
        let policy = if broken.is_empty() {
            stage.on_failure
        } else {
            OnFailure::Rollback
        };
        let scope: Option<(Vec<String>, bool)> = match policy {
            OnFailure::Rollback => Some((self.facts.changed.clone(), true)),
            OnFailure::RollbackStage => Some((changed_here(false), true)),
            OnFailure::RollbackRegion => Some((changed_here(true), false)),
            OnFailure::Continue => None,
        };
        // Regions an earlier `rollback-region` already returned stay where they are.
        let already: Vec<String> = self.facts.rollbacks.iter().flat_map(|r| r.ok()).collect();
        let scope = scope.map(|(s, stops)| {
            let s: Vec<String> = s.into_iter().filter(|r| !already.contains(r)).collect();
            (s, stops)
        });
        // A failed region that stays as it is is recorded as running what the platform says.
        let staying: Vec<String> = changed_here(true)
            .into_iter()
            .filter(|r| !scope.as_ref().is_some_and(|(s, _)| s.contains(r)))
            .collect();
        self.observe(&staying, detail);
        let Some((scope, stops)) = scope else {
            engine.reporter.warn(&format!(
                "stage {}: {} failed; continuing (on_failure = \"continue\")",
                stage.name,
                names.join(", ")
            ));
            self.facts.failed_regions.extend(names);
            return (StageStatus::Partial, true);
        };
        let reason = match failed.iter().find(|o| o.broken_gate.is_some()) {
            Some(o) => format!(
                "stage {}: {}",
                stage.name,
                o.error().unwrap_or("a gate is misconfigured")
            ),
            None => format!("stage {} failed ({})", stage.name, why.join("; ")),
        };
        engine.reporter.line(&if scope.is_empty() {
            format!(
                "stage {} failed: no region was changed, nothing to roll back",
                stage.name
            )
        } else {
            format!(
                "stage {} failed: rolling back {}",
                stage.name,
                scope.join(", ")
            )
        });
        let rb = self.roll_back(&scope, &reason);
        for (region, d) in &rb.regions {
            if let Some(row) = detail.get_mut(region) {
                row.status = d.status;
                row.version = d.version.clone();
                if let Some(e) = &d.error {
                    let e = if d.status == RegionState::RollbackFailed {
                        format!("rollback failed: {e}")
                    } else {
                        e.clone()
                    };
                    row.error = Some(match &row.error {
                        Some(prev) => format!("{prev}; {e}"),
                        None => e,
                    });
                }
            }
        }
        let ok = rb.succeeded();
        self.facts.rollbacks.push(rb);
        if stops {
            self.facts.stopped_by = Some(reason);
            // Nothing to roll back (no region was changed) is a plain failure.
            let status = if ok && !scope.is_empty() {
                StageStatus::RolledBack
            } else {
                StageStatus::Failed
            };
            (status, false)
        } else {
            self.facts.failed_regions.extend(names);
            (
                if ok {
                    StageStatus::Partial
                } else {
                    StageStatus::Failed
                },
                true,
            )
        }
    }

    /// What `regions` (failed, staying as they are) run, where the platform can say.
    fn observe(&self, regions: &[String], detail: &mut BTreeMap<String, RegionDetail>) {
        let engine = self.engine;
        if regions.is_empty() || !engine.adapter.reads_live_version() {
            return;
        }
        for (region, live) in engine.capture(regions, &crate::exec::Cancel::new()) {
            if let Some(d) = detail.get_mut(&region) {
                match live {
                    Ok(Live::Version(v)) => d.version = Some(v),
                    Ok(Live::Mixed(_)) => d.version = None,
                    // Nothing usable: keep what the deploy believes.
                    _ => {}
                }
            }
        }
    }

    /// Rolls `scope` back to the captured targets, updates the result rows of every stage so
    /// far, and tells people.
    fn roll_back(&mut self, scope: &[String], reason: &str) -> RollbackOutcome {
        let engine = self.engine;
        let plan = RollbackPlan::for_deploy(scope, &self.previous, &engine.version);
        let rb = engine.rollback(
            &plan,
            RollbackOptions {
                reason,
                automatic: true,
                verify: true,
                recover: false,
            },
        );
        apply_rollback_rows(&mut self.result.stages, &rb);
        let ok = rb.ok();
        if rb.succeeded() && !ok.is_empty() {
            let app = &engine.config.app.name;
            engine.notify(
                Priority::P0,
                format!("rolled back {app} {} in {}", engine.version, ok.join(", ")),
                reason.to_string(),
                serde_json::json!({"version": engine.version, "regions": ok, "outcome": "rolled_back", "run_url": engine.invocation.run_url}),
            );
        }
        rb
    }

    /// Whether a record could not be written (any append of this run, history or audit):
    /// then the deploy starts nothing new and rolls back what it changed. Remembered in the
    /// facts for the verdict.
    fn stopped_unrecorded(&mut self) -> bool {
        if self.facts.unrecorded.is_none() {
            self.facts.unrecorded = self.engine.ledger.cannot_record();
            if let Some(why) = &self.facts.unrecorded {
                self.engine.reporter.error(
                    "cannot record",
                    &format!("{why}; the deploy starts nothing new and rolls back what it changed"),
                );
            }
        }
        self.facts.unrecorded.is_some()
    }

    /// Cancelled, or stopped because records cannot be written: roll back what changed
    /// (unless the stage loop already did).
    fn roll_back_if_stopped(&mut self) {
        let engine = self.engine;
        let cancelled = engine.signals.state().cancelled();
        if !cancelled && !self.stopped_unrecorded() {
            return;
        }
        let already: Vec<String> = self.facts.rollbacks.iter().flat_map(|r| r.ok()).collect();
        let scope: Vec<String> = self
            .facts
            .changed
            .iter()
            .filter(|r| !already.contains(r))
            .cloned()
            .collect();
        let (what, reason) = if cancelled {
            ("cancelled", "deploy cancelled by a signal".to_string())
        } else {
            (
                "cannot record",
                format!(
                    "cannot record the deploy in history: {}",
                    self.facts.unrecorded.as_deref().unwrap_or("")
                ),
            )
        };
        engine.reporter.line(&format!(
            "{what}: rolling back {}",
            if scope.is_empty() {
                "nothing".to_string()
            } else {
                scope.join(", ")
            }
        ));
        let rb = self.roll_back(&scope, &reason);
        for row in self
            .result
            .stages
            .iter_mut()
            .flat_map(|s| s.regions.iter_mut())
        {
            if rb.abandoned.contains(&row.region) {
                row.status = "cancelled".into();
                row.version = None;
            }
        }
        self.facts.rollbacks.push(rb);
    }

    /// The verdict, the final record, the notification and the event.
    fn finish(mut self, started: Instant) -> RunResult {
        let engine = self.engine;
        let verdict = judge_deploy(&self.facts, engine.signals.state());
        // Decided: a signal from now on (the runner cancelling as the deploy ends) is one to
        // stop waiting for deliveries, not one to roll back for.
        engine.signals.run_over();
        self.result.status = verdict.status.as_str().into();
        self.result.exit_code = verdict.exit_code;
        self.result.message = verdict.message.clone();
        self.result.mixed_regions = verdict.mixed.clone();
        self.result.duration_seconds = started.elapsed().as_secs_f64();
        engine.signals.clear_hook();
        self.write_final(&verdict, started);
        self.tell_people(&verdict);
        publish_event(
            engine,
            if verdict.status == DeployStatus::Success {
                "success"
            } else {
                "failure"
            },
            &self.result,
        );
        self.result
    }

    fn write_final(&mut self, verdict: &Verdict, started: Instant) {
        let engine = self.engine;
        if !engine.progress.claim_final() {
            // The second signal's hook wrote the `cancelled` record already (or failed to).
            if let Some(why) = engine.progress.final_lost() {
                let e = Error::failed(why);
                self.final_record_lost(verdict, &e);
            }
            return;
        }
        let mut record = DeployRecord {
            status: verdict.status,
            end_time: Some(now_rfc3339()),
            duration_seconds: Some(started.elapsed().as_secs_f64()),
            reason: Some(verdict.message.clone()),
            mixed_regions: verdict.mixed.clone(),
            failed_regions: self.facts.failed_regions.clone(),
            ..self.base.clone()
        };
        // Records were lost (a full disk): the final record alone says where each region
        // stands, so the fold of history is right without them.
        let unrecorded = self.facts.unrecorded.is_some() || engine.ledger.cannot_record().is_some();
        if verdict.status == DeployStatus::Cancelled || unrecorded {
            record.regions_detail = engine.progress.snapshot();
        }
        match engine.ledger.append_history(&HistoryRecord::Deploy(record)) {
            Ok(appended) => {
                if let Some(w) = appended.warning {
                    engine.reporter.warn(&w);
                    self.result.warnings.push(w);
                }
            }
            Err(e) => self.final_record_lost(verdict, &e),
        }
    }

    /// The final record cannot be written: history cannot tell what runs where, so this run
    /// must. Exit 3 (a human must look), naming every region and what it runs.
    fn final_record_lost(&mut self, verdict: &Verdict, e: &Error) {
        let engine = self.engine;
        let snapshot = engine.progress.snapshot();
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|r| match snapshot.get(r) {
                None => format!(
                    "{r}: unchanged, runs {}",
                    self.previous
                        .get(r)
                        .map_or("what it ran before", String::as_str)
                ),
                Some(d) if d.position == Position::Back => format!(
                    "{r}: rolled back, runs {}",
                    d.target.as_deref().unwrap_or("its previous version")
                ),
                Some(d) => format!(
                    "{r}: {} (may run {}; its target is {})",
                    d.position,
                    engine.version,
                    d.target.as_deref().unwrap_or("unknown")
                ),
            })
            .collect();
        engine.reporter.error(
            "cannot record",
            &format!(
                "cannot write the deploy's final `{}` record: {e}\nhistory does not say what \
                 runs where; this does:\n{}",
                verdict.status,
                regions.join("\n")
            ),
        );
        self.result
            .warnings
            .push(format!("the final record is missing from history: {e}"));
        self.result.exit_code = crate::exit_code::ROLLBACK_FAILED;
        self.result.status = DeployStatus::RollbackFailed.as_str().into();
        self.result.message = format!(
            "{}; cannot record it in history: a human must look at what runs where",
            verdict.message
        );
        self.result.mixed_regions = snapshot
            .iter()
            .filter(|(_, d)| d.position != Position::Back)
            .map(|(r, _)| r.clone())
            .collect();
    }

    fn tell_people(&self, verdict: &Verdict) {
        let engine = self.engine;
        let app = &engine.config.app.name;
        let v = &engine.version;
        let message = verdict.message.clone();
        let ctx = serde_json::json!({"version": v, "regions": self.regions, "outcome": verdict.status.as_str(), "run_url": engine.invocation.run_url, "failed_regions": self.facts.failed_regions, "mixed_regions": verdict.mixed});
        let (priority, title, message) = match verdict.status {
            DeployStatus::Success => (Priority::P2, format!("deployed {app} {v}"), message),
            // The outcome's annotation is written with the result (`commands::finish`): here
            // only the line for people.
            DeployStatus::Partial => {
                engine.reporter.warn_line(&message);
                (
                    Priority::P1,
                    format!("partial deploy of {app} {v}"),
                    message,
                )
            }
            DeployStatus::RollbackFailed => {
                engine.reporter.error_line("rollback failed", &message);
                (
                    Priority::P0,
                    format!("ROLLBACK FAILED for {app} {v}: a human must look"),
                    format!(
                        "{message}. Regions whose version is now unknown or mixed: {}",
                        verdict.mixed.join(", ")
                    ),
                )
            }
            DeployStatus::Cancelled => (
                Priority::P1,
                format!("deploy of {app} {v} cancelled"),
                message,
            ),
            DeployStatus::Blocked => (
                Priority::P1,
                if self.facts.baseline_unhealthy {
                    format!("deploy of {app} {v} blocked: the baseline is unhealthy")
                } else {
                    format!("deploy of {app} {v} blocked by policy")
                },
                message,
            ),
            _ => (Priority::P0, format!("deploy of {app} {v} failed"), message),
        };
        engine.notify(priority, title, message, ctx);
    }
}

/// Rolled-back regions of every stage so far show where they ended.
fn apply_rollback_rows(stages: &mut [StageResult], rb: &RollbackOutcome) {
    for row in stages.iter_mut().flat_map(|s| s.regions.iter_mut()) {
        if let Some(d) = rb.regions.get(&row.region) {
            row.status = d.status.as_str().into();
            row.version = d.version.clone();
            if d.error.is_some() {
                row.error = d.error.clone();
            }
        }
    }
}

fn publish_event(engine: &Engine<'_>, event_type: &str, result: &RunResult) {
    let kind = match event_type {
        "start" => crate::events::EventType::Start,
        "success" => crate::events::EventType::Success,
        _ => crate::events::EventType::Failure,
    };
    let mut metadata = serde_json::Map::new();
    if let Some(c) = &engine.invocation.commit {
        metadata.insert("commit_sha".into(), c.clone().into());
    }
    if let Some(u) = &engine.invocation.run_url {
        metadata.insert("run_url".into(), u.clone().into());
    }
    if !result.message.is_empty() {
        metadata.insert("message".into(), result.message.clone().into());
    }
    if !result.status.is_empty() {
        metadata.insert("outcome".into(), result.status.clone().into());
    }
    // Built and signed here; delivered on the queue, so a dead sink never delays the deploy.
    match crate::events::prepare_deploy_event(
        engine.config,
        engine.ledger,
        kind,
        &engine.deploy_id,
        &engine.version,
        metadata,
    ) {
        None => {}
        Some(Err(warning)) => engine.reporter.warn(&warning),
        Some(Ok(mut pending)) => {
            let fallback = pending.abandoned(crate::notify::queue::ABANDONED);
            engine.notify.submit_with_fallback(
                Kind::Event,
                pending.give_up_after(),
                Box::new(move || {
                    pending.deliver();
                    Box::new(move |ledger: &crate::ledger::Ledger| pending.record(ledger))
                }),
                Some(Box::new(move |ledger: &crate::ledger::Ledger| {
                    fallback.record(ledger)
                })),
            )
        }
    }
}
