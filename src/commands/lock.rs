//! `shipgate lock status` and `shipgate lock release [--force]`.

use crate::cli::{Format, GlobalArgs, LockAction, LockArgs};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::lock::{self, Released};
use crate::ledger::AuditRecord;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &LockArgs, output: &Output) -> Result<i32, Error> {
    let (_, ledger) = super::history::open_ledger(global, output, false)?;
    match args.action {
        LockAction::Status => {
            let state = ledger.lock_state()?;
            if output.format != Format::Human {
                output.json(&serde_json::json!({
                    "held": state.held,
                    "holder": if state.held { state.info.clone() } else { None },
                    "stale": if state.held { None } else { state.info.clone() },
                    "path": ledger.lock_location(),
                }));
            } else {
                match (&state.held, &state.info) {
                    (true, Some(info)) => crate::answer!("held by {}", info.describe()),
                    (true, None) => crate::answer!("held by a process that has not written its details yet"),
                    (false, Some(info)) => crate::answer!(
                        "not held (a crashed holder left its details: {}; the next deploy takes the lock)",
                        info.describe()
                    ),
                    (false, None) => crate::answer!("not held"),
                }
            }
            Ok(exit_code::SUCCESS)
        }
        LockAction::Release { force } => {
            let released = ledger.release_lock(force)?;
            match &released {
                Released::NotHeld => output.info("the deploy lock is not held; nothing to release"),
                Released::Stale { info } => output.info(format!(
                    "cleared the details a crashed holder left: {}",
                    info.describe()
                )),
                Released::Forced { info } => {
                    output.warn(format!(
                        "FORCE-RELEASED the deploy lock held by {}. That process may still be \
                         running and changing regions: check it before deploying.",
                        info.describe()
                    ));
                    let audit = AuditRecord {
                        priority: "P3".into(),
                        title: "lock force-released".into(),
                        message: format!(
                            "the deploy lock held by {} was force-released by {}",
                            info.describe(),
                            actor()
                        ),
                        context: serde_json::json!({
                            "holder": info,
                            "released_by": {"actor": actor(), "host": lock::hostname(), "pid": std::process::id()},
                        }),
                        deploy_id: (!info.deploy_id.is_empty()).then(|| info.deploy_id.clone()),
                        delivered: Vec::new(),
                        failed: Vec::new(),
                    };
                    ledger.append_audit(&audit)?;
                }
            }
            if output.format != Format::Human {
                output.json(&serde_json::to_value(&released).unwrap_or_default());
            }
            Ok(exit_code::SUCCESS)
        }
    }
}

/// Who runs this command: the CI actor, else the login user.
fn actor() -> String {
    ["GITHUB_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}
