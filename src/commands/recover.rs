//! `shipgate recover [DEPLOY_ID | --latest]`: finishes what an interrupted (killed), cancelled
//! or rollback-failed deploy left. Every region that deploy changed — every region whose deploy
//! command had started — is read live and returned to the version captured before the deploy
//! changed it, or recorded as resolved when it already runs that version; then verified with its
//! stage's gates and recorded as a `recover` rollback, which clears "needs a human". An
//! interrupted deploy also gets its final record (`rolled_back` or `rollback_failed`).
//!
//! Exit 0 when every region is at a known, verified version; 3 when one still is not.

use std::collections::{BTreeMap, BTreeSet};

use crate::adapters::Live;
use crate::cli::{GlobalArgs, RecoverArgs};
use crate::config::Priority;
use crate::error::Error;
use crate::exit_code;
use crate::ledger::records::*;
use crate::ledger::Ledger;
use crate::notify::Notifier;
use crate::output::Output;
use crate::pipeline::engine::Engine;
use crate::pipeline::outcome::judge_rollback;
use crate::pipeline::rollback::{RollbackOptions, RollbackPlan, RollbackTarget};
use crate::pipeline::{actor, signals::Signals};
use crate::report::Reporter;

/// The deploy to recover, as history tells it.
struct Interrupted {
    /// Its newest deploy record (status and all).
    record: DeployRecord,
    /// Every region whose deploy command started, in pipeline order.
    changed: Vec<String>,
}

impl Interrupted {
    fn needs_recovery(&self) -> bool {
        matches!(
            self.record.status,
            DeployStatus::Started
                | DeployStatus::Cancelling
                | DeployStatus::Cancelled
                | DeployStatus::RollbackFailed
        )
    }
    fn never_finished(&self) -> bool {
        !self.record.status.is_final()
    }
}

pub fn run(global: &GlobalArgs, args: &RecoverArgs, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let ledger = if args.dry_run && config.state.store == crate::config::StoreKind::File {
        Ledger::reader(&config.state.dir)
    } else {
        Ledger::open_for(&config)?
    };
    let Some(found) = find(&ledger, args.deploy_id.as_deref(), &config)? else {
        output.info("nothing to recover: no deploy in history");
        return Ok(exit_code::SUCCESS);
    };
    let id = found.record.deploy_id.clone();
    if !found.needs_recovery() {
        output.info(format!(
            "nothing to recover: deploy {id} ended {}",
            found.record.status
        ));
        return Ok(exit_code::SUCCESS);
    }
    // A final deploy (cancelled, rollback_failed) whose regions were settled since — by an
    // earlier `recover`, a rollback, a later deploy — has nothing left to do.
    let recorded = ledger.status(&mut Vec::new())?;
    let settled = |r: &String| {
        recorded
            .regions
            .get(r)
            .is_some_and(|s| !s.needs_human() && s.may_run.is_none() && s.deploy_id != id)
            || recorded.regions.get(r).is_some_and(|s| {
                matches!(s.status, RegionState::RolledBack | RegionState::Resolved)
                    && s.may_run.is_none()
            })
    };
    if found.record.status.is_final() && found.changed.iter().all(settled) {
        output.info(format!(
            "nothing to recover: the regions deploy {id} ({}) changed were settled since",
            found.record.status
        ));
        return Ok(exit_code::SUCCESS);
    }
    let adapter = crate::adapters::build(&config)?;
    super::refuse_missing_programs(
        &config,
        adapter.as_ref(),
        &found.changed,
        !args.no_verify,
        args.dry_run,
        "this recovery",
        output,
    )?;
    let invocation = actor::detect(None);
    let signals = Signals::install();
    let guard = if args.dry_run {
        None
    } else {
        let own_id = ulid::Ulid::new().to_string();
        Some(super::take_lock(
            &ledger,
            &signals,
            &invocation,
            &own_id,
            "recover",
            args.lock_wait,
        )?)
    };
    let notify = crate::notify::queue::Queue::start(Notifier::from_config(&config), ledger.clone());
    if guard.is_some() {
        super::policy::way_back_while_closed(&config, &ledger, "recover", output);
    }
    let deployments = guard
        .as_ref()
        .and_then(|_| super::start_deployments(&config, &ledger, &invocation, global, output));
    let reporter = Reporter::new(output);
    let engine = Engine {
        config: &config,
        adapter: adapter.as_ref(),
        ledger: &ledger,
        notify: &notify,
        reporter: &reporter,
        signals: &signals,
        invocation: &invocation,
        deploy_id: id.clone(),
        version: found.record.version.clone(),
        progress: Default::default(),
        journal: Default::default(),
    };
    reporter.line(&format!(
        "recovering deploy {id} of {} ({}): {} region(s) it changed",
        found.record.version,
        found.record.status,
        found.changed.len()
    ));
    let plan = plan(&engine, &found);
    if plan.is_empty() {
        output.info("nothing to recover: the deploy changed no region");
    } else {
        // The plan is the answer of a dry run, and context for the prompt otherwise.
        let plan_text = super::rollback::render_plan(&plan);
        if !args.dry_run {
            output.info(plan_text.trim_end());
        } else if output.format == crate::cli::Format::Human {
            crate::answer!("{}", crate::redact::redact(plan_text.trim_end()));
        }
    }
    if args.dry_run {
        super::print_rollback_dry_run(&engine, &plan, !args.no_verify, output);
        return Ok(exit_code::SUCCESS);
    }
    if !args.yes && !super::confirm(&format!("Recover {} region(s)?", plan.targets.len())) {
        // A declined prompt is an answer, not a failure: exit 0, nothing changed.
        crate::answer!("aborted; nothing was changed");
        return Ok(exit_code::SUCCESS);
    }
    let started = std::time::Instant::now();
    let reason = format!("recover deploy {id} ({})", found.record.status);
    let outcome = engine.rollback(
        &plan,
        RollbackOptions {
            reason: &reason,
            automatic: false,
            verify: !args.no_verify,
            recover: true,
        },
    );
    reporter.finish();
    let verdict = judge_rollback(&outcome, "recovered", signals.state());
    if found.never_finished() {
        // The interrupted deploy ends now, with what recover made of it.
        engine.record(HistoryRecord::Deploy(DeployRecord {
            status: if outcome.succeeded() {
                DeployStatus::RolledBack
            } else {
                DeployStatus::RollbackFailed
            },
            end_time: Some(actor::now_rfc3339()),
            reason: Some(format!(
                "interrupted; {} by {}",
                verdict.message, invocation.actor
            )),
            mixed_regions: verdict.mixed.clone(),
            regions_detail: BTreeMap::new(),
            ..found.record.clone()
        }));
    }
    let mut result =
        super::rollback::rollback_result(&config, &id, &plan, &outcome, &verdict, started);
    result.command = "recover".into();
    let ctx = serde_json::json!({"deploy_id": id, "regions": plan.regions(), "outcome": result.status, "run_url": invocation.run_url});
    if outcome.succeeded() {
        engine.notify(
            Priority::P1,
            format!("recovered deploy {id} of {}", config.app.name),
            result.message.clone(),
            ctx,
        );
    } else {
        engine.notify(
            Priority::P0,
            format!("recover of {} FAILED: a human must look", config.app.name),
            result.message.clone(),
            ctx,
        );
    }
    super::fail_if_unrecorded(&ledger, &mut result);
    super::finish(output, &result);
    drop(guard);
    super::await_deliveries(&notify, deployments, &signals, output);
    Ok(super::exit_code_after_deliveries(
        &ledger,
        result.exit_code,
        output,
    ))
}

/// The deploy `id` (or the latest), its newest record and the regions it changed. Reads
/// history backwards only as far as that deploy's `started` record.
fn find(
    ledger: &Ledger,
    id: Option<&str>,
    config: &crate::config::Config,
) -> Result<Option<Interrupted>, Error> {
    let mut target: Option<String> = id.map(str::to_string);
    let mut newest: Option<DeployRecord> = None;
    // Stage records seen before their deploy's records (newest first), by deploy id.
    let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in ledger.history_rev(&mut Vec::new())? {
        match r.body {
            HistoryRecord::Stage(s) => {
                let regions = touched.entry(s.deploy_id.clone()).or_default();
                for (region, d) in &s.regions_detail {
                    if !matches!(d.status, RegionState::Skipped | RegionState::Other) {
                        regions.insert(region.clone());
                    }
                }
            }
            HistoryRecord::Deploy(d) => {
                let target = target.get_or_insert_with(|| d.deploy_id.clone());
                if &d.deploy_id != target {
                    continue;
                }
                let started = d.status == DeployStatus::Started;
                if newest.is_none() {
                    newest = Some(d.clone());
                }
                if let Some(set) = touched.get_mut(target) {
                    set.extend(d.regions_detail.keys().cloned());
                }
                if started {
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(record) = newest else {
        return match id {
            Some(id) => Err(
                Error::usage(format!("no deploy `{id}` in history")).with_hint(
                    "see `shipgate history --kind deploy`, or run `shipgate recover --latest`",
                ),
            ),
            None => Ok(None),
        };
    };
    let mut set = touched.remove(&record.deploy_id).unwrap_or_default();
    set.extend(record.regions_detail.keys().cloned());
    let order = config.regions();
    let mut changed: Vec<String> = order
        .iter()
        .filter(|r| set.contains(**r))
        .map(|r| r.to_string())
        .collect();
    changed.extend(set.into_iter().filter(|r| !order.contains(&r.as_str())));
    Ok(Some(Interrupted { record, changed }))
}

/// Each changed region back to its captured previous version; one already there is resolved
/// (verified and recorded). A region whose version cannot be read is returned all the same:
/// deploying the version it ran before is safe, and it is what recovery means.
fn plan(engine: &Engine<'_>, found: &Interrupted) -> RollbackPlan {
    let live = engine.capture(&found.changed, &engine.signals.work);
    let mut plan = RollbackPlan::default();
    for region in &found.changed {
        let from = match live.get(region) {
            Some(Ok(Live::Version(v))) => Some(v.clone()),
            Some(Ok(Live::Mixed(vs))) => {
                engine.reporter.line(&format!(
                    "{region} runs a mix of versions ({})",
                    vs.join(", ")
                ));
                None
            }
            Some(Ok(Live::Absent)) => None,
            Some(Err(e)) => {
                engine.reporter.warn(&format!(
                    "{region}: cannot read what runs there ({}): returning it to its previous version all the same",
                    crate::redact::redact(&e.to_string())
                ));
                None
            }
            None => None,
        };
        plan.targets.push(RollbackTarget {
            region: region.clone(),
            from,
            to: found.record.previous_versions.get(region).cloned(),
        });
    }
    plan
}
