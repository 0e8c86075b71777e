//! `deploy` from start to finish: lock, capture, the `started` record, stages with their
//! `on_failure` policy, the final record, notifications, events, and the exit code.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::adapters::Live;
use crate::config::{OnFailure, Priority, Stage};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::records::*;
use crate::notify::queue::Kind;
use crate::report::result::RunResult;

use super::actor::now_rfc3339;
use super::run::{stage_result, Engine, RollbackOutcome, RollbackTarget};

/// Options of one deploy.
pub struct DeployOptions<'a> {
    pub stages: Vec<&'a Stage>,
    pub allow_partial: bool,
    pub dirty: bool,
    pub reason: Option<String>,
}

/// Runs the deploy. The lock is already held. Returns the result (with its exit code).
pub fn deploy(engine: &Engine<'_>, opts: &DeployOptions<'_>) -> Result<RunResult, Error> {
    let config = engine.config;
    let started = Instant::now();
    let start_time = now_rfc3339();
    let regions: Vec<String> = opts.stages.iter().flat_map(|s| s.regions.clone()).collect();
    let mut result = RunResult {
        command: "deploy".into(),
        deploy_id: engine.deploy_id.clone(),
        app: config.app.name.clone(),
        version: engine.version.clone(),
        ..Default::default()
    };

    // What runs before the first change: the rollback targets.
    engine.reporter.line(&format!(
        "reading the current version of {} region(s)",
        regions.len()
    ));
    let captured = engine.capture(&regions, &engine.signals.work);
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (region, live) in &captured {
        match live {
            Ok(Live::Version(v)) => {
                previous.insert(region.clone(), v.clone());
            }
            Ok(Live::Mixed(vs)) => {
                // Fall back to history's last good version; the platform's mix is no target.
                let from_history = engine
                    .ledger
                    .successful_versions(region)
                    .ok()
                    .and_then(|v| v.into_iter().next());
                engine.reporter.warn(&format!(
                    "{region} runs a mix of versions ({}) before this deploy; rollback target: {}",
                    vs.join(", "),
                    from_history.as_deref().unwrap_or("none known")
                ));
                if let Some(v) = from_history {
                    previous.insert(region.clone(), v);
                }
            }
            Ok(Live::Absent) => {}
            // With the platform's own words (the stderr tail): "context does not exist",
            // "not authorized" say what to fix.
            Err(e) => unreadable.push(format!(
                "{region}: {}",
                indent_rest(&crate::redact::redact(&e.with_detail_text()))
            )),
        }
    }
    if engine.signals.cancelled() {
        return Err(Error::new(
            engine.signals.exit_code(),
            "interrupted before anything was changed",
        ));
    }
    if !unreadable.is_empty() {
        return Err(Error::failed("cannot read what runs in every region; nothing was changed")
            .with_detail(unreadable.join("\n"))
            .with_hint("a deploy needs each region's current version to be able to roll back; check the platform CLI and its credentials"));
    }
    result.previous_versions = previous.clone();

    let base = DeployRecord {
        deploy_id: engine.deploy_id.clone(),
        app: config.app.name.clone(),
        version: engine.version.clone(),
        previous_versions: previous.clone(),
        status: deploy_status::STARTED.into(),
        stages: opts.stages.iter().map(|s| s.name.clone()).collect(),
        start_time: start_time.clone(),
        actor: engine.invocation.actor.clone(),
        trigger: engine.invocation.trigger.clone(),
        run_url: engine.invocation.run_url.clone(),
        commit: engine.invocation.commit.clone(),
        dirty: opts.dirty,
        reason: opts.reason.clone(),
        ..Default::default()
    };
    engine
        .ledger
        .append_history(&HistoryRecord::Deploy(base.clone()))
        .map_err(|e| e.within("cannot write the deploy's `started` record; nothing was changed"))?;
    {
        let ledger = engine.ledger.clone();
        let mut rec = base.clone();
        engine.signals.on_first(move |sig| {
            rec.status = deploy_status::CANCELLING.into();
            rec.reason = Some(format!("received {}", super::signals::name(sig)));
            let _ = ledger.append_history(&HistoryRecord::Deploy(rec));
        });
    }
    engine.notify(
        Priority::P3,
        format!("deploy started: {} {}", config.app.name, engine.version),
        format!("{} is deploying {} to {} through {}", engine.invocation.actor, engine.version, regions.join(", "), base.stages.join(" → ")),
        serde_json::json!({"version": engine.version, "regions": regions, "stages": base.stages, "run_url": engine.invocation.run_url, "outcome": "started"}),
    );
    publish_event(engine, "start", &result);

    // Stages.
    let mut changed: Vec<String> = Vec::new(); // regions this deploy touched, in order
    let mut failed_regions: Vec<String> = Vec::new();
    let mut rollback_outcomes: Vec<RollbackOutcome> = Vec::new();
    let mut stopped_by: Option<String> = None;
    let total = opts.stages.len();
    for (i, stage) in opts.stages.iter().enumerate() {
        if engine.signals.cancelled() {
            break;
        }
        engine
            .reporter
            .stage_started(i, total, &stage.name, &stage.regions);
        let stage_start = now_rfc3339();
        let t0 = Instant::now();
        let outcomes = engine.run_stage(stage, &previous);
        for o in &outcomes {
            if o.changed {
                changed.push(o.region.clone());
            }
        }
        let failed: Vec<&super::run::RegionOutcome> =
            outcomes.iter().filter(|o| !o.healthy()).collect();
        let cancelled = engine.signals.cancelled();
        let mut detail: BTreeMap<String, RegionDetail> = outcomes
            .iter()
            .map(|o| {
                let status = match &o.result {
                    Some(Ok(())) => "success",
                    Some(Err(_)) => "failed",
                    None if o.changed => "cancelled",
                    None => "skipped",
                };
                (
                    o.region.clone(),
                    RegionDetail {
                        status: status.into(),
                        previous_version: previous.get(&o.region).cloned(),
                        error: o.error().map(str::to_string),
                    },
                )
            })
            .collect();
        let mut stage_status = if failed.is_empty() {
            "success"
        } else {
            "failed"
        };
        let mut stage_rows = stage_result(
            stage,
            stage_status,
            &outcomes,
            &previous,
            &engine.version,
            t0.elapsed(),
        );

        if failed.is_empty() && !cancelled {
            update_status(engine, &outcomes, &BTreeMap::new());
        } else if !cancelled {
            let names: Vec<String> = failed.iter().map(|o| o.region.clone()).collect();
            let why: Vec<String> = failed
                .iter()
                .map(|o| format!("{}: {}", o.region, o.error().unwrap_or("not finished")))
                .collect();
            // Which regions go back, and whether the deploy stops (SPEC §3 "On failure").
            let rollback_scope: Option<(Vec<String>, bool)> = match stage.on_failure {
                OnFailure::Rollback => Some((changed.clone(), true)),
                OnFailure::RollbackStage => Some((
                    outcomes
                        .iter()
                        .filter(|o| o.changed)
                        .map(|o| o.region.clone())
                        .collect(),
                    true,
                )),
                OnFailure::RollbackRegion => Some((
                    failed
                        .iter()
                        .filter(|o| o.changed)
                        .map(|o| o.region.clone())
                        .collect(),
                    false,
                )),
                OnFailure::Continue => None,
            };
            // Regions an earlier `rollback-region` already returned stay where they are.
            let already: Vec<String> = rollback_outcomes
                .iter()
                .flat_map(|r| r.ok.iter().cloned())
                .collect();
            let rollback_scope = rollback_scope.map(|(scope, stops)| {
                (
                    scope
                        .into_iter()
                        .filter(|r| !already.contains(r))
                        .collect::<Vec<_>>(),
                    stops,
                )
            });
            // A failed region that stays as it is may not run the new version (the platform
            // refused, or kept the old machines): record what it really runs, where the
            // platform can say, so `status --live` does not cry drift at the truth.
            let staying: Vec<String> = failed
                .iter()
                .filter(|o| o.changed)
                .map(|o| o.region.clone())
                .filter(|r| {
                    !rollback_scope
                        .as_ref()
                        .is_some_and(|(scope, _)| scope.contains(r))
                })
                .collect();
            let mut observed = observe(engine, &staying);
            // Without a way to ask (exec without `current`), a region whose deploy command
            // failed before any gate ran is not claimed to run the new version: the summary
            // says it is unknown, and the record keeps what it ran before.
            let mut unknown = Vec::new();
            if !engine.adapter.reads_live_version() {
                for o in failed.iter().filter(|o| staying.contains(&o.region)) {
                    if o.gates.is_empty() {
                        unknown.push(o.region.clone());
                        let before = previous.get(&o.region).cloned().unwrap_or_default();
                        observed.insert(o.region.clone(), before);
                    }
                }
            }
            for row in &mut stage_rows.regions {
                if unknown.contains(&row.region) {
                    row.version = None;
                } else if let Some(v) = observed.get(&row.region) {
                    row.version = Some(v.clone());
                }
            }
            update_status(engine, &outcomes, &observed);
            match rollback_scope {
                Some((scope, stops)) => {
                    let reason = format!("stage {} failed ({})", stage.name, why.join("; "));
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
                    let rb = engine.rollback(
                        &targets(&scope, &previous, &engine.version),
                        &reason,
                        true,
                        true,
                    );
                    mark_rolled_back(&mut detail, &rb);
                    apply_rollback_rows(&mut result, &mut stage_rows, &rb, &previous);
                    notify_rollback(engine, &rb, &reason);
                    rollback_outcomes.push(rb);
                    let rollback_ok = rollback_outcomes
                        .last()
                        .is_some_and(|rb| rb.failed.is_empty());
                    if stops {
                        // Nothing to roll back (no region changed) is a plain failure.
                        stage_status = if rollback_ok && !scope.is_empty() {
                            "rolled_back"
                        } else {
                            "failed"
                        };
                        stopped_by = Some(reason);
                    } else {
                        stage_status = if rollback_ok { "partial" } else { "failed" };
                        failed_regions.extend(names);
                    }
                }
                None => {
                    stage_status = "partial";
                    engine.reporter.warn(&format!(
                        "stage {}: {} failed; continuing (on_failure = \"continue\")",
                        stage.name,
                        names.join(", ")
                    ));
                    failed_regions.extend(names);
                }
            }
        }
        if cancelled {
            // SPEC §4 stage statuses have no "cancelled": the regions' details say it.
            stage_status = "failed";
        }
        stage_rows.status = stage_status.into();
        engine.record(HistoryRecord::Stage(StageRecord {
            deploy_id: engine.deploy_id.clone(),
            stage: stage.name.clone(),
            version: engine.version.clone(),
            regions: stage.regions.clone(),
            status: stage_status.into(),
            start_time: stage_start,
            end_time: Some(now_rfc3339()),
            duration_seconds: Some(t0.elapsed().as_secs_f64()),
            regions_detail: detail,
        }));
        engine
            .reporter
            .line(&format!("stage {} {}", stage.name, stage_status));
        result.stages.push(stage_rows);
        if stage_status == "success" && i + 1 < total {
            engine.notify(
                Priority::P2,
                format!("stage {} promoted: {} {}", stage.name, config.app.name, engine.version),
                format!("{} is healthy on {}; next: {}", engine.version, stage.regions.join(", "), opts.stages[i + 1].name),
                serde_json::json!({"stage": stage.name, "regions": stage.regions, "version": engine.version, "outcome": "success", "run_url": engine.invocation.run_url}),
            );
        }
        if stopped_by.is_some() || cancelled {
            break;
        }
    }
    engine.reporter.end_group();

    // Cancelled: roll back what changed (unless the stage loop already did).
    let mut cancelled_rollback: Option<RollbackOutcome> = None;
    if engine.signals.cancelled() {
        let already: Vec<String> = rollback_outcomes
            .iter()
            .flat_map(|r| r.ok.iter().cloned())
            .collect();
        let scope: Vec<String> = changed
            .iter()
            .filter(|r| !already.contains(r))
            .cloned()
            .collect();
        engine.reporter.line(&format!(
            "cancelled: rolling back {}",
            if scope.is_empty() {
                "nothing".to_string()
            } else {
                scope.join(", ")
            }
        ));
        let rb = engine.rollback(
            &targets(&scope, &previous, &engine.version),
            "deploy cancelled by a signal",
            true,
            true,
        );
        // The summary shows where each region ended, not where it was when the signal came.
        let mut none = crate::report::result::StageResult::default();
        apply_rollback_rows(&mut result, &mut none, &rb, &previous);
        for row in result.stages.iter_mut().flat_map(|s| s.regions.iter_mut()) {
            if rb.abandoned.contains(&row.region) {
                row.status = "cancelled".into();
                row.version = None;
            }
        }
        cancelled_rollback = Some(rb);
    }

    // The final record.
    let rollback_failed: Vec<String> = rollback_outcomes
        .iter()
        .chain(cancelled_rollback.iter())
        .flat_map(|r| r.failed.keys().cloned())
        .collect();
    let (status, code, message) = if engine.signals.cancelled() {
        let rb = cancelled_rollback.as_ref().expect("set when cancelled");
        let mut mixed: Vec<String> = rollback_failed.clone();
        mixed.extend(rb.abandoned.iter().cloned());
        mixed.sort();
        mixed.dedup();
        result.mixed_regions = mixed.clone();
        if engine.signals.abandoned() {
            (
                deploy_status::CANCELLED,
                engine.signals.exit_code(),
                format!(
                    "cancelled; rollback abandoned, regions left mixed: {}",
                    if mixed.is_empty() {
                        "none".into()
                    } else {
                        mixed.join(", ")
                    }
                ),
            )
        } else if !rollback_failed.is_empty() {
            (
                deploy_status::ROLLBACK_FAILED,
                exit_code::ROLLBACK_FAILED,
                format!(
                    "cancelled, and the rollback failed in {}",
                    rollback_failed.join(", ")
                ),
            )
        } else {
            (
                deploy_status::CANCELLED,
                engine.signals.exit_code(),
                format!(
                    "cancelled; rolled back {}",
                    if rb.ok.is_empty() {
                        "nothing (no region was changed)".into()
                    } else {
                        rb.ok.join(", ")
                    }
                ),
            )
        }
    } else if !rollback_failed.is_empty() {
        result.mixed_regions = rollback_failed.clone();
        (
            deploy_status::ROLLBACK_FAILED,
            exit_code::ROLLBACK_FAILED,
            {
                let why: Vec<String> = rollback_outcomes
                    .iter()
                    .flat_map(|r| r.failed.iter())
                    .map(|(region, e)| format!("{region}: {}", e.lines().next().unwrap_or("")))
                    .collect();
                format!(
                    "rollback failed in {} ({}): a human must look at what they run",
                    rollback_failed.join(", "),
                    why.join("; ")
                )
            },
        )
    } else if let Some(reason) = &stopped_by {
        if changed.is_empty() {
            // Nothing ran anywhere (a deploy program that could not start): nothing to undo.
            (
                deploy_status::FAILED,
                exit_code::FAILED,
                format!("{reason}; no region was changed"),
            )
        } else {
            (
                deploy_status::ROLLED_BACK,
                exit_code::FAILED,
                format!("{reason}; rolled back"),
            )
        }
    } else if !failed_regions.is_empty() {
        let code = if opts.allow_partial {
            exit_code::SUCCESS
        } else {
            exit_code::PARTIAL
        };
        (
            deploy_status::PARTIAL,
            code,
            if regions.iter().all(|r| failed_regions.contains(r)) {
                format!(
                    "every region failed ({}); none runs {} healthy",
                    failed_regions.join(", "),
                    engine.version
                )
            } else {
                format!(
                    "{} failed, the other regions run {}",
                    failed_regions.join(", "),
                    engine.version
                )
            },
        )
    } else {
        (
            deploy_status::SUCCESS,
            exit_code::SUCCESS,
            format!("{} runs on {}", engine.version, regions.join(", ")),
        )
    };
    result.status = status.into();
    result.exit_code = code;
    result.message = message.clone();
    result.duration_seconds = started.elapsed().as_secs_f64();
    engine.signals.clear_hook();
    let final_record = DeployRecord {
        status: status.into(),
        end_time: Some(now_rfc3339()),
        duration_seconds: Some(started.elapsed().as_secs_f64()),
        reason: Some(message.clone()),
        mixed_regions: result.mixed_regions.clone(),
        failed_regions: failed_regions.clone(),
        ..base
    };
    // The outcome stands even when it cannot be recorded: say so loudly, keep the exit code.
    if let Err(e) = engine
        .ledger
        .append_history(&HistoryRecord::Deploy(final_record))
    {
        engine.reporter.error(
            "history",
            &format!("cannot write the deploy's final `{status}` record: {e}"),
        );
        result
            .warnings
            .push(format!("the final record is missing from history: {e}"));
    }
    let (last_status, last_end) = (status.to_string(), now_rfc3339());
    if let Err(e) = engine.ledger.update_status(|s| {
        s.app = config.app.name.clone();
        s.last_deploy = Some(LastDeploy {
            deploy_id: engine.deploy_id.clone(),
            version: engine.version.clone(),
            status: last_status,
            start_time: start_time.clone(),
            end_time: Some(last_end),
            actor: engine.invocation.actor.clone(),
        });
    }) {
        engine
            .reporter
            .warn(&format!("cannot update status.json: {e}"));
    }

    // Tell people.
    let ctx = serde_json::json!({"version": engine.version, "regions": regions, "outcome": status, "run_url": engine.invocation.run_url, "failed_regions": failed_regions, "mixed_regions": result.mixed_regions});
    match status {
        deploy_status::SUCCESS => engine.notify(
            Priority::P2,
            format!("deployed {} {}", config.app.name, engine.version),
            message.clone(),
            ctx,
        ),
        deploy_status::PARTIAL => {
            engine.reporter.warn(&message);
            engine.notify(
                Priority::P1,
                format!("partial deploy of {} {}", config.app.name, engine.version),
                message.clone(),
                ctx,
            )
        }
        deploy_status::ROLLBACK_FAILED => {
            engine.reporter.error("rollback failed", &message);
            engine.notify(
                Priority::P0,
                format!(
                    "ROLLBACK FAILED for {} {}: a human must look",
                    config.app.name, engine.version
                ),
                format!(
                    "{message}. Regions whose version is now unknown or mixed: {}",
                    result.mixed_regions.join(", ")
                ),
                ctx,
            )
        }
        deploy_status::CANCELLED => engine.notify(
            Priority::P1,
            format!("deploy of {} {} cancelled", config.app.name, engine.version),
            message.clone(),
            ctx,
        ),
        _ => engine.notify(
            Priority::P0,
            format!("deploy of {} {} failed", config.app.name, engine.version),
            message.clone(),
            ctx,
        ),
    }
    publish_event(
        engine,
        if status == deploy_status::SUCCESS {
            "success"
        } else {
            "failure"
        },
        &result,
    );
    Ok(result)
}

/// `text` with every line after the first indented, to sit under a `region: ` prefix.
pub(crate) fn indent_rest(text: &str) -> String {
    text.trim_end().replace('\n', "\n    ")
}

fn targets(
    regions: &[String],
    previous: &BTreeMap<String, String>,
    version: &str,
) -> Vec<RollbackTarget> {
    regions
        .iter()
        .map(|r| RollbackTarget {
            region: r.clone(),
            from: Some(version.to_string()),
            to: previous.get(r).cloned(),
        })
        .collect()
}

fn mark_rolled_back(detail: &mut BTreeMap<String, RegionDetail>, rb: &RollbackOutcome) {
    for r in &rb.ok {
        if let Some(d) = detail.get_mut(r) {
            d.status = "rolled_back".into();
        }
    }
    for (r, e) in &rb.failed {
        if let Some(d) = detail.get_mut(r) {
            d.status = "rollback_failed".into();
            d.error = Some(match &d.error {
                Some(prev) => format!("{prev}; rollback failed: {e}"),
                None => format!("rollback failed: {e}"),
            });
        }
    }
}

/// Rolled-back regions of this and earlier stages show where they ended.
fn apply_rollback_rows(
    result: &mut RunResult,
    current: &mut crate::report::result::StageResult,
    rb: &RollbackOutcome,
    previous: &BTreeMap<String, String>,
) {
    for stage in result.stages.iter_mut().chain(std::iter::once(current)) {
        for row in stage.regions.iter_mut() {
            if rb.ok.contains(&row.region) {
                row.status = "rolled_back".into();
                row.version = previous.get(&row.region).cloned();
            } else if let Some(e) = rb.failed.get(&row.region) {
                row.status = "rollback_failed".into();
                row.version = None;
                row.error = Some(e.clone());
            }
        }
    }
}

fn notify_rollback(engine: &Engine<'_>, rb: &RollbackOutcome, reason: &str) {
    let app = &engine.config.app.name;
    if rb.failed.is_empty() && !rb.ok.is_empty() {
        engine.notify(
            Priority::P0,
            format!("rolled back {app} {} in {}", engine.version, rb.ok.join(", ")),
            reason.to_string(),
            serde_json::json!({"version": engine.version, "regions": rb.ok, "outcome": "rolled_back", "run_url": engine.invocation.run_url}),
        );
    }
}

/// What `regions` run now, for those the platform can tell (none for an exec pipeline without a
/// `current` command: there the deploy's version is recorded, as before).
fn observe(engine: &Engine<'_>, regions: &[String]) -> BTreeMap<String, String> {
    if regions.is_empty() || !engine.adapter.reads_live_version() {
        return BTreeMap::new();
    }
    engine
        .capture(regions, &crate::exec::Cancel::new())
        .into_iter()
        .filter_map(|(region, live)| match live {
            Ok(Live::Version(v)) => Some((region, v)),
            _ => None,
        })
        .collect()
}

/// Records the stage's changed regions in `status.json`: the deploy's version, or what
/// `observed` says a region really runs.
fn update_status(
    engine: &Engine<'_>,
    outcomes: &[super::run::RegionOutcome],
    observed: &BTreeMap<String, String>,
) {
    let now = now_rfc3339();
    if let Err(e) = engine.ledger.update_status(|s| {
        s.app = engine.config.app.name.clone();
        for o in outcomes.iter().filter(|o| o.changed) {
            s.regions.insert(
                o.region.clone(),
                RegionStatus {
                    version: observed
                        .get(&o.region)
                        .cloned()
                        .unwrap_or_else(|| engine.version.clone()),
                    deployed_at: now.clone(),
                    deploy_id: engine.deploy_id.clone(),
                    status: if o.healthy() {
                        "success".into()
                    } else {
                        "failed".into()
                    },
                    actor: engine.invocation.actor.clone(),
                },
            );
        }
    }) {
        engine
            .reporter
            .warn(&format!("cannot update status.json: {e}"));
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
