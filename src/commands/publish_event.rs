//! `shipgate publish-event`: build a deployment event (SPEC §5), append it to history, deliver
//! it to the `[events]` sink.
//!
//! Where each field comes from, later winning: the `--from` payload, then `--meta KEY=VALUE`,
//! then the named flags (`--platform`, `--event-type`, `--status`, `--branch`, `--commit-sha`,
//! `--deploy-url`, `--deploy-id`, `--message`). Without `--status` the event type's default
//! is used (start → started, success → deployed, failure → failed, progress → in_progress).
//! The platform is lowercased: it names the `deploy.<platform>` topic.
//!
//! Exit: 0 delivered (or no sink configured: the event is recorded and a note printed); 1 not
//! delivered after retries (0 with `--best-effort`, with a warning); 2 bad flags, an unreadable
//! payload or one that is not what `--from` says, or a missing URL variable or signing secret.

use std::io::Read;

use serde_json::{Map, Value};

use crate::cli::{Format, GlobalArgs, PayloadSource, PublishEventArgs};
use crate::error::Error;
use crate::events::{self, normalise, DeploymentEvent, EventType};
use crate::ledger::Ledger;
use crate::output::Output;

/// Payloads larger than this are refused: a webhook payload is kilobytes.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

pub fn run(global: &GlobalArgs, args: &PublishEventArgs, output: &Output) -> Result<i32, Error> {
    let payload = match (args.from, &args.payload) {
        (Some(source), Some(path)) => Some((source, read_payload(path)?)),
        _ => None,
    };
    if let Some((source, text)) = &payload {
        if normalise::created_by_shipgate(*source, text) {
            let note = "ignored: the payload is about a GitHub deployment shipgate created \
                        (deployment.payload.shipgate); nothing was published or recorded";
            if output.format != Format::Human {
                output.json(&serde_json::json!({"ok": true, "ignored": true, "reason": note}));
            } else {
                output.info(note);
            }
            return Ok(crate::exit_code::SUCCESS);
        }
    }
    let event = build_event(args, payload.as_ref().map(|(s, t)| (*s, t.as_str())))?;
    let config = super::load_config(global)?;
    let ledger = Ledger::open_for(&config)?;
    let deploy_id = event
        .metadata
        .get("deploy_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let published = events::publish_with(&config, &ledger, &event, deploy_id.as_deref(), &|k| {
        std::env::var(k).ok()
    })?;

    if output.format != Format::Human {
        output.json(&serde_json::json!({
            "event": event,
            "event_id": published.event_id,
            "record_id": published.record_id,
            "sink": published.sink,
            "delivered": published.delivered,
            "attempts": published.attempts,
            "error": published.error,
        }));
    }
    let what = format!("{} event for {}", event.event_type.as_str(), event.platform);
    match &published.sink {
        None => {
            output.info(format!(
                "note: no [events] sink is configured; recorded the {what} in history"
            ));
            Ok(crate::exit_code::SUCCESS)
        }
        Some(sink) if published.delivered => {
            let attempts = match published.attempts {
                1 => "1 attempt".to_string(),
                n => format!("{n} attempts"),
            };
            output.info(format!("published the {what} to {sink} ({attempts})"));
            Ok(crate::exit_code::SUCCESS)
        }
        Some(sink) => {
            let error = published.error.clone().unwrap_or_default();
            if args.best_effort {
                output.warn(format!(
                    "could not deliver the {what} to {sink}: {error} (recorded in history; --best-effort)"
                ));
                Ok(crate::exit_code::SUCCESS)
            } else {
                Err(Error::failed(format!("could not deliver the {what} to {sink}"))
                    .caused_by(error)
                    .with_hint("the event is recorded in history; pass --best-effort to exit 0 when delivery fails"))
            }
        }
    }
}

/// The file, or stdin for `-`.
fn read_payload(path: &str) -> Result<String, Error> {
    let mut text = String::new();
    let result = if path == "-" {
        std::io::stdin().take(MAX_PAYLOAD).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_PAYLOAD).read_to_string(&mut text))
    };
    let shown = if path == "-" { "stdin" } else { path };
    result.map_err(|e| {
        Error::usage(format!("cannot read the payload from `{shown}`")).caused_by(e)
    })?;
    Ok(text)
}

/// The event from the flags and the payload (see the module documentation for precedence).
pub fn build_event(
    args: &PublishEventArgs,
    payload: Option<(PayloadSource, &str)>,
) -> Result<DeploymentEvent, Error> {
    let normalised = match payload {
        Some((source, text)) => Some(normalise::normalise(source, text).map_err(|why| {
            Error::usage(format!(
                "cannot use the `--from {}` payload",
                source_name(source)
            ))
            .caused_by(why)
        })?),
        None => None,
    };
    let event_type = match (&args.event_type, &normalised) {
        (Some(t), _) => EventType::parse(t).map_err(Error::usage)?,
        (None, Some(n)) => n.event_type.ok_or_else(|| {
            Error::usage("the payload does not say whether the deploy succeeded or failed")
                .with_hint("pass --event-type start|success|failure|progress")
        })?,
        (None, None) => {
            return Err(Error::usage("--event-type is required")
                .with_hint(format!("one of: {}", EventType::NAMES.join(", "))))
        }
    };
    let platform = match (&args.platform, &normalised) {
        (Some(p), _) => p.trim().to_ascii_lowercase(),
        (None, Some(n)) => n.platform.clone(),
        (None, None) => return Err(Error::usage("--platform is required")),
    };
    events::check_platform(&platform).map_err(Error::usage)?;

    let mut metadata: Map<String, Value> = normalised.map(|n| n.metadata).unwrap_or_default();
    for pair in &args.meta {
        let (key, value) = parse_meta(pair)?;
        metadata.insert(key, Value::String(value));
    }
    for (key, value) in [
        ("commit_sha", &args.commit_sha),
        ("branch", &args.branch),
        ("deploy_url", &args.deploy_url),
        ("deploy_id", &args.deploy_id),
        ("message", &args.message),
    ] {
        if let Some(v) = value {
            metadata.insert(key.into(), Value::String(v.clone()));
        }
    }
    Ok(DeploymentEvent::new(
        &platform,
        event_type,
        args.status.as_deref(),
        metadata,
    ))
}

/// `KEY=VALUE`; the key is letters, digits, `_`, `-`, `.`; the value may be empty.
fn parse_meta(pair: &str) -> Result<(String, String), Error> {
    let bad = || {
        Error::usage(format!("`--meta {pair}` is not KEY=VALUE"))
            .with_hint("e.g. --meta environment=production (keys: letters, digits, _ - .)")
    };
    let (key, value) = pair.split_once('=').ok_or_else(bad)?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(bad());
    }
    Ok((key.to_string(), value.to_string()))
}

fn source_name(source: PayloadSource) -> &'static str {
    match source {
        PayloadSource::Netlify => "netlify",
        PayloadSource::Render => "render",
        PayloadSource::Github => "github",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> PublishEventArgs {
        PublishEventArgs {
            platform: None,
            event_type: None,
            status: None,
            branch: None,
            commit_sha: None,
            deploy_url: None,
            deploy_id: None,
            message: None,
            meta: vec![],
            from: None,
            payload: None,
            best_effort: false,
        }
    }

    #[test]
    fn flags_override_meta_override_payload() {
        let mut a = args();
        a.branch = Some("release".into());
        a.meta = vec![
            "environment=prod".into(),
            "branch=meta".into(),
            "commit_sha=m".into(),
        ];
        let payload =
            r#"{"id":"d1","state":"ready","branch":"main","commit_ref":"abc","title":"t"}"#;
        let e = build_event(&a, Some((PayloadSource::Netlify, payload))).unwrap();
        assert_eq!(e.platform, "netlify");
        assert_eq!(e.event_type, EventType::Success);
        assert_eq!(e.status, "deployed");
        assert_eq!(e.metadata["branch"], "release");
        assert_eq!(e.metadata["commit_sha"], "m");
        assert_eq!(e.metadata["environment"], "prod");
        assert_eq!(e.metadata["deploy_id"], "d1");
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let mut a = args();
        a.platform = Some("fly".into());
        a.event_type = Some("done".into());
        let e = build_event(&a, None).unwrap_err();
        assert_eq!(e.code, crate::exit_code::USAGE);
        assert!(e.message.contains("start, success, failure, progress"));
        a.event_type = Some("start".into());
        a.meta = vec!["novalue".into()];
        assert_eq!(
            build_event(&a, None).unwrap_err().code,
            crate::exit_code::USAGE
        );
        a.meta = vec!["=x".into()];
        assert_eq!(
            build_event(&a, None).unwrap_err().code,
            crate::exit_code::USAGE
        );
        a.meta = vec!["k=".into()];
        assert_eq!(build_event(&a, None).unwrap().metadata["k"], "");
    }

    #[test]
    fn absent_keys_are_omitted() {
        let mut a = args();
        a.platform = Some("Fly".into());
        a.event_type = Some("progress".into());
        let e = build_event(&a, None).unwrap();
        assert!(e.metadata.is_empty());
        assert_eq!(e.platform, "fly");
        assert_eq!(e.topics, ["deploy.fly"]);
        assert_eq!(e.status, "in_progress");
    }
}
