//! The json gate: an HTTP endpoint whose JSON body is tested at a JSONPath (RFC 9535, with
//! `serde_json_path`): the value found must equal `equals`, or lie within `min`/`max`.
//!
//! A non-2xx status fails, as the http gate does; so do a body that is not JSON, a path that
//! matches nothing, and a value of the wrong kind. When the path matches several values,
//! every one must satisfy the comparison (the detail names the first that does not).

use std::time::Duration;

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::config::placeholder::Vars;
use crate::config::JsonGate;

use super::http::fetch_rendered;
use super::probe::{fmt_elapsed, ProbeResult};

/// Probes a json gate once.
pub fn probe(gate: &JsonGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let answer = match fetch_rendered(&gate.method, &gate.url, &gate.headers, timeout, vars) {
        Ok(a) => a,
        Err(failed) => return failed,
    };
    let head = format!("HTTP {} in {}", answer.status, fmt_elapsed(answer.elapsed));
    if !(200..300).contains(&answer.status) {
        return ProbeResult::fail(format!("{head} (expected 2xx)"));
    }
    let equals = gate.equals.as_ref().map(|e| vars.render(e));
    let verdict = judge(gate, equals.as_deref(), &answer.body);
    let detail = format!("{head}, {}", verdict.detail);
    if verdict.pass {
        ProbeResult::pass(detail)
    } else {
        ProbeResult::fail(detail)
    }
}

/// Judges a body.
pub fn judge(gate: &JsonGate, equals: Option<&str>, body: &str) -> ProbeResult {
    let path = match JsonPath::parse(&gate.path) {
        Ok(p) => p,
        // Checked while loading; kept for a gate built by hand.
        Err(e) => return ProbeResult::broken(format!("invalid JSONPath {}: {e}", gate.path)),
    };
    let json: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            let start: String = body.trim().chars().take(60).collect();
            return ProbeResult::fail(format!("body is not JSON (starts {start:?})"));
        }
    };
    let found = path.query(&json).all();
    if found.is_empty() {
        return ProbeResult::fail(format!("{} matched nothing", gate.path));
    }
    for value in &found {
        if let Some(why) = breaks(gate, equals, value) {
            return ProbeResult::fail(format!("{} = {} {why}", gate.path, shown(value)));
        }
    }
    ProbeResult::pass(format!("{} = {}", gate.path, shown(found[0])))
}

/// Why `value` fails the comparison, if it does.
fn breaks(gate: &JsonGate, equals: Option<&str>, value: &Value) -> Option<String> {
    if let Some(want) = equals {
        let same = match value {
            Value::String(s) => s == want,
            other => serde_json::from_str::<Value>(want).ok().as_ref() == Some(other),
        };
        if !same {
            return Some(format!("(expected {want:?})"));
        }
    }
    if gate.min.is_none() && gate.max.is_none() {
        return None;
    }
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(n) = number else {
        return Some("(not a number)".into());
    };
    match (gate.min, gate.max) {
        (Some(min), _) if n < min => Some(format!("< min {min}")),
        (_, Some(max)) if n > max => Some(format!("> max {max}")),
        _ => None,
    }
}

/// A value as JSON, cut short: it came from a server.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(path: &str, equals: Option<&str>, min: Option<f64>, max: Option<f64>) -> JsonGate {
        JsonGate {
            url: "http://x".into(),
            method: "GET".into(),
            headers: Default::default(),
            path: path.into(),
            equals: equals.map(str::to_string),
            min,
            max,
        }
    }

    #[test]
    fn equals_and_bounds() {
        let body = r#"{"checks":{"db":{"status":"ok","lag":3}},"ready":true}"#;
        let g = gate("$.checks.db.status", Some("ok"), None, None);
        assert_eq!(
            judge(&g, Some("ok"), body).detail,
            r#"$.checks.db.status = "ok""#
        );
        let r = judge(&g, Some("ok"), &body.replace("\"ok\"", "\"degraded\""));
        assert_eq!(
            r.detail,
            r#"$.checks.db.status = "degraded" (expected "ok")"#
        );
        assert!(
            judge(
                &gate("$.ready", Some("true"), None, None),
                Some("true"),
                body
            )
            .pass
        );
        let lag = gate("$.checks.db.lag", None, None, Some(2.0));
        assert_eq!(
            judge(&lag, None, body).detail,
            "$.checks.db.lag = 3 > max 2"
        );
        assert!(
            judge(
                &gate("$.checks.db.lag", None, Some(1.0), Some(5.0)),
                None,
                body
            )
            .pass
        );
        assert!(
            !judge(
                &gate("$.checks.db.status", None, Some(1.0), None),
                None,
                body
            )
            .pass
        );
        assert_eq!(
            judge(&gate("$.nope", Some("ok"), None, None), Some("ok"), body).detail,
            "$.nope matched nothing"
        );
        assert!(!judge(&g, Some("ok"), "<html>").pass);
    }
}
