//! `shipgate judge backtest GATE [--since 30d]`: replays a judge gate over every recorded
//! deploy's gate window (times from history, data from Prometheus) and scores it against what
//! happened: recorded rollbacks it would have caught, healthy deploys it would have failed.
//!
//! Each region is judged once, at the end of its window (the trip, or its stage's end), with
//! the window clipped to the stage's start: the verdict the judge would have reached last.
//! A deploy "would fail" when any of its judged regions fails.

use serde::Serialize;

use crate::cli::{Format, GlobalArgs, JudgeAction, JudgeArgs};
use crate::config::{Config, Gate, GateKind, JudgeGate};
use crate::error::Error;
use crate::exec::Cancel;
use crate::gates::judge::backtest::{cases, Case, Recorded};
use crate::gates::judge::evaluate;
use crate::gates::ProbeCtx;
use crate::ledger::records::{HistoryRecord, Stored};
use crate::ledger::{query, FileKind, Ledger};
use crate::output::Output;

#[derive(Debug, Serialize)]
struct RegionReplay {
    stage: String,
    region: String,
    start: String,
    end: String,
    /// `pass`, `fail`, `inconclusive` or `error`.
    verdict: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct DeployReplay {
    deploy_id: String,
    version: String,
    status: String,
    recorded: Recorded,
    /// The deploy's verdict: `fail` when a region fails, else `error`, `inconclusive`, `pass`;
    /// `none` when no region of a stage using the gate was deployed.
    verdict: String,
    regions: Vec<RegionReplay>,
}

#[derive(Debug, Default, Serialize)]
struct Score {
    rollbacks: usize,
    caught: usize,
    healthy: usize,
    false_failures: usize,
    inconclusive: usize,
    errors: usize,
    not_scored: usize,
}

#[derive(Debug, Serialize)]
struct Backtest {
    gate: String,
    since: String,
    stages: Vec<String>,
    deploys: Vec<DeployReplay>,
    score: Score,
}

pub fn run(global: &GlobalArgs, args: &JudgeArgs, output: &Output) -> Result<i32, Error> {
    let JudgeAction::Backtest { gate, since } = &args.action;
    let (config, ledger) = super::history::open_ledger(global, output, false)?;
    // Without a config open_ledger only succeeds with --state-dir; the gate lives in the config.
    let config = match config {
        Some(c) => c,
        None => super::load_config(global)?,
    };
    let (judge, common) = judge_gate(&config, gate)?;
    let stages: Vec<String> = config
        .stages
        .iter()
        .filter(|s| s.gates.iter().any(|g| g == gate))
        .map(|s| s.name.clone())
        .collect();
    if stages.is_empty() {
        return Err(Error::usage(format!("no stage uses gate `{gate}`"))
            .with_hint(format!("list it in a stage's gates = [\"{gate}\"]: the backtest replays it over that stage's regions")));
    }
    let since_at = query::parse_since(since, chrono::Utc::now())?;
    let found = cases(read_history(&ledger)?, &stages, since_at);
    let deploys: Vec<DeployReplay> = found
        .iter()
        .map(|c| replay(&config, judge, common, c))
        .collect();
    let score = score(&deploys);
    let report = Backtest {
        gate: gate.clone(),
        since: crate::policy::rfc3339(since_at),
        stages,
        deploys,
        score,
    };
    match output.format {
        Format::Human => crate::answer_part!("{}", human(&report)),
        _ => output.json(&serde_json::to_value(&report).unwrap_or_default()),
    }
    Ok(if report.score.errors > 0 {
        crate::exit_code::FAILED
    } else {
        crate::exit_code::SUCCESS
    })
}

fn judge_gate<'c>(config: &'c Config, name: &str) -> Result<(&'c JudgeGate, &'c Gate), Error> {
    let Some(gate) = config.gates.get(name) else {
        let names: Vec<&str> = config
            .gates
            .iter()
            .filter(|(_, g)| matches!(g.kind, GateKind::Judge(_)))
            .map(|(n, _)| n.as_str())
            .collect();
        let hint = match crate::config::did_you_mean(name, names.iter().copied()) {
            Some(n) => format!("did you mean `{n}`?"),
            None if names.is_empty() => {
                "the pipeline has no gate with type = \"judge\"".to_string()
            }
            None => format!("judge gates: {}", names.join(", ")),
        };
        return Err(Error::usage(format!("unknown gate `{name}`")).with_hint(hint));
    };
    match &gate.kind {
        GateKind::Judge(j) => Ok((j, gate)),
        other => Err(Error::usage(format!(
            "gate `{name}` is a {} gate, not a judge",
            other.type_name()
        ))
        .with_hint("only type = \"judge\" gates compare a canary with a baseline")),
    }
}

/// Every history record with its time, oldest first (unreadable lines skipped).
fn read_history(
    ledger: &Ledger,
) -> Result<Vec<(chrono::DateTime<chrono::Utc>, HistoryRecord)>, Error> {
    let mut out = Vec::new();
    let Some(mut lines) = ledger.lines(FileKind::History)? else {
        return Ok(out);
    };
    while let Some((_, line, _)) = lines
        .next_line()
        .map_err(|e| Error::failed("cannot read the history").caused_by(e))?
    {
        let Ok(stored) = serde_json::from_slice::<Stored<HistoryRecord>>(line) else {
            continue;
        };
        if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(&stored.ts) {
            out.push((ts.with_timezone(&chrono::Utc), stored.body));
        }
    }
    Ok(out)
}

fn replay(config: &Config, judge: &JudgeGate, gate: &Gate, case: &Case) -> DeployReplay {
    let cancel = Cancel::new();
    let mut regions = Vec::new();
    for e in &case.episodes {
        let vars = crate::pipeline::engine::vars(
            config,
            &case.deploy_id,
            Some(&e.stage),
            Some(&e.region),
            &case.version,
            e.previous.as_deref(),
        );
        let mut ctx = ProbeCtx::new(config.base_dir.clone(), &cancel);
        ctx.later_regions = config.later_regions(&e.region);
        ctx.deployed_at = Some(e.start);
        ctx.at = Some(e.end);
        let (verdict, detail) = match evaluate(judge, gate.timeout, &vars, &ctx) {
            Ok(v) => (v.word().to_string(), v.detail().to_string()),
            Err(why) => ("error".to_string(), why.why),
        };
        regions.push(RegionReplay {
            stage: e.stage.clone(),
            region: e.region.clone(),
            start: crate::policy::rfc3339(e.start),
            end: crate::policy::rfc3339(e.end),
            verdict,
            detail: crate::gates::probe::one_line(&detail),
        });
    }
    let any = |w: &str| regions.iter().any(|r| r.verdict == w);
    let verdict = if regions.is_empty() {
        "none"
    } else if any("fail") {
        "fail"
    } else if any("error") {
        "error"
    } else if any("inconclusive") {
        "inconclusive"
    } else {
        "pass"
    };
    DeployReplay {
        deploy_id: case.deploy_id.clone(),
        version: case.version.clone(),
        status: case.status.as_str().to_string(),
        recorded: case.recorded(),
        verdict: verdict.to_string(),
        regions,
    }
}

fn score(deploys: &[DeployReplay]) -> Score {
    let mut s = Score::default();
    for d in deploys {
        match d.verdict.as_str() {
            "error" => s.errors += 1,
            "inconclusive" => s.inconclusive += 1,
            _ => {}
        }
        match (d.recorded, d.verdict.as_str()) {
            (_, "none" | "error") | (Recorded::Other, _) => s.not_scored += 1,
            (Recorded::RolledBack, v) => {
                s.rollbacks += 1;
                s.caught += usize::from(v == "fail");
            }
            (Recorded::Healthy, v) => {
                s.healthy += 1;
                s.false_failures += usize::from(v == "fail");
            }
        }
    }
    s
}

fn human(b: &Backtest) -> String {
    let mut out = format!(
        "judge `{}` replayed over {} deploy(s) since {} (stages: {})\n",
        b.gate,
        b.deploys.len(),
        b.since,
        b.stages.join(", ")
    );
    if !b.deploys.is_empty() {
        out.push_str(&format!(
            "{:<28} {:<12} {:<16} {:<13} DETAIL\n",
            "DEPLOY", "VERSION", "RECORDED", "JUDGE"
        ));
    }
    for d in &b.deploys {
        let detail = d
            .regions
            .iter()
            .find(|r| r.verdict == d.verdict)
            .map(|r| format!("{}: {}", r.region, r.detail))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<28} {:<12} {:<16} {:<13} {}\n",
            d.deploy_id,
            crate::output::neutral::inline(&d.version),
            d.status,
            d.verdict,
            crate::output::neutral::inline(&detail)
        ));
    }
    let s = &b.score;
    out.push_str(&format!(
        "caught {} of {} recorded rollback(s); would have failed {} of {} healthy deploy(s)",
        s.caught, s.rollbacks, s.false_failures, s.healthy
    ));
    let mut extra = Vec::new();
    if s.inconclusive > 0 {
        extra.push(format!("{} inconclusive", s.inconclusive));
    }
    if s.errors > 0 {
        extra.push(format!("{} not replayed (Prometheus unreadable)", s.errors));
    }
    if s.not_scored > s.errors {
        extra.push(format!(
            "{} not scored (neither rolled back nor healthy)",
            s.not_scored - s.errors
        ));
    }
    if !extra.is_empty() {
        out.push_str(&format!("; {}", extra.join("; ")));
    }
    out.push('\n');
    out
}
