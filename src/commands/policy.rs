//! `shipgate policy [--at TIME]` and `shipgate freeze start|end`, and the policy gate of
//! `deploy` (windows, freezes, the stopped line, `--wait-for-window`, `--override-policy`),
//! and the warning a way back (`rollback`, `recover`) gets when policy is closed.

use chrono::{DateTime, Utc};

use crate::cli::{DeployArgs, Format, FreezeAction, FreezeArgs, GlobalArgs, PolicyArgs};
use crate::config::{Config, Priority, Stage};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::records::{ActiveFreeze, AuditRecord, FreezeRecord, HistoryRecord};
use crate::ledger::Ledger;
use crate::output::{neutral, Output};
use crate::policy::{self, Block, Clock};

/// The stop-the-line freeze history says is in force (it may have passed its `until`);
/// `None` also when history cannot be read (for what only shows it).
pub fn line(ledger: &Ledger) -> Option<ActiveFreeze> {
    read_line(ledger).ok().flatten()
}

/// Like [`line`], but an unreadable history is an error: what decides must not fail open.
pub fn read_line(ledger: &Ledger) -> Result<Option<ActiveFreeze>, Error> {
    Ok(ledger.status(&mut Vec::new())?.freeze.map(|f| *f))
}

fn parse_at(at: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(at.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::usage(format!(
                "--at is not an RFC 3339 time: `{}` ({e})",
                neutral::inline(at)
            ))
            .with_hint("e.g. --at 2026-12-24T10:00:00Z")
        })
}

pub fn run(global: &GlobalArgs, args: &PolicyArgs, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let clock = Clock::from_env()?;
    let at = match &args.at {
        Some(a) => parse_at(a)?,
        None => clock.now(),
    };
    let ledger = super::history::open_ledger(global, output, false)
        .map(|(_, l)| l)
        .ok();
    let line = ledger.as_ref().and_then(line);
    let states = policy::stage_states(&config, line.as_ref(), at);
    if output.format != Format::Human {
        output.json(&serde_json::json!({
            "at": policy::rfc3339(at),
            "stages": states,
            "line": line,
        }));
        return Ok(exit_code::SUCCESS);
    }
    crate::answer!("policy at {}", policy::rfc3339(at));
    for s in &states {
        if s.open {
            let until = s
                .closes
                .as_deref()
                .map(|c| format!(" (its windows close at {c})"))
                .unwrap_or_default();
            crate::answer!("  {:<12} open{until}", s.stage);
        } else {
            // One block names its own opening; several: when they have all lifted.
            let opens = match (&s.opens, s.blocked_by.len()) {
                (Some(_), 1) => String::new(),
                (Some(o), _) => format!("; open again at {o}"),
                (None, _) => "; opens when the line is let go (`shipgate freeze end`)".into(),
            };
            crate::answer!(
                "  {:<12} closed: {}{opens}",
                s.stage,
                s.blocked_by.join("; ")
            );
        }
    }
    if config.windows.is_empty() && config.freezes.is_empty() && line.is_none() {
        crate::answer!("  (no [[window]] or [[freeze]] in the pipeline, and the line runs)");
    }
    Ok(exit_code::SUCCESS)
}

/// `--until`: an RFC 3339 time, or a duration from now.
fn parse_until(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(text.trim()).map_err(|_| {
        Error::usage(format!(
            "--until is neither an RFC 3339 time nor a duration: `{}`",
            neutral::inline(text)
        ))
        .with_hint("e.g. --until 2h or --until 2026-12-24T18:00:00Z")
    })?;
    Ok(now + chrono::Duration::from_std(d).unwrap_or_default())
}

pub fn freeze(global: &GlobalArgs, args: &FreezeArgs, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let clock = Clock::from_env()?;
    let now = clock.now();
    if let Some(at) = clock.simulated() {
        output.warn(format!(
            "{} sets the clock to {at}: the freeze is recorded at that time",
            policy::NOW_ENV
        ));
    }
    let ledger = Ledger::open_for(&config)?;
    ledger.check_writable()?;
    let invocation = crate::pipeline::actor::detect(None);
    let current = line(&ledger);
    let (record, title, message) = match &args.action {
        FreezeAction::Start {
            reason,
            until,
            stages,
        } => {
            if reason.trim().is_empty() {
                return Err(Error::usage("--reason is empty: say why the line stops"));
            }
            for s in stages {
                if config.stage(s).is_none() {
                    let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
                    let mut err = Error::usage(format!("no stage named `{}`", neutral::inline(s)));
                    if let Some(m) = crate::config::did_you_mean(s, names.iter().copied()) {
                        err = err.with_hint(format!("did you mean `{m}`?"));
                    }
                    return Err(err);
                }
            }
            let until = until.as_deref().map(|u| parse_until(u, now)).transpose()?;
            if let Some(u) = until {
                if u <= now {
                    return Err(Error::usage(format!(
                        "--until {} is not in the future; nothing was changed",
                        policy::rfc3339(u)
                    )));
                }
            }
            // One stopped line at a time: a second `start` would silently narrow or widen
            // someone else's (a scoped one replacing a global one reopens stages).
            if let Some(c) = current.as_ref().filter(|c| {
                c.until
                    .as_deref()
                    .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                    .is_none_or(|u| u.with_timezone(&Utc) > now)
            }) {
                return Err(Error::usage(format!(
                    "the line is already stopped: {}; nothing was changed",
                    Block::Line(c.clone()).describe(&config)
                ))
                .with_hint("`shipgate freeze end` first, then start the freeze you want"));
            }
            let record = FreezeRecord {
                action: "start".into(),
                reason: Some(reason.clone()),
                actor: invocation.actor.clone(),
                until: until.map(policy::rfc3339),
                stages: stages.clone(),
                at: policy::rfc3339(now),
                simulated_now: clock.simulated(),
            };
            let scope = if stages.is_empty() {
                "every stage".to_string()
            } else {
                stages.join(", ")
            };
            let message = format!(
                "{} stopped the line for {scope} of {}{}: {reason}",
                invocation.actor,
                config.app.name,
                until
                    .map(|u| format!(" until {}", policy::rfc3339(u)))
                    .unwrap_or_else(|| " until `shipgate freeze end`".into())
            );
            (
                record,
                format!("line stopped: {}", config.app.name),
                message,
            )
        }
        FreezeAction::End { reason } => {
            let Some(c) = current else {
                output.info("the line is not stopped; nothing was changed");
                return Ok(exit_code::SUCCESS);
            };
            let record = FreezeRecord {
                action: "end".into(),
                reason: reason.clone(),
                actor: invocation.actor.clone(),
                until: None,
                stages: Vec::new(),
                at: policy::rfc3339(now),
                simulated_now: clock.simulated(),
            };
            let message = format!(
                "{} let the line go for {} (stopped by {} at {}{}){}",
                invocation.actor,
                config.app.name,
                c.actor,
                c.since,
                c.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                reason
                    .as_deref()
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default()
            );
            (
                record,
                format!("line running again: {}", config.app.name),
                message,
            )
        }
    };
    let appended = ledger.append_history(&HistoryRecord::Freeze(record.clone()))?;
    if let Some(w) = appended.warning {
        output.warn(w);
    }
    let notification = crate::notify::Notification {
        priority: Priority::P1,
        title,
        message: message.clone(),
        context: serde_json::json!({"freeze": record, "run_url": invocation.run_url}),
        deploy_id: None,
    };
    if let Some(w) = crate::notify::Notifier::from_config(&config).send(&ledger, &notification) {
        output.warn(w);
    }
    if output.format != Format::Human {
        output.json(&serde_json::json!({"ok": true, "freeze": record, "id": appended.id}));
    } else {
        crate::answer!("{message}");
    }
    Ok(exit_code::SUCCESS)
}

/// What the policy gate of a deploy decided.
pub struct Admitted {
    /// `--override-policy`: what it overrode (for the record, the audit and the notification).
    pub overridden: Vec<String>,
    /// The stopped line in force when it was admitted.
    pub line: Option<ActiveFreeze>,
}

/// Every selected stage closed now, with what closes it.
fn closed(
    config: &Config,
    line: Option<&ActiveFreeze>,
    stages: &[&Stage],
    at: DateTime<Utc>,
) -> Vec<(String, Vec<Block>)> {
    stages
        .iter()
        .filter_map(|s| {
            let b = policy::blocks(config, line, &s.name, at);
            (!b.is_empty()).then(|| (s.name.clone(), b))
        })
        .collect()
}

/// One line per distinct block, naming the stages it closes (a stopped line closes them all:
/// said once, not once per stage).
fn describe(config: &Config, closed: &[(String, Vec<Block>)]) -> Vec<String> {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for (stage, blocks) in closed {
        for b in blocks {
            let text = b.describe(config);
            match lines.iter_mut().find(|(t, _)| *t == text) {
                Some((_, stages)) => stages.push(stage.clone()),
                None => lines.push((text, vec![stage.clone()])),
            }
        }
    }
    lines
        .into_iter()
        .map(|(text, stages)| {
            let which = if stages.len() == 1 { "stage" } else { "stages" };
            format!("{which} {}: {text}", stages.join(", "))
        })
        .collect()
}

/// The policy gate of `deploy`, before the lock: every selected stage must be open now. A
/// closed one is exit 7 naming what closes it and when it opens — unless `--wait-for-window`
/// waits for it (within its bound) or `--override-policy` goes through (audited).
pub fn admit(
    config: &Config,
    ledger: &Ledger,
    stages: &[&Stage],
    args: &DeployArgs,
    clock: &Clock,
    signals: &crate::pipeline::signals::Signals,
    output: &Output,
) -> Result<Admitted, Error> {
    let started = std::time::Instant::now();
    if let Some(at) = clock.simulated() {
        output.warn(format!(
            "{} sets the clock to {at}: policy is judged at that time (recorded as \
             simulated_now)",
            policy::NOW_ENV
        ));
    }
    loop {
        let now = clock.now();
        let line = read_line(ledger).map_err(|e| {
            e.within("cannot read whether the line is stopped; nothing was changed")
        })?;
        let shut = closed(config, line.as_ref(), stages, now);
        if shut.is_empty() {
            return Ok(Admitted {
                overridden: Vec::new(),
                line,
            });
        }
        let what = describe(config, &shut);
        if args.override_policy {
            if args.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(Error::usage(
                    "--override-policy needs a --reason that says why; nothing was changed",
                ));
            }
            return Ok(Admitted {
                overridden: what,
                line,
            });
        }
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        let opens = policy::opens_at(config, line.as_ref(), &names, now);
        let line_forever = line.as_ref().is_some_and(|l| l.until.is_none());
        let when = match opens {
            Some(t) => format!("it opens {}", when_text(config, &shut, t)),
            None if line_forever => "it does not open by itself (`shipgate freeze end`)".into(),
            None => "the windows of these stages are never open together: deploy them apart \
                     with --stage"
                .into(),
        };
        if let (Some(bound), Some(t)) = (args.wait_for_window, opens) {
            let wait = (t - now).to_std().unwrap_or_default();
            if started.elapsed() + wait <= bound {
                output.info(format!(
                    "waiting for the policy to open ({}): {when}, in {}",
                    what.join("; "),
                    humantime::format_duration(std::time::Duration::from_secs(
                        wait.as_secs().max(1)
                    ))
                ));
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until {
                    if signals.cancelled() {
                        return Err(Error::new(
                            signals.exit_code(),
                            "interrupted while waiting for the policy to open; nothing was changed",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                continue;
            }
        }
        let mut err = Error::new(
            exit_code::BLOCKED,
            format!(
                "blocked by policy: {}; nothing was changed",
                what.join("; ")
            ),
        )
        .with_hint(format!(
            "{when}; wait for it with --wait-for-window DUR, or go through with --override-policy \
             --reason TEXT (audited)"
        ));
        if let Some(bound) = args.wait_for_window {
            err = err.caused_by(format!(
                "--wait-for-window {} is too short for it",
                humantime::format_duration(bound)
            ));
        }
        return Err(err);
    }
}

/// The opening time in the time zone of the first window that keeps a stage closed, and UTC.
fn when_text(config: &Config, shut: &[(String, Vec<Block>)], t: DateTime<Utc>) -> String {
    let window = shut.iter().flat_map(|(_, b)| b).find_map(|b| match b {
        Block::Window {
            opens: Some((name, _)),
            ..
        } => Some(name.clone()),
        _ => None,
    });
    match window {
        Some(w) => policy::when_in(config, &w, t),
        None => policy::rfc3339(t),
    }
}

/// Records and announces an override (P1 audit record through the notification).
pub fn announce_override(
    config: &Config,
    notify: &crate::notify::queue::Queue,
    actor: &str,
    reason: &str,
    version: &str,
    deploy_id: &str,
    overridden: &[String],
) {
    notify.send(crate::notify::Notification {
        priority: Priority::P1,
        title: format!("policy overridden: {} {version}", config.app.name),
        message: format!(
            "{actor} deploys {version} through policy: {}. Reason: {reason}",
            overridden.join("; ")
        ),
        context: serde_json::json!({
            "version": version,
            "policy_override": {"actor": actor, "reason": reason, "overridden": overridden},
        }),
        deploy_id: Some(deploy_id.to_string()),
    });
}

/// A way back (`rollback`, `recover`) while policy is closed: it goes ahead, says so, and
/// records it (a P2 audit record).
pub fn way_back_while_closed(config: &Config, ledger: &Ledger, what: &str, output: &Output) {
    let Ok(clock) = Clock::from_env() else { return };
    let now = clock.now();
    let line = line(ledger);
    let stages: Vec<&Stage> = config.stages.iter().collect();
    let shut = closed(config, line.as_ref(), &stages, now);
    if shut.is_empty() {
        return;
    }
    let text = describe(config, &shut).join("; ");
    output.warn(format!(
        "policy is closed ({text}); the {what} goes ahead: policy never blocks a way back"
    ));
    let record = AuditRecord {
        priority: "P2".into(),
        title: format!("{what} while policy is closed: {}", config.app.name),
        message: text,
        context: serde_json::json!({"policy_closed": describe(config, &shut), "at": policy::rfc3339(now)}),
        deploy_id: None,
        delivered: Vec::new(),
        failed: Vec::new(),
    };
    if let Err(e) = ledger.append_audit(&record) {
        output.warn(format!("cannot record it in the audit trail: {e}"));
    }
}
