//! `shipgate lock status`, `shipgate lock release [--force]` and
//! `shipgate lock acquire --message TEXT [--ttl DUR]` (see [`crate::ledger::manual_lock`]).

use crate::cli::{Format, GlobalArgs, LockAction, LockArgs};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::lock::{self, Released};
use crate::ledger::manual_lock::ManualLock;
use crate::ledger::{AuditRecord, Ledger};
use crate::output::neutral::inline;
use crate::output::Output;

pub fn run(global: &GlobalArgs, args: &LockArgs, output: &Output) -> Result<i32, Error> {
    match &args.action {
        LockAction::Status => status(
            &super::history::open_ledger(global, output, false)?.1,
            output,
        ),
        LockAction::Release { force } => release(
            &super::history::open_ledger(global, output, false)?.1,
            *force,
            output,
        ),
        LockAction::Acquire { message, ttl } => acquire(global, message, *ttl, output),
    }
}

fn status(ledger: &Ledger, output: &Output) -> Result<i32, Error> {
    let state = ledger.lock_state()?;
    if output.format != Format::Human {
        output.json(&serde_json::json!({
            "held": state.held_by_anyone(),
            "holder": if state.held { state.info.clone() } else { None },
            "stale": if state.held { None } else { state.info.clone() },
            "manual": state.manual.as_ref().map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                v["expired"] = m.is_expired().into();
                v
            }),
            "path": ledger.lock_location(),
        }));
    } else {
        match &state.manual {
            Some(m) if !m.is_expired() => {
                crate::answer!("held by a manual lock: {}", m.describe())
            }
            Some(m) => crate::answer!(
                "the manual lock expired (the next taker clears it): {}",
                m.describe()
            ),
            None => {}
        }
        match (&state.held, &state.info) {
            (true, Some(info)) => crate::answer!("held by {}", info.describe()),
            (true, None) => {
                crate::answer!("held by a process that has not written its details yet")
            }
            (false, Some(info)) => crate::answer!(
                "not held (a crashed holder left its details: {}; the next deploy takes the lock)",
                info.describe()
            ),
            (false, None) if state.held_by_anyone() => {}
            (false, None) => crate::answer!("not held"),
        }
    }
    Ok(exit_code::SUCCESS)
}

fn release(ledger: &Ledger, force: bool, output: &Output) -> Result<i32, Error> {
    let by = actor();
    let released = ledger.release_lock(force, &by)?;
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
        Released::Manual { manual, expired } => {
            let what = if *expired {
                "expired manual lock"
            } else {
                "manual lock"
            };
            if manual.actor == by {
                output.info(format!("released your {what}: {}", manual.describe()));
            } else {
                output.warn(format!(
                    "released the {what} of {}: {}",
                    inline(&manual.actor),
                    manual.describe()
                ));
            }
            ledger.append_audit(&manual.audit(
                "manual lock released",
                format!(
                    "the manual lock of {} was released by {by}: {}",
                    manual.actor, manual.message
                ),
                Some(("released_by", &by)),
            ))?;
        }
    }
    if output.format != Format::Human {
        output.json(&serde_json::to_value(&released).unwrap_or_default());
    }
    Ok(exit_code::SUCCESS)
}

/// `lock acquire`: the state store is created if need be, as by a deploy.
fn acquire(
    global: &GlobalArgs,
    message: &str,
    ttl: Option<std::time::Duration>,
    output: &Output,
) -> Result<i32, Error> {
    let invocation = crate::pipeline::actor::detect(None);
    // Bad input is refused before anything is opened or created.
    let manual = ManualLock::new(message, ttl, &invocation.actor, &invocation.host)?;
    let config = super::load_config(global)?;
    let ledger = Ledger::open_for(&config)?;
    ledger.check_writable()?;
    let expired = ledger.acquire_manual(&manual)?;
    ledger.append_audit(&manual.audit(
        "manual lock acquired",
        format!(
            "the deploy lock was taken by hand by {}: {}",
            manual.actor, manual.message
        ),
        None,
    ))?;
    output.info(format!(
        "holding the deploy lock by hand: {}; deploys, rollbacks and recovers exit 5 \
         until `shipgate lock release`",
        manual.describe()
    ));
    if output.format != Format::Human {
        output.json(&serde_json::json!({
            "acquired": true,
            "manual": manual,
            "cleared_expired": expired,
        }));
    }
    Ok(exit_code::SUCCESS)
}

/// Who runs this command (as deploys detect it: the CI actor, `SHIPGATE_ACTOR`, the login user).
fn actor() -> String {
    crate::pipeline::actor::detect(None).actor
}
