//! Before the lock: every PromQL a deploy's gates will send is shown to its server's
//! `/api/v1/format_query` (Prometheus ≥ 2.38), which parses it with the server's own parser.
//! The loader has parsed each query already (`config::promql`); this catches what only the
//! server knows (a function newer than the parser shipgate carries, a server-side limit).
//!
//! Best effort: a server that does not answer within [`TIMEOUT`], or lacks the endpoint (404),
//! is skipped with a note, because the gates judge it later anyway. A 400 is exit 2 with
//! nothing changed: the server refused the query and would refuse it during the deploy too.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::{Config, Stage};
use crate::error::Error;
use crate::gates::probe::one_line;
use crate::gates::prometheus::percent_encode;

/// One request's time limit: the check must not slow a deploy down noticeably.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A query the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub gate: String,
    pub field: &'static str,
    pub region: Option<String>,
    pub server: String,
    pub why: String,
}

/// What the check found: the refusals, and notes about servers it could not ask.
#[derive(Debug, Default)]
pub struct Checked {
    pub refused: Vec<Refused>,
    pub notes: Vec<String>,
}

/// Checks every PromQL of the gates (and preflight gates) of `stages`, rendered for each region
/// with `version`, against its server.
pub fn confirm(config: &Config, stages: &[&Stage], version: &str, deploy_id: &str) -> Checked {
    let mut checked = Checked::default();
    let mut asked = BTreeSet::new();
    let mut skipped_servers = BTreeSet::new();
    for stage in stages {
        for name in stage_gates(stage) {
            let Some(gate) = config.gates.get(name) else {
                continue;
            };
            let regions: Vec<Option<&str>> = if gate.uses_region() {
                stage.regions.iter().map(|r| Some(r.as_str())).collect()
            } else {
                vec![None]
            };
            for (field, url, query) in gate.kind.promql() {
                for region in &regions {
                    let vars = super::engine::vars(
                        config,
                        deploy_id,
                        Some(&stage.name),
                        *region,
                        version,
                        None,
                    );
                    let server = vars.render(url);
                    let query = vars.render(query);
                    if skipped_servers.contains(&server)
                        || !asked.insert((server.clone(), query.clone()))
                    {
                        continue;
                    }
                    match ask(&server, &query) {
                        Answer::Accepted => {}
                        Answer::Refused(why) => checked.refused.push(Refused {
                            gate: name.to_string(),
                            field,
                            region: region.map(str::to_string),
                            server: server.clone(),
                            why,
                        }),
                        Answer::Unknown(why) => {
                            checked.notes.push(format!(
                                "cannot confirm the queries with {server} before the deploy \
                                 ({why}); the gates will judge them"
                            ));
                            skipped_servers.insert(server);
                        }
                    }
                }
            }
        }
    }
    checked
}

/// The gates of a stage and its preflight gates, each once.
fn stage_gates(stage: &Stage) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for g in stage.gates.iter().chain(stage.preflight.iter()) {
        if !names.contains(&g.as_str()) {
            names.push(g);
        }
    }
    names
}

/// The exit-2 error for refused queries; `None` when there are none.
pub fn refusal_error(refused: &[Refused]) -> Option<Error> {
    let first = refused.first()?;
    let describe = |r: &Refused| {
        format!(
            "gate `{}` ({}{}): {} refuses the query: {}",
            r.gate,
            r.field,
            r.region
                .as_deref()
                .map(|x| format!(", region {x}"))
                .unwrap_or_default(),
            r.server,
            r.why
        )
    };
    let mut err = Error::usage(describe(first)).with_hint(
        "fix the query in pipeline.toml (`shipgate validate` parses it; the server's \
         /api/v1/format_query has the last word); nothing was changed",
    );
    if refused.len() > 1 {
        err = err.with_detail(
            refused[1..]
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    Some(err)
}

enum Answer {
    Accepted,
    Refused(String),
    /// Nothing to conclude: unreachable, no such endpoint, not Prometheus's JSON.
    Unknown(String),
}

fn ask(server: &str, query: &str) -> Answer {
    let url = format!(
        "{}/api/v1/format_query?query={}",
        server.trim_end_matches('/'),
        percent_encode(query)
    );
    let answer = match crate::gates::http::fetch("GET", &url, &[], TIMEOUT) {
        Ok(a) => a,
        Err(e) => return Answer::Unknown(e.to_string()),
    };
    let json: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
    let status = json
        .as_ref()
        .and_then(|j| j.get("status"))
        .and_then(|s| s.as_str());
    match (answer.status, status) {
        (200, Some("success")) => Answer::Accepted,
        (400, Some("error")) => {
            let msg = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(|e| e.as_str())
                .unwrap_or("no message");
            Answer::Refused(one_line(msg))
        }
        (404, _) => Answer::Unknown("it has no /api/v1/format_query (Prometheus < 2.38)".into()),
        (code, _) => Answer::Unknown(format!("HTTP {code}")),
    }
}
