//! The one rollback (SPEC §3): the plan (each region's target: the version captured before the
//! deploy changed it, else history, else the platform's own release history), its grouping into
//! adapter calls, their execution, reading back every region whose call failed, verification
//! with the stage gates, the verdict per region, and the `rollback` record.
//!
//! Used by the automatic rollback of `deploy`, by `rollback`, by `recover`, and by the dry runs
//! of `deploy` and `rollback`, which print exactly the calls a real run would make
//! ([`RollbackPlan::calls`]).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::adapters::{Adapter, Live, RunCtx};
use crate::config::placeholder::Vars;
use crate::config::Config;
use crate::error::Error;
use crate::exec::Cancel;
use crate::ledger::records::*;
use crate::report::Phase;

use super::actor::now_rfc3339;
use super::engine::{first_line, secs, Engine};

/// One region to roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackTarget {
    pub region: String,
    /// What it runs now, when known (for the record and `{previous_version}`).
    pub from: Option<String>,
    /// What to return it to; `None`: nothing is known to go back to.
    pub to: Option<String>,
}

impl RollbackTarget {
    /// It already runs its target: nothing to run, only to verify and record.
    pub fn already_there(&self) -> bool {
        self.to.is_some() && self.to == self.from
    }
}

/// The regions to return, each with its target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackPlan {
    pub targets: Vec<RollbackTarget>,
}

/// One adapter call of a rollback: these regions to this version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackCall {
    pub regions: Vec<String>,
    pub to: String,
    /// What the first region runs now (`{previous_version}` of the call).
    pub from: Option<String>,
}

impl RollbackPlan {
    /// A deploy's rollback: `regions` leave `version` for what each ran before the deploy.
    pub fn for_deploy(
        regions: &[String],
        previous: &BTreeMap<String, String>,
        version: &str,
    ) -> RollbackPlan {
        RollbackPlan {
            targets: regions
                .iter()
                .map(|r| RollbackTarget {
                    region: r.clone(),
                    from: Some(version.to_string()),
                    to: previous.get(r).cloned(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn regions(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.region.clone()).collect()
    }

    /// The adapter calls: for an adapter that batches regions (fly), one call per target
    /// version, regions in plan order; otherwise one call per region. A region already at its
    /// target, or with no target, gets none.
    pub fn calls(&self, batches_regions: bool) -> Vec<RollbackCall> {
        let mut calls: Vec<RollbackCall> = Vec::new();
        for t in &self.targets {
            let Some(to) = t.to.clone().filter(|_| !t.already_there()) else {
                continue;
            };
            match calls.iter_mut().find(|c| batches_regions && c.to == to) {
                Some(call) => call.regions.push(t.region.clone()),
                None => calls.push(RollbackCall {
                    regions: vec![t.region.clone()],
                    to,
                    from: t.from.clone(),
                }),
            }
        }
        calls
    }
}

/// How a rollback is run and recorded.
#[derive(Debug, Clone, Copy)]
pub struct RollbackOptions<'a> {
    pub reason: &'a str,
    /// Started by a deploy's failure policy or signal, not by a person.
    pub automatic: bool,
    /// Run the stage gates afterwards (each stage's `verify_rollback` still applies).
    pub verify: bool,
    /// Written by `shipgate recover`.
    pub recover: bool,
}

/// How each region of a rollback ended.
#[derive(Debug, Default, Clone)]
pub struct RollbackOutcome {
    /// Region → `rolled_back`, `resolved` or `rollback_failed`, with what it runs now.
    pub regions: BTreeMap<String, RegionDetail>,
    /// The rollback was abandoned by a second signal before these regions were finished.
    pub abandoned: Vec<String>,
    /// Region → why it is back on its target but not verified: its only failing gate is
    /// broken (a configuration failure says nothing about the version it went back to).
    pub unverified: BTreeMap<String, String>,
}

impl RollbackOutcome {
    /// The regions at their target and verified.
    pub fn ok(&self) -> Vec<String> {
        self.regions
            .iter()
            .filter(|(_, d)| matches!(d.status, RegionState::RolledBack | RegionState::Resolved))
            .map(|(r, _)| r.clone())
            .collect()
    }
    /// Region → why its rollback (or its verification) failed.
    pub fn failed(&self) -> BTreeMap<String, String> {
        self.regions
            .iter()
            .filter(|(_, d)| d.status == RegionState::RollbackFailed)
            .map(|(r, d)| (r.clone(), d.error.clone().unwrap_or_default()))
            .collect()
    }
    pub fn succeeded(&self) -> bool {
        self.failed().is_empty()
    }
}

/// The vars of one call: `version` and `previous_version` are what the regions run now; the
/// adapter renders its commands with the target.
fn call_vars(config: &Config, deploy_id: &str, call: &RollbackCall) -> Vars {
    let single = (call.regions.len() == 1).then(|| call.regions[0].as_str());
    let stage = config.stage_of(&call.regions[0]).map(|s| s.name.as_str());
    let from = call.from.as_deref().unwrap_or("");
    super::engine::vars(config, deploy_id, stage, single, from, Some(from))
}

fn call_timeout(config: &Config, call: &RollbackCall) -> std::time::Duration {
    config
        .stage_of(&call.regions[0])
        .map(|s| s.command_timeout)
        .unwrap_or(config.defaults.command_timeout)
}

/// The exact (redacted) argv of every command the plan runs, in order: what the dry runs
/// print, from the same calls and vars [`Engine::rollback`] runs.
pub fn plan_commands(
    config: &Config,
    adapter: &dyn Adapter,
    deploy_id: &str,
    plan: &RollbackPlan,
) -> Vec<Vec<String>> {
    plan.calls(adapter.batches_regions())
        .iter()
        .flat_map(|call| {
            adapter.rollback_commands(
                &call.regions,
                Some(&call.to),
                &call_vars(config, deploy_id, call),
                call_timeout(config, call),
            )
        })
        .map(|c| c.argv.iter().map(|a| crate::redact::redact(a)).collect())
        .collect()
}

impl Engine<'_> {
    /// [`plan_commands`] for this run.
    pub fn rollback_commands(&self, plan: &RollbackPlan) -> Vec<Vec<String>> {
        plan_commands(self.config, self.adapter, &self.deploy_id, plan)
    }

    /// The gates that would verify the plan's regions (none with `verify = false`).
    pub fn rollback_gates(&self, plan: &RollbackPlan, verify: bool) -> Vec<String> {
        if !verify {
            return Vec::new();
        }
        let mut gates: Vec<String> = plan
            .targets
            .iter()
            .filter_map(|t| self.config.stage_of(&t.region))
            .filter(|s| s.verify_rollback)
            .flat_map(|s| s.gates.iter().cloned())
            .collect();
        gates.sort();
        gates.dedup();
        gates
    }

    /// Runs the plan: the calls, a read-back of every region whose call failed, verification,
    /// the verdict per region and the `rollback` record.
    pub fn rollback(&self, plan: &RollbackPlan, opts: RollbackOptions<'_>) -> RollbackOutcome {
        let mut outcome = RollbackOutcome::default();
        if plan.is_empty() {
            return outcome;
        }
        let start_time = now_rfc3339();
        let started = Instant::now();
        let cancel = &self.signals.rollback;
        let mut rolled: BTreeMap<String, String> = BTreeMap::new();
        for t in &plan.targets {
            match &t.to {
                None => {
                    let msg = match &t.from {
                        Some(v) => format!("nothing ran here before, so there is nothing to roll back to: it still runs {v}"),
                        None => "nothing ran here before that anyone knows of, and what runs now is unknown".to_string(),
                    };
                    self.reporter
                        .error(&format!("rollback impossible in {}", t.region), &msg);
                    self.reporter
                        .phase(&t.region, &Phase::RollbackFailed(msg.clone()));
                    outcome
                        .regions
                        .insert(t.region.clone(), failed_detail(t, t.from.clone(), msg));
                }
                Some(to) if t.already_there() => {
                    rolled.insert(t.region.clone(), to.clone());
                }
                Some(to) => {
                    self.progress.set(&t.region, Position::Unknown);
                    self.reporter
                        .phase(&t.region, &Phase::RollingBack(to.clone()));
                }
            }
        }
        let results = self.run_calls(plan, cancel);
        let abandoned = self.signals.state().abandoned();
        let failed: Vec<&RollbackTarget> = plan
            .targets
            .iter()
            .filter(|t| matches!(results.get(&t.region), Some(Err(_))))
            .collect();
        // What a region whose call failed runs now is read back, so the record says it where the
        // platform can (a batched fly call already judges each region on its own). Not when
        // abandoned: the runner's SIGKILL is near.
        let read_back = if abandoned {
            BTreeMap::new()
        } else {
            self.read_back(&failed)
        };
        for t in &plan.targets {
            let (Some(result), Some(to)) = (results.get(&t.region), &t.to) else {
                continue;
            };
            let e = match result {
                Ok(()) => {
                    rolled.insert(t.region.clone(), to.clone());
                    continue;
                }
                Err(e) => e,
            };
            let now_runs = match read_back.get(&t.region) {
                Some(Ok(Live::Version(v))) => {
                    self.progress.set(&t.region, Position::Changed);
                    Some(v.clone())
                }
                Some(Ok(Live::Mixed(_))) => {
                    self.progress.set(&t.region, Position::Mixed);
                    None
                }
                _ => None,
            };
            if abandoned {
                outcome.abandoned.push(t.region.clone());
            }
            let text = crate::redact::redact(&e.render(false));
            self.reporter
                .error(&format!("rollback failed in {}", t.region), &text);
            self.reporter.phase(
                &t.region,
                &Phase::RollbackFailed(first_line(&e.to_string())),
            );
            outcome
                .regions
                .insert(t.region.clone(), failed_detail(t, now_runs, e.to_string()));
        }
        if opts.verify && !rolled.is_empty() && !self.signals.state().abandoned() {
            self.verify(plan, &mut rolled, &mut outcome);
        }
        for (region, to) in &rolled {
            self.progress.set(region, Position::Back);
            self.reporter.phase(region, &Phase::RolledBack(to.clone()));
            let target = plan.targets.iter().find(|t| &t.region == region);
            outcome.regions.insert(
                region.clone(),
                RegionDetail {
                    status: if target.is_some_and(RollbackTarget::already_there) {
                        RegionState::Resolved
                    } else {
                        RegionState::RolledBack
                    },
                    previous_version: target.and_then(|t| t.from.clone()),
                    version: Some(to.clone()),
                    error: outcome.unverified.get(region).cloned(),
                },
            );
        }
        self.record_rollback(plan, &outcome, opts, &start_time, started);
        outcome
    }

    /// Runs every call of the plan with the rollback token: fly's one at a time (one deploy
    /// per app at once), the others in parallel.
    fn run_calls(
        &self,
        plan: &RollbackPlan,
        cancel: &Cancel,
    ) -> BTreeMap<String, Result<(), Error>> {
        let calls = plan.calls(self.adapter.batches_regions());
        let run = |call: &RollbackCall| -> Vec<(String, Result<(), Error>)> {
            if cancel.is_cancelled() {
                return call
                    .regions
                    .iter()
                    .map(|r| {
                        let e = Error::failed("rollback abandoned by a second signal");
                        (r.clone(), Err(e))
                    })
                    .collect();
            }
            let label = call.regions.join(",");
            let on_line = |_: crate::exec::Stream, line: &str| {
                self.reporter.command_output(Some(&label), line)
            };
            let ctx = self.ctx(cancel, call_timeout(self.config, call), &on_line);
            let vars = call_vars(self.config, &self.deploy_id, call);
            self.adapter
                .rollback(&call.regions, Some(&call.to), &vars, &ctx)
        };
        if self.adapter.batches_regions() {
            return calls.iter().flat_map(run).collect();
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .iter()
                .map(|call| {
                    let run = &run;
                    s.spawn(move || run(call))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("rollback thread panicked"))
                .collect()
        })
    }

    /// What the regions whose rollback call failed run now, where the platform can say.
    fn read_back(&self, failed: &[&RollbackTarget]) -> BTreeMap<String, Result<Live, Error>> {
        if failed.is_empty() || !self.adapter.reads_live_version() {
            return BTreeMap::new();
        }
        let regions: Vec<String> = failed.iter().map(|t| t.region.clone()).collect();
        self.capture(&regions, &Cancel::new())
    }

    /// Verifies the regions that went back, stage by stage; a region that fails (or whose
    /// verification is abandoned) leaves `rolled` for `outcome` as a failed rollback.
    fn verify(
        &self,
        plan: &RollbackPlan,
        rolled: &mut BTreeMap<String, String>,
        outcome: &mut RollbackOutcome,
    ) {
        let from: BTreeMap<String, String> = plan
            .targets
            .iter()
            .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
            .collect();
        for stage in &self.config.stages {
            if !stage.verify_rollback || !stage.regions.iter().any(|r| rolled.contains_key(r)) {
                continue;
            }
            let verdicts = self.verify_stage(stage, rolled, &from, &self.signals.rollback);
            for v in verdicts {
                let to = rolled[&v.region].clone();
                let target = plan.targets.iter().find(|t| t.region == v.region);
                if let (Some(gate), Some(err)) = (&v.broken_gate, v.error()) {
                    // Back on its target; the broken gate cannot say whether it is healthy.
                    let why = format!("rolled back to {to}, unverified: {err}");
                    self.reporter
                        .warn(&format!("{}: {why} (gate `{gate}`)", v.region));
                    outcome.unverified.insert(v.region.clone(), why);
                    continue;
                }
                let why = match (&v.result, v.error()) {
                    (_, Some(err)) => format!("rolled back to {to} but verification failed: {err}"),
                    (None, _) => {
                        outcome.abandoned.push(v.region.clone());
                        format!(
                            "rolled back to {to}, but its verification did not finish (abandoned)"
                        )
                    }
                    _ => continue,
                };
                self.reporter
                    .error(&format!("rollback failed in {}", v.region), &why);
                self.reporter
                    .phase(&v.region, &Phase::RollbackFailed(why.clone()));
                rolled.remove(&v.region);
                let t = target.cloned().unwrap_or(RollbackTarget {
                    region: v.region.clone(),
                    from: None,
                    to: Some(to.clone()),
                });
                outcome
                    .regions
                    .insert(v.region.clone(), failed_detail(&t, Some(to), why));
            }
        }
    }

    fn record_rollback(
        &self,
        plan: &RollbackPlan,
        outcome: &RollbackOutcome,
        opts: RollbackOptions<'_>,
        start_time: &str,
        started: Instant,
    ) {
        let to_version: BTreeMap<String, String> = outcome
            .regions
            .iter()
            .filter(|(_, d)| d.status != RegionState::RollbackFailed)
            .filter_map(|(r, d)| d.version.clone().map(|v| (r.clone(), v)))
            .collect();
        self.record(HistoryRecord::Rollback(RollbackRecord {
            deploy_id: self.deploy_id.clone(),
            regions: plan.regions(),
            from_version: plan
                .targets
                .iter()
                .filter_map(|t| t.from.clone().map(|f| (t.region.clone(), f)))
                .collect(),
            to_version,
            status: if outcome.succeeded() {
                "success".into()
            } else {
                "failed".into()
            },
            automatic: opts.automatic,
            reason: Some(opts.reason.to_string()),
            start_time: start_time.to_string(),
            end_time: Some(now_rfc3339()),
            duration_seconds: Some(secs(started.elapsed())),
            actor: self.invocation.actor.clone(),
            errors: outcome.failed(),
            regions_detail: outcome.regions.clone(),
            recover: opts.recover,
            commands: Vec::new(),
        }));
    }

    /// The last version deployed successfully to `region` before `current`: from history,
    /// else from the platform's own release history. `None` when neither knows one.
    pub fn earlier_version(
        &self,
        region: &str,
        current: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let from_history = self.ledger.successful_versions(region)?;
        if let Some(v) = from_history
            .into_iter()
            .find(|v| Some(v.as_str()) != current)
        {
            return Ok(Some(v));
        }
        // The first shipgate deploy over an app that ran before: its record says what ran.
        if let Some(current) = current {
            for r in self.ledger.history_rev(&mut Vec::new())? {
                if let HistoryRecord::Deploy(d) = &r.body {
                    if d.version == current {
                        if let Some(v) = d
                            .previous_versions
                            .get(region)
                            .filter(|v| v.as_str() != current)
                        {
                            return Ok(Some(v.clone()));
                        }
                    }
                }
            }
        }
        let stage = self.config.stage_of(region);
        let vars = self.vars(
            stage.map(|s| s.name.as_str()),
            Some(region),
            current.unwrap_or(""),
            None,
        );
        let on_line = |_: crate::exec::Stream, _: &str| {};
        let ctx = RunCtx {
            cancel: &self.signals.work,
            command_timeout: self.command_timeout(region),
            cwd: self.config.base_dir.clone(),
            on_line: Some(&on_line),
            journal: Some(&self.journal),
        };
        match self.adapter.release_history(region, &vars, &ctx) {
            Ok(versions) => Ok(versions.into_iter().find(|v| Some(v.as_str()) != current)),
            Err(e) => {
                self.reporter.warn(&format!(
                    "{region}: the platform's release history is unavailable: {}",
                    super::deploy::indent_rest(&e.with_detail_text())
                ));
                Ok(None)
            }
        }
    }
}

fn failed_detail(t: &RollbackTarget, now_runs: Option<String>, error: String) -> RegionDetail {
    RegionDetail {
        status: RegionState::RollbackFailed,
        previous_version: t.from.clone(),
        version: now_runs,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(region: &str, from: &str, to: Option<&str>) -> RollbackTarget {
        RollbackTarget {
            region: region.into(),
            from: Some(from.into()),
            to: to.map(str::to_string),
        }
    }

    fn plan() -> RollbackPlan {
        RollbackPlan {
            targets: vec![
                target("lhr", "v3", Some("v2")),
                target("nrt", "v3", Some("v1")),
                target("ewr", "v3", Some("v2")),
                target("ord", "v3", None),
                target("fra", "v2", Some("v2")),
            ],
        }
    }

    #[test]
    fn a_batching_adapter_gets_one_call_per_target_version() {
        let calls = plan().calls(true);
        let shape: Vec<(Vec<String>, String)> =
            calls.into_iter().map(|c| (c.regions, c.to)).collect();
        assert_eq!(
            shape,
            vec![
                (vec!["lhr".into(), "ewr".into()], "v2".into()),
                (vec!["nrt".into()], "v1".into()),
            ]
        );
    }

    #[test]
    fn other_adapters_get_one_call_per_region_and_nothing_for_regions_at_their_target() {
        let calls = plan().calls(false);
        let regions: Vec<Vec<String>> = calls.into_iter().map(|c| c.regions).collect();
        assert_eq!(
            regions,
            vec![
                vec!["lhr".to_string()],
                vec!["nrt".into()],
                vec!["ewr".into()]
            ]
        );
    }

    /// An adapter that records the commands each `rollback` call would run, and succeeds.
    struct Recording {
        batches: bool,
        ran: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl Adapter for Recording {
        fn kind(&self) -> crate::config::AdapterKind {
            crate::config::AdapterKind::Exec
        }
        fn batches_regions(&self) -> bool {
            self.batches
        }
        fn deploy_commands(
            &self,
            _: &[String],
            _: &Vars,
            _: std::time::Duration,
        ) -> Vec<crate::exec::CommandSpec> {
            Vec::new()
        }
        fn deploy(
            &self,
            regions: &[String],
            _: &Vars,
            _: &RunCtx<'_>,
        ) -> Vec<crate::adapters::RegionResult> {
            regions.iter().map(|r| (r.clone(), Ok(()))).collect()
        }
        fn reads_live_version(&self) -> bool {
            false
        }
        fn current(&self, _: &str, _: &Vars, _: &RunCtx<'_>) -> Result<Live, Error> {
            Ok(Live::Absent)
        }
        fn current_commands(
            &self,
            _: &[String],
            _: &Vars,
            _: std::time::Duration,
        ) -> Vec<crate::exec::CommandSpec> {
            Vec::new()
        }
        fn rollback(
            &self,
            regions: &[String],
            to: Option<&str>,
            vars: &Vars,
            ctx: &RunCtx<'_>,
        ) -> Vec<crate::adapters::RegionResult> {
            let commands = self.rollback_commands(regions, to, vars, ctx.command_timeout);
            let mut ran = self.ran.lock().unwrap();
            ran.extend(commands.into_iter().map(|c| c.argv));
            regions.iter().map(|r| (r.clone(), Ok(()))).collect()
        }
        fn rollback_commands(
            &self,
            regions: &[String],
            to: Option<&str>,
            vars: &Vars,
            _: std::time::Duration,
        ) -> Vec<crate::exec::CommandSpec> {
            let mut argv = vec!["platform".to_string(), "rollback".into(), regions.join(",")];
            argv.push(to.unwrap_or("?").to_string());
            argv.push(vars.get("previous_version").unwrap_or("").to_string());
            argv.push(vars.get("deploy_id").unwrap_or("").to_string());
            vec![crate::exec::CommandSpec::new(
                argv,
                std::time::Duration::from_secs(1),
            )]
        }
        fn programs(&self) -> Vec<crate::adapters::Program> {
            Vec::new()
        }
        fn release_history(&self, _: &str, _: &Vars, _: &RunCtx<'_>) -> Result<Vec<String>, Error> {
            Ok(Vec::new())
        }
    }

    /// The dry runs print [`plan_commands`]; the rollback runs the calls. Both come from the
    /// one planner, so they are the same commands, in the same order.
    #[test]
    fn the_dry_run_and_the_rollback_make_the_same_adapter_calls() {
        let text = r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["true"]
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
verify_rollback = false
[[stage]]
name = "primary"
regions = ["ewr", "ord", "fra"]
verify_rollback = false
"#;
        let dir = tempfile::tempdir().unwrap();
        let config =
            crate::config::parse(&dir.path().join("pipeline.toml"), text, Some(dir.path()))
                .unwrap();
        for batches in [true, false] {
            let adapter = Recording {
                batches,
                ran: Default::default(),
            };
            let ledger = crate::ledger::Ledger::open(dir.path()).unwrap();
            let notify = crate::notify::queue::Queue::start(
                crate::notify::Notifier::from_config(&config),
                ledger.clone(),
            );
            let output = crate::output::Output {
                format: crate::cli::Format::Json,
                quiet: true,
                progress: crate::output::ProgressMode::Quiet,
                color: false,
                color_out: false,
                github: false,
            };
            let reporter = crate::report::Reporter::new(&output);
            let signals = super::super::signals::Signals::inert();
            let invocation = super::super::actor::Invocation::default();
            let engine = Engine {
                config: &config,
                adapter: &adapter,
                ledger: &ledger,
                notify: &notify,
                reporter: &reporter,
                signals: &signals,
                invocation: &invocation,
                deploy_id: "d1".into(),
                version: "v3".into(),
                progress: Default::default(),
                journal: Default::default(),
            };
            let plan = plan();
            let printed = plan_commands(&config, &adapter, "d1", &plan);
            let outcome = engine.rollback(
                &plan,
                RollbackOptions {
                    reason: "test",
                    automatic: true,
                    verify: false,
                    recover: false,
                },
            );
            let mut ran = adapter.ran.lock().unwrap().clone();
            if !batches {
                // Per-region calls run in parallel: compare as sets.
                ran.sort();
                let mut printed = printed.clone();
                printed.sort();
                assert_eq!(ran, printed);
            } else {
                assert_eq!(ran, printed);
            }
            assert_eq!(printed.len(), if batches { 2 } else { 3 });
            // The region already at its target is resolved, the one without is for a human.
            assert_eq!(outcome.regions["fra"].status, RegionState::Resolved);
            assert_eq!(outcome.regions["ord"].status, RegionState::RollbackFailed);
            assert_eq!(outcome.regions["lhr"].version.as_deref(), Some("v2"));
        }
    }

    #[test]
    fn a_deploys_plan_returns_each_region_to_its_captured_version() {
        let previous: BTreeMap<String, String> = [("lhr".to_string(), "v1".to_string())].into();
        let plan = RollbackPlan::for_deploy(&["lhr".into(), "nrt".into()], &previous, "v2");
        assert_eq!(plan.targets[0], target("lhr", "v2", Some("v1")));
        assert_eq!(plan.targets[1], target("nrt", "v2", None));
    }
}
