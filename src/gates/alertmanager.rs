//! The alertmanager gate: trips while an alert matching its matchers fires.
//!
//! `GET {url}/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=…` (one `filter`
//! per matcher, Alertmanager's own matcher syntax) answers the alerts that fire and page
//! someone. Any alert in the answer fails the probe and the detail names them (labels come
//! from outside: each is shown quoted and the detail is made one redacted line). A 4xx (a
//! matcher Alertmanager refuses, a wrong path) or a host that does not resolve is a broken
//! gate ([`ProbeResult::broken`]), not an unhealthy region.

use std::time::Duration;

use serde_json::Value;

use crate::config::placeholder::Vars;
use crate::config::AlertmanagerGate;

use super::http::fetch;
use super::probe::ProbeResult;
use super::prometheus::percent_encode;

/// Alerts named in a detail at most.
const NAMED: usize = 3;

/// The query URL for `matchers` (already rendered).
pub fn alerts_url(base: &str, matchers: &[String]) -> String {
    let mut url = format!(
        "{}/api/v2/alerts?active=true&silenced=false&inhibited=false",
        base.trim_end_matches('/')
    );
    for m in matchers {
        url.push_str("&filter=");
        url.push_str(&percent_encode(m));
    }
    url
}

/// Probes an alertmanager gate once.
pub fn probe(gate: &AlertmanagerGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let base = vars.render(&gate.url);
    let matchers: Vec<String> = gate.matchers.iter().map(|m| vars.render(m)).collect();
    let answer = match fetch("GET", &alerts_url(&base, &matchers), &[], timeout) {
        Ok(a) => a,
        Err(why) if why.host_not_found => {
            return ProbeResult::broken(format!("alertmanager at {base}: {why}"))
        }
        Err(why) => return ProbeResult::fail(format!("alertmanager at {base}: {why}")),
    };
    evaluate(answer.status, &answer.body, &matchers)
}

/// Judges Alertmanager's answer.
pub fn evaluate(status: u16, body: &str, matchers: &[String]) -> ProbeResult {
    let start: String = body.trim().chars().take(120).collect();
    if (400..500).contains(&status) && !matches!(status, 408 | 429) {
        return ProbeResult::broken(format!(
            "alertmanager refused the query (HTTP {status}): {start}"
        ));
    }
    if status != 200 {
        return ProbeResult::fail(format!("alertmanager answered HTTP {status}: {start}"));
    }
    let Ok(Value::Array(alerts)) = serde_json::from_str::<Value>(body) else {
        return ProbeResult::fail(format!(
            "alertmanager answered a body that is not its list of alerts: {start:?}"
        ));
    };
    let filter = matchers.join(", ");
    if alerts.is_empty() {
        return ProbeResult::pass(format!("no alert firing matching {filter}"));
    }
    let named: Vec<String> = alerts.iter().take(NAMED).map(describe).collect();
    let more = if alerts.len() > NAMED {
        format!(" (and {} more)", alerts.len() - NAMED)
    } else {
        String::new()
    };
    ProbeResult::fail(format!(
        "{} alert(s) firing matching {filter}: {}{more}",
        alerts.len(),
        named.join(", ")
    ))
}

/// `"HighErrorRate"{region="lhr",severity="critical"}`: the name and labels, quoted.
fn describe(alert: &Value) -> String {
    let Some(labels) = alert.get("labels").and_then(Value::as_object) else {
        return "an alert without labels".into();
    };
    let name = labels
        .get("alertname")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    let mut pairs: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{}={:?}", k.escape_debug(), v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    format!("{name:?}{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_become_filters() {
        assert_eq!(
            alerts_url("http://am:9093/", &[r#"region="lhr""#.into()]),
            "http://am:9093/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=region%3D%22lhr%22"
        );
    }

    #[test]
    fn firing_alerts_fail_and_are_named_quoted() {
        let body = r#"[{"labels":{"alertname":"HighErrorRate","region":"lhr","severity":"critical\u001b[2J"}}]"#;
        let r = evaluate(200, body, &[r#"region="lhr""#.into()]);
        assert!(!r.pass && !r.config_fault);
        assert!(
            r.detail.contains(r#""HighErrorRate"{region="lhr","#),
            "{}",
            r.detail
        );
        assert!(!r.detail.contains('\u{1b}'), "{}", r.detail);
        assert!(evaluate(200, "[]", &[]).pass);
        assert!(evaluate(400, "bad matcher", &[]).config_fault);
        assert!(!evaluate(503, "", &[]).config_fault);
        assert!(!evaluate(200, "{}", &[]).pass);
    }
}
