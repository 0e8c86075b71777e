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
        "text": super::truncate(&format!("[{}] {}: {}", n.priority.as_str(), escape(&n.title), escape(&n.message)), SECTION_MAX),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_fallback_escapes_like_the_blocks() {
        let n = Notification {
            priority: crate::config::Priority::P0,
            title: "deploy failed: <!here>".into(),
            message: "see <https://evil.example|the fix> & more".into(),
            context: serde_json::json!({}),
            deploy_id: None,
        };
        let p = payload("demo", &n);
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            text,
            "[P0] deploy failed: &lt;!here&gt;: see &lt;https://evil.example|the fix&gt; &amp; more"
        );
        // Every mrkdwn text is escaped (the header is plain_text, which Slack never parses).
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(
            section,
            "see &lt;https://evil.example|the fix&gt; &amp; more"
        );
    }
}
