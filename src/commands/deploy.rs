//! `shipgate deploy`.

use crate::cli::{DeployArgs, Format, GlobalArgs};
use crate::config::{Config, Stage};
use crate::error::Error;
use crate::exit_code;
use crate::notify::Notifier;
use crate::output::Output;
use crate::pipeline::deploy::{deploy, DeployOptions};
use crate::pipeline::engine::Engine;
use crate::pipeline::{actor, plan, preflight, signals::Signals};
use crate::report::Reporter;
use crate::version;

pub fn run(global: &GlobalArgs, args: &DeployArgs, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let stages = select_stages(&config, &args.stages)?;
    let resolved = version::resolve(&config, args.version.as_deref(), !args.dry_run)?;
    if resolved.dirty {
        output.warn(format!(
            "the work tree has uncommitted changes; deploying {} (recorded as dirty)",
            resolved.version
        ));
    }
    let adapter = crate::adapters::build(&config)?;
    let deploy_id = ulid::Ulid::new().to_string();
    // Every program must be able to start before the lock, the `started` record or any change.
    let missing = preflight::missing_programs(
        &config,
        adapter.as_ref(),
        &stages,
        None,
        preflight::Purpose::Deploy,
    );
    // The servers' own parsers confirm every PromQL, still before anything is locked or run.
    let queries =
        crate::pipeline::queries::confirm(&config, &stages, &resolved.version, &deploy_id);
    for note in &queries.notes {
        output.info(format!("note: {note}"));
    }
    if let Some(err) = crate::pipeline::queries::refusal_error(&queries.refused) {
        return Err(err);
    }

    if args.dry_run {
        return dry_run(
            &config,
            adapter.as_ref(),
            &stages,
            &resolved.version,
            &deploy_id,
            &missing,
            output,
        );
    }
    if !missing.is_empty() {
        return Err(preflight::refuse("this deploy", &missing));
    }

    let ledger = crate::ledger::Ledger::open_for(&config)?;
    let invocation = actor::detect(resolved.commit.as_deref());
    let signals = Signals::install();
    let clock = crate::policy::Clock::from_env()?;
    let stages = resume_after_block(
        &ledger,
        stages,
        &resolved.version,
        !args.stages.is_empty(),
        output,
    );
    if stages.is_empty() {
        output.info(format!(
            "every stage already runs {} healthy; nothing to deploy",
            resolved.version
        ));
        return Ok(exit_code::SUCCESS);
    }
    // Before the lock: a closed window or a freeze is exit 7 (or a wait), and changes nothing.
    let admitted = super::policy::admit(&config, &ledger, &stages, args, &clock, &signals, output)?;
    let guard = super::take_lock(
        &ledger,
        &signals,
        &invocation,
        &deploy_id,
        "deploy",
        args.lock_wait,
    )?;
    let notify = crate::notify::queue::Queue::start(Notifier::from_config(&config), ledger.clone());
    let deployments = super::start_deployments(&config, &ledger, &invocation, global, output);
    let overridden = (!admitted.overridden.is_empty()).then(|| {
        let reason = args.reason.clone().unwrap_or_default();
        output.warn(format!(
            "overriding policy ({}): {}",
            admitted.overridden.join("; "),
            reason
        ));
        super::policy::announce_override(
            &config,
            &notify,
            &invocation.actor,
            &reason,
            &resolved.version,
            &deploy_id,
            &admitted.overridden,
        );
        Box::new(crate::ledger::records::PolicyOverride {
            actor: invocation.actor.clone(),
            reason,
            overridden: admitted.overridden.clone(),
        })
    });
    let reporter = Reporter::new(output);
    reporter.line(&format!(
        "deploying {} {} ({}; deploy {deploy_id})",
        config.app.name, resolved.version, resolved.source
    ));
    let engine = Engine {
        config: &config,
        adapter: adapter.as_ref(),
        ledger: &ledger,
        notify: &notify,
        reporter: &reporter,
        signals: &signals,
        invocation: &invocation,
        deploy_id: deploy_id.clone(),
        version: resolved.version.clone(),
        progress: Default::default(),
        journal: Default::default(),
    };
    let opts = DeployOptions {
        stages,
        allow_partial: args.allow_partial,
        dirty: resolved.dirty,
        reason: None,
        policy: Some(crate::pipeline::deploy::PolicyWatch {
            clock,
            overridden,
            line_at_start: admitted.line,
        }),
    };
    let mut result = deploy(&engine, &opts);
    reporter.finish();
    if let Ok(result) = &mut result {
        super::fail_if_unrecorded(&ledger, result);
        super::finish(output, result);
        // A failed deploy's step summary tells its story, a postmortem skeleton included.
        if output.github && result.exit_code != crate::exit_code::SUCCESS {
            if let Ok(story) = super::explain::tell(&ledger, Some(&result.deploy_id)) {
                let md = format!("\n{}", super::explain::markdown(&story));
                if let Err(e) = crate::report::github::append_env_file("GITHUB_STEP_SUMMARY", &md) {
                    output.warn(format!(
                        "cannot append the explain to the step summary: {e}"
                    ));
                }
            }
        }
    }
    // The outcome is decided and shown; nothing changes any more, so the next deploy may start
    // while queued notifications and events finish and are recorded (appends lock themselves).
    drop(guard);
    super::await_deliveries(&notify, deployments, &signals, output);
    Ok(super::exit_code_after_deliveries(
        &ledger,
        result?.exit_code,
        output,
    ))
}

/// `deploy --dry-run`: the plan, with the rollback targets read from the platform and history
/// (read-only) and the exact commands a failure of each stage would run. Nothing is locked,
/// run or recorded.
fn dry_run(
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    stages: &[&Stage],
    version: &str,
    deploy_id: &str,
    missing: &[preflight::Missing],
    output: &Output,
) -> Result<i32, Error> {
    let regions: Vec<String> = stages.iter().flat_map(|s| s.regions.clone()).collect();
    let mut warnings = Vec::new();
    let previous = if missing.is_empty() {
        super::with_reader_engine(config, adapter, deploy_id, version, output, |engine| {
            crate::pipeline::deploy::capture_targets(engine, &regions, &mut |w| {
                warnings.push(w.to_string())
            })
        })
        .unwrap_or_else(|e| {
            warnings.push(format!(
                "cannot read the current versions ({e}): rollback targets shown as <previous>"
            ));
            Default::default()
        })
    } else {
        Default::default()
    };
    let bases = if missing.is_empty() && stages.iter().any(|s| s.stepped()) {
        super::with_reader_engine(config, adapter, deploy_id, version, output, |engine| {
            Ok(engine.step_bases(stages, &mut |w| warnings.push(w.to_string())))
        })
        .unwrap_or_default()
    } else {
        Default::default()
    };
    let mut p = plan::dry_run(config, adapter, stages, version, deploy_id, &previous);
    plan::add_steps(&mut p, config, adapter, stages, &bases);
    // A plan is still shown without them (it is a preview); the deploy itself refuses.
    p.missing_programs = missing.iter().map(preflight::Missing::describe).collect();
    p.warnings = warnings.clone();
    // Which stages policy lets through now (a preview: nothing is checked against it here).
    let clock = crate::policy::Clock::from_env()?;
    let reader = match config.state.store {
        crate::config::StoreKind::File => Ok(crate::ledger::Ledger::reader(&config.state.dir)),
        crate::config::StoreKind::Git => crate::ledger::Ledger::open_for(config),
    };
    let line = reader.ok().and_then(|l| super::policy::line(&l));
    let states: Vec<crate::policy::StageState> =
        crate::policy::stage_states(config, line.as_ref(), clock.now())
            .into_iter()
            .filter(|s| stages.iter().any(|st| st.name == s.stage))
            .collect();
    let approvals: Vec<String> = stages
        .iter()
        .filter_map(|s| {
            let a = s.approval.as_ref()?;
            Some(format!(
                "  {:<12} waits for {} approval(s) before it deploys (up to {}, then {})",
                s.name,
                a.required,
                humantime::format_duration(a.timeout),
                a.on_timeout.as_str()
            ))
        })
        .collect();
    let governed = !config.windows.is_empty()
        || !config.freezes.is_empty()
        || line.is_some()
        || !approvals.is_empty();
    match output.format {
        Format::Human => {
            crate::answer_part!("{}", plan::render_dry_run(&p, output));
            if governed {
                crate::answer!("\npolicy now ({}):", crate::policy::rfc3339(clock.now()));
                for s in &states {
                    if s.open {
                        crate::answer!("  {:<12} open", s.stage);
                    } else {
                        crate::answer!("  {:<12} closed: {}", s.stage, s.blocked_by.join("; "));
                    }
                }
                for a in &approvals {
                    crate::answer!("{a}");
                }
            }
        }
        _ => {
            let mut v = serde_json::to_value(&p).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("policy".into(), serde_json::json!(states));
            }
            output.json(&v)
        }
    }
    for w in &warnings {
        output.warn(w);
    }
    for m in missing {
        output.warn(preflight::warning(m));
    }
    Ok(exit_code::SUCCESS)
}

/// After a deploy of this version that policy blocked, the stages it finished are skipped: a
/// later deploy of the same version resumes where it stopped (every region of a skipped stage
/// runs the version, healthy). Named stages (`--stage`) run as asked.
fn resume_after_block<'c>(
    ledger: &crate::ledger::Ledger,
    stages: Vec<&'c Stage>,
    version: &str,
    named: bool,
    output: &Output,
) -> Vec<&'c Stage> {
    use crate::ledger::records::{DeployStatus, RegionState};
    let Ok(status) = ledger.status(&mut Vec::new()) else {
        return stages;
    };
    let blocked = status
        .last_deploy
        .as_ref()
        .filter(|l| l.status == DeployStatus::Blocked && l.version == version);
    let (Some(last), false) = (blocked, named) else {
        return stages;
    };
    let done = |s: &Stage| {
        s.regions.iter().all(|r| {
            status
                .regions
                .get(r)
                .is_some_and(|st| st.version == version && st.status == RegionState::Success)
        })
    };
    let skip = stages.iter().take_while(|s| done(s)).count();
    for s in &stages[..skip] {
        output.info(format!(
            "stage {} already runs {version} healthy (deploy {} was blocked by policy after it): \
             skipped",
            s.name, last.deploy_id
        ));
    }
    stages[skip..].to_vec()
}

/// The stages to run: all, or the named ones in pipeline order.
pub fn select_stages<'c>(config: &'c Config, names: &[String]) -> Result<Vec<&'c Stage>, Error> {
    for name in names {
        if config.stage(name).is_none() {
            let all: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
            let mut err = Error::usage(format!(
                "no stage named `{name}` in {}",
                config.path.display()
            ));
            err = match crate::config::did_you_mean(name, all.iter().copied()) {
                Some(s) => err.with_hint(format!("did you mean `{s}`?")),
                None => err.with_hint(format!("stages: {}", all.join(", "))),
            };
            return Err(err);
        }
    }
    Ok(config
        .stages
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect())
}
