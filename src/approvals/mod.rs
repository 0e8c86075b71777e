//! Approvals per stage (SPEC §9, issue 14): what history says about one stage's approval, and
//! the SSH signatures that make an approval count when `[approvals] allowed_signers` is set.
//!
//! The signed text is the canonical [`message`]: the deploy id, stage, version and decision,
//! one `key=value` a line. The reason is recorded but not signed. `shipgate approve` signs it
//! (`ssh-keygen -Y sign -n shipgate`), finds the signer's principal in the allowed-signers file
//! and verifies before it appends; the deploy verifies again, against its own deploy id, stage
//! and version, before an approval counts — a record appended by hand never counts unverified.

pub mod ssh;

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Error;
use crate::ledger::records::*;
use crate::ledger::Ledger;

/// The namespace of every shipgate signature (`ssh-keygen -n`): a signature made for git or
/// anything else never verifies as an approval.
pub const NAMESPACE: &str = "shipgate";

/// The text an approval's signature covers.
pub fn message(deploy_id: &str, stage: &str, version: &str, decision: ApprovalDecision) -> String {
    format!(
        "shipgate approval v1\ndeploy_id={deploy_id}\nstage={stage}\nversion={version}\ndecision={decision}\n"
    )
}

/// How many keys an allowed-signers file lists (lines that are not blank or comments).
pub fn signers_listed(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Who an approval is from, for counting distinct approvers: the verified principal when
/// signed, else the actor.
pub fn approver(r: &ApprovalRecord) -> &str {
    r.principal.as_deref().unwrap_or(&r.actor)
}

/// Whether `r` is the deploy's own actor approving: by actor name, by signing principal, or
/// by the principal's name before `@` (`alice@example.com` signing for actor `alice`).
pub fn is_self(r: &ApprovalRecord, deploy_actor: &str) -> bool {
    let by_principal = r.principal.as_deref().is_some_and(|p| {
        p == deploy_actor
            || p.split('@')
                .next()
                .is_some_and(|local| local.eq_ignore_ascii_case(deploy_actor))
    });
    r.actor == deploy_actor || by_principal
}

/// Checks an approval or rejection against `allowed_signers`, for `deploy_id`, `stage` and
/// `version` as the checker knows them: `Err` says why it does not count.
pub fn verify_record(
    allowed_signers: &Path,
    r: &ApprovalRecord,
    deploy_id: &str,
    stage: &str,
    version: &str,
) -> Result<(), String> {
    let (Some(signature), Some(principal)) = (&r.signature, &r.principal) else {
        return Err("it is not signed".into());
    };
    // The principal must be exactly one the signing key is listed under (never a pattern
    // such as `*@example.com`, which any matching name would verify against), so one key is
    // one approver however the record names it.
    if principal.contains(['*', '?', '!']) {
        return Err(format!("`{principal}` is a pattern, not a principal"));
    }
    let listed = ssh::find_principals(allowed_signers, signature).map_err(|e| e.to_string())?;
    if !listed
        .iter()
        .any(|l| l == principal || l.split(',').any(|p| p == principal))
    {
        return Err(format!(
            "the signing key is not listed as `{principal}` in the allowed signers"
        ));
    }
    let text = message(deploy_id, stage, version, r.decision);
    ssh::verify(allowed_signers, principal, &text, signature)
}

/// A deploy as the approve and reject commands see it.
#[derive(Debug, Default)]
pub struct DeployApprovals {
    /// The deploy's newest record (its actor, version and status).
    pub deploy: Option<DeployRecord>,
    /// The newest request of the stage, if the deploy reached it.
    pub request: Option<ApprovalRecord>,
    /// Approvals and rejections of the stage since that request, oldest first.
    pub decisions: Vec<Stored<ApprovalRecord>>,
    /// The request timed out.
    pub timed_out: bool,
}

impl DeployApprovals {
    /// Whether the deploy is waiting on the stage now (as far as history says).
    pub fn waiting(&self) -> bool {
        let open = self.deploy.as_ref().is_some_and(|d| !d.status.is_final());
        let rejected = self
            .decisions
            .iter()
            .any(|d| d.body.decision == ApprovalDecision::Rejected);
        open && self.request.is_some() && !self.timed_out && !rejected
    }

    /// The distinct approvers so far.
    pub fn approvers(&self) -> BTreeSet<String> {
        self.decisions
            .iter()
            .filter(|d| d.body.decision == ApprovalDecision::Approved)
            .map(|d| approver(&d.body).to_string())
            .collect()
    }
}

/// Reads what history says about `deploy_id` and its `stage`'s approval, newest first back to
/// the deploy's `started` record.
pub fn read(ledger: &Ledger, deploy_id: &str, stage: &str) -> Result<DeployApprovals, Error> {
    let mut out = DeployApprovals::default();
    let mut newer: Vec<Stored<ApprovalRecord>> = Vec::new();
    let mut warnings = Vec::new();
    for r in ledger.history_rev(&mut warnings)? {
        match r.body {
            HistoryRecord::Deploy(d) if d.deploy_id == deploy_id => {
                let started = d.status == DeployStatus::Started;
                if out.deploy.is_none() {
                    out.deploy = Some(d);
                }
                if started {
                    break;
                }
            }
            HistoryRecord::Approval(a)
                if a.deploy_id == deploy_id && a.stage == stage && out.request.is_none() =>
            {
                if a.decision == ApprovalDecision::Requested {
                    out.request = Some(a);
                } else {
                    newer.push(Stored {
                        schema: r.schema,
                        id: r.id,
                        ts: r.ts,
                        prev: r.prev,
                        body: a,
                    });
                }
            }
            _ => {}
        }
    }
    if out.request.is_some() {
        newer.reverse();
        out.timed_out = newer
            .iter()
            .any(|d| d.body.decision == ApprovalDecision::TimedOut);
        out.decisions = newer
            .into_iter()
            .filter(|d| {
                matches!(
                    d.body.decision,
                    ApprovalDecision::Approved | ApprovalDecision::Rejected
                )
            })
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_names_deploy_stage_version_and_decision() {
        assert_eq!(
            message("01ABC", "primary", "v2", ApprovalDecision::Approved),
            "shipgate approval v1\ndeploy_id=01ABC\nstage=primary\nversion=v2\ndecision=approved\n"
        );
    }

    #[test]
    fn comments_and_blank_lines_are_not_signers() {
        assert_eq!(signers_listed("# team\n\nalice@x ssh-ed25519 AAAA\n"), 1);
        assert_eq!(signers_listed("  # nobody\n"), 0);
    }
}
