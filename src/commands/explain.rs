//! `shipgate explain [DEPLOY_ID | last]`: the story of one deploy, told from history and audit —
//! every stage, gate state change, rollback and signal with its cause, every notification, and
//! what the operator should run next.

use serde_json::Value;

use crate::cli::{ExplainArgs, Format, GlobalArgs};
use crate::error::Error;
use crate::ledger::{FileKind, Ledger};
use crate::output::Output;

/// One line of the story.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub ts: String,
    pub kind: String,
    pub text: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Story {
    pub deploy_id: String,
    pub app: String,
    pub version: String,
    /// The deploy's last recorded status (`started` when it never finished).
    pub status: String,
    pub timeline: Vec<Entry>,
    /// What to run next, or `None` when nothing is left to do.
    pub next: Option<String>,
    pub next_why: String,
}

pub fn run(global: &GlobalArgs, args: &ExplainArgs, output: &Output) -> Result<i32, Error> {
    let (_, ledger) = super::history::open_ledger(global, output, true)?;
    let wanted = args.deploy.as_deref().filter(|d| *d != "last");
    let story = tell(&ledger, wanted)?;
    match (output.format, args.md) {
        (_, true) => crate::answer_part!("{}", crate::redact::redact(&markdown(&story))),
        (Format::Human, false) => crate::answer_part!("{}", crate::redact::redact(&human(&story))),
        _ => output.json(&serde_json::to_value(&story).unwrap_or_default()),
    }
    Ok(crate::exit_code::SUCCESS)
}

/// Reads the deploy's records (newest first, stopping at its `started` record) and its audit
/// records, and tells them in order.
pub fn tell(ledger: &Ledger, wanted: Option<&str>) -> Result<Story, Error> {
    let mut records: Vec<Value> = Vec::new();
    let mut id = wanted.map(str::to_string);
    if let Some(mut lines) = ledger.rev_lines(FileKind::History)? {
        while let Some((_, line)) = lines.next_line().map_err(read_error)? {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            let this = v["deploy_id"].as_str().unwrap_or_default();
            if id.is_none() && v["kind"] == "deploy" {
                id = Some(this.to_string());
            }
            if id.as_deref() != Some(this) {
                continue;
            }
            let started = v["kind"] == "deploy" && v["status"] == "started";
            records.push(v);
            if started {
                break;
            }
        }
    }
    let Some(id) = id.filter(|_| !records.is_empty()) else {
        return Err(match wanted {
            Some(w) => Error::usage(format!("no deploy `{w}` in history"))
                .with_hint("`shipgate history --kind deploy` lists them"),
            None => Error::usage("no deploy in history yet"),
        });
    };
    records.reverse();
    let start_ts = records[0]["ts"].as_str().unwrap_or_default().to_string();
    let mut timeline = Vec::new();
    // The trip that stopped the deploy: the first of a deploy probe (not of a rollback's
    // verification) since the stage started.
    let mut trip: Option<&Value> = None;
    for r in &records {
        timeline.extend(commands(r));
        timeline.extend(entry(r, trip));
        match (s(r, "kind"), s(r, "status"), s(r, "result")) {
            ("stage", "started", _) if trip.is_some_and(|t| t["stage"] != r["stage"]) => {
                trip = None
            }
            ("gate", _, "tripped") if trip.is_none() && r["verifying"] != true => trip = Some(r),
            _ => {}
        }
    }
    if let Some(mut lines) = ledger.rev_lines(FileKind::Audit)? {
        while let Some((_, line)) = lines.next_line().map_err(read_error)? {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if v["ts"].as_str().unwrap_or_default() < start_ts.as_str() {
                break;
            }
            if v["deploy_id"].as_str() == Some(id.as_str()) {
                timeline.push(notification(&v));
            }
        }
    }
    // Stable by time: records of one instant keep their written order.
    timeline.sort_by(|a, b| a.ts.cmp(&b.ts));
    let last = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "deploy")
        .cloned()
        .unwrap_or_default();
    let status = last["status"].as_str().unwrap_or("started").to_string();
    let (next, next_why) = next_step(&id, &status, &last);
    Ok(Story {
        deploy_id: id,
        app: last["app"].as_str().unwrap_or_default().to_string(),
        version: last["version"].as_str().unwrap_or_default().to_string(),
        status,
        timeline,
        next,
        next_why,
    })
}

fn read_error(e: std::io::Error) -> Error {
    Error::failed("cannot read the ledger").caused_by(e)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The platform commands a record carries, one entry each: redacted argv, how it ended, and
/// the last line it wrote on stderr when it failed.
fn commands(r: &Value) -> Vec<Entry> {
    let Some(runs) = r["commands"].as_array() else {
        return Vec::new();
    };
    runs.iter()
        .map(|c| {
            let how = match (
                c["exit_code"].as_i64(),
                c["signal"].as_i64(),
                c["error"].as_str(),
            ) {
                // The error names the command again: say only what happened to it.
                (_, _, Some(e)) => e
                    .strip_prefix(&format!("`{}` ", s(c, "command")))
                    .unwrap_or(e)
                    .to_string(),
                (Some(code), _, _) => format!("exit {code}"),
                (None, Some(sig), _) => format!("killed by signal {sig}"),
                _ => "ended".to_string(),
            };
            let secs = c["duration_seconds"].as_f64().unwrap_or(0.0);
            let took = if secs < 1.0 {
                format!("{} ms", (secs * 1000.0).round())
            } else {
                format!("{secs:.1}s")
            };
            let mut text = format!("ran `{}`: {how} in {took}", s(c, "command"));
            let failed = c["exit_code"].as_i64() != Some(0);
            if let (true, Some(line)) = (failed, c["stderr"].as_str()) {
                text.push_str(&format!(" — stderr: {line}"));
            }
            Entry {
                ts: s(c, "ts").to_string(),
                kind: "command".into(),
                text,
            }
        })
        .collect()
}

/// A rollback and its cause: the gate that tripped (its value against its threshold, and how
/// many failures in a row), or the recorded reason; each region's outcome.
fn rollback(r: &Value, last_trip: Option<&Value>) -> String {
    let regions = r["regions_detail"].as_object();
    let (mut back, mut failed) = (Vec::new(), Vec::new());
    for region in r["regions"].as_array().into_iter().flatten() {
        let region = region.as_str().unwrap_or_default();
        let d = regions.and_then(|m| m.get(region));
        let to = r["to_version"][region].as_str();
        match d.map(|d| s(d, "status")) {
            Some("rollback_failed") => failed.push(format!(
                "{region} ({})",
                d.and_then(|d| d["error"].as_str())
                    .or_else(|| r["errors"][region].as_str())
                    .unwrap_or("failed")
            )),
            Some("resolved") => back.push(format!("{region} (already on {})", to.unwrap_or("?"))),
            _ if r["errors"][region].is_string() => {
                failed.push(format!("{region} ({})", s(&r["errors"], region)))
            }
            _ => back.push(format!("{region} → {}", to.unwrap_or("?"))),
        }
    }
    let who = if r["recover"] == true {
        "recover"
    } else if r["automatic"] == true {
        "automatic rollback"
    } else {
        "manual rollback"
    };
    let mut text = format!("{who} {}:", s(r, "status"));
    if !back.is_empty() {
        text.push_str(&format!(" rolled back {}", back.join(", ")));
    }
    if !failed.is_empty() {
        if !back.is_empty() {
            text.push(';');
        }
        text.push_str(&format!(" failed in {}", failed.join(", ")));
    }
    let cause = match last_trip {
        Some(g) if r["automatic"] == true => {
            let n = g["consecutive_failures"].as_u64().unwrap_or(1);
            format!(
                "`{}` [{}] tripped in {} at {}: {}, {n} consecutive failure{}",
                s(g, "gate"),
                s(g, "severity"),
                s(g, "region"),
                time_of(s(g, "ts")).get(..8).unwrap_or_default(),
                s(g, "detail"),
                if n == 1 { "" } else { "s" }
            )
        }
        _ => s(r, "reason").to_string(),
    };
    text.push_str(&format!(" — because {cause}"));
    text
}

/// A stage's approval step: the request, each approval or rejection (who, the principal its
/// signature names, why), the timeout.
fn approval(r: &Value) -> String {
    let stage = s(r, "stage");
    let by = || {
        let mut who = s(r, "actor").to_string();
        if let Some(p) = r["principal"].as_str() {
            let signed = if r["signature"].is_string() {
                ", signed"
            } else {
                ""
            };
            who.push_str(&format!(" ({p}{signed})"));
        }
        who
    };
    let reason = r["reason"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    match s(r, "decision") {
        "requested" => format!(
            "approval of stage {stage} requested: {} approval(s) within {}, then {}",
            r["required"].as_u64().unwrap_or(1),
            humantime::format_duration(std::time::Duration::from_secs(
                r["timeout_seconds"].as_f64().unwrap_or(0.0) as u64
            )),
            r["on_timeout"].as_str().unwrap_or("stop")
        ),
        "approved" => format!("stage {stage} approved by {}{reason}", by()),
        "rejected" => format!("stage {stage} rejected by {}{reason}", by()),
        "timed_out" => format!("approval of stage {stage} timed out{reason}"),
        other => format!("approval of stage {stage}: {other}"),
    }
}

/// What a history record says, in a sentence.
fn entry(r: &Value, last_trip: Option<&Value>) -> Option<Entry> {
    let kind = s(r, "kind");
    let text = match kind {
        "deploy" => match s(r, "status") {
            "started" => format!(
                "deploy of {} {} started by {} ({}) through {}",
                s(r, "app"),
                s(r, "version"),
                s(r, "actor"),
                s(r, "trigger"),
                list(&r["stages"])
            ),
            "cancelling" => format!("signal: {}; rolling back what changed", s(r, "reason")),
            status => format!("deploy {status}: {}", s(r, "reason")),
        },
        "stage" => match s(r, "status") {
            "started" => match r["weight"].as_u64() {
                Some(w) => format!(
                    "stage {}: step to {w}% of {}",
                    s(r, "stage"),
                    list(&r["regions"])
                ),
                None => format!("stage {}: deploying {}", s(r, "stage"), list(&r["regions"])),
            },
            status => {
                let mut t = format!("stage {} {status}", s(r, "stage"));
                if let Some(detail) = r["regions_detail"].as_object() {
                    let failed: Vec<String> = detail
                        .iter()
                        .filter_map(|(region, d)| {
                            d["error"]
                                .as_str()
                                .map(|e| format!("{region}: {}", e.lines().next().unwrap_or("")))
                        })
                        .collect();
                    if !failed.is_empty() {
                        t.push_str(&format!(" ({})", failed.join("; ")));
                    }
                }
                t
            }
        },
        "gate" => {
            let result = s(r, "result");
            // Passing probes are the expected case: the story keeps the changes.
            if result == "pass" && r["consecutive_failures"].as_u64().unwrap_or(0) == 0 {
                return None;
            }
            let n = r["consecutive_failures"].as_u64().unwrap_or(0);
            let count = match (result, r["trip_after"].as_u64()) {
                ("pass" | "inconclusive", _) => String::new(),
                (_, Some(after)) => format!(" ({n}/{after})"),
                (_, None) => format!(" ({n})"),
            };
            format!(
                "{}gate {} [{}] in {}{}: {result}{count} — {}",
                if r["verifying"] == true {
                    "verifying rollback: "
                } else {
                    ""
                },
                s(r, "gate"),
                s(r, "severity"),
                s(r, "region"),
                r["version"]
                    .as_str()
                    .map(|v| format!(" on {v}"))
                    .unwrap_or_default(),
                s(r, "detail")
            )
        }
        "rollback" => rollback(r, last_trip),
        "event" => format!("event {} {}", s(r, "event_type"), s(r, "status")),
        "approval" => approval(r),
        other => format!("{other} {}", s(r, "status")),
    };
    Some(Entry {
        ts: s(r, "ts").to_string(),
        kind: kind.to_string(),
        text,
    })
}

fn notification(a: &Value) -> Entry {
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .or_else(|| i["sink"].as_str().map(|s| format!("{s} (failed)")))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut sinks = names(&a["delivered"]);
    sinks.extend(names(&a["failed"]));
    Entry {
        ts: s(a, "ts").to_string(),
        kind: "notify".into(),
        text: format!(
            "notified {} \"{}\" → {}",
            s(a, "priority"),
            s(a, "title"),
            if sinks.is_empty() {
                "recorded only (no sink)".to_string()
            } else {
                sinks.join(", ")
            }
        ),
    }
}

/// What the operator runs next, and why.
fn next_step(id: &str, status: &str, last: &Value) -> (Option<String>, String) {
    let recover = Some(format!("shipgate recover {id}"));
    match status {
        "success" => (None, "the deploy succeeded everywhere".into()),
        "rolled_back" => (None, "every region it changed is back where it was".into()),
        "partial" => (
            Some(format!(
                "shipgate rollback --region {}",
                list(&last["failed_regions"]).replace(", ", " --region ")
            )),
            format!(
                "{} kept failing on the new version while the others run it",
                list(&last["failed_regions"])
            ),
        ),
        "blocked" => (
            None,
            format!(
                "stopped by policy ({}); earlier stages run the new version: deploy again to ask \
                 again, or `shipgate rollback` to return them",
                s(last, "reason")
            ),
        ),
        "cancelled" | "rollback_failed" => (
            recover,
            format!(
                "regions may be left on a mixed or unknown version: {}",
                list(&last["mixed_regions"])
            ),
        ),
        _ => (
            recover,
            "the deploy never finished (killed, or still running: `shipgate lock status`)".into(),
        ),
    }
}

fn time_of(ts: &str) -> &str {
    // `2026-12-03T08:51:05.978Z` → `08:51:05.978`
    ts.get(11..23).unwrap_or(ts)
}

pub fn human(story: &Story) -> String {
    let mut out = format!(
        "deploy {} of {} {}: {}\n",
        story.deploy_id, story.app, story.version, story.status
    );
    for e in &story.timeline {
        out.push_str(&format!("  {}  {}\n", time_of(&e.ts), e.text));
    }
    match &story.next {
        Some(cmd) => out.push_str(&format!("next: {cmd}  ({})\n", story.next_why)),
        None => out.push_str(&format!("next: nothing ({})\n", story.next_why)),
    }
    out
}

/// A postmortem skeleton: what happened is filled in, the analysis is left to people.
pub fn markdown(story: &Story) -> String {
    let cell = |t: &str| crate::report::github::summary_cell(t);
    let mut out = format!(
        "## Deploy `{}`: {} {} — {}\n\n| time (UTC) | what happened |\n| --- | --- |\n",
        story.deploy_id,
        cell(&story.app),
        cell(&story.version),
        story.status
    );
    for e in &story.timeline {
        out.push_str(&format!("| {} | {} |\n", time_of(&e.ts), cell(&e.text)));
    }
    out.push_str(&format!(
        "\n**Next:** {} — {}\n\n### Impact\n\n_Who noticed, for how long._\n\n### Root cause\n\n_Why the gate tripped._\n\n### Action items\n\n- [ ] \n",
        story
            .next
            .as_deref()
            .map_or("nothing".to_string(), |c| format!("`{c}`")),
        cell(&story.next_why)
    ));
    out
}
