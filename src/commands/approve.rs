//! `shipgate approve DEPLOY_ID --stage S` and `shipgate reject DEPLOY_ID --stage S --reason
//! TEXT`: one `approval` record appended to history, from any machine that shares the store.
//!
//! No deploy lock is taken (the waiting deploy holds it; appends lock themselves). Everything
//! is checked before anything is appended, and a refusal is exit 2 with nothing recorded: the
//! deploy must exist and be waiting on that stage; with `[approvals] allowed_signers` the
//! decision is signed with `--key` (or `SHIPGATE_SIGNING_KEY`), its signer must be listed and
//! the signature must verify; the deploy's own actor may not approve it unless
//! `self_approval = true`; one person approves once.

use std::path::Path;

use crate::approvals::{self, ssh};
use crate::cli::{Format, GlobalArgs};
use crate::config::StoreKind;
use crate::error::Error;
use crate::exit_code;
use crate::ledger::records::*;
use crate::ledger::Ledger;
use crate::output::Output;
use crate::pipeline::actor;

/// What the command line asks for.
pub struct Decision<'a> {
    pub deploy_id: &'a str,
    pub stage: &'a str,
    /// `approve` (else `reject`).
    pub approve: bool,
    pub reason: Option<&'a str>,
    pub key: Option<&'a Path>,
}

pub fn run(global: &GlobalArgs, d: Decision<'_>, output: &Output) -> Result<i32, Error> {
    let config = super::load_config(global)?;
    let (verb, decision) = if d.approve {
        ("approve", ApprovalDecision::Approved)
    } else {
        ("reject", ApprovalDecision::Rejected)
    };
    let no_deploy = || {
        Error::usage(format!("no deploy `{}` in history", d.deploy_id)).with_hint(
            "the id is in the approval notification and the deploy's output; `shipgate history \
             --kind approval` lists the requests",
        )
    };
    if config.state.store == StoreKind::File && !config.state.dir.is_dir() {
        return Err(no_deploy());
    }
    let ledger = Ledger::open_for(&config)?;
    let state = approvals::read(&ledger, d.deploy_id, d.stage)?;
    let Some(deploy) = &state.deploy else {
        return Err(no_deploy());
    };
    if !state.waiting() || !deploy_is_running(&ledger, d.deploy_id) {
        return Err(not_waiting(&d, deploy, &state));
    }
    let invocation = actor::detect(None);
    let me = invocation.actor.clone();
    let self_refused = || {
        Error::usage(format!(
            "{me} started deploy {} and cannot approve their own deploy",
            d.deploy_id
        ))
        .with_hint(
            "someone else approves it (or the pipeline sets `[approvals] self_approval = true`)",
        )
    };
    if d.approve && !config.approvals.self_approval && me == deploy.actor {
        return Err(self_refused());
    }

    let (signature, principal) = match &config.approvals.allowed_signers {
        None => {
            if d.key.is_some() {
                output.warn("--key is ignored: the pipeline sets no `[approvals] allowed_signers`, so approvals are not signed");
            }
            (None, None)
        }
        Some(allowed) => {
            let Some(key) = d.key else {
                return Err(Error::usage(format!(
                    "the {} must be signed: the pipeline sets `[approvals] allowed_signers`",
                    if d.approve { "approval" } else { "rejection" }
                ))
                .with_hint("pass --key PATH (or set SHIPGATE_SIGNING_KEY) to an SSH private key listed in the allowed signers file"));
            };
            let text = approvals::message(d.deploy_id, d.stage, &deploy.version, decision);
            let signature = ssh::sign(key, &text)?;
            let principals = ssh::find_principals(allowed, &signature)?;
            if principals.is_empty() {
                return Err(Error::usage(format!(
                    "the key `{}` is not in the allowed signers (`{}`) for the `{}` namespace",
                    key.display(),
                    allowed.display(),
                    approvals::NAMESPACE
                ))
                .with_hint("sign with a listed key, or ask whoever keeps the allowed signers file to add yours"));
            }
            let verified = principals
                .iter()
                .find(|p| ssh::verify(allowed, p, &text, &signature).is_ok());
            let Some(principal) = verified else {
                let why = ssh::verify(allowed, &principals[0], &text, &signature)
                    .err()
                    .unwrap_or_default();
                return Err(Error::usage("the signature does not verify").caused_by(why));
            };
            (Some(signature), Some(principal.clone()))
        }
    };
    let record = ApprovalRecord {
        deploy_id: d.deploy_id.to_string(),
        stage: d.stage.to_string(),
        version: deploy.version.clone(),
        decision,
        actor: me.clone(),
        reason: d.reason.map(str::to_string),
        signature,
        principal,
        host: Some(invocation.host.clone()),
        ..Default::default()
    };
    if d.approve && !config.approvals.self_approval && approvals::is_self(&record, &deploy.actor) {
        return Err(self_refused());
    }
    let who = approvals::approver(&record).to_string();
    let mut approvers = state.approvers();
    if d.approve && approvers.contains(&who) {
        return Err(Error::usage(format!(
            "{who} already approved stage {} of deploy {}",
            d.stage, d.deploy_id
        ))
        .with_hint("each person counts once; `required` asks for that many different people"));
    }
    let appended = ledger
        .append_history(&HistoryRecord::Approval(record.clone()))
        .map_err(|e| e.within(format!("cannot record the {verb}")))?;
    if let Some(w) = appended.warning {
        output.warn(w);
    }
    approvers.insert(who.clone());
    let required = state.request.as_ref().and_then(|r| r.required).unwrap_or(1);
    let signed = match &record.principal {
        Some(p) => format!(" ({p}, signed)"),
        None => String::new(),
    };
    let what = if d.approve {
        format!(
            "approved stage {} of deploy {} ({} {}) as {me}{signed}: {} of {required} approvals{}",
            d.stage,
            d.deploy_id,
            deploy.app,
            deploy.version,
            approvers.len(),
            if approvers.len() >= required as usize {
                "; the deploy goes on"
            } else {
                ""
            }
        )
    } else {
        format!(
            "rejected stage {} of deploy {} ({} {}) as {me}{signed}: the deploy stops",
            d.stage, d.deploy_id, deploy.app, deploy.version
        )
    };
    if output.format == Format::Human {
        output.info(&what);
    } else {
        output.json(&serde_json::json!({
            "ok": true,
            "deploy_id": d.deploy_id,
            "stage": d.stage,
            "version": deploy.version,
            "decision": decision.as_str(),
            "actor": me,
            "principal": record.principal,
            "approvals": approvers.len(),
            "required": required,
            "id": appended.id,
        }));
    }
    Ok(exit_code::SUCCESS)
}

/// The deploy's process still holds the lock (file store: a killed deploy left a `started`
/// record and no holder). Unknown is taken as running: the deploy checks again anyway.
fn deploy_is_running(ledger: &Ledger, deploy_id: &str) -> bool {
    match ledger.lock_state() {
        Ok(s) if !s.held => false,
        Ok(s) => s
            .info
            .is_none_or(|i| i.deploy_id.is_empty() || i.deploy_id == deploy_id),
        Err(_) => true,
    }
}

fn not_waiting(
    d: &Decision<'_>,
    deploy: &DeployRecord,
    state: &approvals::DeployApprovals,
) -> Error {
    let why = if deploy.status.is_final() {
        format!("it ended `{}`", deploy.status)
    } else if state.timed_out {
        "its approval timed out".to_string()
    } else if state
        .decisions
        .iter()
        .any(|r| r.body.decision == ApprovalDecision::Rejected)
    {
        "the stage was rejected".to_string()
    } else if state.request.is_some() {
        "its process is gone (it holds no lock)".to_string()
    } else if !deploy.stages.iter().any(|s| s == d.stage) {
        format!(
            "it has no stage {} (stages: {})",
            d.stage,
            deploy.stages.join(", ")
        )
    } else {
        format!("it has not asked for stage {}'s approval", d.stage)
    };
    Error::usage(format!(
        "deploy {} is not waiting for approval of stage {}: {why}",
        d.deploy_id, d.stage
    ))
    .with_hint("`shipgate explain DEPLOY_ID` tells where it stands")
}
