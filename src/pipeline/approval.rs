//! Waiting for a stage's approval (issue 14) before the stage deploys: the `requested` record,
//! the P1 notification with the exact command to run, "waiting for approval" for people, then
//! the ledger polled until enough distinct people approved, someone rejected, the timeout
//! passed, or a signal arrived (which cancels as anywhere else: the loop sees it within
//! [`TICK`]).
//!
//! Only approvals that count are counted: with `[approvals] allowed_signers`, each is verified
//! against this deploy's id, the stage and this version with `ssh-keygen -Y verify`; the
//! deploy's own actor counts only with `self_approval = true`. Anything else in history (a
//! line appended by hand, say) is ignored with a warning.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::{Approval, Priority, Stage};
use crate::ledger::records::*;

use super::actor::hostname;
use super::engine::Engine;

/// How often the ledger is read while waiting.
const POLL: Duration = Duration::from_millis(500);
/// How often a git store's cache is refreshed from the remote while waiting.
const GIT_POLL: Duration = Duration::from_secs(5);
/// How often the signal state is looked at.
const TICK: Duration = Duration::from_millis(50);

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Enough distinct people approved: these.
    Approved {
        by: Vec<String>,
    },
    Rejected {
        by: String,
        reason: String,
    },
    /// The timeout passed with these approvals (fewer than required).
    TimedOut {
        approvals: usize,
    },
    /// A signal arrived.
    Cancelled,
}

/// The command that approves `stage` of this deploy.
pub fn approve_command(engine: &Engine<'_>, stage: &str) -> String {
    let mut cmd = format!("shipgate approve {} --stage {stage}", engine.deploy_id);
    let path = engine.config.path.display().to_string();
    if path != "pipeline.toml" {
        cmd.push_str(&format!(" -c {path}"));
    }
    cmd
}

fn words(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

/// Asks for `stage`'s approval and waits for it. `deploy_actor` is who started the deploy.
pub fn await_approval(
    engine: &Engine<'_>,
    stage: &Stage,
    approval: &Approval,
    deploy_actor: &str,
) -> Wait {
    let config = engine.config;
    let app = &config.app.name;
    let version = &engine.version;
    engine.record(HistoryRecord::Approval(ApprovalRecord {
        deploy_id: engine.deploy_id.clone(),
        stage: stage.name.clone(),
        version: version.clone(),
        decision: ApprovalDecision::Requested,
        actor: deploy_actor.to_string(),
        required: Some(approval.required),
        timeout_seconds: Some(approval.timeout.as_secs_f64()),
        on_timeout: Some(approval.on_timeout.as_str().into()),
        host: Some(hostname()),
        ..Default::default()
    }));
    let command = approve_command(engine, &stage.name);
    let needed = if approval.required == 1 {
        "an approval".to_string()
    } else {
        format!("{} approvals from different people", approval.required)
    };
    let signed = if config.approvals.allowed_signers.is_some() {
        " (signed: --key PATH or SHIPGATE_SIGNING_KEY)"
    } else {
        ""
    };
    engine.notify(
        Priority::P1,
        format!("approval needed: {app} {version} stage {}", stage.name),
        format!(
            "{deploy_actor}'s deploy of {app} {version} waits for {needed} before stage {} ({}) for up to {}; approve: {command}{signed}; reject: shipgate reject {} --stage {} --reason TEXT",
            stage.name,
            stage.regions.join(", "),
            words(approval.timeout),
            engine.deploy_id,
            stage.name
        ),
        serde_json::json!({"stage": stage.name, "version": version, "required": approval.required, "timeout_seconds": approval.timeout.as_secs_f64(), "on_timeout": approval.on_timeout.as_str(), "approve": command, "run_url": engine.invocation.run_url}),
    );
    engine.reporter.line(&format!(
        "stage {}: waiting for approval ({needed}, for up to {}): {command}",
        stage.name,
        words(approval.timeout)
    ));

    let started = Instant::now();
    let mut next_reminder = approval.remind_every.map(|d| started + d);
    let mut checked: HashMap<String, Result<(), String>> = HashMap::new();
    let mut warned: HashSet<String> = HashSet::new();
    let mut last_refresh = Instant::now();
    loop {
        if engine.signals.state().cancelled() {
            return Wait::Cancelled;
        }
        if last_refresh.elapsed() >= GIT_POLL {
            last_refresh = Instant::now();
            if let Err(e) = engine.ledger.refresh() {
                engine
                    .reporter
                    .warn(&format!("cannot refresh history from the store: {e}"));
            }
        }
        let mut approvers = BTreeSet::new();
        match crate::approvals::read(engine.ledger, &engine.deploy_id, &stage.name) {
            Err(e) => engine
                .reporter
                .warn(&format!("cannot read history for approvals: {e}")),
            Ok(state) => {
                for d in &state.decisions {
                    let r = &d.body;
                    let verdict = checked
                        .entry(d.id.clone())
                        .or_insert_with(|| counts(engine, stage, r, deploy_actor));
                    match verdict {
                        Err(why) => {
                            if warned.insert(d.id.clone()) {
                                let what = match r.decision {
                                    ApprovalDecision::Rejected => "a rejection",
                                    _ => "an approval",
                                };
                                engine.reporter.warn(&format!(
                                    "ignored {what} of stage {} by {}: {why}",
                                    stage.name,
                                    crate::approvals::approver(r)
                                ));
                            }
                        }
                        Ok(()) if r.decision == ApprovalDecision::Rejected => {
                            return Wait::Rejected {
                                by: crate::approvals::approver(r).to_string(),
                                reason: r.reason.clone().unwrap_or_default(),
                            };
                        }
                        Ok(()) => {
                            approvers.insert(crate::approvals::approver(r).to_string());
                        }
                    }
                }
            }
        }
        if approvers.len() >= approval.required as usize {
            return Wait::Approved {
                by: approvers.into_iter().collect(),
            };
        }
        if started.elapsed() >= approval.timeout {
            let reason = format!(
                "nobody approved within {} ({} of {} approvals)",
                words(approval.timeout),
                approvers.len(),
                approval.required
            );
            engine.record(HistoryRecord::Approval(ApprovalRecord {
                deploy_id: engine.deploy_id.clone(),
                stage: stage.name.clone(),
                version: version.clone(),
                decision: ApprovalDecision::TimedOut,
                actor: deploy_actor.to_string(),
                reason: Some(reason),
                host: Some(hostname()),
                ..Default::default()
            }));
            return Wait::TimedOut {
                approvals: approvers.len(),
            };
        }
        if let (Some(at), Some(every)) = (next_reminder, approval.remind_every) {
            if Instant::now() >= at {
                next_reminder = Some(at + every);
                let left = approval.timeout.saturating_sub(started.elapsed());
                engine.notify(
                    Priority::P1,
                    format!(
                        "still waiting for approval: {app} {version} stage {}",
                        stage.name
                    ),
                    format!(
                        "{} of {} approvals so far; {} left before on_timeout = \"{}\"; approve: {command}",
                        approvers.len(),
                        approval.required,
                        words(left),
                        approval.on_timeout.as_str()
                    ),
                    serde_json::json!({"stage": stage.name, "version": version, "approvals": approvers.len(), "required": approval.required, "approve": command}),
                );
                engine.reporter.line(&format!(
                    "stage {}: still waiting for approval ({} of {}; {} left)",
                    stage.name,
                    approvers.len(),
                    approval.required,
                    words(left)
                ));
            }
        }
        let until = Instant::now() + POLL;
        while Instant::now() < until && !engine.signals.state().cancelled() {
            std::thread::sleep(TICK);
        }
    }
}

/// Whether an approval or rejection read from history counts: `Err` says why not.
fn counts(
    engine: &Engine<'_>,
    stage: &Stage,
    r: &ApprovalRecord,
    deploy_actor: &str,
) -> Result<(), String> {
    let config = engine.config;
    if r.version != engine.version {
        return Err(format!(
            "it is for version {}, not {}",
            r.version, engine.version
        ));
    }
    if r.decision == ApprovalDecision::Approved
        && !config.approvals.self_approval
        && crate::approvals::is_self(r, deploy_actor)
    {
        return Err(
            "the deploy's own actor cannot approve it (`[approvals] self_approval` is off)".into(),
        );
    }
    match &config.approvals.allowed_signers {
        Some(allowed) => crate::approvals::verify_record(
            allowed,
            r,
            &engine.deploy_id,
            &stage.name,
            &engine.version,
        ),
        None => Ok(()),
    }
}
