//! The Slack incoming-webhook message: `text` (the fallback shown in notifications and by
//! clients without Block Kit) plus `blocks`.

use super::{facts, Notification};
use serde_json::{json, Value};

/// Slack's limits: header text 150 characters, section text 3000, field text 2000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

pub fn payload(app: &str, n: &Notification) -> Value {
    let title = format!("{} {}", emoji(n), n.title);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": super::truncate(&title, HEADER_MAX), "emoji": true}
    })];
    if !n.message.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": super::truncate(&escape(&n.message), SECTION_MAX)}
        }));
    }
    let mut fields: Vec<Value> = facts(n)
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": super::truncate(&format!("*{name}*\n{}", escape(&value)), FIELD_MAX)})
        })
        .collect();
    if let Some(url) = super::run_url(n) {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Run*\n<{url}|view run>")}));
    }
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = format!("{} · {}", n.priority.as_str(), escape(app));
    if let Some(id) = &n.deploy_id {
        context.push_str(&format!(" · deploy `{}`", escape(id)));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({
        "text": super::truncate(&format!("[{}] {}: {}", n.priority.as_str(), n.title, n.message), SECTION_MAX),
        "blocks": blocks,
    })
}

fn emoji(n: &Notification) -> &'static str {
    use crate::config::Priority::*;
    match n.priority {
        P0 => ":red_circle:",
        P1 => ":large_orange_circle:",
        P2 => ":large_green_circle:",
        P3 => ":white_circle:",
    }
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
