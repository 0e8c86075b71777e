//! `shipgate rollback`: return regions to an earlier version, by hand.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use crate::adapters::Live;
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::config::{Config, Priority};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::lock;
use crate::notify::Notifier;
use crate::output::Output;
use crate::pipeline::run::{stage_result, Engine, RegionOutcome, RollbackTarget};
use crate::pipeline::{actor, signals::Signals};
use crate::report::result::RunResult;
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
    let all_stages: Vec<&crate::config::Stage> = config.stages.iter().collect();
    let missing = crate::pipeline::preflight::missing_programs(
        &config,
        adapter.as_ref(),
        &all_stages,
        Some(&regions),
        crate::pipeline::preflight::Purpose::Rollback {
            verify: !args.no_verify,
        },
    );
    if args.dry_run {
        // A preview, like `deploy --dry-run`: it warns; the rollback itself refuses.
        for m in &missing {
            output.warn(crate::pipeline::preflight::warning(m));
        }
    } else if !missing.is_empty() {
        return Err(crate::pipeline::preflight::refuse(
            "this rollback",
            &missing,
        ));
    }
    let invocation = actor::detect(None);
    let signals = Signals::install();
    let rollback_id = ulid::Ulid::new().to_string();
    let info = lock::LockInfo {
        pid: std::process::id(),
        host: invocation.host.clone(),
        actor: invocation.actor.clone(),
        deploy_id: rollback_id.clone(),
        started_at: actor::now_rfc3339(),
        command: "rollback".into(),
    };
    // A dry run reads and changes nothing that needs the lock.
    let guard = if args.dry_run {
        None
    } else {
        Some(
            ledger
                .acquire_lock(&info, args.lock_wait, || signals.cancelled())
                .map_err(|e| {
                    if signals.cancelled() {
                        Error::new(signals.exit_code(), e.message)
                    } else {
                        e
                    }
                })?,
        )
    };
    let notify = crate::notify::queue::Queue::start(Notifier::from_config(&config), ledger.clone());
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
    };

    // Where each region is, and where it goes.
    let live = engine.capture(&regions, &signals.work);
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for region in &regions {
        let current = match live.get(region) {
            Some(Ok(Live::Version(v))) => Some(v.clone()),
            Some(Ok(_)) => None,
            Some(Err(e)) => {
                problems.push(format!(
                    "{region}: cannot read its current version: {}",
                    crate::pipeline::deploy::indent_rest(&crate::redact::redact(
                        &e.with_detail_text()
                    ))
                ));
                continue;
            }
            None => None,
        };
        let to = match &args.to {
            Some(to) => Some(to.clone()),
            None => previous_version(&engine, region, current.as_deref())?,
        };
        match to {
            Some(to) if Some(&to) == current.as_ref() => {
                reporter.line(&format!("{region} already runs {to}; skipped"))
            }
            Some(to) => targets.push(RollbackTarget {
                region: region.clone(),
                from: current,
                to: Some(to),
            }),
            None => problems.push(format!(
                "{region}: no earlier version known (history and the platform have none before {})",
                current.as_deref().unwrap_or("its current one")
            )),
        }
    }
    if !problems.is_empty() {
        return Err(
            Error::usage("cannot plan the rollback; nothing was changed")
                .with_detail(problems.join("\n"))
                .with_hint("name the version with --to V"),
        );
    }
    if targets.is_empty() {
        output.info("nothing to roll back: every region already runs its target version");
        return Ok(exit_code::SUCCESS);
    }

    // Show the plan and ask, at a terminal.
    let mut plan = String::from("rollback plan:\n");
    for t in &targets {
        plan.push_str(&format!(
            "  {:<8} {} → {}\n",
            t.region,
            t.from.as_deref().unwrap_or("unknown"),
            t.to.as_deref().unwrap_or("?")
        ));
    }
    output.info(plan.trim_end());
    if args.dry_run {
        return dry_run(&engine, &targets, args, output);
    }
    if !args.yes && std::io::stdin().is_terminal() {
        crate::say_part!("Roll back {} region(s)? [y/N] ", targets.len());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Error::failed("aborted; nothing was changed"));
        }
    }

    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| "manual rollback".into());
    let started = std::time::Instant::now();
    let outcome = engine.rollback(&targets, &reason, false, !args.no_verify);
    reporter.finish();

    // Result rows, by stage.
    let previous: BTreeMap<String, String> = targets
        .iter()
        .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
        .collect();
    let mut result = RunResult {
        command: "rollback".into(),
        deploy_id: rollback_id,
        app: config.app.name.clone(),
        previous_versions: previous.clone(),
        ..Default::default()
    };
    for stage in &config.stages {
        let outs: Vec<RegionOutcome> = targets
            .iter()
            .filter(|t| stage.regions.contains(&t.region))
            .map(|t| RegionOutcome {
                region: t.region.clone(),
                changed: true,
                result: Some(match outcome.failed.get(&t.region) {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                }),
                started: Some(started),
                finished: Some(std::time::Instant::now()),
                gates: Default::default(),
            })
            .collect();
        if outs.is_empty() {
            continue;
        }
        let mut row = stage_result(stage, "", &outs, &previous, "", started.elapsed());
        for r in row.regions.iter_mut() {
            let t = targets
                .iter()
                .find(|t| t.region == r.region)
                .expect("target row");
            r.version = if outcome.failed.contains_key(&r.region) {
                None
            } else {
                t.to.clone()
            };
            r.status = if outcome.failed.contains_key(&r.region) {
                "rollback_failed".into()
            } else {
                "rolled_back".into()
            };
        }
        row.status = if row.regions.iter().all(|r| r.status == "rolled_back") {
            "rolled_back".into()
        } else {
            "failed".into()
        };
        result.stages.push(row);
    }
    let tos: Vec<String> = {
        let mut v: Vec<String> = targets.iter().filter_map(|t| t.to.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    result.version = tos.join(",");
    result.duration_seconds = started.elapsed().as_secs_f64();
    let ctx = serde_json::json!({"regions": targets.iter().map(|t| &t.region).collect::<Vec<_>>(), "to_version": result.version, "reason": reason, "run_url": invocation.run_url});
    if outcome.failed.is_empty() {
        result.status = "success".into();
        // Finished despite a signal: report the interruption, but as a success.
        result.exit_code = if signals.cancelled() {
            signals.exit_code()
        } else {
            exit_code::SUCCESS
        };
        result.message = format!(
            "rolled back {} to {}",
            outcome.ok.join(", "),
            result.version
        );
        engine.notify(
            Priority::P1,
            format!("manual rollback of {}: {}", config.app.name, result.message),
            format!("{} rolled back: {reason}", invocation.actor),
            ctx,
        );
    } else {
        let mut failed: Vec<String> = outcome.failed.keys().cloned().collect();
        failed.extend(outcome.abandoned.iter().cloned());
        failed.sort();
        failed.dedup();
        result.mixed_regions = failed.clone();
        result.status = "failed".into();
        let only_abandoned = outcome.failed.keys().all(|r| outcome.abandoned.contains(r));
        result.exit_code = if signals.abandoned() && only_abandoned {
            signals.exit_code()
        } else {
            exit_code::ROLLBACK_FAILED
        };
        let why: Vec<String> = outcome
            .failed
            .iter()
            .map(|(r, e)| format!("{r}: {}", e.lines().next().unwrap_or("")))
            .collect();
        result.message = format!(
            "rollback failed in {} ({}): a human must look at what they run",
            failed.join(", "),
            why.join("; ")
        );
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
    super::deploy::finish(output, &result);
    // Nothing changes any more: free the lock before waiting for slow deliveries.
    drop(guard);
    super::deploy::await_deliveries(&notify, &signals, output);
    Ok(result.exit_code)
}

/// The last version deployed successfully to `region` before `current`: from history, else
/// from the platform's own release history.
fn previous_version(
    engine: &Engine<'_>,
    region: &str,
    current: Option<&str>,
) -> Result<Option<String>, Error> {
    let from_history = engine.ledger.successful_versions(region)?;
    if let Some(v) = from_history
        .into_iter()
        .find(|v| Some(v.as_str()) != current)
    {
        return Ok(Some(v));
    }
    // The first shipgate deploy over an app that ran before: its record says what ran.
    if let Some(current) = current {
        let mut warnings = Vec::new();
        for r in engine.ledger.history_rev(&mut warnings)? {
            if let crate::ledger::HistoryRecord::Deploy(d) = &r.body {
                if d.version == current {
                    if let Some(v) = d
                        .previous_versions
                        .get(region)
                        .filter(|v| v.as_str() != current)
                    {
                        return Ok(Some(v.clone()));
                    }
                }
            }
        }
    }
    let stage = engine.config.stage_of(region);
    let vars = engine.vars(
        stage.map(|s| s.name.as_str()),
        Some(region),
        current.unwrap_or(""),
        None,
    );
    let on_line = |_: crate::exec::Stream, _: &str| {};
    let ctx = crate::adapters::RunCtx {
        cancel: &engine.signals.work,
        command_timeout: stage
            .map(|s| s.command_timeout)
            .unwrap_or(engine.config.defaults.command_timeout),
        cwd: engine.config.base_dir.clone(),
        on_line: Some(&on_line),
    };
    match engine.adapter.release_history(region, &vars, &ctx) {
        Ok(versions) => Ok(versions.into_iter().find(|v| Some(v.as_str()) != current)),
        Err(e) => {
            engine.reporter.warn(&format!(
                "{region}: the platform's release history is unavailable: {}",
                crate::pipeline::deploy::indent_rest(&e.with_detail_text())
            ));
            Ok(None)
        }
    }
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

/// `rollback --dry-run`: the commands the rollback would run, exactly as it would run them
/// (secrets redacted), and what would verify it. Nothing is locked, run or recorded.
fn dry_run(
    engine: &Engine<'_>,
    targets: &[RollbackTarget],
    args: &RollbackArgs,
    output: &Output,
) -> Result<i32, Error> {
    let config = engine.config;
    let timeout_of = |region: &str| {
        config
            .stage_of(region)
            .map(|s| s.command_timeout)
            .unwrap_or(config.defaults.command_timeout)
    };
    // As `Engine::rollback` groups them: one call per target version for an adapter that
    // batches regions (fly), one per region otherwise.
    let mut jobs: Vec<(Vec<&RollbackTarget>, String)> = Vec::new();
    for t in targets {
        let Some(to) = t.to.clone() else { continue };
        match jobs
            .iter_mut()
            .find(|(_, v)| engine.adapter.batches_regions() && *v == to)
        {
            Some((group, _)) => group.push(t),
            None => jobs.push((vec![t], to)),
        }
    }
    let mut commands: Vec<Vec<String>> = Vec::new();
    for (group, to) in &jobs {
        let regions: Vec<String> = group.iter().map(|t| t.region.clone()).collect();
        let single = (regions.len() == 1).then(|| regions[0].as_str());
        let stage = config.stage_of(&regions[0]).map(|s| s.name.as_str());
        let from = group[0].from.as_deref();
        let vars = engine.vars(stage, single, from.unwrap_or(""), from);
        for c in
            engine
                .adapter
                .rollback_commands(&regions, Some(to), &vars, timeout_of(&regions[0]))
        {
            commands.push(c.argv.iter().map(|a| crate::redact::redact(a)).collect());
        }
    }
    let verify: Vec<String> = if args.no_verify {
        Vec::new()
    } else {
        let mut gates: Vec<String> = targets
            .iter()
            .filter_map(|t| config.stage_of(&t.region))
            .flat_map(|s| s.gates.iter().cloned())
            .collect();
        gates.sort();
        gates.dedup();
        gates
    };
    if output.format == crate::cli::Format::Human {
        let mut text = String::from("commands (dry run: nothing runs, nothing is recorded):\n");
        for c in &commands {
            text.push_str(&format!("  {}\n", crate::redact::display_argv(c)));
        }
        if !verify.is_empty() {
            text.push_str(&format!(
                "then verified by the gates: {}\n",
                verify.join(", ")
            ));
        }
        output.info(text.trim_end());
    } else {
        output.json(&serde_json::json!({
            "dry_run": true,
            "targets": targets.iter().map(|t| serde_json::json!({
                "region": t.region, "from": t.from, "to": t.to,
            })).collect::<Vec<_>>(),
            "commands": commands,
            "verify_gates": verify,
        }));
    }
    Ok(exit_code::SUCCESS)
}
