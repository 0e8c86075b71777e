//! The plan: stages, regions, gates with their effective settings, and (for `--dry-run`) the
//! exact commands. Rendering only; nothing here changes anything.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use crate::config::{Config, GateKind};
use crate::output::Output;

fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One line describing what a gate checks.
pub fn gate_summary(kind: &GateKind) -> String {
    match kind {
        GateKind::Http(h) => {
            let status = if h.expect_status.is_empty() {
                "2xx".to_string()
            } else {
                h.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            };
            let mut s = format!("{} {} → {status}", h.method, h.url);
            // Header values are shown as resolved, then redacted by the caller (a bearer token
            // from the environment is a secret).
            for (k, v) in &h.headers {
                write!(s, ", header {k}: {v}").ok();
            }
            if let Some(b) = &h.body_contains {
                write!(s, ", body contains {b:?}").ok();
            }
            if let Some(l) = h.max_latency {
                write!(s, ", within {}", human(l)).ok();
            }
            s
        }
        GateKind::Dns(d) => {
            if d.addresses.is_empty() {
                format!("resolve {}", d.host)
            } else {
                format!("resolve {} to {}", d.host, d.addresses.join(", "))
            }
        }
        GateKind::Tcp(t) => format!("connect {}", t.address),
        GateKind::Prometheus(p) => {
            let mut bounds = Vec::new();
            if let Some(min) = p.min {
                bounds.push(format!("≥ {min}"));
            }
            if let Some(max) = p.max {
                bounds.push(format!("≤ {max}"));
            }
            format!(
                "{} {} at {} (empty: {:?})",
                p.query,
                bounds.join(" and "),
                p.url,
                p.on_empty
            )
            .replace("(empty: Fail)", "(empty fails)")
            .replace("(empty: Pass)", "(empty passes)")
        }
        GateKind::Command(c) => format!("run {}", crate::redact::display_argv(&c.run)),
        GateKind::Judge(j) => {
            let baseline = match &j.baseline {
                crate::config::Baseline::LaterStages => "later stages".to_string(),
                crate::config::Baseline::SelfBefore => "itself before its deploy".to_string(),
                crate::config::Baseline::Regions(r) => r.join(", "),
            };
            let what = match (&j.errors, &j.requests, &j.query) {
                (Some(e), Some(n), _) => format!("errors {e} of requests {n}"),
                (_, _, Some(q)) => q.clone(),
                _ => String::new(),
            };
            format!(
                "{} judge: {what} vs {baseline}, over {} at {} every {}, {} at most {}× at confidence {}, min_samples {}, inconclusive: {}",
                j.method.as_str(),
                human(j.window),
                j.url,
                human(j.step),
                format!("{:?}", j.direction).to_lowercase(),
                j.max_ratio,
                j.confidence,
                j.min_samples,
                format!("{:?}", j.on_inconclusive).to_lowercase(),
            )
        }
        GateKind::Alertmanager(a) => format!(
            "no alert firing at {} matching {}",
            a.url,
            a.matchers.join(", ")
        ),
        GateKind::Json(j) => {
            let mut test = Vec::new();
            if let Some(e) = &j.equals {
                test.push(format!("= {e:?}"));
            }
            if let Some(min) = j.min {
                test.push(format!("≥ {min}"));
            }
            if let Some(max) = j.max {
                test.push(format!("≤ {max}"));
            }
            format!("{} {} {} {}", j.method, j.url, j.path, test.join(" and "))
        }
    }
}

/// The resolved config for people.
pub fn render_config(config: &Config, output: &Output) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "{} {} via {}",
        output.bold("app"),
        config.app.name,
        config.target.adapter.as_str()
    )
    .ok();
    if let Some(image) = &config.target.image {
        writeln!(s, "  image  {image}").ok();
    }
    match config.state.store {
        crate::config::StoreKind::Git => writeln!(
            s,
            "  state  branch {} of remote {} (git store)",
            config.state.branch, config.state.remote
        ),
        crate::config::StoreKind::File => {
            writeln!(s, "  state  {} (file store)", config.state.dir.display())
        }
    }
    .ok();
    for (i, stage) in config.stages.iter().enumerate() {
        writeln!(
            s,
            "{} {}. {}  regions {}  timeout {}  bake {}  on_failure {}  max_parallel {}",
            output.bold("stage"),
            i + 1,
            stage.name,
            stage.regions.join(","),
            human(stage.timeout),
            human(stage.bake),
            stage.on_failure.as_str(),
            if stage.max_parallel == 0 {
                "all".to_string()
            } else {
                stage.max_parallel.to_string()
            },
        )
        .ok();
        if stage.gates.is_empty() {
            writeln!(
                s,
                "    (no gates: regions are healthy once deployed and baked)"
            )
            .ok();
        }
        if !stage.preflight.is_empty() {
            writeln!(
                s,
                "    preflight {}: probed against what runs now before anything changes",
                stage.preflight.join(", ")
            )
            .ok();
        }
        for name in &stage.gates {
            if let Some(g) = config.gates.get(name) {
                writeln!(
                    s,
                    "    gate {name} [{} {}] {}; every {}, timeout {}, delay {}, trips after {} failure(s){}",
                    g.kind.type_name(),
                    g.severity.as_str(),
                    gate_summary(&g.kind),
                    human(g.interval),
                    human(g.timeout),
                    human(g.delay),
                    g.failures,
                    if g.uses_region() { "" } else { "; shared by the stage's regions" },
                )
                .ok();
            }
        }
    }
    s
}

/// The resolved config as data.
pub fn config_json(config: &Config) -> serde_json::Value {
    json!({
        "app": config.app.name,
        "adapter": config.target.adapter.as_str(),
        "image": config.target.image,
        "state_dir": config.state.dir,
        "stages": config.stages,
        "gates": config.gates,
        "notify": config.notify,
        "events": config.events,
    })
}

/// What `deploy --dry-run` shows: every stage, region, gate, and the exact (redacted) argv of
/// every adapter command.
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    pub app: String,
    /// Region → the version a failure returns it to (read from the platform and history).
    pub previous_versions: BTreeMap<String, String>,
    /// What the read of the current versions said (regions without a known version).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub version: String,
    pub adapter: String,
    pub deploy_id: String,
    /// The commands that read what runs before the deploy (the rollback targets).
    pub current_reads: Vec<Vec<String>>,
    pub stages: Vec<DryRunStage>,
    /// Programs the deploy would run that cannot be started (it would refuse, exit 2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_programs: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct DryRunStage {
    pub name: String,
    pub regions: Vec<String>,
    pub on_failure: String,
    pub timeout: String,
    pub bake: String,
    pub max_parallel: usize,
    /// Each deploy command's argv.
    pub commands: Vec<Vec<String>>,
    /// A stepped stage: each step's share and commands (`commands` is then empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<DryRunStep>,
    /// The commands a failure of this stage would run (its `on_failure` policy), from the
    /// same planner as the real rollback; `<previous>` where no target is known.
    pub rollback_commands: Vec<Vec<String>>,
    pub gates: Vec<DryRunGate>,
    /// Gates probed against what runs now before anything changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preflight: Vec<String>,
}

/// One step of a stepped stage in the dry run.
#[derive(Debug, serde::Serialize)]
pub struct DryRunStep {
    /// The new version's share, percent.
    pub weight: u8,
    /// How long its gates watch before the next step (the last: the bake).
    pub pause: String,
    /// Each region's commands for this step, in order.
    pub commands: Vec<Vec<String>>,
}

/// Replaces the deploy commands of each stepped stage by its steps: every region's exact argv
/// at every share, computed from `bases` (what the platform said; placeholders where it could
/// not be read).
pub fn add_steps(
    plan: &mut DryRun,
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    stages: &[&crate::config::Stage],
    bases: &BTreeMap<String, crate::adapters::steps::StepBasis>,
) {
    for (st, stage) in plan.stages.iter_mut().zip(stages) {
        if !stage.stepped() {
            continue;
        }
        st.commands.clear();
        for (i, weight) in stage.steps.iter().enumerate() {
            let mut commands = Vec::new();
            for r in &stage.regions {
                let vars = super::engine::vars(
                    config,
                    &plan.deploy_id,
                    Some(&stage.name),
                    Some(r),
                    &plan.version,
                    Some("<previous>"),
                )
                .with(crate::config::placeholder::WEIGHT, weight.to_string());
                let mut basis = bases.get(r).cloned().unwrap_or_default();
                if i > 0 {
                    basis = basis.after_first_step();
                }
                for c in adapter.step_commands(r, &vars, &basis, stage.command_timeout) {
                    commands.push(c.argv.iter().map(|a| crate::redact::redact(a)).collect());
                }
            }
            let last = i + 1 == stage.steps.len();
            st.steps.push(DryRunStep {
                weight: *weight,
                pause: human(if last { stage.bake } else { stage.step_pause }),
                commands,
            });
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct DryRunGate {
    pub name: String,
    pub severity: String,
    pub failures: u32,
    /// Region (or `*` for a gate shared by the stage) → what is probed.
    pub probes: Vec<(String, String)>,
}

/// The stages up to and including `stage`.
fn stages_so_far<'a>(
    stages: &'a [&'a crate::config::Stage],
    stage: &crate::config::Stage,
) -> &'a [&'a crate::config::Stage] {
    let end = stages
        .iter()
        .position(|s| s.name == stage.name)
        .map_or(stages.len(), |i| i + 1);
    &stages[..end]
}

/// What a failure of `stage` would run, from the one rollback planner: every region changed so
/// far (`rollback`), the stage's (`rollback-stage`), each failed region on its own
/// (`rollback-region`), or nothing (`continue`). A region without a known target shows
/// `<previous>`.
fn failure_commands(
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    deploy_id: &str,
    so_far: &[&crate::config::Stage],
    stage: &crate::config::Stage,
    version: &str,
    previous: &BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    use crate::config::OnFailure;
    use crate::pipeline::rollback::{plan_commands, RollbackPlan};
    let mut targets = previous.clone();
    for s in so_far {
        for r in &s.regions {
            targets
                .entry(r.clone())
                .or_insert_with(|| "<previous>".to_string());
        }
    }
    let plans: Vec<RollbackPlan> = match stage.on_failure {
        OnFailure::Continue => Vec::new(),
        OnFailure::Rollback => {
            let regions: Vec<String> = so_far.iter().flat_map(|s| s.regions.clone()).collect();
            vec![RollbackPlan::for_deploy(&regions, &targets, version)]
        }
        OnFailure::RollbackStage => {
            vec![RollbackPlan::for_deploy(&stage.regions, &targets, version)]
        }
        OnFailure::RollbackRegion => stage
            .regions
            .iter()
            .map(|r| RollbackPlan::for_deploy(std::slice::from_ref(r), &targets, version))
            .collect(),
    };
    plans
        .iter()
        .flat_map(|p| plan_commands(config, adapter, deploy_id, p))
        .collect()
}

/// Builds the dry-run plan; changes nothing. `previous` holds the rollback targets read from
/// the platform and history (empty when they could not be read).
pub fn dry_run(
    config: &Config,
    adapter: &dyn crate::adapters::Adapter,
    stages: &[&crate::config::Stage],
    version: &str,
    deploy_id: &str,
    previous: &BTreeMap<String, String>,
) -> DryRun {
    use crate::config::placeholder::Vars;
    let vars_for = |stage: &str, region: Option<&str>| {
        let mut v = Vars::new();
        v.set("app", config.app.name.clone())
            .set("version", version)
            .set("deploy_id", deploy_id)
            .set("stage", stage)
            .set("previous_version", "<previous>");
        if let Some(r) = region {
            v.set("region", r);
        }
        if let Some(image) = &config.target.image {
            let rendered = v.render(image);
            v.set("image", rendered);
        }
        v
    };
    let redact_argv = |argv: &[String]| {
        argv.iter()
            .map(|a| crate::redact::redact(a))
            .collect::<Vec<_>>()
    };
    let all_regions: Vec<String> = stages.iter().flat_map(|s| s.regions.clone()).collect();
    let current_reads = adapter
        .current_commands(
            &all_regions,
            &vars_for("", None),
            config.defaults.command_timeout,
        )
        .iter()
        .map(|c| redact_argv(&c.argv))
        .collect();
    let stages = stages
        .iter()
        .map(|stage| {
            let mut commands = Vec::new();
            if adapter.batches_regions() {
                let size = if stage.max_parallel == 0 {
                    stage.regions.len()
                } else {
                    stage.max_parallel
                };
                for chunk in stage.regions.chunks(size.max(1)) {
                    let single = (chunk.len() == 1).then(|| chunk[0].as_str());
                    for c in adapter.deploy_commands(
                        chunk,
                        &vars_for(&stage.name, single),
                        stage.command_timeout,
                    ) {
                        commands.push(redact_argv(&c.argv));
                    }
                }
            } else {
                for r in &stage.regions {
                    for c in adapter.deploy_commands(
                        std::slice::from_ref(r),
                        &vars_for(&stage.name, Some(r)),
                        stage.command_timeout,
                    ) {
                        commands.push(redact_argv(&c.argv));
                    }
                }
            }
            let rollback_commands = failure_commands(
                config,
                adapter,
                deploy_id,
                stages_so_far(stages, stage),
                stage,
                version,
                previous,
            );
            let gates = stage
                .gates
                .iter()
                .filter_map(|g| config.gates.get(g))
                .map(|g| {
                    let probes = if g.uses_region() {
                        stage
                            .regions
                            .iter()
                            .map(|r| {
                                (
                                    r.clone(),
                                    crate::redact::redact(
                                        &vars_for(&stage.name, Some(r))
                                            .render(&gate_summary(&g.kind)),
                                    ),
                                )
                            })
                            .collect()
                    } else {
                        vec![(
                            "*".to_string(),
                            crate::redact::redact(
                                &vars_for(&stage.name, None).render(&gate_summary(&g.kind)),
                            ),
                        )]
                    };
                    DryRunGate {
                        name: g.name.clone(),
                        severity: g.severity.as_str().into(),
                        failures: g.trip_after(),
                        probes,
                    }
                })
                .collect();
            DryRunStage {
                name: stage.name.clone(),
                regions: stage.regions.clone(),
                on_failure: stage.on_failure.as_str().into(),
                timeout: human(stage.timeout),
                bake: human(stage.bake),
                max_parallel: stage.max_parallel,
                commands,
                steps: Vec::new(),
                rollback_commands,
                gates,
                preflight: stage.preflight.clone(),
            }
        })
        .collect();
    DryRun {
        app: config.app.name.clone(),
        previous_versions: previous.clone(),
        warnings: Vec::new(),
        version: version.into(),
        adapter: config.target.adapter.as_str().into(),
        deploy_id: deploy_id.into(),
        current_reads,
        stages,
        missing_programs: Vec::new(),
    }
}

pub fn render_dry_run(p: &DryRun, output: &Output) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "{} deploy {} {} via {} (nothing will be changed)",
        output.bold("dry run:"),
        p.app,
        p.version,
        p.adapter
    )
    .ok();
    if !p.current_reads.is_empty() {
        writeln!(s, "reads what runs now (the rollback targets):").ok();
        for c in &p.current_reads {
            writeln!(s, "    $ {}", crate::redact::display_argv(c)).ok();
        }
    }
    for (i, st) in p.stages.iter().enumerate() {
        writeln!(
            s,
            "{} {}. {}  regions {}  timeout {}  bake {}  on_failure {}",
            output.bold("stage"),
            i + 1,
            st.name,
            st.regions.join(","),
            st.timeout,
            st.bake,
            st.on_failure
        )
        .ok();
        if !st.preflight.is_empty() {
            writeln!(
                s,
                "    preflight {}: probed against what runs now before anything changes (a trip blocks the deploy, exit 7)",
                st.preflight.join(", ")
            )
            .ok();
        }
        for c in &st.commands {
            writeln!(s, "    $ {}", crate::redact::display_argv(c)).ok();
        }
        for (i, step) in st.steps.iter().enumerate() {
            let watch = if i + 1 == st.steps.len() {
                format!("then bakes {}", step.pause)
            } else {
                format!("gates watch {}", step.pause)
            };
            writeln!(
                s,
                "    step {}/{}: {}% ({watch})",
                i + 1,
                st.steps.len(),
                step.weight
            )
            .ok();
            for c in &step.commands {
                writeln!(s, "      $ {}", crate::redact::display_argv(c)).ok();
            }
        }
        for c in &st.rollback_commands {
            writeln!(s, "    on failure: $ {}", crate::redact::display_argv(c)).ok();
        }
        if st.on_failure == "continue" {
            writeln!(
                s,
                "    on failure: nothing runs (on_failure = \"continue\": the others go on)"
            )
            .ok();
        } else {
            let targets: Vec<String> = st
                .regions
                .iter()
                .map(|r| match p.previous_versions.get(r) {
                    Some(v) => format!("{r} → {v}"),
                    None => format!("{r} → none known"),
                })
                .collect();
            writeln!(s, "    rollback targets: {}", targets.join(", ")).ok();
        }
        for g in &st.gates {
            for (region, probe) in &g.probes {
                writeln!(
                    s,
                    "    gate {} [{}, trips after {}] {region}: {probe}",
                    g.name, g.severity, g.failures
                )
                .ok();
            }
        }
    }
    s
}
