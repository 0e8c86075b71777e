//! One verdict for `deploy`, `rollback` and `recover`: the status written in history, the exit
//! code of SPEC §6 and the one-line message, decided from typed facts by pure functions.
//!
//! The state enums themselves ([`RegionState`], [`StageStatus`], [`DeployStatus`]) live with
//! the records in `ledger/records.rs`: they are the vocabulary of history, and the ledger reads
//! them without depending on the engine.

use std::collections::BTreeMap;

pub use crate::ledger::records::{DeployStatus, RegionState, StageStatus};

use super::rollback::RollbackOutcome;
use super::signals::CancelState;
use crate::exit_code;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: DeployStatus,
    pub exit_code: i32,
    pub message: String,
    /// Regions left on an unknown or mixed version: a human must look.
    pub mixed: Vec<String>,
}

/// What a deploy did, as the stage loop saw it.
#[derive(Debug, Default)]
pub struct DeployFacts {
    pub version: String,
    /// Every region of the selected stages.
    pub regions: Vec<String>,
    /// Regions whose deploy command ran.
    pub changed: Vec<String>,
    /// Regions that failed and stay failed (under `continue` or `rollback-region`).
    pub failed_regions: Vec<String>,
    /// Every rollback the deploy ran (the policy's and the cancellation's).
    pub rollbacks: Vec<RollbackOutcome>,
    /// Why the deploy stopped before its last stage (a stage failed under a stopping policy).
    pub stopped_by: Option<String>,
    /// Why policy stopped the deploy before a stage started, leaving earlier stages as they
    /// are (a window closed, the line was stopped, an approval rejected or timed out under
    /// `on_timeout = "stop"`).
    pub blocked_by: Option<String>,
    /// The block is a preflight gate's trip (the current version is unhealthy), not policy.
    pub baseline_unhealthy: bool,
    /// A record could not be written (a full disk): the deploy stopped and rolled back what it
    /// changed. Why, in the ledger's words.
    pub unrecorded: Option<String>,
    pub allow_partial: bool,
}

impl DeployFacts {
    fn rollback_failed(&self) -> BTreeMap<String, String> {
        self.rollbacks.iter().flat_map(|r| r.failed()).collect()
    }
    fn rolled_back(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rollbacks.iter().flat_map(|r| r.ok()).collect();
        v.sort();
        v.dedup();
        v
    }
    /// Regions back on their target but not verified (their gate is broken).
    fn unverified(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .rollbacks
            .iter()
            .flat_map(|r| r.unverified.keys().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
    fn abandoned(&self) -> Vec<String> {
        self.rollbacks
            .iter()
            .flat_map(|r| r.abandoned.iter().cloned())
            .collect()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn list(regions: &[String], none: &str) -> String {
    if regions.is_empty() {
        none.to_string()
    } else {
        regions.join(", ")
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// The verdict of a deploy. `cancel` is the signal state read once, when the run ended.
pub fn judge_deploy(f: &DeployFacts, cancel: CancelState) -> Verdict {
    let rollback_failed = f.rollback_failed();
    let failed_names: Vec<String> = rollback_failed.keys().cloned().collect();
    if cancel.cancelled() {
        let mut mixed = failed_names.clone();
        mixed.extend(f.abandoned());
        let mixed = sorted(mixed);
        return if cancel.abandoned() {
            Verdict {
                status: DeployStatus::Cancelled,
                exit_code: cancel.exit_code(),
                message: format!(
                    "stopped by {}, then the rollback abandoned by a second signal; regions left \
                     mixed: {}",
                    cancel.signal_name(),
                    list(&mixed, "none")
                ),
                mixed,
            }
        } else if !rollback_failed.is_empty() {
            Verdict {
                status: DeployStatus::RollbackFailed,
                exit_code: exit_code::ROLLBACK_FAILED,
                message: format!(
                    "stopped by {}, and the rollback failed in {}",
                    cancel.signal_name(),
                    failed_names.join(", ")
                ),
                mixed,
            }
        } else {
            Verdict {
                status: DeployStatus::Cancelled,
                exit_code: cancel.exit_code(),
                message: format!(
                    "stopped by {}; rolled back {}",
                    cancel.signal_name(),
                    list(&f.rolled_back(), "nothing (no region was changed)")
                ),
                mixed,
            }
        };
    }
    if !rollback_failed.is_empty() {
        let why: Vec<String> = rollback_failed
            .iter()
            .map(|(region, e)| format!("{region}: {}", e.lines().next().unwrap_or("")))
            .collect();
        return Verdict {
            status: DeployStatus::RollbackFailed,
            exit_code: exit_code::ROLLBACK_FAILED,
            message: format!(
                "{}rollback failed in {} ({}): a human must look at what they run",
                f.unrecorded
                    .as_deref()
                    .map(|w| format!(
                        "stopped: cannot record the deploy in history ({}); ",
                        first_line(w)
                    ))
                    .unwrap_or_default(),
                failed_names.join(", "),
                why.join("; ")
            ),
            mixed: failed_names,
        };
    }
    if let Some(why) = &f.unrecorded {
        return Verdict {
            status: DeployStatus::RolledBack,
            exit_code: exit_code::FAILED,
            message: format!(
                "stopped: cannot record the deploy in history ({}); rolled back {}",
                first_line(why),
                list(&f.rolled_back(), "nothing (no region was changed)")
            ),
            mixed: Vec::new(),
        };
    }
    if let Some(why) = &f.blocked_by {
        let changed = sorted(f.changed.clone());
        let tail = if changed.is_empty() {
            "nothing was changed".to_string()
        } else {
            format!(
                "earlier stages are left as they are ({} run {})",
                changed.join(", "),
                f.version
            )
        };
        return Verdict {
            status: DeployStatus::Blocked,
            exit_code: exit_code::BLOCKED,
            message: format!("{why}; {tail}"),
            mixed: Vec::new(),
        };
    }
    if let Some(reason) = &f.stopped_by {
        // Nothing ran anywhere (a deploy program that could not start): nothing to undo.
        let unverified = f.unverified();
        let (status, tail) = if f.changed.is_empty() {
            (DeployStatus::Failed, "no region was changed".to_string())
        } else if unverified.is_empty() {
            (DeployStatus::RolledBack, "rolled back".to_string())
        } else {
            (
                DeployStatus::RolledBack,
                format!(
                    "rolled back, unverified in {} (a broken gate cannot verify a rollback)",
                    unverified.join(", ")
                ),
            )
        };
        return Verdict {
            status,
            exit_code: exit_code::FAILED,
            message: format!("{reason}; {tail}"),
            mixed: Vec::new(),
        };
    }
    if !f.failed_regions.is_empty() {
        let all = f.regions.iter().all(|r| f.failed_regions.contains(r));
        return Verdict {
            status: DeployStatus::Partial,
            exit_code: if f.allow_partial {
                exit_code::SUCCESS
            } else {
                exit_code::PARTIAL
            },
            message: if all {
                format!(
                    "every region failed ({}); none runs {} healthy",
                    f.failed_regions.join(", "),
                    f.version
                )
            } else {
                format!(
                    "{} failed, the other regions run {}",
                    f.failed_regions.join(", "),
                    f.version
                )
            },
            mixed: Vec::new(),
        };
    }
    Verdict {
        status: DeployStatus::Success,
        exit_code: exit_code::SUCCESS,
        message: format!("{} runs on {}", f.version, f.regions.join(", ")),
        mixed: Vec::new(),
    }
}

/// The verdict of `rollback` or `recover`: success when every region is at its target and
/// verified; otherwise exit 3 (or the signal's code when a second signal abandoned it and that
/// is all that went wrong).
pub fn judge_rollback(outcome: &RollbackOutcome, what: &str, cancel: CancelState) -> Verdict {
    let failed = outcome.failed();
    if failed.is_empty() {
        let ok = outcome.ok();
        return Verdict {
            status: DeployStatus::Success,
            // Finished despite a signal: report the interruption, but as a success.
            exit_code: if cancel.cancelled() {
                cancel.exit_code()
            } else {
                exit_code::SUCCESS
            },
            message: if outcome.unverified.is_empty() {
                format!("{what} {}", list(&ok, "nothing"))
            } else {
                let unverified: Vec<String> = outcome.unverified.keys().cloned().collect();
                format!(
                    "{what} {}; unverified in {} (a broken gate cannot verify a rollback)",
                    list(&ok, "nothing"),
                    unverified.join(", ")
                )
            },
            mixed: Vec::new(),
        };
    }
    let mixed = sorted(
        failed
            .keys()
            .cloned()
            .chain(outcome.abandoned.iter().cloned())
            .collect(),
    );
    let only_abandoned = failed.keys().all(|r| outcome.abandoned.contains(r));
    let why: Vec<String> = failed
        .iter()
        .map(|(r, e)| format!("{r}: {}", e.lines().next().unwrap_or("")))
        .collect();
    Verdict {
        status: DeployStatus::RollbackFailed,
        exit_code: if cancel.abandoned() && only_abandoned {
            cancel.exit_code()
        } else {
            exit_code::ROLLBACK_FAILED
        },
        message: format!(
            "rollback failed in {} ({}): a human must look at what they run",
            mixed.join(", "),
            why.join("; ")
        ),
        mixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::records::RegionDetail;

    fn rollback(ok: &[&str], failed: &[&str]) -> RollbackOutcome {
        let mut o = RollbackOutcome::default();
        for r in ok {
            o.regions.insert(
                r.to_string(),
                RegionDetail {
                    status: RegionState::RolledBack,
                    ..Default::default()
                },
            );
        }
        for r in failed {
            o.regions.insert(
                r.to_string(),
                RegionDetail {
                    status: RegionState::RollbackFailed,
                    error: Some("boom".into()),
                    ..Default::default()
                },
            );
        }
        o
    }

    fn facts() -> DeployFacts {
        DeployFacts {
            version: "v2".into(),
            regions: vec!["lhr".into(), "nrt".into()],
            changed: vec!["lhr".into(), "nrt".into()],
            ..Default::default()
        }
    }

    #[test]
    fn success_partial_rolled_back_and_rollback_failed() {
        let v = judge_deploy(&facts(), CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::Success, 0));

        let mut f = facts();
        f.failed_regions = vec!["nrt".into()];
        let v = judge_deploy(&f, CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::Partial, 4));
        f.allow_partial = true;
        assert_eq!(judge_deploy(&f, CancelState::Running).exit_code, 0);

        let mut f = facts();
        f.stopped_by = Some("stage canary failed".into());
        f.rollbacks = vec![rollback(&["lhr", "nrt"], &[])];
        let v = judge_deploy(&f, CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::RolledBack, 1));

        f.rollbacks = vec![rollback(&["lhr"], &["nrt"])];
        let v = judge_deploy(&f, CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::RollbackFailed, 3));
        assert_eq!(v.mixed, vec!["nrt".to_string()]);
    }

    #[test]
    fn a_deploy_blocked_by_policy_exits_7_and_names_what_stays() {
        let mut f = facts();
        f.changed = vec!["lhr".into()];
        f.blocked_by = Some("stage primary rejected by alice: no".into());
        let v = judge_deploy(&f, CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::Blocked, 7));
        assert!(v
            .message
            .contains("earlier stages are left as they are (lhr run v2)"));
    }

    #[test]
    fn a_rollback_a_broken_gate_could_not_verify_is_rolled_back_not_rollback_failed() {
        let mut f = facts();
        f.stopped_by = Some(
            "stage canary: gate `errors` is misconfigured: HTTP 404 — the regions were not judged"
                .into(),
        );
        let mut rb = rollback(&["lhr", "nrt"], &[]);
        rb.unverified
            .insert("lhr".into(), "rolled back to v1, unverified".into());
        f.rollbacks = vec![rb.clone()];
        let v = judge_deploy(&f, CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::RolledBack, 1));
        assert!(
            v.message.contains("gate `errors` is misconfigured"),
            "{}",
            v.message
        );
        assert!(
            v.message.ends_with(
                "rolled back, unverified in lhr (a broken gate cannot verify a rollback)"
            ),
            "{}",
            v.message
        );
        let v = judge_rollback(&rb, "rolled back", CancelState::Running);
        assert_eq!((v.status, v.exit_code), (DeployStatus::Success, 0));
        assert!(v.message.contains("unverified in lhr"), "{}", v.message);
    }

    #[test]
    fn a_cancel_is_judged_from_the_one_state_read() {
        let mut f = facts();
        f.rollbacks = vec![rollback(&["lhr", "nrt"], &[])];
        let v = judge_deploy(&f, CancelState::Cancelling { signal: 2 });
        assert_eq!((v.status, v.exit_code), (DeployStatus::Cancelled, 130));
        // Without a cancellation rollback on record (the signal came after the loop looked),
        // the verdict is still a verdict, not a panic.
        let v = judge_deploy(&facts(), CancelState::Abandoned { signal: 15 });
        assert_eq!((v.status, v.exit_code), (DeployStatus::Cancelled, 143));
    }

    #[test]
    fn a_rollback_abandoned_by_a_signal_exits_with_the_signal() {
        let mut o = rollback(&["lhr"], &["nrt"]);
        o.abandoned = vec!["nrt".into()];
        let v = judge_rollback(&o, "rolled back", CancelState::Abandoned { signal: 2 });
        assert_eq!((v.status, v.exit_code), (DeployStatus::RollbackFailed, 130));
        let v = judge_rollback(
            &rollback(&["lhr"], &[]),
            "rolled back",
            CancelState::Running,
        );
        assert_eq!((v.exit_code, v.message.as_str()), (0, "rolled back lhr"));
    }
}
