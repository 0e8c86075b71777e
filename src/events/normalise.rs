//! `publish-event --from`: a platform's own webhook payload turned into an event (SPEC §5).
//!
//! | source | payload | start | progress | success | failure |
//! | ------ | ------- | ----- | -------- | ------- | ------- |
//! | netlify | deploy notification (the deploy object) | `state` building | any other state (enqueued, uploading, processing, …) | ready | error |
//! | render | webhook `{type, timestamp, data}` | `deploy_started` | — | `deploy_ended` + `succeeded` | `deploy_ended` + `failed` / `canceled` |
//! | github | `deployment_status` event | `queued`, `pending` | `in_progress`, `inactive`, other | `success` | `failure`, `error` |
//! | github | `workflow_run` event | status `requested`, `queued`, `waiting`, `pending` | `in_progress`; completed + `neutral` / `skipped` / `stale` | completed + `success` | completed + `failure`, `timed_out`, `cancelled`, `startup_failure`, `action_required` |
//!
//! "Start for the first" (GitHub `deployment_status`): a deployment's first statuses are
//! `queued` or `pending` — GitHub creates them before any work runs — so those are the start;
//! `in_progress` comes after and is progress. Payloads carry no memory of earlier deliveries,
//! so this is decided from the state alone.
//!
//! The platform's own state goes into `metadata.state`; `status` is left to the event type's
//! default. A payload that is not what `--from` says is an error naming what is missing.

use serde_json::{Map, Value};

use super::EventType;
use crate::cli::PayloadSource;

/// An event's parts read from a payload. `event_type` is `None` when the payload cannot say
/// (a Render `deploy_ended` from before Render added `status`): `--event-type` must then.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub platform: String,
    pub event_type: Option<EventType>,
    pub metadata: Map<String, Value>,
}

/// Reads `text` as a `source` payload.
pub fn normalise(source: PayloadSource, text: &str) -> Result<Normalised, String> {
    let name = match source {
        PayloadSource::Netlify => "a Netlify deploy notification",
        PayloadSource::Render => "a Render webhook",
        PayloadSource::Github => "a GitHub deployment_status or workflow_run event",
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the payload is not JSON ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| format!("the payload is not {name}: not a JSON object"))?;
    match source {
        PayloadSource::Netlify => netlify(obj),
        PayloadSource::Render => render(obj),
        PayloadSource::Github => github(obj),
    }
    .map_err(|why| format!("the payload is not {name}: {why}"))
}

/// Whether a GitHub payload is about a deployment shipgate itself created (its
/// `deployment.payload.shipgate` marker): publishing it again would echo shipgate's own
/// deploy back as someone else's, and a webhook wired back into `publish-event` would loop.
pub fn created_by_shipgate(source: PayloadSource, text: &str) -> bool {
    source == PayloadSource::Github
        && serde_json::from_str::<Value>(text)
            .is_ok_and(|v| v["deployment"]["payload"]["shipgate"].is_object())
}

/// A string, or a number shown as one (GitHub ids are numbers).
fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| text(obj, k))
}

fn put(meta: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        meta.insert(key.into(), Value::String(v));
    }
}

fn object<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key)?.as_object()
}

fn netlify(obj: &Map<String, Value>) -> Result<Normalised, String> {
    let state = text(obj, "state").ok_or("no `state` field")?;
    if text(obj, "id").is_none() {
        return Err("no `id` field".into());
    }
    let event_type = match state.as_str() {
        "building" => EventType::Start,
        "ready" => EventType::Success,
        "error" => EventType::Failure,
        _ => EventType::Progress,
    };
    let mut meta = Map::new();
    put(&mut meta, "commit_sha", text(obj, "commit_ref"));
    put(&mut meta, "branch", text(obj, "branch"));
    put(
        &mut meta,
        "deploy_url",
        first(obj, &["deploy_ssl_url", "deploy_url", "ssl_url", "url"]),
    );
    put(&mut meta, "deploy_id", text(obj, "id"));
    let message = if event_type == EventType::Failure {
        first(obj, &["error_message", "title"])
    } else {
        text(obj, "title")
    };
    put(&mut meta, "message", message);
    put(&mut meta, "state", Some(state));
    put(&mut meta, "site", text(obj, "name"));
    put(&mut meta, "site_id", text(obj, "site_id"));
    put(&mut meta, "context", text(obj, "context"));
    put(&mut meta, "commit_url", text(obj, "commit_url"));
    Ok(Normalised {
        platform: "netlify".into(),
        event_type: Some(event_type),
        metadata: meta,
    })
}

fn render(obj: &Map<String, Value>) -> Result<Normalised, String> {
    let kind = text(obj, "type").ok_or("no `type` field")?;
    let data = object(obj, "data").ok_or("no `data` object")?;
    let status = text(data, "status");
    let event_type = match kind.to_ascii_lowercase().as_str() {
        "deploy_started" => Some(EventType::Start),
        "deploy_ended" => match status.as_deref() {
            Some("succeeded") | Some("live") => Some(EventType::Success),
            Some("failed") | Some("canceled") | Some("cancelled") => Some(EventType::Failure),
            _ => None,
        },
        other => {
            return Err(format!(
                "type `{other}` is not a deploy event (expected deploy_started or deploy_ended)"
            ))
        }
    };
    let mut meta = Map::new();
    // `data.id` identifies Render's event (`evj-…`); a deploy id, when present, is better.
    put(&mut meta, "deploy_id", first(data, &["deployId", "id"]));
    put(&mut meta, "service_id", text(data, "serviceId"));
    put(&mut meta, "service", text(data, "serviceName"));
    put(&mut meta, "state", status);
    put(&mut meta, "render_event", Some(kind));
    put(&mut meta, "render_timestamp", text(obj, "timestamp"));
    Ok(Normalised {
        platform: "render".into(),
        event_type,
        metadata: meta,
    })
}

fn github(obj: &Map<String, Value>) -> Result<Normalised, String> {
    if let Some(status) = object(obj, "deployment_status") {
        github_deployment_status(obj, status)
    } else if let Some(run) = object(obj, "workflow_run") {
        github_workflow_run(obj, run)
    } else {
        Err("neither a `deployment_status` nor a `workflow_run` object".into())
    }
}

fn repository(obj: &Map<String, Value>) -> Option<String> {
    object(obj, "repository").and_then(|r| text(r, "full_name"))
}

fn github_deployment_status(
    obj: &Map<String, Value>,
    status: &Map<String, Value>,
) -> Result<Normalised, String> {
    let state = text(status, "state").ok_or("no `deployment_status.state` field")?;
    let event_type = match state.as_str() {
        "queued" | "pending" => EventType::Start,
        "success" => EventType::Success,
        "failure" | "error" => EventType::Failure,
        _ => EventType::Progress,
    };
    let deployment = object(obj, "deployment");
    let mut meta = Map::new();
    put(
        &mut meta,
        "commit_sha",
        deployment.and_then(|d| text(d, "sha")),
    );
    put(&mut meta, "branch", deployment.and_then(|d| text(d, "ref")));
    put(
        &mut meta,
        "deploy_url",
        first(status, &["environment_url", "target_url", "log_url"]),
    );
    put(
        &mut meta,
        "deploy_id",
        deployment
            .and_then(|d| text(d, "id"))
            .or_else(|| text(status, "id")),
    );
    put(&mut meta, "message", text(status, "description"));
    put(&mut meta, "state", Some(state));
    put(
        &mut meta,
        "environment",
        text(status, "environment").or_else(|| deployment.and_then(|d| text(d, "environment"))),
    );
    put(&mut meta, "repository", repository(obj));
    put(&mut meta, "github_event", Some("deployment_status".into()));
    Ok(Normalised {
        platform: "github".into(),
        event_type: Some(event_type),
        metadata: meta,
    })
}

fn github_workflow_run(
    obj: &Map<String, Value>,
    run: &Map<String, Value>,
) -> Result<Normalised, String> {
    let status = text(run, "status").ok_or("no `workflow_run.status` field")?;
    let conclusion = text(run, "conclusion");
    let event_type = match (status.as_str(), conclusion.as_deref()) {
        ("completed", Some("success")) => EventType::Success,
        (
            "completed",
            Some("failure" | "timed_out" | "cancelled" | "startup_failure" | "action_required"),
        ) => EventType::Failure,
        ("completed", None) => {
            return Err("`workflow_run.status` is completed but it has no `conclusion`".into())
        }
        ("completed", Some(_)) => EventType::Progress,
        ("requested" | "queued" | "waiting" | "pending", _) => EventType::Start,
        _ => EventType::Progress,
    };
    let mut meta = Map::new();
    put(&mut meta, "commit_sha", text(run, "head_sha"));
    put(&mut meta, "branch", text(run, "head_branch"));
    put(&mut meta, "deploy_url", text(run, "html_url"));
    put(&mut meta, "deploy_id", text(run, "id"));
    put(&mut meta, "message", first(run, &["display_title", "name"]));
    put(
        &mut meta,
        "state",
        Some(match &conclusion {
            Some(c) => format!("{status}/{c}"),
            None => status.clone(),
        }),
    );
    put(&mut meta, "workflow", text(run, "name"));
    put(&mut meta, "run_number", text(run, "run_number"));
    put(&mut meta, "run_attempt", text(run, "run_attempt"));
    put(&mut meta, "repository", repository(obj));
    put(&mut meta, "github_event", Some("workflow_run".into()));
    Ok(Normalised {
        platform: "github".into(),
        event_type: Some(event_type),
        metadata: meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(source: PayloadSource, v: Value) -> Result<Normalised, String> {
        normalise(source, &v.to_string())
    }

    #[test]
    fn netlify_states() {
        for (state, t) in [
            ("building", EventType::Start),
            ("ready", EventType::Success),
            ("error", EventType::Failure),
            ("enqueued", EventType::Progress),
        ] {
            let n = norm(
                PayloadSource::Netlify,
                json!({"id": "d1", "state": state, "commit_ref": "abc", "branch": "main",
                       "deploy_ssl_url": "https://d1--site.netlify.app", "title": "fix",
                       "error_message": "build script returned non-zero exit code: 2"}),
            )
            .unwrap();
            assert_eq!(n.event_type, Some(t), "{state}");
            assert_eq!(n.platform, "netlify");
            assert_eq!(n.metadata["commit_sha"], "abc");
            assert_eq!(n.metadata["deploy_url"], "https://d1--site.netlify.app");
        }
        let failed = norm(
            PayloadSource::Netlify,
            json!({"id": "d1", "state": "error", "title": "fix", "error_message": "boom"}),
        )
        .unwrap();
        assert_eq!(failed.metadata["message"], "boom");
    }

    #[test]
    fn render_types() {
        let n = |t: &str, status: Option<&str>| {
            let mut data = json!({"id": "evj-1", "serviceId": "srv-1", "serviceName": "api"});
            if let Some(s) = status {
                data["status"] = s.into();
            }
            norm(
                PayloadSource::Render,
                json!({"type": t, "timestamp": "2026-02-14T12:00:00Z", "data": data}),
            )
        };
        assert_eq!(
            n("deploy_started", None).unwrap().event_type,
            Some(EventType::Start)
        );
        assert_eq!(
            n("deploy_ended", Some("succeeded")).unwrap().event_type,
            Some(EventType::Success)
        );
        assert_eq!(
            n("deploy_ended", Some("canceled")).unwrap().event_type,
            Some(EventType::Failure)
        );
        assert_eq!(n("deploy_ended", None).unwrap().event_type, None);
        assert!(n("server_failed", None)
            .unwrap_err()
            .contains("not a deploy event"));
    }

    #[test]
    fn github_deployment_status_start_for_the_first() {
        for (state, t) in [
            ("queued", EventType::Start),
            ("pending", EventType::Start),
            ("in_progress", EventType::Progress),
            ("success", EventType::Success),
            ("failure", EventType::Failure),
            ("error", EventType::Failure),
        ] {
            let n = norm(
                PayloadSource::Github,
                json!({"deployment_status": {"state": state},
                       "deployment": {"id": 42, "sha": "abc", "ref": "main"}}),
            )
            .unwrap();
            assert_eq!(n.event_type, Some(t), "{state}");
            assert_eq!(n.metadata["deploy_id"], "42");
        }
    }

    #[test]
    fn github_workflow_run_conclusions() {
        for (status, conclusion, t) in [
            ("requested", None, EventType::Start),
            ("queued", None, EventType::Start),
            ("in_progress", None, EventType::Progress),
            ("completed", Some("success"), EventType::Success),
            ("completed", Some("failure"), EventType::Failure),
            ("completed", Some("timed_out"), EventType::Failure),
            ("completed", Some("cancelled"), EventType::Failure),
            ("completed", Some("skipped"), EventType::Progress),
        ] {
            let n = norm(
                PayloadSource::Github,
                json!({"workflow_run": {"id": 7, "status": status, "conclusion": conclusion,
                       "head_sha": "abc", "head_branch": "main",
                       "html_url": "https://github.com/o/r/actions/runs/7"}}),
            )
            .unwrap();
            assert_eq!(n.event_type, Some(t), "{status} {conclusion:?}");
        }
    }

    #[test]
    fn wrong_shapes_say_why() {
        assert!(normalise(PayloadSource::Netlify, "nope")
            .unwrap_err()
            .contains("not JSON"));
        assert!(norm(PayloadSource::Netlify, json!([1]))
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(
            norm(PayloadSource::Netlify, json!({"type": "deploy_ended"}))
                .unwrap_err()
                .contains("no `state`")
        );
        assert!(
            norm(PayloadSource::Render, json!({"state": "ready", "id": "x"}))
                .unwrap_err()
                .contains("no `type`")
        );
        assert!(norm(PayloadSource::Github, json!({"state": "ready"}))
            .unwrap_err()
            .contains("neither"));
    }
}
