//! `status --check`: every gate once, outside a deploy (SPEC §1), for cron.

use crate::config::Gate;

use super::ProbeResult;

/// Probes `gate` the way a deploy would judge it, without waiting for a stage: up to
/// `gate.failures` probes (1 for a default P0, 3 for a default P1), stopping at the first pass.
/// It trips only when every one of those probes failed, so a P1 gate's single blip is not an
/// alert, exactly as during a deploy.
///
/// `probe_fn(attempt)` runs one probe; `attempt` counts from 0, so the caller can sleep
/// `gate.interval` before attempts after the first (this function never sleeps). Returns
/// whether the gate tripped and every probe's result, in order (the last one explains).
pub fn check_once(
    gate: &Gate,
    mut probe_fn: impl FnMut(u32) -> ProbeResult,
) -> (bool, Vec<ProbeResult>) {
    let attempts = gate.failures.max(1);
    let mut results = Vec::new();
    for attempt in 0..attempts {
        let result = probe_fn(attempt);
        let pass = result.pass;
        results.push(result);
        if pass {
            return (false, results);
        }
    }
    (true, results)
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

    #[test]
    fn a_pass_first_probes_once() {
        let (tripped, results) = check_once(&gate(Severity::P1, 3), scripted(&[true]));
        assert!(!tripped);
        assert_eq!(results.len(), 1);
    }
}
