//! Notifications (SPEC §3): priority routing to Slack and Discord, every notification an audit
//! record with its delivery outcome. A failed notification never changes a deploy's outcome.
//!
//! Webhook URLs are secrets: read from the variables the config names, added to the redactor
//! the moment they are read, and never written anywhere. A sink whose variable is unset or
//! empty is skipped and the reason recorded in the audit record's `failed`.

pub mod delivery;
mod discord;
pub mod queue;
mod slack;

use crate::config::{Config, Priority, SinkConfig};
use crate::ledger::{AuditRecord, Ledger, SinkFailure};
use delivery::{HttpRequest, RetryPolicy};

/// One notification.
#[derive(Debug, Clone)]
pub struct Notification {
    pub priority: Priority,
    /// Short: "deploy failed: nettrace-dashboard abc1234".
    pub title: String,
    pub message: String,
    /// Structured facts (version, regions, stage, outcome, run_url…), kept in the audit record.
    pub context: serde_json::Value,
    pub deploy_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    Slack,
    Discord,
}

impl SinkKind {
    fn name(self) -> &'static str {
        match self {
            SinkKind::Slack => "slack",
            SinkKind::Discord => "discord",
        }
    }
}

/// A configured sink and its webhook URL, or why it has none.
struct Sink {
    kind: SinkKind,
    min_priority: Priority,
    url: Result<String, String>,
}

/// The configured sinks.
pub struct Notifier {
    app: String,
    sinks: Vec<Sink>,
    policy: RetryPolicy,
}

impl Notifier {
    /// Sinks from `[notify]`, webhook URLs from the process environment.
    pub fn from_config(config: &Config) -> Notifier {
        Self::with_env(config, |name| std::env::var(name).ok())
    }

    /// Like [`Notifier::from_config`], reading variables (webhook URLs and the test knobs of
    /// [`delivery`]) through `lookup` instead of the process environment — tests use it so
    /// they never call `set_var` in a multi-threaded binary.
    pub fn with_env(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Notifier {
        let sink = |kind: SinkKind, c: &SinkConfig| {
            let url = match lookup(&c.webhook_env) {
                Some(v) if !v.trim().is_empty() => {
                    let v = v.trim().to_string();
                    crate::redact::add_secret(&v);
                    Ok(v)
                }
                Some(_) => Err(format!("`{}` is empty", c.webhook_env)),
                None => Err(format!("`{}` is not set", c.webhook_env)),
            };
            Sink {
                kind,
                min_priority: c.min_priority,
                url,
            }
        };
        let mut sinks = Vec::new();
        if let Some(c) = &config.notify.slack {
            sinks.push(sink(SinkKind::Slack, c));
        }
        if let Some(c) = &config.notify.discord {
            sinks.push(sink(SinkKind::Discord, c));
        }
        Notifier {
            app: config.app.name.clone(),
            sinks,
            policy: RetryPolicy::from_lookup(&lookup),
        }
    }

    /// Delivers to every sink whose `min_priority` the notification reaches (with retries),
    /// then appends the audit record with `delivered` / `failed`. Never fails the caller: a
    /// ledger error is returned as a warning string.
    pub fn send(&self, ledger: &Ledger, notification: &Notification) -> Option<String> {
        let delivery = self.deliver(notification);
        record(ledger, notification, delivery)
    }

    /// How long delivering one notification can take when its sinks never answer (they are
    /// posted to in parallel): see [`RetryPolicy::give_up_after`].
    pub fn give_up_after(&self) -> std::time::Duration {
        self.policy.give_up_after()
    }

    /// Posts to every sink the notification reaches, in parallel so a slow sink does not
    /// delay the other. Returns the sinks that accepted it and those that did not, in config
    /// order. Writes nothing: [`record`] does.
    pub fn deliver(&self, n: &Notification) -> Delivery {
        let targets: Vec<&Sink> = self
            .sinks
            .iter()
            .filter(|s| n.priority.reaches(s.min_priority))
            .collect();
        let results: Vec<(&Sink, Result<(), String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|sink| scope.spawn(move || (*sink, self.post(sink, n))))
                .collect();
            handles
                .into_iter()
                .zip(&targets)
                .map(|(h, sink)| {
                    h.join()
                        .unwrap_or((*sink, Err("delivery thread panicked".into())))
                })
                .collect()
        });
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        for (sink, result) in results {
            match result {
                Ok(()) => delivered.push(sink.kind.name().to_string()),
                Err(error) => failed.push(SinkFailure {
                    sink: sink.kind.name().to_string(),
                    error: crate::redact::redact(&error),
                }),
            }
        }
        Delivery { delivered, failed }
    }

    /// The delivery of `n` given up before it finished: every sink it reaches failed with
    /// `why`.
    pub fn abandoned(&self, n: &Notification, why: &str) -> Delivery {
        Delivery {
            delivered: Vec::new(),
            failed: self
                .sinks
                .iter()
                .filter(|s| n.priority.reaches(s.min_priority))
                .map(|s| SinkFailure {
                    sink: s.kind.name().to_string(),
                    error: why.to_string(),
                })
                .collect(),
        }
    }

    fn post(&self, sink: &Sink, n: &Notification) -> Result<(), String> {
        let url = sink
            .url
            .as_ref()
            .map_err(|reason| format!("skipped: {reason}"))?;
        let mut body = match sink.kind {
            SinkKind::Slack => slack::payload(&self.app, n),
            SinkKind::Discord => discord::payload(&self.app, n),
        };
        // A secret in a message (a command's stderr, say) must not reach a chat channel.
        crate::redact::redact_json(&mut body);
        let post = HttpRequest {
            method: delivery::Method::Post,
            url: url.clone(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        };
        let outcome = delivery::deliver(&post, &self.policy);
        match outcome.error {
            None if outcome.delivered => Ok(()),
            error => Err(error.unwrap_or_else(|| "not delivered".into())),
        }
    }
}

/// What came of posting one notification to its sinks.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The sinks that accepted it, in config order.
    pub delivered: Vec<String>,
    pub failed: Vec<SinkFailure>,
}

/// Appends the audit record of `notification` with its delivery outcome. Returns the warnings
/// (failed sinks, a ledger error) as one redacted string.
pub fn record(ledger: &Ledger, notification: &Notification, delivery: Delivery) -> Option<String> {
    let Delivery { delivered, failed } = delivery;
    let mut warnings: Vec<String> = failed
        .iter()
        .map(|f| {
            format!(
                "{} notification \"{}\" not delivered to {}: {}",
                notification.priority.as_str(),
                notification.title,
                f.sink,
                f.error
            )
        })
        .collect();
    let record = AuditRecord {
        priority: notification.priority.as_str().to_string(),
        title: notification.title.clone(),
        message: notification.message.clone(),
        context: notification.context.clone(),
        deploy_id: notification.deploy_id.clone(),
        delivered,
        failed,
    };
    if let Err(e) = ledger.append_audit(&record) {
        warnings.push(format!(
            "cannot record the notification in audit.jsonl: {e}"
        ));
    }
    (!warnings.is_empty()).then(|| crate::redact::redact(&warnings.join("; ")))
}

/// The facts shown as fields, in a fixed order, from the notification's context.
fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    [
        ("Version", "version"),
        ("Regions", "regions"),
        ("Stage", "stage"),
        ("Outcome", "outcome"),
    ]
    .into_iter()
    .filter_map(|(label, key)| {
        let text = match n.context.get(key)? {
            serde_json::Value::Null => return None,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            serde_json::Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        };
        (!text.is_empty()).then_some((label, text))
    })
    .collect()
}

/// `context.run_url`, when it is a web link.
fn run_url(n: &Notification) -> Option<String> {
    n.context
        .get("run_url")?
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string)
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(priority: Priority) -> Notification {
        Notification {
            priority,
            title: "deploy failed: web abc1234".into(),
            message: "gate `api` tripped in lhr <500>".into(),
            context: json!({
                "version": "abc1234",
                "regions": ["lhr", "nrt"],
                "stage": "canary",
                "outcome": "rolled_back",
                "run_url": "https://github.com/o/r/actions/runs/1",
            }),
            deploy_id: Some("01J00000000000000000000000".into()),
        }
    }

    #[test]
    fn slack_has_fallback_text_header_and_fields() {
        let p = slack::payload("web", &notification(Priority::P0));
        assert!(p["text"].as_str().unwrap().contains("deploy failed"));
        let blocks = p["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert!(blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("deploy failed: web abc1234"));
        assert_eq!(
            blocks[1]["text"]["text"],
            "gate `api` tripped in lhr &lt;500&gt;"
        );
        let fields: Vec<&str> = blocks[2]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Version*\nabc1234",
                "*Regions*\nlhr, nrt",
                "*Stage*\ncanary",
                "*Outcome*\nrolled_back",
                "*Run*\n<https://github.com/o/r/actions/runs/1|view run>",
            ]
        );
    }

    #[test]
    fn discord_embed_is_coloured_by_priority() {
        for (p, colour) in [
            (Priority::P0, 0xE01E1E),
            (Priority::P1, 0xF28C28),
            (Priority::P2, 0x2EB84B),
            (Priority::P3, 0x95A5A6),
        ] {
            let v = discord::payload("web", &notification(p));
            assert_eq!(v["embeds"][0]["color"], colour);
        }
        let v = discord::payload("web", &notification(Priority::P0));
        assert!(v["content"].as_str().unwrap().contains("deploy failed"));
        let names: Vec<&str> = v["embeds"][0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Version", "Regions", "Stage", "Outcome", "Run"]);
        assert_eq!(v["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn no_run_link_without_run_url() {
        let mut n = notification(Priority::P2);
        n.context = json!({"version": "v1"});
        let s = slack::payload("web", &n);
        assert!(!s.to_string().contains("view run"));
        let d = discord::payload("web", &n);
        assert!(d["embeds"][0].get("url").is_none());
    }

    #[test]
    fn truncates_on_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 3), "hé…");
    }
}
