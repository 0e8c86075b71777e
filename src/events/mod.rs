//! Deployment events (SPEC §5): the event model, CloudEvents, signing, delivery, and the
//! normalisation of Netlify, Render and GitHub webhook payloads.
//!
//! Every event is appended to history as an `event` record carrying its delivery outcome,
//! delivered or not, sink or not. Delivery uses the notification retry policy
//! ([`crate::notify::delivery`]). The sink URL, when it comes from `url_env`, and the signing
//! secret are secrets, added to the redactor when read; any sink URL is recorded and shown
//! only as `scheme://host/***`.

pub mod cloudevents;
pub mod normalise;
pub mod signing;

use serde_json::{Map, Value};

use crate::config::{Config, EventFormat, EventsConfig};
use crate::error::Error;
use crate::ledger::{EventRecord, HistoryRecord, Ledger};
use crate::notify::delivery::{self, HttpRequest, RetryPolicy};

/// start | success | failure | progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Start,
    Success,
    Failure,
    Progress,
}

impl EventType {
    pub const NAMES: &'static [&'static str] = &["start", "success", "failure", "progress"];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "start",
            EventType::Success => "success",
            EventType::Failure => "failure",
            EventType::Progress => "progress",
        }
    }

    /// Parses a name of [`EventType::NAMES`]; the error lists them.
    pub fn parse(s: &str) -> Result<EventType, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "start" => Ok(EventType::Start),
            "success" => Ok(EventType::Success),
            "failure" => Ok(EventType::Failure),
            "progress" => Ok(EventType::Progress),
            _ => Err(format!(
                "unknown event type `{s}` (valid: {})",
                EventType::NAMES.join(", ")
            )),
        }
    }

    /// The `status` an event gets when none is given: start → `started`, success →
    /// `deployed`, failure → `failed`, progress → `in_progress`.
    pub fn default_status(self) -> &'static str {
        match self {
            EventType::Start => "started",
            EventType::Success => "deployed",
            EventType::Failure => "failed",
            EventType::Progress => "in_progress",
        }
    }
}

/// The event object of SPEC §5.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentEvent {
    pub platform: String,
    pub event_type: EventType,
    pub status: String,
    pub timestamp: String,
    pub topics: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl DeploymentEvent {
    /// An event stamped now (RFC 3339 UTC, seconds), with its topics; `status` defaults to
    /// [`EventType::default_status`].
    pub fn new(
        platform: &str,
        event_type: EventType,
        status: Option<&str>,
        metadata: Map<String, Value>,
    ) -> DeploymentEvent {
        DeploymentEvent {
            platform: platform.to_string(),
            event_type,
            status: status
                .filter(|s| !s.is_empty())
                .unwrap_or(event_type.default_status())
                .to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            topics: topics(platform, event_type),
            metadata,
        }
    }
}

/// `deploy.<platform>`, plus `deploy.platform.<event_type>` except for progress.
pub fn topics(platform: &str, event_type: EventType) -> Vec<String> {
    let mut t = vec![format!("deploy.{platform}")];
    if event_type != EventType::Progress {
        t.push(format!("deploy.platform.{}", event_type.as_str()));
    }
    t
}

/// Checks a platform name: it becomes part of a topic, so letters, digits, `.`, `_`, `-`.
pub fn check_platform(platform: &str) -> Result<(), String> {
    let ok = !platform.is_empty()
        && platform.len() <= 64
        && platform
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid platform `{platform}` (use letters, digits, `.`, `_` or `-`, e.g. netlify)"
        ))
    }
}

/// What became of one published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The history record's id.
    pub record_id: String,
    /// The id sent to the sink (CloudEvents `id`, `webhook-id`).
    pub event_id: String,
    /// The sink as recorded (`scheme://host/***` for a secret URL); `None` without `[events]`.
    pub sink: Option<String>,
    pub delivered: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

/// A resolved `[events]` sink.
struct Sink {
    url: String,
    /// How the sink is shown and recorded.
    display: String,
    format: EventFormat,
    signer: Option<signing::Signer>,
    source: String,
}

impl Sink {
    /// Reads the URL and the secret. A missing variable or a bad secret is a configuration
    /// error (exit 2): nothing is sent.
    fn resolve(cfg: &EventsConfig, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Sink, Error> {
        let (url, secret_url) = match (&cfg.url, &cfg.url_env) {
            (_, Some(var)) => match lookup(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => (v.trim().to_string(), true),
                None if cfg.url.is_some() => (cfg.url.clone().unwrap_or_default(), false),
                None => {
                    return Err(Error::usage(format!(
                        "the events sink URL variable `{var}` is not set"
                    ))
                    .with_hint(format!("export {var}=https://… (`[events].url_env`)")))
                }
            },
            (Some(url), None) => (url.clone(), false),
            (None, None) => return Err(Error::usage("`[events]` has neither `url` nor `url_env`")),
        };
        if secret_url {
            crate::redact::add_secret(&url);
        }
        let signer = match &cfg.secret_env {
            Some(var) if cfg.signing != crate::config::Signing::None => {
                let secret = lookup(var)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        Error::usage(format!("the event signing secret `{var}` is not set"))
                            .with_hint(format!(
                                "export {var}, or set `[events].signing = \"none\"`"
                            ))
                    })?;
                crate::redact::add_secret(&secret);
                if let Some(b64) = secret.trim().strip_prefix("whsec_") {
                    crate::redact::add_secret(b64);
                }
                signing::Signer::new(cfg.signing, &secret).map_err(|why| {
                    Error::usage(format!("cannot sign events with `{var}`")).caused_by(why)
                })?
            }
            _ => None,
        };
        // Even a literal `url` is recorded without its path: history may travel (the git
        // store pushes it), and webhook URLs carry their token in the path.
        let display = redacted_url(&url);
        Ok(Sink {
            url,
            display,
            format: cfg.format,
            signer,
            source: cfg.source.clone(),
        })
    }

    /// The POST for `event`: body in the configured format, signature headers.
    fn request(&self, event: &DeploymentEvent, id: &str, app: &str) -> Result<HttpRequest, Error> {
        let (body, content_type) = match self.format {
            EventFormat::Cloudevents => (
                cloudevents::envelope(event, id, &self.source, app),
                cloudevents::CONTENT_TYPE,
            ),
            EventFormat::Plain => (
                serde_json::to_value(event)
                    .map_err(|e| Error::failed("cannot encode the event").caused_by(e))?,
                "application/json",
            ),
        };
        let mut body = body;
        crate::redact::redact_json(&mut body);
        let body = serde_json::to_vec(&body)
            .map_err(|e| Error::failed("cannot encode the event").caused_by(e))?;
        let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
        if let Some(signer) = &self.signer {
            headers.extend(signer.headers(id, chrono::Utc::now().timestamp(), &body));
        }
        Ok(HttpRequest {
            method: crate::notify::delivery::Method::Post,
            url: self.url.clone(),
            headers,
            body,
        })
    }
}

/// `scheme://host[:port]/***`: where an event went, without the secret part (a webhook URL's
/// token is in its path or query; credentials before `@` are dropped too).
fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if scheme.is_empty() || host.is_empty() {
        crate::redact::MASK.to_string()
    } else {
        format!("{scheme}://{host}/{}", crate::redact::MASK)
    }
}

/// Builds, records (as an `event` history record) and delivers an event to the `[events]`
/// sink. `Err` when delivery failed after retries (the record is still written).
pub fn publish(
    config: &Config,
    ledger: &Ledger,
    event: &DeploymentEvent,
    deploy_id: Option<&str>,
) -> Result<(), Error> {
    let p = publish_with(config, ledger, event, deploy_id, &|k| std::env::var(k).ok())?;
    if p.delivered || p.sink.is_none() {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "could not deliver the event to {}",
            p.sink.unwrap_or_default()
        ))
        .caused_by(p.error.unwrap_or_default()))
    }
}

/// [`publish`], reading variables through `lookup`, returning the outcome. `Ok` whether or
/// not delivery succeeded (see [`Published::delivered`]); `Err` for a configuration error
/// (exit 2, nothing recorded or sent) or a history write failure.
pub fn publish_with(
    config: &Config,
    ledger: &Ledger,
    event: &DeploymentEvent,
    deploy_id: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Published, Error> {
    let mut outgoing = Outgoing::prepare(config, event, deploy_id, lookup)?;
    outgoing.deliver();
    outgoing.record(ledger)
}

/// An event on its way: built, its request signed, then delivered, then recorded. The steps
/// are apart so that `deploy` can deliver on another thread ([`crate::notify::queue`]).
struct Outgoing {
    event: DeploymentEvent,
    deploy_id: Option<String>,
    event_id: String,
    /// The sink as recorded, the request and how hard to try; `None` without `[events]`.
    target: Option<(String, HttpRequest, RetryPolicy)>,
    outcome: Option<delivery::Outcome>,
}

impl Outgoing {
    /// Resolves the sink and builds the request; sends nothing. `Err` for a configuration
    /// error (a missing variable or secret).
    fn prepare(
        config: &Config,
        event: &DeploymentEvent,
        deploy_id: Option<&str>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Outgoing, Error> {
        let event_id = ulid::Ulid::new().to_string();
        let target = match &config.events {
            None => None,
            Some(cfg) => {
                let sink = Sink::resolve(cfg, lookup)?;
                let post = sink.request(event, &event_id, &config.app.name)?;
                Some((sink.display, post, RetryPolicy::from_lookup(lookup)))
            }
        };
        Ok(Outgoing {
            event: event.clone(),
            deploy_id: deploy_id.map(str::to_string),
            event_id,
            target,
            outcome: None,
        })
    }

    /// Posts the event with retries; blocks for up to [`RetryPolicy::give_up_after`].
    fn deliver(&mut self) {
        if let Some((_, post, policy)) = &self.target {
            self.outcome = Some(delivery::deliver(post, policy));
        }
    }

    /// Appends the `event` history record with the delivery outcome.
    fn record(self, ledger: &Ledger) -> Result<Published, Error> {
        let outcome = self.outcome.as_ref();
        let sink = self.target.map(|(display, _, _)| display);
        let record = EventRecord {
            deploy_id: self.deploy_id,
            event: serde_json::to_value(&self.event)
                .map_err(|e| Error::failed("cannot encode the event").caused_by(e))?,
            sink: sink.clone(),
            delivered: outcome.is_some_and(|o| o.delivered),
            error: outcome.and_then(|o| o.error.clone()),
            attempts: outcome.map_or(0, |o| o.attempts),
            event_id: Some(self.event_id.clone()),
        };
        let appended = ledger
            .append_history(&HistoryRecord::Event(record.clone()))
            .map_err(|e| e.within("cannot record the event in history"))?;
        Ok(Published {
            record_id: appended.id,
            event_id: self.event_id,
            sink,
            delivered: record.delivered,
            attempts: record.attempts,
            error: record.error,
        })
    }
}

/// The event `deploy` publishes at its start, success and failure: `platform` is the
/// adapter, metadata carries the app, version and deploy id, then `extra_metadata`
/// (commit_sha, branch, run_url…). Does nothing without `[events]`. Never fails the deploy:
/// a problem (a missing secret, a sink that refuses) is returned as a warning, and the event
/// is still recorded in history with the error.
pub fn publish_deploy_event(
    config: &Config,
    ledger: &Ledger,
    event_type: EventType,
    deploy_id: &str,
    version: &str,
    extra_metadata: Map<String, Value>,
) -> Option<String> {
    match prepare_deploy_event(
        config,
        ledger,
        event_type,
        deploy_id,
        version,
        extra_metadata,
    )? {
        Err(warning) => Some(warning),
        Ok(mut pending) => {
            pending.deliver();
            pending.record(ledger)
        }
    }
}

/// [`publish_deploy_event`] in steps, so the slow one can run off the deploy's path: builds
/// the event and its signed request, sending nothing. `None` without `[events]`. `Err` with a
/// warning when it cannot be sent at all (a missing secret): the event is then already
/// recorded in history with that error.
pub fn prepare_deploy_event(
    config: &Config,
    ledger: &Ledger,
    event_type: EventType,
    deploy_id: &str,
    version: &str,
    extra_metadata: Map<String, Value>,
) -> Option<Result<PendingDeployEvent, String>> {
    config.events.as_ref()?;
    let event = deploy_event(config, event_type, deploy_id, version, extra_metadata);
    let lookup = |k: &str| std::env::var(k).ok();
    Some(
        match Outgoing::prepare(config, &event, Some(deploy_id), &lookup) {
            Ok(outgoing) => Ok(PendingDeployEvent {
                event_type,
                outgoing,
            }),
            Err(e) => {
                // Record that the event could not be sent, so history shows it.
                let record = EventRecord {
                    deploy_id: Some(deploy_id.to_string()),
                    event: serde_json::to_value(&event).unwrap_or_default(),
                    sink: None,
                    delivered: false,
                    error: Some(e.to_string()),
                    attempts: 0,
                    event_id: None,
                };
                let _ = ledger.append_history(&HistoryRecord::Event(record));
                Err(crate::redact::redact(&format!(
                    "{} event not published: {e}",
                    event_type.as_str()
                )))
            }
        },
    )
}

/// A deploy's event, ready to deliver (see [`prepare_deploy_event`]).
pub struct PendingDeployEvent {
    event_type: EventType,
    outgoing: Outgoing,
}

impl PendingDeployEvent {
    /// How long [`PendingDeployEvent::deliver`] takes at most when the sink never answers.
    pub fn give_up_after(&self) -> std::time::Duration {
        self.outgoing
            .target
            .as_ref()
            .map_or(std::time::Duration::ZERO, |(_, _, policy)| {
                policy.give_up_after()
            })
    }

    /// Posts the event, with retries. Writes nothing.
    pub fn deliver(&mut self) {
        self.outgoing.deliver();
    }

    /// The same event as given up: recorded as not delivered because of `why` (the wait for
    /// its delivery was cut short).
    pub fn abandoned(&self, why: &str) -> PendingDeployEvent {
        PendingDeployEvent {
            event_type: self.event_type,
            outgoing: Outgoing {
                event: self.outgoing.event.clone(),
                deploy_id: self.outgoing.deploy_id.clone(),
                event_id: self.outgoing.event_id.clone(),
                target: self.outgoing.target.clone(),
                outcome: Some(delivery::Outcome {
                    delivered: false,
                    attempts: 0,
                    status: None,
                    error: Some(why.to_string()),
                    body: String::new(),
                }),
            },
        }
    }

    /// Appends the `event` history record with the delivery outcome. Returns a warning when
    /// the event was not delivered or cannot be recorded.
    pub fn record(self, ledger: &Ledger) -> Option<String> {
        let kind = self.event_type.as_str();
        let warning = match self.outgoing.record(ledger) {
            Ok(p) if p.delivered => return None,
            Ok(p) => format!(
                "{kind} event not delivered to {}: {}",
                p.sink.unwrap_or_default(),
                p.error.unwrap_or_default()
            ),
            Err(e) => format!("{kind} event not recorded in history: {e}"),
        };
        Some(crate::redact::redact(&warning))
    }
}

/// The event of [`publish_deploy_event`], without publishing it.
pub fn deploy_event(
    config: &Config,
    event_type: EventType,
    deploy_id: &str,
    version: &str,
    extra_metadata: Map<String, Value>,
) -> DeploymentEvent {
    let mut metadata = Map::new();
    metadata.insert("app".into(), config.app.name.clone().into());
    metadata.insert("version".into(), version.into());
    metadata.insert("deploy_id".into(), deploy_id.into());
    metadata.extend(extra_metadata);
    DeploymentEvent::new(config.target.adapter.as_str(), event_type, None, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_per_type() {
        assert_eq!(
            topics("netlify", EventType::Success),
            ["deploy.netlify", "deploy.platform.success"]
        );
        assert_eq!(topics("fly", EventType::Progress), ["deploy.fly"]);
    }

    #[test]
    fn event_types_parse_and_default_status() {
        assert_eq!(EventType::parse("Success"), Ok(EventType::Success));
        let err = EventType::parse("done").unwrap_err();
        assert!(err.contains("start, success, failure, progress"), "{err}");
        let e = DeploymentEvent::new("fly", EventType::Failure, None, Map::new());
        assert_eq!(e.status, "failed");
        assert!(
            e.timestamp.ends_with('Z') && e.timestamp.len() == 20,
            "{}",
            e.timestamp
        );
        let e = DeploymentEvent::new("fly", EventType::Start, Some("queued"), Map::new());
        assert_eq!(e.status, "queued");
    }

    #[test]
    fn event_serialises_as_the_spec_object() {
        let mut meta = Map::new();
        meta.insert("commit_sha".into(), "abc123".into());
        let e = DeploymentEvent::new("netlify", EventType::Success, None, meta);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event_type"], "success");
        assert_eq!(v["status"], "deployed");
        assert_eq!(v["metadata"]["commit_sha"], "abc123");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "platform",
                "event_type",
                "status",
                "timestamp",
                "topics",
                "metadata"
            ]
        );
    }

    #[test]
    fn secret_urls_keep_only_scheme_and_host() {
        assert_eq!(
            redacted_url("https://hooks.example.com/services/T0/B0/XYZ"),
            "https://hooks.example.com/***"
        );
        assert_eq!(
            redacted_url("https://user:pw@example.com:8443?token=1"),
            "https://example.com:8443/***"
        );
        assert_eq!(redacted_url("garbage"), "***");
    }

    #[test]
    fn platform_names() {
        assert!(check_platform("netlify").is_ok());
        assert!(check_platform("my-platform.v2").is_ok());
        assert!(check_platform("").is_err());
        assert!(check_platform("a b").is_err());
    }

    #[test]
    fn cloudevents_envelope_has_the_required_attributes() {
        let e = DeploymentEvent::new("fly", EventType::Start, None, Map::new());
        let v = cloudevents::envelope(&e, "01ABC", "https://github.com/o/r", "web");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "01ABC");
        assert_eq!(v["source"], "https://github.com/o/r");
        assert_eq!(v["type"], "dev.shipgate.deploy.start");
        assert_eq!(v["subject"], "web");
        assert_eq!(v["time"], e.timestamp.as_str());
        assert_eq!(v["data"]["platform"], "fly");
    }
}
