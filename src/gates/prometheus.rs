//! The prometheus gate: an instant query whose value must stay within `min`/`max`.
//!
//! How an answer is read (`/api/v1/query`, Prometheus HTTP API):
//! - `status: "error"` (HTTP 400/422/503 carry it too) fails, quoting `errorType` and `error`.
//! - `vector`: every series is judged; one series out of bounds fails the gate and the detail
//!   names its labels. `scalar`: one value. `matrix` (a range selector in an instant query):
//!   each series' last sample is judged. `string`: fails, a number is needed.
//! - Values are strings: `"NaN"`, `"+Inf"`, `"-Inf"` included. A NaN series (`0/0`: no traffic)
//!   is no data, like `result: []` or `result: null`; when no series has a number left,
//!   `on_empty` decides.

use std::time::Duration;

use serde_json::Value;

use crate::config::placeholder::Vars;
use crate::config::{OnEmpty, PrometheusGate};

use super::http::fetch;
use super::probe::ProbeResult;

/// Probes a prometheus gate once.
pub fn probe(gate: &PrometheusGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let url = query_url(&vars.render(&gate.url), &vars.render(&gate.query));
    match fetch("GET", &url, &[], timeout) {
        Ok(answer) => evaluate(gate, answer.status, &answer.body),
        Err(why) if why.host_not_found => {
            ProbeResult::broken(format!("prometheus at {}: {why}", vars.render(&gate.url)))
        }
        Err(why) => ProbeResult::fail(format!("prometheus at {}: {why}", vars.render(&gate.url))),
    }
}

/// `{base}/api/v1/query?query=<query, percent-encoded>`.
pub fn query_url(base: &str, query: &str) -> String {
    format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        percent_encode(query)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so PromQL's `{`, `"`, `=~`,
/// `+` and spaces reach Prometheus unchanged.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    /// `{code="500",region="lhr"}`, or empty for a scalar or a label-less series.
    labels: String,
    value: f64,
}

/// Judges Prometheus's answer (its HTTP status and body) against the gate's thresholds.
pub fn evaluate(gate: &PrometheusGate, http_status: u16, body: &str) -> ProbeResult {
    let samples = match parse_answer(http_status, body) {
        Ok(s) => s,
        Err(why) if is_config_fault(http_status, body) => return ProbeResult::broken(why),
        Err(why) => return ProbeResult::fail(why),
    };
    let total = samples.len();
    let numbers: Vec<Sample> = samples.into_iter().filter(|s| !s.value.is_nan()).collect();
    if numbers.is_empty() {
        let what = if total == 0 {
            "query returned no data".to_string()
        } else {
            "query returned NaN (no data)".to_string()
        };
        return match gate.on_empty {
            OnEmpty::Pass => ProbeResult::pass(format!("{what}; on_empty = pass")),
            OnEmpty::Fail => ProbeResult::fail(format!("{what}; on_empty = fail")),
        };
    }
    let breaks = |s: &Sample| -> Option<String> {
        match (gate.min, gate.max) {
            (_, Some(max)) if s.value > max => {
                Some(format!("{} > max {}", fmt_value(s.value), fmt_value(max)))
            }
            (Some(min), _) if s.value < min => {
                Some(format!("{} < min {}", fmt_value(s.value), fmt_value(min)))
            }
            _ => None,
        }
    };
    let broken: Vec<(&Sample, String)> = numbers
        .iter()
        .filter_map(|s| breaks(s).map(|why| (s, why)))
        .collect();
    if let Some((first, why)) = broken.first() {
        let mut detail = format!("value {why}");
        if !first.labels.is_empty() {
            detail.push(' ');
            detail.push_str(&first.labels);
        }
        if broken.len() > 1 {
            detail.push_str(&format!(" (and {} more series)", broken.len() - 1));
        }
        return ProbeResult::fail(detail);
    }
    // Passing: show the value closest to a threshold.
    let worst = match gate.max {
        Some(_) => numbers.iter().max_by(|a, b| a.value.total_cmp(&b.value)),
        None => numbers.iter().min_by(|a, b| a.value.total_cmp(&b.value)),
    }
    .expect("numbers is not empty");
    let bounds = match (gate.min, gate.max) {
        (Some(lo), Some(hi)) => format!("within [{}, {}]", fmt_value(lo), fmt_value(hi)),
        (Some(lo), None) => format!(">= min {}", fmt_value(lo)),
        (None, Some(hi)) => format!("<= max {}", fmt_value(hi)),
        (None, None) => "(no threshold)".to_string(),
    };
    let mut detail = format!("value {} {bounds}", fmt_value(worst.value));
    if !worst.labels.is_empty() {
        detail.push(' ');
        detail.push_str(&worst.labels);
    }
    if numbers.len() > 1 {
        detail.push_str(&format!(" (worst of {} series)", numbers.len()));
    }
    ProbeResult::pass(detail)
}

/// Whether a failed answer says the gate is broken rather than the region unhealthy: the
/// server called the query `bad_data`, or refused the request with a 4xx (a wrong path, no
/// permission). 408 and 429 are the server being busy, and 422 (`execution`: too many
/// samples, a query timeout) depends on the data at hand: none of them says the gate is wrong.
pub(crate) fn is_config_fault(http_status: u16, body: &str) -> bool {
    let bad_data = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|j| {
            j.get("errorType")
                .and_then(Value::as_str)
                .map(|t| t == "bad_data")
        })
        .unwrap_or(false);
    bad_data || ((400..500).contains(&http_status) && !matches!(http_status, 408 | 422 | 429))
}

/// Prometheus's answer envelope (`{"status": "success", "data": …}`) as JSON, or why it is not
/// a successful answer: not its JSON, an `error` with its `errorType` and message, or another
/// status. Shared by every reader of the HTTP API (the gate, the judge).
pub fn envelope(http_status: u16, body: &str) -> Result<Value, String> {
    let json: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            let start: String = body.trim().chars().take(80).collect();
            return Err(if start.is_empty() {
                format!("prometheus answered HTTP {http_status} with an empty body")
            } else {
                format!("prometheus answered HTTP {http_status} with a body that is not its JSON: {start:?}")
            });
        }
    };
    match json.get("status").and_then(Value::as_str) {
        Some("success") => Ok(json),
        Some("error") => {
            let kind = json
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let msg = json
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            Err(format!(
                "prometheus error ({kind}, HTTP {http_status}): {msg}"
            ))
        }
        other => Err(format!(
            "prometheus answered HTTP {http_status} with status {}",
            other.map_or_else(|| "missing".to_string(), |s| format!("{s:?}"))
        )),
    }
}

/// The samples of an answer, or why there are none to judge.
fn parse_answer(http_status: u16, body: &str) -> Result<Vec<Sample>, String> {
    let json = envelope(http_status, body)?;
    let malformed = || format!("prometheus answered HTTP {http_status} without data.result");
    let data = json
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(malformed)?;
    let result_type = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data.get("result").ok_or_else(malformed)?;
    if result.is_null() {
        return Ok(Vec::new());
    }
    match result_type {
        "scalar" => Ok(vec![Sample {
            labels: String::new(),
            value: sample_value(result)?,
        }]),
        "vector" => series(result, |s| s.get("value")),
        // Last sample of each series: the newest value is what the gate is about.
        "matrix" => series(result, |s| {
            s.get("values").and_then(|v| v.as_array()?.last())
        }),
        "string" => Err("query returned a string, not a number".into()),
        other => Err(format!(
            "prometheus answered an unknown resultType {other:?}"
        )),
    }
}

fn series<'a>(
    result: &'a Value,
    pick: impl Fn(&'a Value) -> Option<&'a Value>,
) -> Result<Vec<Sample>, String> {
    let Some(items) = result.as_array() else {
        return Err("prometheus answered a result that is not a list".into());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let labels = fmt_labels(item.get("metric"));
        match pick(item) {
            Some(v) => out.push(Sample {
                labels,
                value: sample_value(v)?,
            }),
            // A series without samples carries no number: no data.
            None => out.push(Sample {
                labels,
                value: f64::NAN,
            }),
        }
    }
    Ok(out)
}

/// `[<unix time>, "<value>"]` → the value.
fn sample_value(v: &Value) -> Result<f64, String> {
    let raw = v
        .as_array()
        .and_then(|pair| pair.get(1))
        .ok_or_else(|| format!("prometheus answered a malformed sample {v}"))?;
    let text = match raw {
        Value::String(s) => s.as_str(),
        Value::Number(n) => return n.as_f64().ok_or_else(|| format!("bad number {n}")),
        other => return Err(format!("prometheus answered a malformed value {other}")),
    };
    parse_float(text)
        .ok_or_else(|| format!("prometheus answered a value that is not a number: {text:?}"))
}

/// Prometheus writes floats as Go does: `NaN`, `+Inf`, `-Inf`, `1e-05`.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// `{code="500",region="lhr"}` (with the metric name in front when there is one).
fn fmt_labels(metric: Option<&Value>) -> String {
    let Some(map) = metric.and_then(Value::as_object) else {
        return String::new();
    };
    let name = map.get("__name__").and_then(Value::as_str).unwrap_or("");
    let mut pairs: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| *k != "__name__").collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let inner = pairs
        .iter()
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");
    if inner.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{inner}}}")
    }
}

/// A value as a person reads it: `0.0833`, `12`, `+Inf`, `1.5e-7`.
pub(crate) fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e-4 && v.abs() < 1e15 {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(min: Option<f64>, max: Option<f64>, on_empty: OnEmpty) -> PrometheusGate {
        PrometheusGate {
            url: "http://prom:9090".into(),
            query: "q".into(),
            min,
            max,
            on_empty,
        }
    }

    fn max(m: f64) -> PrometheusGate {
        gate(None, Some(m), OnEmpty::Fail)
    }

    fn vector(series: &[(&str, &str)]) -> String {
        let items: Vec<String> = series
            .iter()
            .map(|(region, v)| {
                format!(r#"{{"metric":{{"region":"{region}"}},"value":[1700000000.123,"{v}"]}}"#)
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            items.join(",")
        )
    }

    #[test]
    fn query_is_percent_encoded() {
        assert_eq!(
            query_url("http://p:9090/", r#"sum(x{code=~"5.."}) + 1"#),
            "http://p:9090/api/v1/query?query=sum%28x%7Bcode%3D~%225..%22%7D%29%20%2B%201"
        );
    }

    #[test]
    fn scalar_within_and_beyond_max() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.01"]}}"#;
        let r = evaluate(&max(0.05), 200, body);
        assert_eq!(r, ProbeResult::pass("value 0.01 <= max 0.05"));
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.08333333"]}}"#;
        assert_eq!(
            evaluate(&max(0.05), 200, body),
            ProbeResult::fail("value 0.0833 > max 0.05")
        );
    }

    #[test]
    fn vector_names_the_breaking_series() {
        let body = vector(&[("nrt", "0.01"), ("lhr", "0.083"), ("sin", "0.2")]);
        let r = evaluate(&max(0.05), 200, &body);
        assert_eq!(
            r,
            ProbeResult::fail(r#"value 0.083 > max 0.05 {region="lhr"} (and 1 more series)"#)
        );
        let r = evaluate(&max(0.5), 200, &body);
        assert_eq!(
            r,
            ProbeResult::pass(
                r#"value 0.2 <= max 0.05 {region="sin"} (worst of 3 series)"#
                    .replace("0.05", "0.5")
            )
        );
    }

    #[test]
    fn min_threshold() {
        let g = gate(Some(10.0), None, OnEmpty::Fail);
        assert_eq!(
            evaluate(&g, 200, &vector(&[("lhr", "3")])),
            ProbeResult::fail(r#"value 3 < min 10 {region="lhr"}"#)
        );
        assert!(evaluate(&g, 200, &vector(&[("lhr", "+Inf")])).pass);
        assert!(!evaluate(&g, 200, &vector(&[("lhr", "-Inf")])).pass);
    }

    #[test]
    fn infinity_breaks_max() {
        let r = evaluate(&max(0.05), 200, &vector(&[("lhr", "+Inf")]));
        assert_eq!(
            r,
            ProbeResult::fail(r#"value +Inf > max 0.05 {region="lhr"}"#)
        );
    }

    #[test]
    fn nan_and_empty_results_follow_on_empty() {
        for body in [
            vector(&[("lhr", "NaN")]),
            vector(&[]),
            r#"{"status":"success","data":{"resultType":"vector","result":null}}"#.to_string(),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#.to_string(),
        ] {
            let fail = evaluate(&gate(None, Some(0.05), OnEmpty::Fail), 200, &body);
            assert!(!fail.pass, "{body}");
            assert!(fail.detail.contains("on_empty = fail"), "{}", fail.detail);
            let pass = evaluate(&gate(None, Some(0.05), OnEmpty::Pass), 200, &body);
            assert!(pass.pass, "{body}");
            assert!(pass.detail.contains("on_empty = pass"), "{}", pass.detail);
        }
    }

    #[test]
    fn a_nan_series_beside_numbers_is_ignored() {
        let body = vector(&[("ams", "NaN"), ("lhr", "0.01")]);
        assert_eq!(
            evaluate(&max(0.05), 200, &body),
            ProbeResult::pass(r#"value 0.01 <= max 0.05 {region="lhr"}"#)
        );
    }

    #[test]
    fn matrix_uses_each_series_last_sample() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"api"},"values":[[1,"0"],[2,"1"]]}]}}"#;
        assert_eq!(
            evaluate(&gate(Some(1.0), None, OnEmpty::Fail), 200, body),
            ProbeResult::pass(r#"value 1 >= min 1 up{job="api"}"#)
        );
    }

    #[test]
    fn error_status_quotes_prometheus() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}"#;
        let r = evaluate(&max(0.05), 400, body);
        assert!(!r.pass);
        assert_eq!(
            r.detail,
            r#"prometheus error (bad_data, HTTP 400): invalid parameter "query": 1:5: parse error: unclosed left parenthesis"#
        );
    }

    #[test]
    fn bad_data_and_4xx_are_the_gates_fault_a_5xx_is_not() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let r = evaluate(&max(0.05), 400, bad);
        assert!(!r.pass && r.config_fault, "{r:?}");
        assert!(evaluate(&max(0.05), 404, "404 page not found").config_fault);
        let busy = r#"{"status":"error","errorType":"unavailable"}"#;
        assert!(!evaluate(&max(0.05), 503, busy).config_fault);
        assert!(!evaluate(&max(0.05), 429, "slow down").config_fault);
        let heavy = r#"{"status":"error","errorType":"execution","error":"too many samples"}"#;
        assert!(!evaluate(&max(0.05), 422, heavy).config_fault);
        assert!(!evaluate(&max(0.05), 200, &vector(&[("lhr", "0.5")])).config_fault);
    }

    #[test]
    fn error_bodies_of_any_http_status_are_read() {
        let body = r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}"#;
        let r = evaluate(&max(0.05), 422, body);
        assert_eq!(
            r,
            ProbeResult::fail("prometheus error (execution, HTTP 422): query processing would load too many samples into memory")
        );
        let r = evaluate(
            &max(0.05),
            503,
            r#"{"status":"error","errorType":"unavailable"}"#,
        );
        assert_eq!(
            r,
            ProbeResult::fail("prometheus error (unavailable, HTTP 503): no message")
        );
    }

    #[test]
    fn garbage_never_passes() {
        for (status, body) in [
            (200, "<html>proxy error</html>"),
            (502, ""),
            (200, "{}"),
            (200, r#"{"status":"success"}"#),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":{}}}"#,
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}"#,
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"abc"]}]}}"#,
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
            ),
            (200, "[1,2"),
        ] {
            let r = evaluate(&gate(None, Some(0.05), OnEmpty::Pass), status, body);
            assert!(!r.pass, "{body} passed: {}", r.detail);
        }
        let r = evaluate(&max(0.05), 200, "<html>proxy error</html>");
        assert!(r.detail.contains("not its JSON"), "{}", r.detail);
    }

    #[test]
    fn values_read_as_people_write_them() {
        assert_eq!(fmt_value(0.0833333), "0.0833");
        assert_eq!(fmt_value(12.0), "12");
        assert_eq!(fmt_value(0.5), "0.5");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_value(1.5e-7), "1.500e-7");
        assert_eq!(parse_float("1e-05"), Some(1e-5));
    }
}
