//! A stage's `preflight` gates (issue 15 item 3): before the deploy changes anything, each is
//! probed against what every region of its stage runs *now*, by its trip rule in one quick
//! round ([`crate::gates::check::check_gate`], the `status --check` rule). A trip blocks the
//! deploy (exit 7, "the baseline is unhealthy; nothing was changed"): never deploy into an
//! incident only to roll back to an equally broken version.
//!
//! `{version}` is the region's current version (captured for the rollback targets) and
//! `{previous_version}` is empty. A region with no known version (never deployed) has no
//! baseline: a gate that needs the version is not probed there. Every (gate, region) probe
//! runs at once on its own thread, so the wait is one gate's round, not their sum.

use std::collections::BTreeMap;

use crate::config::Stage;
use crate::gates::{check::check_gate, ProbeCtx, ProbeResult};

use super::engine::Engine;

/// A preflight gate that tripped.
#[derive(Debug, Clone)]
pub struct BaselineTrip {
    pub stage: String,
    pub gate: String,
    /// `None` for a gate shared by the stage's regions.
    pub region: Option<String>,
    /// What the region runs now.
    pub version: Option<String>,
    pub last: ProbeResult,
}

impl BaselineTrip {
    /// `preflight gate `errors` tripped in lhr (running v1): value 0.2 > max 0.05`.
    pub fn describe(&self) -> String {
        let where_ = match (&self.region, &self.version) {
            (Some(r), Some(v)) => format!(" in {r} (running {v})"),
            (Some(r), None) => format!(" in {r}"),
            (None, _) => format!(" for stage {}", self.stage),
        };
        if self.last.config_fault {
            format!(
                "preflight gate `{}` is misconfigured{where_}: {} — the baseline was not judged",
                self.gate, self.last.detail
            )
        } else {
            format!(
                "preflight gate `{}` tripped{where_}: {}",
                self.gate, self.last.detail
            )
        }
    }
}

/// One probe to run: a stage's preflight gate in one region (or once for the stage).
struct Job<'a> {
    stage: &'a Stage,
    gate: &'a crate::config::Gate,
    region: Option<&'a str>,
    version: Option<String>,
}

/// Probes every preflight gate of `stages` against `current` (region → what it runs now);
/// returns the trips, in stage, gate and region order.
pub fn check_baseline(
    engine: &Engine<'_>,
    stages: &[&Stage],
    current: &BTreeMap<String, String>,
) -> Vec<BaselineTrip> {
    let jobs = jobs(engine, stages, current);
    if jobs.is_empty() {
        return Vec::new();
    }
    engine.reporter.line(&format!(
        "preflight: probing {} gate(s) against what runs now",
        jobs.len()
    ));
    let ctx = ProbeCtx::new(engine.config.base_dir.clone(), &engine.signals.work);
    let results: Vec<(bool, Vec<ProbeResult>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let ctx = &ctx;
                scope.spawn(move || {
                    let version = job.version.clone().unwrap_or_default();
                    let vars = engine.vars(Some(&job.stage.name), job.region, &version, None);
                    check_gate(job.gate, &vars, ctx)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        true,
                        vec![ProbeResult::fail("the preflight probe panicked")],
                    )
                })
            })
            .collect()
    });
    jobs.iter()
        .zip(results)
        .filter(|(_, (tripped, _))| *tripped)
        .map(|(job, (_, results))| BaselineTrip {
            stage: job.stage.name.clone(),
            gate: job.gate.name.clone(),
            region: job.region.map(str::to_string),
            version: job.version.clone(),
            last: results
                .last()
                .cloned()
                .unwrap_or_else(|| ProbeResult::fail("not probed")),
        })
        .collect()
}

fn jobs<'a>(
    engine: &Engine<'a>,
    stages: &[&'a Stage],
    current: &BTreeMap<String, String>,
) -> Vec<Job<'a>> {
    let mut jobs = Vec::new();
    for stage in stages {
        for name in &stage.preflight {
            let Some(gate) = engine.config.gates.get(name) else {
                continue;
            };
            if !gate.uses_region() {
                // One probe for the stage; `{version}` is what its first region runs.
                let version = stage.regions.iter().find_map(|r| current.get(r).cloned());
                if gate.needs_version() && version.is_none() {
                    continue;
                }
                jobs.push(Job {
                    stage,
                    gate,
                    region: None,
                    version,
                });
                continue;
            }
            for region in &stage.regions {
                let version = current.get(region).cloned();
                if gate.needs_version() && version.is_none() {
                    continue;
                }
                jobs.push(Job {
                    stage,
                    gate,
                    region: Some(region),
                    version,
                });
            }
        }
    }
    jobs
}
