//! The judge's reads: Prometheus range queries (`/api/v1/query_range`) of one side, summed
//! (counts) or pooled (values).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::gates::http::fetch;
use crate::gates::prometheus::{is_config_fault, parse_float, percent_encode};

/// One range query: `[start, end]` every `step`.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step: Duration,
}

/// `{base}/api/v1/query_range?query=…&start=…&end=…&step=…` (times in Unix seconds).
pub fn range_url(base: &str, query: &str, range: &Range) -> String {
    format!(
        "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
        base.trim_end_matches('/'),
        percent_encode(query),
        unix(range.start),
        unix(range.end),
        range.step.as_secs_f64()
    )
}

fn unix(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// Every number the query answers over `range`, each series and point (NaN dropped: no data).
/// The first point is one `step` after the start, so points covering a step each (`[15s]` at
/// a 15 s step) cover the window once; a window shorter than a step is its end's one point.
pub fn values(
    base: &str,
    query: &str,
    range: &Range,
    timeout: Duration,
) -> Result<Vec<f64>, QueryError> {
    let step = chrono::Duration::from_std(range.step).unwrap_or(chrono::Duration::zero());
    let points = Range {
        start: (range.start + step).min(range.end),
        ..*range
    };
    let url = range_url(base, query, &points);
    let answer = fetch("GET", &url, &[], timeout).map_err(|why| QueryError {
        broken: why.host_not_found,
        why: format!("prometheus at {base}: {why}"),
    })?;
    parse_matrix(answer.status, &answer.body).map_err(|why| QueryError {
        broken: is_config_fault(answer.status, &answer.body),
        why,
    })
}

/// Why a query gave no numbers to judge; `broken` when the answer cannot depend on the
/// version (a bad query, a 4xx, a monitoring host that does not resolve: see
/// [`ProbeResult::broken`](crate::gates::ProbeResult::broken)).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub why: String,
    pub broken: bool,
}

impl From<String> for QueryError {
    fn from(why: String) -> Self {
        QueryError { why, broken: false }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// The values of a `matrix` answer, or why there are none.
pub fn parse_matrix(http_status: u16, body: &str) -> Result<Vec<f64>, String> {
    let json = crate::gates::prometheus::envelope(http_status, body)?;
    let data = &json["data"];
    let result = &data["result"];
    if result.is_null() {
        return Ok(Vec::new());
    }
    match data["resultType"].as_str() {
        Some("matrix") => {}
        Some(other) => return Err(format!("a range query answered a {other}, not a matrix")),
        None => {
            return Err(format!(
                "prometheus answered HTTP {http_status} without data.result"
            ))
        }
    }
    let Some(series) = result.as_array() else {
        return Err("prometheus answered a result that is not a list".into());
    };
    let mut out = Vec::new();
    for s in series {
        for point in s["values"].as_array().into_iter().flatten() {
            let raw = point.get(1).and_then(Value::as_str).unwrap_or("");
            match parse_float(raw) {
                Some(v) if v.is_nan() => {}
                Some(v) => out.push(v),
                None => {
                    return Err(format!(
                        "prometheus answered a value that is not a number: {raw:?}"
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// The one range `[d]` a query's selectors use (`increase(x[1m])` → 1m), when there is exactly
/// one: a count per point then covers `d`, and points `step` apart count each request `d /
/// step` times. `None` with no range, several different ones, or a subquery (`[5m:1m]`).
pub fn selector_range(query: &str) -> Option<Duration> {
    let mut found: Option<Duration> = None;
    let mut rest = query;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let inner = after[..close].trim();
        if inner.contains(':') {
            return None;
        }
        let d = humantime::parse_duration(inner).ok()?;
        match found {
            Some(f) if f != d => return None,
            _ => found = Some(d),
        }
        rest = &after[close + 1..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_url_carries_the_window() {
        let start = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
        let end = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        let url = range_url(
            "http://p:9090/",
            "sum(x{a=\"b\"})",
            &Range {
                start,
                end,
                step: Duration::from_secs(15),
            },
        );
        assert_eq!(
            url,
            "http://p:9090/api/v1/query_range?query=sum%28x%7Ba%3D%22b%22%7D%29&start=1700000000.500&end=1700000600.000&step=15"
        );
    }

    #[test]
    fn matrices_are_read_every_series_and_point() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"code":"500"},"values":[[1,"2"],[2,"NaN"],[3,"3.5"]]},
            {"metric":{"code":"503"},"values":[[1,"1"]]}]}}"#;
        assert_eq!(parse_matrix(200, body).unwrap(), vec![2.0, 3.5, 1.0]);
        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_matrix(200, empty).unwrap().is_empty());
        let err = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_matrix(400, err).unwrap_err(),
            "prometheus error (bad_data, HTTP 400): parse error"
        );
        assert!(parse_matrix(502, "<html>").is_err());
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_matrix(200, vector).is_err());
    }

    #[test]
    fn the_selector_range_is_found_when_there_is_one() {
        let q = r#"sum(increase(http_requests_total{code=~"5..",region="{region}"}[1m]))"#;
        assert_eq!(selector_range(q), Some(Duration::from_secs(60)));
        assert_eq!(
            selector_range("sum(a[1m]) / sum(b[1m])"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(selector_range("sum(a[1m]) / sum(b[5m])"), None);
        assert_eq!(selector_range("max_over_time(a[5m:1m])"), None);
        assert_eq!(selector_range("sum(a)"), None);
    }
}
