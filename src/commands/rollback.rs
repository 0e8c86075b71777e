//! `shipgate rollback`: return regions to an earlier version, by hand. The plan, its calls,
//! verification and record are the one rollback of `pipeline/rollback.rs`.

use std::collections::BTreeMap;

use crate::adapters::Live;
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::config::{Config, Priority};
use crate::error::Error;
use crate::exit_code;
use crate::notify::Notifier;
use crate::output::Output;
use crate::pipeline::engine::Engine;
use crate::pipeline::outcome::{judge_rollback, Verdict};
use crate::pipeline::rollback::{RollbackOptions, RollbackOutcome, RollbackPlan, RollbackTarget};
use crate::pipeline::{actor, signals::Signals};
use crate::report::result::{RegionResult, RunResult, StageResult};
use crate::report::Reporter;
use crate::version;

pub fn run(global: &GlobalArgs, args: &RollbackArgs, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let regions = select_regions(&config, &args.regions, args.stage.as_deref())?;
    // A dry run reads: it never creates the state directory a typo may name.
    let ledger = if args.dry_run && config.state.store == crate::config::StoreKind::File {
        crate::ledger::Ledger::reader(&config.state.dir)
    } else {
        crate::ledger::Ledger::open_for(&config)?
    };
    if let Some(to) = &args.to {
        version::check(to, "--to")?;
        if !args.force && !ledger.has_successful_deploy(to)? {
            return Err(Error::usage(format!("no successful deploy of `{to}` in history; nothing was changed"))
                .with_hint("pick a version from `shipgate history --kind stage --status success`, or pass --force to roll back to it anyway"));
        }
    }
    let adapter = crate::adapters::build(&config)?;
    super::refuse_missing_programs(
        &config,
        adapter.as_ref(),
        &regions,
        !args.no_verify,
        args.dry_run,
        "this rollback",
        output,
    )?;
    let invocation = actor::detect(None);
    let signals = Signals::install();
    let rollback_id = ulid::Ulid::new().to_string();
    // A dry run reads and changes nothing that needs the lock.
    let guard = if args.dry_run {
        None
    } else {
        Some(super::take_lock(
            &ledger,
            &signals,
            &invocation,
            &rollback_id,
            "rollback",
            args.lock_wait,
        )?)
    };
    let notify = crate::notify::queue::Queue::start(Notifier::from_config(&config), ledger.clone());
    if guard.is_some() {
        super::policy::way_back_while_closed(&config, &ledger, "rollback", output);
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
        deploy_id: rollback_id.clone(),
        version: String::new(),
        progress: Default::default(),
        journal: Default::default(),
    };

    let plan = plan(&engine, &regions, args.to.as_deref())?;
    if plan.is_empty() {
        output.info("nothing to roll back: no region has anything to do");
        return Ok(exit_code::SUCCESS);
    }
    // The plan is the answer of a dry run, and context for the prompt otherwise.
    let plan_text = render_plan(&plan);
    if !args.dry_run {
        output.info(plan_text.trim_end());
    } else if output.format == crate::cli::Format::Human {
        crate::answer!("{}", crate::redact::redact(plan_text.trim_end()));
    }
    if args.dry_run {
        super::print_rollback_dry_run(&engine, &plan, !args.no_verify, output);
        return Ok(exit_code::SUCCESS);
    }
    if !args.yes && !super::confirm(&format!("Roll back {} region(s)?", plan.targets.len())) {
        // A declined prompt is an answer, not a failure: exit 0, nothing changed.
        crate::answer!("aborted; nothing was changed");
        return Ok(exit_code::SUCCESS);
    }

    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| "manual rollback".into());
    let started = std::time::Instant::now();
    let outcome = engine.rollback(
        &plan,
        RollbackOptions {
            reason: &reason,
            automatic: false,
            verify: !args.no_verify,
            recover: false,
        },
    );
    reporter.finish();
    let verdict = judge_rollback(&outcome, "rolled back", signals.state());
    let mut result = rollback_result(&config, &rollback_id, &plan, &outcome, &verdict, started);
    let ctx = serde_json::json!({"regions": plan.regions(), "to_version": result.version, "reason": reason, "run_url": invocation.run_url});
    if outcome.succeeded() {
        engine.notify(
            Priority::P1,
            format!("manual rollback of {}: {}", config.app.name, result.message),
            format!("{} rolled back: {reason}", invocation.actor),
            ctx,
        );
    } else {
        engine.notify(
            Priority::P0,
            format!(
                "manual rollback of {} FAILED: a human must look",
                config.app.name
            ),
            result.message.clone(),
            ctx,
        );
    }
    super::fail_if_unrecorded(&ledger, &mut result);
    super::finish(output, &result);
    // Nothing changes any more: free the lock before waiting for slow deliveries.
    drop(guard);
    super::await_deliveries(&notify, deployments, &signals, output);
    Ok(super::exit_code_after_deliveries(
        &ledger,
        result.exit_code,
        output,
    ))
}

/// Where each region goes. A region with nothing to do (it already runs its target, or no
/// earlier version is known) is skipped, and said so, instead of refusing the whole plan; a
/// region that needs a human and already runs the target is verified and recorded, which
/// clears it. A region whose version cannot be read refuses the plan: nothing was changed.
fn plan(engine: &Engine<'_>, regions: &[String], to: Option<&str>) -> Result<RollbackPlan, Error> {
    let live = engine.capture(regions, &engine.signals.work);
    let recorded = engine.ledger.status(&mut Vec::new())?;
    let mut plan = RollbackPlan::default();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    for region in regions {
        let current = match live.get(region) {
            Some(Ok(Live::Version(v))) => Some(v.clone()),
            Some(Ok(_)) | None => None,
            Some(Err(e)) => {
                problems.push(format!(
                    "{region}: cannot read its current version: {}",
                    crate::pipeline::deploy::indent_rest(&crate::redact::redact(
                        &e.with_detail_text()
                    ))
                ));
                continue;
            }
        };
        let needs_human = recorded
            .regions
            .get(region)
            .is_some_and(|s| s.needs_human());
        let to = match to {
            Some(to) => Some(to.to_string()),
            None => engine.earlier_version(region, current.as_deref())?,
        };
        match to {
            Some(to) if Some(&to) == current.as_ref() && !needs_human => engine
                .reporter
                .line(&format!("{region} already runs {to}; skipped")),
            Some(to) => plan.targets.push(RollbackTarget {
                region: region.clone(),
                from: current,
                to: Some(to),
            }),
            None => {
                let why = format!(
                    "{region}: no earlier version known (history and the platform have none before {}){}",
                    current.as_deref().unwrap_or("its current one"),
                    if needs_human { "; it needs a human" } else { "" }
                );
                engine.reporter.warn(&format!("skipped {why}"));
                unknown.push(why);
            }
        }
    }
    // Skipping is for a plan with something left to do; with nothing left, say why.
    if plan.is_empty() && !unknown.is_empty() {
        problems.extend(unknown);
    }
    if !problems.is_empty() {
        return Err(
            Error::usage("cannot plan the rollback; nothing was changed")
                .with_detail(problems.join("\n"))
                .with_hint("name the version with --to V (and narrow with --region), or check the platform CLI and its credentials"),
        );
    }
    Ok(plan)
}

/// The plan, one line per region.
pub(super) fn render_plan(plan: &RollbackPlan) -> String {
    let mut text = String::from("rollback plan:\n");
    for t in &plan.targets {
        let to = t.to.as_deref().unwrap_or("nothing known");
        let what = if t.already_there() {
            format!("already runs {to}: verify and record")
        } else {
            format!("{} → {to}", t.from.as_deref().unwrap_or("unknown"))
        };
        text.push_str(&format!("  {:<8} {what}\n", t.region));
    }
    text
}

/// The result rows, stage by stage, and the verdict.
pub(super) fn rollback_result(
    config: &Config,
    id: &str,
    plan: &RollbackPlan,
    outcome: &RollbackOutcome,
    verdict: &Verdict,
    started: std::time::Instant,
) -> RunResult {
    let previous: BTreeMap<String, String> = plan
        .targets
        .iter()
        .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
        .collect();
    let mut result = RunResult {
        command: "rollback".into(),
        deploy_id: id.to_string(),
        app: config.app.name.clone(),
        previous_versions: previous,
        status: if verdict.exit_code == exit_code::ROLLBACK_FAILED || !outcome.succeeded() {
            "failed".into()
        } else {
            "success".into()
        },
        exit_code: verdict.exit_code,
        message: verdict.message.clone(),
        mixed_regions: verdict.mixed.clone(),
        duration_seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    for stage in &config.stages {
        let rows: Vec<RegionResult> = plan
            .targets
            .iter()
            .filter(|t| stage.regions.contains(&t.region))
            .map(|t| {
                let d = outcome.regions.get(&t.region).cloned().unwrap_or_default();
                RegionResult {
                    region: t.region.clone(),
                    status: d.status.as_str().into(),
                    previous_version: t.from.clone(),
                    version: d.version,
                    error: d.error,
                    gates: Default::default(),
                    duration_seconds: started.elapsed().as_secs_f64(),
                }
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let all_ok = rows.iter().all(|r| r.status != "rollback_failed");
        result.stages.push(StageResult {
            name: stage.name.clone(),
            status: if all_ok { "rolled_back" } else { "failed" }.into(),
            regions: rows,
            duration_seconds: started.elapsed().as_secs_f64(),
        });
    }
    let mut tos: Vec<String> = plan.targets.iter().filter_map(|t| t.to.clone()).collect();
    tos.sort();
    tos.dedup();
    result.version = tos.join(",");
    if outcome.succeeded() {
        result.message = format!("{} to {}", verdict.message, result.version);
    }
    result
}

/// `--region` and `--stage` narrowed to regions of the pipeline.
fn select_regions(
    config: &Config,
    regions: &[String],
    stage: Option<&str>,
) -> Result<Vec<String>, Error> {
    let all: Vec<&str> = config.regions();
    let pool: Vec<String> = match stage {
        Some(name) => {
            let st = super::deploy::select_stages(config, &[name.to_string()])?;
            st[0].regions.clone()
        }
        None => all.iter().map(|s| s.to_string()).collect(),
    };
    if regions.is_empty() {
        return Ok(pool);
    }
    for r in regions {
        if !pool.contains(r) {
            let mut err = Error::usage(format!(
                "region `{r}` is not in {}",
                stage
                    .map(|s| format!("stage `{s}`"))
                    .unwrap_or_else(|| "the pipeline".into())
            ));
            err = match crate::config::did_you_mean(r, pool.iter().map(String::as_str)) {
                Some(s) => err.with_hint(format!("did you mean `{s}`?")),
                None => err.with_hint(format!("regions: {}", pool.join(", "))),
            };
            return Err(err);
        }
    }
    Ok(pool.into_iter().filter(|r| regions.contains(r)).collect())
}
