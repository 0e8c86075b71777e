//! `shipgate status [--live] [--check] [--notify]`: what runs where, from `status.json` (or
//! history when it is missing); `--live` asks the platform and flags drift; `--check` probes
//! every gate of every region of the config, recorded deploy or not, by the deploy's trip rule
//! (up to the gate's `failures` probes); a gate that cannot be probed is a problem. Either
//! finding a problem exits 6. `status` never writes history; a failed check is an audit record.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::adapters::{Adapter, Live, RunCtx};
use crate::cli::{Format, GlobalArgs, StatusArgs};
use crate::config::placeholder::Vars;
use crate::config::{Config, Priority, Severity};
use crate::error::Error;
use crate::exec::Cancel;
use crate::exit_code;
use crate::gates::check::check_gate;
use crate::gates::{ProbeCtx, ProbeResult};
use crate::ledger::{lock, AuditRecord, LastDeploy, Ledger, RegionStatus};
use crate::notify::{Notification, Notifier};
use crate::output::Output;

use super::history::cell;

/// One region's row.
#[derive(Debug, Clone, Default, Serialize)]
struct RegionRow {
    region: String,
    stage: Option<String>,
    #[serde(flatten)]
    recorded: RegionStatus,
    /// `--live`: what the platform runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<Live>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_error: Option<String>,
    /// `--live`: live differs from the record, or instances are mixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<bool>,
    /// `--check`: each gate's outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gates: Vec<GateCheck>,
}

#[derive(Debug, Clone, Serialize)]
struct GateCheck {
    gate: String,
    severity: Severity,
    pass: bool,
    probes: u32,
    detail: String,
}

#[derive(Debug, Clone, Serialize)]
struct Interrupted {
    deploy_id: String,
    version: String,
    status: String,
    start_time: String,
    actor: String,
}

impl From<&LastDeploy> for Interrupted {
    fn from(d: &LastDeploy) -> Self {
        Interrupted {
            deploy_id: d.deploy_id.clone(),
            version: d.version.clone(),
            status: d.status.as_str().to_string(),
            start_time: d.start_time.clone(),
            actor: d.actor.clone(),
        }
    }
}

pub fn run(global: &GlobalArgs, args: &StatusArgs, output: &Output) -> Result<i32, Error> {
    let (config, ledger) = super::history::open_ledger(global, output, false)?;
    if args.notify && !args.check && !args.live {
        return Err(
            Error::usage("--notify sends the alert of --check or --live").with_hint(
                "add --check (run every gate once) or --live (compare with the platform)",
            ),
        );
    }
    let needs_config = args.live || args.check;
    let config = match config {
        Some(c) => Some(c),
        None if needs_config => {
            return Err(Error::usage("--live and --check need the pipeline file")
                .with_hint("run from the directory holding pipeline.toml, or pass -c PATH"))
        }
        None => None,
    };
    let mut warnings = Vec::new();
    let state = ledger.status_restored(&mut warnings)?;
    let holder = ledger.lock_holder()?;
    // A deploy that holds the lock is running, not interrupted.
    let running = holder.as_ref().map(|h| h.deploy_id.clone());
    // The fold keeps the deploys that never finished (none older than the last finished one):
    // newest first, as `status` lists them.
    let interrupted: Vec<Interrupted> = state
        .open_deploys
        .iter()
        .rev()
        .filter(|d| Some(&d.deploy_id) != running.as_ref())
        .map(Interrupted::from)
        .collect();

    let mut rows = region_rows(config.as_ref(), &state.regions);
    let attention = needs_attention(&rows, running.is_some());
    let mut problems = Vec::new();
    if let Some(config) = &config {
        let cancel = Cancel::new();
        if args.live {
            check_live(config, &mut rows, &cancel, &mut problems)?;
        }
        if args.check {
            check_gates(config, &mut rows, running.is_some(), &cancel, &mut problems);
        }
        if !problems.is_empty() {
            alert(config, &ledger, args.notify, &problems, output);
        }
    }
    for w in &warnings {
        output.warn(w);
    }
    let app = if state.app.is_empty() {
        config
            .as_ref()
            .map(|c| c.app.name.clone())
            .unwrap_or_default()
    } else {
        state.app.clone()
    };
    if output.github && (args.check || args.live) {
        report_to_github(&app, &rows, &problems, output);
    }
    let freeze = state
        .freeze
        .as_deref()
        .filter(|f| {
            let now = crate::policy::Clock::from_env()
                .map(|c| c.now())
                .unwrap_or_else(|_| chrono::Utc::now());
            f.until
                .as_deref()
                .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
                .is_none_or(|u| now < u.with_timezone(&chrono::Utc))
        })
        .cloned();
    if output.format == Format::Human {
        if let (Some(f), Some(config)) = (&freeze, &config) {
            crate::answer!(
                "LINE STOPPED: {}",
                crate::policy::Block::Line(f.clone()).describe(config)
            );
        }
        print_human(
            &app,
            &state.updated_at,
            &rows,
            &interrupted,
            &holder,
            args,
            &attention,
            &problems,
            output,
        );
    } else {
        output.json(&serde_json::json!({
            "app": app,
            "updated_at": state.updated_at,
            "regions": rows,
            "last_deploy": state.last_deploy,
            "interrupted": interrupted,
            "lock": holder,
            "attention": attention,
            "ok": problems.is_empty(),
            "problems": problems,
            "freeze": freeze,
        }));
    }
    Ok(if problems.is_empty() {
        exit_code::SUCCESS
    } else {
        exit_code::CHECK_FAILED
    })
}

/// Under GitHub Actions, what `--check` / `--live` found: an `::error` per problem (a
/// `::notice` when there is none), the regions and their gates as a step-summary table, and the
/// outputs `status` (`ok` | `problems`), `problems` (how many) and `exit_code`.
fn report_to_github(app: &str, rows: &[RegionRow], problems: &[String], output: &Output) {
    use crate::report::github;
    for p in problems {
        github::command(
            "error",
            &[("title", &format!("status check failed: {app}"))],
            p,
        );
    }
    if problems.is_empty() {
        github::command(
            "notice",
            &[("title", &format!("status check passed: {app}"))],
            &format!("{} region(s) checked, no problem found", rows.len()),
        );
    }
    let mut md = format!(
        "## shipgate status: {}\n\n| Region | Stage | Version | State | Gates |\n| --- | --- | --- | --- | --- |\n",
        github::summary_cell(app)
    );
    for row in rows {
        let gates = row
            .gates
            .iter()
            .map(|g| {
                if g.pass {
                    format!("{} ✓", g.gate)
                } else {
                    format!("{} ✗ {}", g.gate, g.detail)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut version = row.recorded.version.clone();
        if let Some(Live::Version(live)) = &row.live {
            if *live != version {
                version = format!("{version} (live: {live})");
            }
        }
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            github::summary_cell(&row.region),
            github::summary_cell(row.stage.as_deref().unwrap_or("")),
            github::summary_cell(&version),
            row.recorded.status.as_str().replace('_', " "),
            github::summary_cell(&gates),
        ));
    }
    if !problems.is_empty() {
        md.push_str(&format!("\n**{} problem(s):**\n\n", problems.len()));
        for p in problems {
            md.push_str(&format!("- {}\n", github::summary_cell(p)));
        }
    }
    if let Err(e) = github::append_env_file("GITHUB_STEP_SUMMARY", &md) {
        output.warn(format!("cannot write GITHUB_STEP_SUMMARY: {e}"));
    }
    let code = if problems.is_empty() {
        exit_code::SUCCESS
    } else {
        exit_code::CHECK_FAILED
    };
    let pairs = [
        (
            "status",
            if problems.is_empty() {
                "ok"
            } else {
                "problems"
            }
            .to_string(),
        ),
        ("problems", problems.len().to_string()),
        ("exit_code", code.to_string()),
    ];
    if let Err(e) = github::write_outputs(&pairs) {
        output.warn(format!("cannot write GITHUB_OUTPUT: {e}"));
    }
}

use crate::ledger::records::{RegionState, UNKNOWN_VERSION};

/// Whether the record leaves `row` for a human (or `shipgate recover`): a rollback failed
/// there, a cancelled deploy left it unsettled, or a deploy that is not running any more (killed)
/// had started its deploy command there.
fn unsettled(row: &RegionRow, deploy_running: bool) -> bool {
    row.recorded.needs_human() || (row.recorded.may_run.is_some() && !deploy_running)
}

/// Regions the record says a human must look at, each with why. Plain `status` lists them
/// (exit 0: it reports); `--check` counts them as problems until `recover` or a later verified
/// deploy or rollback settles them.
fn needs_attention(rows: &[RegionRow], deploy_running: bool) -> Vec<String> {
    rows.iter()
        .filter(|r| unsettled(r, deploy_running))
        .map(|r| {
            let rec = &r.recorded;
            let id = if rec.deploy_id.is_empty() { "?" } else { &rec.deploy_id };
            let runs = match rec.known_version() {
                Some(v) => format!("runs {v}"),
                None => "runs an unknown version".to_string(),
            };
            let why = match (rec.status, &rec.may_run) {
                (RegionState::RollbackFailed, _) => format!("the rollback of deploy {id} failed; it {runs}"),
                (RegionState::Cancelled, may) => format!(
                    "deploy {id} was cancelled before its rollback finished; it {}",
                    may.as_ref().map(|v| format!("may run {v}")).unwrap_or(runs)
                ),
                (_, Some(v)) => format!(
                    "a deploy of {v} was interrupted after its deploy command started there; it may run {v}{}",
                    rec.weight.map(|w| format!(" on {w}% of it (a step)")).unwrap_or_default()
                ),
                _ => format!("it {runs}"),
            };
            format!(
                "{}: {why} (`shipgate recover` returns it; see `shipgate history --region {}`)",
                r.region, r.region
            )
        })
        .collect()
}

/// The regions of the config's stages, in pipeline order, then any other region on record.
fn region_rows(
    config: Option<&Config>,
    recorded: &BTreeMap<String, RegionStatus>,
) -> Vec<RegionRow> {
    let mut rows: Vec<RegionRow> = Vec::new();
    if let Some(c) = config {
        for stage in &c.stages {
            for r in &stage.regions {
                rows.push(RegionRow {
                    region: r.clone(),
                    stage: Some(stage.name.clone()),
                    recorded: recorded.get(r).cloned().unwrap_or_default(),
                    ..Default::default()
                });
            }
        }
    }
    for (r, s) in recorded {
        if !rows.iter().any(|row| &row.region == r) {
            rows.push(RegionRow {
                region: r.clone(),
                recorded: s.clone(),
                ..Default::default()
            });
        }
    }
    rows
}

/// Placeholder values for a region: app, region, stage, and (when one is known) version and
/// image.
fn region_vars(config: &Config, row: &RegionRow, version: Option<&str>) -> Vars {
    let mut vars = Vars::new()
        .with("app", config.app.name.clone())
        .with("region", row.region.clone())
        .with("stage", row.stage.clone().unwrap_or_default());
    if let Some(version) = version {
        vars.set("version", version.to_string());
        if let Some(image) = &config.target.image {
            let rendered = vars.render(image);
            vars.set("image", rendered);
        }
    }
    vars
}

/// The context of an adapter call about `row`'s region: its stage's `command_timeout`.
fn run_ctx<'a>(config: &Config, row: &RegionRow, cancel: &'a Cancel) -> RunCtx<'a> {
    let timeout = row
        .stage
        .as_deref()
        .and_then(|s| config.stage(s))
        .map(|s| s.command_timeout)
        .unwrap_or(config.defaults.command_timeout);
    RunCtx {
        cancel,
        command_timeout: timeout,
        cwd: config.base_dir.clone(),
        on_line: None,
        journal: None,
    }
}

/// An adapter error as one entry of a list of problems: redacted, continuation lines indented.
fn error_text(e: &Error) -> String {
    crate::pipeline::deploy::indent_rest(&crate::redact::redact(&e.with_detail_text()))
}

fn check_live(
    config: &Config,
    rows: &mut [RegionRow],
    cancel: &Cancel,
    problems: &mut Vec<String>,
) -> Result<(), Error> {
    let adapter = crate::adapters::build(config)?;
    for row in rows.iter_mut() {
        let ctx = run_ctx(config, row, cancel);
        let vars = region_vars(config, row, Some(&row.recorded.version));
        match adapter.current(&row.region, &vars, &ctx) {
            Ok(live) => {
                let recorded = row.recorded.version.as_str();
                let drift = match &live {
                    Live::Version(v) => v != recorded,
                    Live::Mixed(_) => true,
                    Live::Absent => !recorded.is_empty(),
                };
                if drift {
                    problems.push(format!(
                        "{}: drift: runs {}, history says {}",
                        row.region,
                        live.describe(),
                        if recorded.is_empty() {
                            "nothing"
                        } else {
                            recorded
                        }
                    ));
                }
                row.drift = Some(drift);
                row.live = Some(live);
            }
            Err(e) => {
                let text = crate::redact::redact(&e.with_detail_text());
                problems.push(format!(
                    "{}: cannot read what runs: {}",
                    row.region,
                    crate::pipeline::deploy::indent_rest(&text)
                ));
                row.live_error = Some(text);
            }
        }
    }
    Ok(())
}

/// The adapter, built on first use by [`gate_version`] (a check whose gates never need
/// `{version}` never builds it).
type LazyAdapter = Option<Result<Box<dyn Adapter>, String>>;

/// The version `row`'s gates render `{version}` with: what `--live` read, else what history
/// records, else — no deploy recorded, or the placeholder `unknown` a failed rollback left —
/// what the adapter reads now. `Err` says why no version is known, for the problem line.
fn gate_version(
    config: &Config,
    row: &RegionRow,
    adapter: &mut LazyAdapter,
    cancel: &Cancel,
) -> Result<String, String> {
    if let Some(v) = row.live.as_ref().and_then(Live::version) {
        return Ok(v.to_string());
    }
    let recorded = row.recorded.version.as_str();
    if !recorded.is_empty() && recorded != UNKNOWN_VERSION {
        return Ok(recorded.to_string());
    }
    let history = if recorded == UNKNOWN_VERSION {
        "a failed rollback left its version unknown"
    } else {
        "no deploy is recorded there"
    };
    let live = match (&row.live, &row.live_error) {
        // `--live` has asked already.
        (Some(live), _) => Ok(live.clone()),
        (None, Some(e)) => Err(e.clone()),
        (None, None) => {
            let adapter = adapter
                .get_or_insert_with(|| crate::adapters::build(config).map_err(|e| error_text(&e)));
            match adapter {
                Err(e) => Err(e.clone()),
                Ok(a) if !a.reads_live_version() => {
                    return Err(format!(
                        "{history}, and the {} adapter cannot read what runs (add `current` to \
                         [target.exec])",
                        a.kind().as_str()
                    ))
                }
                Ok(a) => {
                    let vars = region_vars(config, row, None);
                    a.current(&row.region, &vars, &run_ctx(config, row, cancel))
                        .map_err(|e| error_text(&e))
                }
            }
        }
    };
    match live {
        Ok(Live::Version(v)) if v == UNKNOWN_VERSION || v.is_empty() => Err(format!(
            "{history}, and the platform does not say what runs"
        )),
        Ok(Live::Version(v)) => Ok(v),
        Ok(Live::Mixed(vs)) => Err(format!(
            "{history}, and it runs mixed versions ({})",
            vs.join(", ")
        )),
        Ok(Live::Absent) => Err(format!("{history}, and the platform runs nothing there")),
        Err(e) => Err(format!("{history}, and what runs cannot be read: {e}")),
    }
}

/// Probes every gate of every region of the config once, by the deploy's trip rule
/// ([`check_gate`]). A gate that cannot be probed (it needs `{version}` and none is known) is a
/// problem, never a pass.
fn check_gates(
    config: &Config,
    rows: &mut [RegionRow],
    deploy_running: bool,
    cancel: &Cancel,
    problems: &mut Vec<String>,
) {
    let mut ctx = ProbeCtx::new(config.base_dir.clone(), cancel);
    let mut adapter: LazyAdapter = None;
    // A gate without `{region}` is probed once per stage (and version, when it renders one) and
    // its result shared.
    type SharedKey = (String, String, Option<String>);
    let mut shared: BTreeMap<SharedKey, (bool, Vec<ProbeResult>)> = BTreeMap::new();
    for row in rows.iter_mut() {
        let Some(stage) = row.stage.as_deref().and_then(|s| config.stage(s)) else {
            continue;
        };
        if unsettled(row, deploy_running) {
            // Whatever the gates say, the record needs a human until a verified change.
            problems.push(format!(
                "{}: {} since a failed rollback, a cancel or a kill; a human must look \
                 (`shipgate recover` returns it; `shipgate status --live` reads what runs)",
                row.region,
                match row.recorded.known_version() {
                    Some(v) => format!("runs {v}"),
                    None => "runs an unknown version".to_string(),
                }
            ));
        }
        ctx.later_regions = config.later_regions(&row.region);
        // Read at most once per region, and only for a gate that needs it.
        let mut version: Option<Result<String, String>> = None;
        // The version known without asking the platform, for gates that do not need one.
        let known = row
            .live
            .as_ref()
            .and_then(Live::version)
            .map(str::to_string)
            .or_else(|| {
                let v = &row.recorded.version;
                (!v.is_empty() && v != UNKNOWN_VERSION).then(|| v.clone())
            });
        for name in &stage.gates {
            let Some(gate) = config.gates.get(name) else {
                continue;
            };
            let probe_version = if gate.needs_version() {
                match version.get_or_insert_with(|| gate_version(config, row, &mut adapter, cancel))
                {
                    Ok(v) => Some(v.clone()),
                    Err(why) => {
                        problems.push(format!(
                            "{}: gate {name} ({}) cannot be probed: it needs {{version}}, but {why}",
                            row.region,
                            gate.severity.as_str(),
                        ));
                        row.gates.push(GateCheck {
                            gate: name.clone(),
                            severity: gate.severity,
                            pass: false,
                            probes: 0,
                            detail: why.clone(),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            let vars = region_vars(config, row, probe_version.as_deref().or(known.as_deref()));
            let (tripped, results) = if gate.uses_region() {
                check_gate(gate, &vars, &ctx)
            } else {
                shared
                    .entry((stage.name.clone(), name.clone(), probe_version.clone()))
                    .or_insert_with(|| check_gate(gate, &vars, &ctx))
                    .clone()
            };
            let detail = results.last().map(|r| r.detail.clone()).unwrap_or_default();
            if tripped {
                problems.push(format!(
                    "{}: gate {name} ({}) tripped: {detail}",
                    row.region,
                    gate.severity.as_str(),
                ));
            }
            row.gates.push(GateCheck {
                gate: name.clone(),
                severity: gate.severity,
                pass: !tripped,
                probes: results.len() as u32,
                detail,
            });
        }
    }
}

/// Sends (with `--notify`) or records the failed check: a P1 notification is itself an audit
/// record; without `--notify` the audit record is written here.
fn alert(config: &Config, ledger: &Ledger, notify: bool, problems: &[String], output: &Output) {
    let title = format!("status check failed: {}", config.app.name);
    let message = problems.join("\n");
    let context = serde_json::json!({"app": config.app.name, "problems": problems});
    if notify {
        let n = Notification {
            priority: Priority::P1,
            title,
            message,
            context,
            deploy_id: None,
        };
        if let Some(w) = Notifier::from_config(config).send(ledger, &n) {
            output.warn(format!("the alert could not be sent or recorded: {w}"));
        }
    } else {
        let record = AuditRecord {
            priority: Priority::P1.as_str().into(),
            title,
            message,
            context,
            ..Default::default()
        };
        if let Err(e) = ledger.append_audit(&record) {
            output.warn(format!(
                "cannot record the failed check in the audit trail: {e}"
            ));
        }
    }
}

fn when(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| ts.to_string())
}

#[allow(clippy::too_many_arguments)]
fn print_human(
    app: &str,
    updated_at: &str,
    rows: &[RegionRow],
    interrupted: &[Interrupted],
    holder: &Option<lock::LockInfo>,
    args: &StatusArgs,
    attention: &[String],
    problems: &[String],
    output: &Output,
) {
    let mut out = String::new();
    let name = if app.is_empty() {
        "(no app recorded yet)"
    } else {
        app
    };
    out.push_str(&output.bold(name));
    if !updated_at.is_empty() {
        out.push_str(&format!(" — recorded {}", when(updated_at)));
    }
    out.push('\n');
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    // LAST is as wide as its longest state, so LIVE lines up after `rollback_failed` too.
    let last = rows
        .iter()
        .map(|r| dash(r.recorded.status.as_str()).chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut header = format!(
        "{:<8} {:<9} {:<12} {:<16} {:<10} {:<last$}",
        "REGION", "STAGE", "VERSION", "DEPLOYED", "BY", "LAST"
    );
    if args.live {
        header.push_str(" LIVE");
    }
    out.push_str(&output.bold(header.trim_end()));
    out.push('\n');
    for r in rows {
        let mut line = format!(
            "{:<8} {:<9} {:<12} {:<16} {:<10} {:<last$}",
            cell(&r.region, 8),
            cell(&dash(r.stage.as_deref().unwrap_or("")), 9),
            cell(&dash(&r.recorded.version), 12),
            cell(&dash(&when(&r.recorded.deployed_at)), 16),
            cell(&dash(&r.recorded.actor), 10),
            dash(r.recorded.status.as_str())
        );
        if args.live {
            match (&r.live, &r.live_error, r.drift) {
                (Some(l), _, Some(true)) => line.push_str(&format!(" {} DRIFT", l.describe())),
                (Some(l), _, _) => line.push_str(&format!(" {}", l.describe())),
                (None, Some(_), _) => line.push_str(" unknown (error)"),
                _ => {}
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        for g in &r.gates {
            out.push_str(&format!(
                "    gate {} ({}): {} — {}\n",
                g.gate,
                g.severity.as_str(),
                match (g.pass, g.probes) {
                    (true, _) => "pass",
                    (false, 0) => "NOT PROBED",
                    (false, _) => "TRIPPED",
                },
                g.detail
            ));
        }
    }
    if let Some(h) = holder {
        out.push_str(&format!(
            "\nrunning: {} holds the deploy lock\n",
            h.describe()
        ));
    }
    if !interrupted.is_empty() {
        out.push_str("\ninterrupted (started, never finished):\n");
        for i in interrupted {
            out.push_str(&format!(
                "  {} version {} started {} by {} (last status: {})\n",
                i.deploy_id,
                dash(&i.version),
                when(&i.start_time),
                dash(&i.actor),
                i.status
            ));
        }
    }
    if !attention.is_empty() {
        out.push_str("\nneeds a human:\n");
        for a in attention {
            out.push_str(&format!("  {a}\n"));
        }
    }
    if !problems.is_empty() {
        out.push_str("\nproblems:\n");
        for p in problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    crate::answer_part!("{}", crate::redact::redact(&out));
}
