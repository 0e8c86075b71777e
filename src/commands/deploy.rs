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
    let resolved = version::resolve(&config, args.version.as_deref())?;
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
    let mut p = plan::dry_run(config, adapter, stages, version, deploy_id, &previous);
    // A plan is still shown without them (it is a preview); the deploy itself refuses.
    p.missing_programs = missing.iter().map(preflight::Missing::describe).collect();
    p.warnings = warnings.clone();
    match output.format {
        Format::Human => crate::answer_part!("{}", plan::render_dry_run(&p, output)),
        _ => output.json(&serde_json::to_value(&p).unwrap_or_default()),
    }
    for w in &warnings {
        output.warn(w);
    }
    for m in missing {
        output.warn(preflight::warning(m));
    }
    Ok(exit_code::SUCCESS)
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
