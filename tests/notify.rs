//! Notifications through the library (`Notifier::with_env`, so no test touches the process
//! environment) against real receivers on loopback; the audit trail they leave.
//!
//! The deploy engine will send these from the binary; until it lands, the library is the way in.

use std::time::Duration;

use serde_json::{json, Value};
use shipgate::config::Priority;
use shipgate::ledger::Ledger;
use shipgate::notify::{Notification, Notifier};

use crate::common::http::{Reply, Server};

const SLACK_PATH: &str = "/services/T0AAAAAAA/B0BBBBBBB/slackXXXXtoken";
const DISCORD_PATH: &str = "/api/webhooks/1234567890/discordXXXXtoken";

struct Setup {
    dir: tempfile::TempDir,
    config: shipgate::config::Config,
}

impl Setup {
    fn new(notify: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[app]
name = "nettrace-dashboard"
[target]
adapter = "exec"
[target.exec]
deploy = ["./deploy.sh", "{{region}}", "{{version}}"]
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
{notify}
"#
        );
        let path = dir.path().join("pipeline.toml");
        let config =
            shipgate::config::parse(&path, &text, Some(&dir.path().join(".shipgate"))).unwrap();
        Setup { dir, config }
    }

    fn ledger(&self) -> Ledger {
        Ledger::open(&self.dir.path().join(".shipgate")).unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(".shipgate/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".shipgate/audit.jsonl")).unwrap_or_default()
    }
}

const BOTH: &str = r#"
[notify.slack]
webhook_env = "SLACK_WEBHOOK_URL"
min_priority = "P2"

[notify.discord]
webhook_env = "DISCORD_WEBHOOK_URL"
min_priority = "P1"
"#;

fn env(slack: Option<&Server>, discord: Option<&Server>) -> impl Fn(&str) -> Option<String> {
    let slack = slack.map(|s| format!("{}{SLACK_PATH}", s.url));
    let discord = discord.map(|s| format!("{}{DISCORD_PATH}", s.url));
    move |name: &str| match name {
        "SLACK_WEBHOOK_URL" => slack.clone(),
        "DISCORD_WEBHOOK_URL" => discord.clone(),
        "SHIPGATE_RETRY_BASE_MS" => Some("1".into()),
        _ => None,
    }
}

fn notification(priority: Priority) -> Notification {
    Notification {
        priority,
        title: "deploy failed: nettrace-dashboard abc1234".into(),
        message: "gate `api` tripped in lhr: HTTP 503".into(),
        context: json!({
            "version": "abc1234",
            "regions": ["lhr", "nrt"],
            "stage": "canary",
            "outcome": "rolled_back",
            "run_url": "https://github.com/nettrace/dashboard/actions/runs/42",
        }),
        deploy_id: Some("01JDEPLOY0000000000000000".into()),
    }
}

#[test]
fn slack_and_discord_receive_their_payload_shapes() {
    let slack = Server::fixed(200, "ok");
    let discord = Server::fixed(204, "");
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(Some(&slack), Some(&discord)));
    let warning = notifier.send(&s.ledger(), &notification(Priority::P0));
    assert_eq!(warning, None);

    let rq = &slack.requests()[0];
    assert_eq!(rq.path, SLACK_PATH);
    assert_eq!(rq.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&rq.body).unwrap();
    assert!(body["text"].as_str().unwrap().contains("deploy failed"));
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let fields = blocks
        .iter()
        .find_map(|b| b["fields"].as_array())
        .expect("a section with fields");
    let text: Vec<&str> = fields.iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(text.contains(&"*Version*\nabc1234"), "{text:?}");
    assert!(text.contains(&"*Regions*\nlhr, nrt"), "{text:?}");
    assert!(text.contains(&"*Stage*\ncanary"), "{text:?}");
    assert!(text.contains(&"*Outcome*\nrolled_back"), "{text:?}");
    assert!(
        text.iter().any(|t| t.contains("actions/runs/42")),
        "{text:?}"
    );

    let rq = &discord.requests()[0];
    assert_eq!(rq.path, DISCORD_PATH);
    let body: Value = serde_json::from_str(&rq.body).unwrap();
    assert!(body["content"].as_str().unwrap().contains("deploy failed"));
    let embed = &body["embeds"][0];
    assert_eq!(embed["color"], 0xE01E1E, "P0 is red");
    assert_eq!(
        embed["url"],
        "https://github.com/nettrace/dashboard/actions/runs/42"
    );
    let names: Vec<&str> = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Version", "Regions", "Stage", "Outcome", "Run"]);

    let audit = s.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["priority"], "P0");
    assert_eq!(audit[0]["delivered"], json!(["slack", "discord"]));
    assert_eq!(audit[0]["failed"], json!([]));
    assert_eq!(audit[0]["context"]["stage"], "canary");
    let text = s.audit_text();
    assert!(!text.contains(SLACK_PATH) && !text.contains(DISCORD_PATH));
}

#[test]
fn sinks_receive_only_priorities_at_or_above_their_minimum() {
    let slack = Server::fixed(200, "ok");
    let discord = Server::fixed(204, "");
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(Some(&slack), Some(&discord)));
    // P2 reaches slack (min P2), not discord (min P1); P3 reaches neither but is audited.
    assert_eq!(
        notifier.send(&s.ledger(), &notification(Priority::P2)),
        None
    );
    assert_eq!(
        notifier.send(&s.ledger(), &notification(Priority::P3)),
        None
    );
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(discord.requests().len(), 0);
    let audit = s.audit();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["delivered"], json!(["slack"]));
    assert_eq!(audit[1]["priority"], "P3");
    assert_eq!(audit[1]["delivered"], json!([]));
    assert_eq!(audit[1]["failed"], json!([]));
}

#[test]
fn every_notification_is_audited_even_without_sinks() {
    let s = Setup::new("");
    let notifier = Notifier::with_env(&s.config, |_| None);
    assert_eq!(
        notifier.send(&s.ledger(), &notification(Priority::P1)),
        None
    );
    let audit = s.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0]["title"],
        "deploy failed: nettrace-dashboard abc1234"
    );
    assert_eq!(audit[0]["deploy_id"], "01JDEPLOY0000000000000000");
}

#[test]
fn a_missing_webhook_variable_skips_the_sink_and_records_why() {
    let discord = Server::fixed(204, "");
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(None, Some(&discord)));
    let warning = notifier
        .send(&s.ledger(), &notification(Priority::P0))
        .expect("a warning");
    assert!(warning.contains("SLACK_WEBHOOK_URL"), "{warning}");
    let audit = s.audit();
    assert_eq!(audit[0]["delivered"], json!(["discord"]));
    assert_eq!(audit[0]["failed"][0]["sink"], "slack");
    assert!(audit[0]["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("SLACK_WEBHOOK_URL` is not set"));
}

#[test]
fn discord_404_is_not_retried() {
    let discord = Server::fixed(404, r#"{"message": "Unknown Webhook", "code": 10015}"#);
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(None, Some(&discord)));
    let warning = notifier
        .send(&s.ledger(), &notification(Priority::P0))
        .unwrap();
    assert_eq!(discord.requests().len(), 1);
    assert!(warning.contains("404"), "{warning}");
    assert!(!warning.contains(DISCORD_PATH), "{warning}");
    let failed = &s.audit()[0]["failed"];
    let discord_failure = failed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["sink"] == "discord")
        .unwrap();
    assert!(discord_failure["error"]
        .as_str()
        .unwrap()
        .contains("Unknown Webhook"));
}

#[test]
fn discord_rate_limit_body_retry_after_is_honoured() {
    let discord = Server::fixed(204, "");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    discord.set_handler(move |_| {
        if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::new(
                429,
                r#"{"message": "You are being rate limited.", "retry_after": 0.3, "global": false}"#,
            )
            .header("Content-Type", "application/json")
        } else {
            Reply::new(204, "")
        }
    });
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(None, Some(&discord)));
    let start = std::time::Instant::now();
    let _ = notifier.send(&s.ledger(), &notification(Priority::P1));
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(discord.requests().len(), 2);
    let audit = s.audit();
    assert_eq!(audit[0]["delivered"], json!(["discord"]));
}

#[test]
fn slack_server_errors_are_retried_and_then_recorded() {
    let slack = Server::fixed(500, "internal_error");
    let s = Setup::new(BOTH);
    let notifier = Notifier::with_env(&s.config, env(Some(&slack), None));
    let warning = notifier
        .send(&s.ledger(), &notification(Priority::P2))
        .unwrap();
    assert_eq!(slack.requests().len(), 4);
    assert!(warning.contains("after 4 attempts"), "{warning}");
    // The warning says which notification was lost.
    assert!(
        warning.contains(
            "P2 notification \"deploy failed: nettrace-dashboard abc1234\" not delivered to slack"
        ),
        "{warning}"
    );
    let audit = s.audit();
    assert_eq!(audit[0]["delivered"], json!([]));
    assert_eq!(audit[0]["failed"][0]["sink"], "slack");
    assert!(!s.audit_text().contains(SLACK_PATH));
}
