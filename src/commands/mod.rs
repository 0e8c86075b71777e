//! One file per subcommand. Each takes the parsed arguments and returns the exit code.

mod approve;
mod completions;
mod deploy;
pub mod explain;
mod history;
mod judge;
mod lock;
mod policy;
mod publish_event;
mod recover;
mod rollback;
mod status;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::Error;
use crate::output::Output;

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli, output: &Output) -> Result<i32, Error> {
    if let Some(trigger) = &cli.global.trigger {
        crate::pipeline::actor::set_trigger(trigger);
    }
    match cli.command {
        Command::Completions(args) => completions::run(&args),
        Command::Validate => validate::run(&load_config(&cli.global)?, output),
        Command::Deploy(args) => deploy::run(&cli.global, &args, output),
        Command::Rollback(args) => rollback::run(&cli.global, &args, output),
        Command::Status(args) => status::run(&cli.global, &args, output),
        Command::PublishEvent(args) => publish_event::run(&cli.global, &args, output),
        Command::History(args) => history::run(&cli.global, &args, output),
        Command::Lock(args) => lock::run(&cli.global, &args, output),
        Command::Recover(args) => recover::run(&cli.global, &args, output),
        Command::Explain(args) => explain::run(&cli.global, &args, output),
        Command::Judge(args) => judge::run(&cli.global, &args, output),
        Command::Policy(args) => policy::run(&cli.global, &args, output),
        Command::Freeze(args) => policy::freeze(&cli.global, &args, output),
        Command::Approve(args) => approve::run(
            &cli.global,
            approve::Decision {
                deploy_id: &args.deploy_id,
                stage: &args.stage,
                approve: true,
                reason: args.reason.as_deref(),
                key: args.key.as_deref(),
            },
            output,
        ),
        Command::Reject(args) => approve::run(
            &cli.global,
            approve::Decision {
                deploy_id: &args.deploy_id,
                stage: &args.stage,
                approve: false,
                reason: Some(&args.reason),
                key: args.key.as_deref(),
            },
            output,
        ),
    }
}

/// Loads the pipeline file and installs its secrets into the redactor.
pub fn load_config(global: &crate::cli::GlobalArgs) -> Result<Config, Error> {
    let config = crate::config::load(&global.config, global.state_dir.as_deref())?;
    let names = config.secret_env_names();
    crate::redact::install_env(&names);
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for secret in crate::redact::global().secrets() {
            // stderr: the runner reads workflow commands there too, and stdout stays data.
            crate::report::github::add_mask(secret);
        }
    }
    Ok(config)
}

/// Takes the deploy lock for `command` once the state directory is known to be writable (exit
/// 2 otherwise): exit 5 naming the holder, or the signal's exit code when interrupted while
/// waiting (nothing was changed either way).
pub(crate) fn take_lock(
    ledger: &crate::ledger::Ledger,
    signals: &crate::pipeline::signals::Signals,
    invocation: &crate::pipeline::actor::Invocation,
    id: &str,
    command: &str,
    wait: Option<std::time::Duration>,
) -> Result<crate::ledger::lock::LockGuard, Error> {
    // Nothing may change that cannot be recorded: exit 2 now, before the lock.
    ledger.check_writable()?;
    let info = crate::ledger::lock::LockInfo {
        pid: std::process::id(),
        host: invocation.host.clone(),
        actor: invocation.actor.clone(),
        deploy_id: id.to_string(),
        started_at: crate::pipeline::actor::now_rfc3339(),
        command: command.into(),
    };
    let guard = ledger
        .acquire_lock(&info, wait, || signals.cancelled())
        .map_err(|e| {
            if signals.cancelled() {
                Error::new(signals.exit_code(), e.message)
            } else {
                e
            }
        })?;
    if signals.cancelled() {
        return Err(Error::new(
            signals.exit_code(),
            "interrupted while waiting for the lock; nothing was changed",
        ));
    }
    Ok(guard)
}

/// Runs `f` with an engine that only reads (dry runs): the file store's directory is never
/// created, no signal handler is installed, nothing is queued.
pub(crate) fn with_reader_engine<T>(
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    id: &str,
    version: &str,
    output: &Output,
    f: impl FnOnce(&crate::pipeline::engine::Engine<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let ledger = match config.state.store {
        crate::config::StoreKind::File => crate::ledger::Ledger::reader(&config.state.dir),
        crate::config::StoreKind::Git => crate::ledger::Ledger::open_for(config)?,
    };
    let signals = crate::pipeline::signals::Signals::inert();
    let notify = crate::notify::queue::Queue::start(
        crate::notify::Notifier::from_config(config),
        ledger.clone(),
    );
    let reporter = crate::report::Reporter::new(output);
    let invocation = crate::pipeline::actor::detect(None);
    let engine = crate::pipeline::engine::Engine {
        config,
        adapter,
        ledger: &ledger,
        notify: &notify,
        reporter: &reporter,
        signals: &signals,
        invocation: &invocation,
        deploy_id: id.to_string(),
        version: version.to_string(),
        progress: Default::default(),
        journal: Default::default(),
    };
    f(&engine)
}

/// Refuses a run whose programs cannot start (exit 2, before the lock or any record); a dry
/// run only warns.
pub(crate) fn refuse_missing_programs(
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    regions: &[String],
    verify: bool,
    dry_run: bool,
    what: &str,
    output: &Output,
) -> Result<(), Error> {
    use crate::pipeline::preflight;
    let all_stages: Vec<&crate::config::Stage> = config.stages.iter().collect();
    let missing = preflight::missing_programs(
        config,
        adapter,
        &all_stages,
        Some(regions),
        preflight::Purpose::Rollback { verify },
    );
    if dry_run {
        // A preview, like `deploy --dry-run`: it warns; the run itself refuses.
        for m in &missing {
            output.warn(preflight::warning(m));
        }
        Ok(())
    } else if missing.is_empty() {
        Ok(())
    } else {
        Err(preflight::refuse(what, &missing))
    }
}

/// Asks `question [y/N]` on a terminal; true without asking when stdin is not a terminal.
pub(crate) fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return true;
    }
    crate::say_part!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// The dry run of `rollback` and `recover`: the commands the plan would run, exactly as it
/// would run them (secrets redacted), and the gates that would verify it. Nothing is locked,
/// run or recorded.
pub(crate) fn print_rollback_dry_run(
    engine: &crate::pipeline::engine::Engine<'_>,
    plan: &crate::pipeline::rollback::RollbackPlan,
    verify: bool,
    output: &Output,
) {
    let commands = engine.rollback_commands(plan);
    let gates = engine.rollback_gates(plan, verify);
    if output.format == crate::cli::Format::Human {
        let mut text = String::from("commands (dry run: nothing runs, nothing is recorded):\n");
        for c in &commands {
            text.push_str(&format!("  {}\n", crate::redact::display_argv(c)));
        }
        if !gates.is_empty() {
            text.push_str(&format!(
                "then verified by the gates: {}\n",
                gates.join(", ")
            ));
        }
        crate::answer!("{}", crate::redact::redact(text.trim_end()));
    } else {
        output.json(&serde_json::json!({
            "dry_run": true,
            "targets": plan.targets.iter().map(|t| serde_json::json!({
                "region": t.region, "from": t.from, "to": t.to,
            })).collect::<Vec<_>>(),
            "commands": commands,
            "verify_gates": gates,
        }));
    }
}

/// After a deploy or rollback (its lock released): waits for queued notifications and events
/// to be delivered and recorded. A signal now (Ctrl-C, the CI runner cancelling) ends the
/// wait: what is still being delivered is recorded as not delivered, so nothing is lost to the
/// SIGKILL that follows.
pub fn await_deliveries(
    notify: &crate::notify::queue::Queue,
    deployments: Option<crate::deployments::Deployments>,
    signals: &crate::pipeline::signals::Signals,
    output: &Output,
) {
    signals.run_over();
    let before = signals.received_while_running();
    // After a second signal the runner's SIGKILL is seconds away: record at once what is
    // still being delivered as not delivered.
    let abandoned = signals.state().abandoned();
    let abandon = || abandoned || signals.received() > before;
    for w in notify.finish_or_abandon(|waiting| output.info(waiting), abandon) {
        output.warn(w);
    }
    if let Some(deployments) = deployments {
        for w in deployments.finish_or_abandon(|waiting| output.info(waiting), abandon) {
            output.warn(w);
        }
    }
}

/// Starts mirroring this run's history into GitHub Deployments when `[github] deployments`
/// is on. One that cannot start (no token, no repository) is a warning: it never stops a
/// deploy or a rollback.
pub(crate) fn start_deployments(
    config: &Config,
    ledger: &crate::ledger::Ledger,
    invocation: &crate::pipeline::actor::Invocation,
    global: &crate::cli::GlobalArgs,
    output: &Output,
) -> Option<crate::deployments::Deployments> {
    match crate::deployments::Deployments::start(
        config,
        ledger,
        invocation,
        global.repository.as_deref(),
    ) {
        Ok(d) => d,
        Err(w) => {
            output.warn(w);
            None
        }
    }
}

/// A run that could not record everything it did never reports success: before its result is
/// shown, a successful result whose run lost a record (an audit append of a notification, say)
/// becomes exit 1, saying why.
pub fn fail_if_unrecorded(
    ledger: &crate::ledger::Ledger,
    result: &mut crate::report::result::RunResult,
) {
    if result.exit_code != crate::exit_code::SUCCESS {
        return;
    }
    if let Some(why) = ledger.cannot_record() {
        result.exit_code = crate::exit_code::FAILED;
        result.message = format!("{}; but a record was lost: {why}", result.message);
        result
            .warnings
            .push(format!("a record is missing from the ledger: {why}"));
    }
}

/// After the deliveries were recorded: a record lost only now (an audit append of the final
/// notification) still turns a success into exit 1, with an error saying which.
pub fn exit_code_after_deliveries(
    ledger: &crate::ledger::Ledger,
    code: i32,
    output: &Output,
) -> i32 {
    match ledger.cannot_record() {
        Some(why) if code == crate::exit_code::SUCCESS => {
            let err = Error::failed(format!(
                "the run succeeded, but a record of it could not be written: {why}"
            ));
            crate::say_part!("{}", crate::redact::redact(&err.render(output.color)));
            if output.github {
                crate::report::github::command(
                    "error",
                    &[("title", "shipgate: a record was lost")],
                    &err.to_string(),
                );
                // The last value of a step output wins: later steps read the real exit code.
                let _ = crate::report::github::write_outputs(&[
                    ("status", "error".to_string()),
                    ("exit_code", crate::exit_code::FAILED.to_string()),
                ]);
            }
            crate::exit_code::FAILED
        }
        _ => code,
    }
}

/// The one annotation of a run's outcome: a notice for a success, a warning for an outcome
/// allowed to pass (`--allow-partial`), an error for every other.
fn outcome_annotation(result: &crate::report::result::RunResult) {
    let what = format!(
        "{} {}{}",
        result.command,
        result.app,
        if result.version.is_empty() {
            String::new()
        } else {
            format!(" {}", result.version)
        }
    );
    let status = result.status.replace('_', " ");
    let (kind, title) = match (result.exit_code, result.status.as_str()) {
        (crate::exit_code::SUCCESS, "success") => ("notice", format!("{what}: {status}")),
        (crate::exit_code::SUCCESS, _) => ("warning", format!("{what}: {status}")),
        (code, _) => ("error", format!("{what}: {status} (exit {code})")),
    };
    crate::report::github::command(kind, &[("title", &title)], &result.message);
}

/// Prints the result and writes the GitHub step summary and outputs.
pub fn finish(output: &Output, result: &crate::report::result::RunResult) {
    match output.format {
        crate::cli::Format::Human => {
            if !output.quiet || result.exit_code != 0 {
                crate::answer_part!("{}", crate::redact::redact(&result.render_human()));
            } else {
                crate::answer!("{}", crate::redact::redact(&result.verdict()));
            }
        }
        _ => {
            // `ok` as in the error document: a program tests one key, whatever happened.
            let mut doc = serde_json::json!({"ok": result.exit_code == crate::exit_code::SUCCESS});
            if let (Some(map), Ok(serde_json::Value::Object(fields))) =
                (doc.as_object_mut(), serde_json::to_value(result))
            {
                map.extend(fields);
            }
            output.json(&doc)
        }
    }
    if output.github {
        outcome_annotation(result);
        if let Err(e) =
            crate::report::github::append_env_file("GITHUB_STEP_SUMMARY", &result.render_markdown())
        {
            output.warn(format!("cannot write GITHUB_STEP_SUMMARY: {e}"));
        }
        let previous = {
            let mut vs: Vec<&String> = result.previous_versions.values().collect();
            vs.sort();
            vs.dedup();
            vs.into_iter().cloned().collect::<Vec<_>>().join(",")
        };
        let pairs = [
            ("version", result.version.clone()),
            ("previous_version", previous),
            ("status", result.status.clone()),
            ("deploy_id", result.deploy_id.clone()),
            ("exit_code", result.exit_code.to_string()),
        ];
        if let Err(e) = crate::report::github::write_outputs(&pairs) {
            output.warn(format!("cannot write GITHUB_OUTPUT: {e}"));
        }
    }
}
