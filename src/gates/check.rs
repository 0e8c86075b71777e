//! `status --check`: every gate once, outside a deploy (SPEC §1), for cron.

use std::time::{Duration, Instant};

use crate::config::placeholder::Vars;
use crate::config::Gate;

use super::{ProbeCtx, ProbeResult};

/// Probes `gate` the way a deploy judges it, without waiting for a stage: up to
/// [`Gate::trip_after`] probes (the rule `deploy` applies, whatever the severity), stopping at
/// the first pass. It trips only when every one of those probes failed, so a single blip of a
/// gate with `failures = 3` is not an alert, exactly as during a deploy.
///
/// `probe_fn(attempt)` runs one probe; `attempt` counts from 0, so the caller can sleep
/// `gate.interval` before attempts after the first (this function never sleeps). Returns
/// whether the gate tripped and every probe's result, in order (the last one explains).
pub fn check_once(
    gate: &Gate,
    mut probe_fn: impl FnMut(u32) -> ProbeResult,
) -> (bool, Vec<ProbeResult>) {
    let attempts = gate.trip_after();
    let mut results = Vec::new();
    for attempt in 0..attempts {
        let result = probe_fn(attempt);
        // An inconclusive result (a judge short of data) is no alert either.
        let pass = result.pass || result.inconclusive;
        results.push(result);
        if pass {
            return (false, results);
        }
    }
    (true, results)
}

/// [`check_once`] with real probes: `gate.interval` apart (no `delay`: nothing was just
/// deployed). A cancelled `ctx` ends the wait at once, and the probes left fail without I/O.
pub fn check_gate(gate: &Gate, vars: &Vars, ctx: &ProbeCtx<'_>) -> (bool, Vec<ProbeResult>) {
    check_once(gate, |attempt| {
        if attempt > 0 {
            sleep_unless_cancelled(gate.interval, ctx);
        }
        super::probe(gate, vars, ctx)
    })
}

/// Sleeps `d`, waking early when `ctx` is cancelled.
fn sleep_unless_cancelled(d: Duration, ctx: &ProbeCtx<'_>) {
    const STEP: Duration = Duration::from_millis(50);
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end || ctx.cancel.is_cancelled() {
            return;
        }
        std::thread::sleep(STEP.min(end - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GateKind, Severity, TcpGate};
    use std::time::Duration;

    fn gate(severity: Severity, failures: u32) -> Gate {
        Gate {
            name: "db".into(),
            kind: GateKind::Tcp(TcpGate {
                address: "db:5432".into(),
            }),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            delay: Duration::ZERO,
            severity,
            failures,
        }
    }

    fn scripted(passes: &'static [bool]) -> impl FnMut(u32) -> ProbeResult {
        move |attempt| {
            if passes[attempt as usize] {
                ProbeResult::pass(format!("ok {attempt}"))
            } else {
                ProbeResult::fail(format!("down {attempt}"))
            }
        }
    }

    #[test]
    fn p0_trips_on_one_failure() {
        let (tripped, results) = check_once(&gate(Severity::P0, 1), scripted(&[false]));
        assert!(tripped);
        assert_eq!(results, vec![ProbeResult::fail("down 0")]);
    }

    #[test]
    fn p1_stops_at_the_first_pass() {
        let (tripped, results) = check_once(&gate(Severity::P1, 3), scripted(&[false, true]));
        assert!(!tripped);
        assert_eq!(results.len(), 2);
    }

    #[test]
    fn p1_trips_when_every_probe_fails() {
        let (tripped, results) =
            check_once(&gate(Severity::P1, 3), scripted(&[false, false, false]));
        assert!(tripped);
        assert_eq!(results.last().unwrap().detail, "down 2");
    }

    /// A P0 gate is judged by its `failures` like a P1 one, as `deploy` judges it.
    #[test]
    fn a_p0_gate_with_failures_3_survives_one_failure() {
        let (tripped, results) = check_once(&gate(Severity::P0, 3), scripted(&[false, true]));
        assert!(!tripped);
        assert_eq!(results.len(), 2);
        let (tripped, results) =
            check_once(&gate(Severity::P0, 3), scripted(&[false, false, false]));
        assert!(tripped);
        assert_eq!(results.len(), 3);
    }

    #[test]
    fn a_cancelled_check_does_not_wait_out_the_interval() {
        let cancel = crate::exec::Cancel::new();
        cancel.cancel();
        let ctx = ProbeCtx::new(".".into(), &cancel);
        let mut g = gate(Severity::P1, 3);
        g.interval = Duration::from_secs(3600);
        let (tripped, results) = check_gate(&g, &Vars::new(), &ctx);
        assert!(tripped);
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(|r| r.detail.contains("cancelled")));
    }

    #[test]
    fn a_pass_first_probes_once() {
        let (tripped, results) = check_once(&gate(Severity::P1, 3), scripted(&[true]));
        assert!(!tripped);
        assert_eq!(results.len(), 1);
    }
}
