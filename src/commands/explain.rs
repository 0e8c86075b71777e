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
    let mut timeline: Vec<Entry> = records.iter().filter_map(entry).collect();
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

/// What a history record says, in a sentence.
fn entry(r: &Value) -> Option<Entry> {
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
            "started" => format!("stage {}: deploying {}", s(r, "stage"), list(&r["regions"])),
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
            format!(
                "gate {} [{}] in {}: {result} — {}",
                s(r, "gate"),
                s(r, "severity"),
                s(r, "region"),
                s(r, "detail")
            )
        }
        "rollback" => {
            let to: Vec<String> = r["to_version"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(region, v)| format!("{region} → {}", v.as_str().unwrap_or("?")))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "rollback {} of {} ({}) because {}",
                s(r, "status"),
                list(&r["regions"]),
                to.join(", "),
                s(r, "reason")
            )
        }
        "event" => format!("event {} {}", s(r, "event_type"), s(r, "status")),
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
