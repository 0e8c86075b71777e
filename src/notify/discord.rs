//! The Discord webhook message: `content` plus one embed coloured by priority.

use super::{facts, Notification};
use crate::config::Priority;
use serde_json::{json, Value};

/// Discord's limits: content 2000 characters, embed title 256, description 4096, field 1024.
const CONTENT_MAX: usize = 2000;
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_MAX: usize = 1024;

/// P0 red, P1 orange, P2 green, P3 grey.
pub fn color(priority: Priority) -> u32 {
    match priority {
        Priority::P0 => 0xE0_1E_1E,
        Priority::P1 => 0xF2_8C_28,
        Priority::P2 => 0x2E_B8_4B,
        Priority::P3 => 0x95_A5_A6,
    }
}

pub fn payload(app: &str, n: &Notification) -> Value {
    let mut fields: Vec<Value> = facts(n)
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": super::truncate(&value, FIELD_MAX), "inline": true}))
        .collect();
    let mut embed = json!({
        "title": super::truncate(&n.title, TITLE_MAX),
        "color": color(n.priority),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if !n.message.trim().is_empty() {
        embed["description"] = super::truncate(&n.message, DESCRIPTION_MAX).into();
    }
    if let Some(url) = super::run_url(n) {
        embed["url"] = url.clone().into();
        fields.push(json!({"name": "Run", "value": format!("[view run]({url})"), "inline": false}));
    }
    if !fields.is_empty() {
        embed["fields"] = fields.into();
    }
    let mut footer = format!("{} · {app}", n.priority.as_str());
    if let Some(id) = &n.deploy_id {
        footer.push_str(&format!(" · deploy {id}"));
    }
    embed["footer"] = json!({"text": footer});
    json!({
        "content": super::truncate(&format!("**[{}] {}**", n.priority.as_str(), n.title), CONTENT_MAX),
        "embeds": [embed],
        // Never ping @everyone or a role because a message happened to contain one.
        "allowed_mentions": {"parse": []},
    })
}
