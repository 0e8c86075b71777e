//! The http gate: one request, judged by status, body and latency.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::config::placeholder::Vars;
use crate::config::HttpGate;

use super::probe::{fmt_duration, fmt_elapsed, ProbeResult};

/// Redirects followed before the probe fails: enough for http→https→canonical host, few
/// enough that a redirect loop fails fast.
pub const MAX_REDIRECTS: u32 = 5;

/// Bytes of a response body read at most: a health endpoint that streams forever must not
/// exhaust memory, and `body_contains` only looks at this much.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// What a server answered.
pub(crate) struct Answer {
    pub status: u16,
    /// The first [`MAX_BODY_BYTES`] of the body, lossily decoded.
    pub body: String,
    /// From sending the request to the end of the (bounded) body.
    pub elapsed: Duration,
}

/// Why no answer came: one line, and whether the server's name did not resolve (which no
/// version of the app can change: a monitoring gate with such a URL is broken).
#[derive(Debug, Clone)]
pub(crate) struct FetchError {
    pub message: String,
    pub host_not_found: bool,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for FetchError {
    fn from(message: String) -> Self {
        FetchError {
            message,
            host_not_found: false,
        }
    }
}

/// Whether ureq's error says the host name does not exist (not a temporary resolver
/// failure, `EAI_AGAIN`, which may pass).
fn host_not_found(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => {
            let text = io.to_string();
            [
                "Name or service not known",
                "No address associated",
                "nodename nor servname",
            ]
            .iter()
            .any(|m| text.contains(m))
        }
        _ => false,
    }
}

/// Sends one request and reads the answer, whatever its status, all bounded by `timeout`.
/// The error is a one-line description of why no answer came.
pub(crate) fn fetch(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Answer, FetchError> {
    // A fresh agent per probe: no pooled connection hides a server that stopped accepting new
    // ones, and the latency includes connecting, as a user's first request would.
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // A 503 is an answer to judge, not an error that loses its status.
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(())
        .map_err(|e| FetchError::from(format!("invalid request to {url}: {e}")))?;
    let start = Instant::now();
    let mut response = agent.run(request).map_err(|e| FetchError {
        message: describe_error(&e, start.elapsed(), timeout),
        host_not_found: host_not_found(&e),
    })?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    if method != "HEAD" {
        let reader = response.body_mut().as_reader();
        if let Err(e) = reader.take(MAX_BODY_BYTES).read_to_end(&mut bytes) {
            let elapsed = start.elapsed();
            return Err(format!(
                "HTTP {status}, then reading the body failed after {}: {}",
                fmt_elapsed(elapsed),
                describe_io(&e, elapsed, timeout)
            )
            .into());
        }
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        elapsed: start.elapsed(),
    })
}

fn describe_error(e: &ureq::Error, elapsed: Duration, timeout: Duration) -> String {
    let why = match e {
        ureq::Error::Timeout(_) => format!("no answer within timeout {}", fmt_duration(timeout)),
        ureq::Error::TooManyRedirects => format!("more than {MAX_REDIRECTS} redirects"),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Io(io) => describe_io(io, elapsed, timeout),
        other => other.to_string(),
    };
    format!("{why} (after {})", fmt_elapsed(elapsed))
}

fn describe_io(e: &std::io::Error, elapsed: Duration, timeout: Duration) -> String {
    // ureq reports its own deadline as an io error when it fires inside a body read.
    if matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || elapsed >= timeout
    {
        return format!("no answer within timeout {}", fmt_duration(timeout));
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection early".into(),
        _ => e.to_string(),
    }
}

/// Renders the URL and headers with `vars` and fetches; a request that gets no answer is the
/// failed probe naming the method and URL. Shared by the http and json gates.
pub fn fetch_rendered<'a>(
    method: &str,
    url: &str,
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
    timeout: Duration,
    vars: &Vars,
) -> Result<Answer, ProbeResult> {
    let url = vars.render(url);
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (vars.render(k), vars.render(v)))
        .collect();
    fetch(method, &url, &headers, timeout)
        .map_err(|why| ProbeResult::fail(format!("{method} {url}: {why}")))
}

/// Probes an http gate once.
pub fn probe(gate: &HttpGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let answer = match fetch_rendered(&gate.method, &gate.url, &gate.headers, timeout, vars) {
        Ok(a) => a,
        Err(failed) => return failed,
    };
    let body_contains = gate.body_contains.as_ref().map(|b| vars.render(b));
    judge(gate, &answer, body_contains.as_deref())
}

/// Judges an answer: status first, then body, then latency; the detail always starts with
/// `HTTP <status> in <time>`.
fn judge(gate: &HttpGate, answer: &Answer, body_contains: Option<&str>) -> ProbeResult {
    let head = format!("HTTP {} in {}", answer.status, fmt_elapsed(answer.elapsed));
    let status_ok = if gate.expect_status.is_empty() {
        (200..300).contains(&answer.status)
    } else {
        gate.expect_status.contains(&answer.status)
    };
    if !status_ok {
        let expected = if gate.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            gate.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        return ProbeResult::fail(format!("{head} (expected {expected})"));
    }
    if let Some(needle) = body_contains {
        if !answer.body.contains(needle) {
            return ProbeResult::fail(format!(
                "{head}, body does not contain {needle:?} (starts {:?})",
                answer.body.chars().take(60).collect::<String>()
            ));
        }
    }
    if let Some(max) = gate.max_latency {
        if answer.elapsed > max {
            return ProbeResult::fail(format!(
                "{head}, slower than max_latency {}",
                fmt_duration(max)
            ));
        }
    }
    ProbeResult::pass(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn gate(expect: &[u16]) -> HttpGate {
        HttpGate {
            url: "http://x/health".into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            expect_status: expect.to_vec(),
            body_contains: None,
            max_latency: None,
        }
    }

    fn answer(status: u16, body: &str, ms: u64) -> Answer {
        Answer {
            status,
            body: body.into(),
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn any_2xx_passes_when_no_status_is_expected() {
        assert!(judge(&gate(&[]), &answer(204, "", 3), None).pass);
        let r = judge(&gate(&[]), &answer(503, "", 41), None);
        assert_eq!(r, ProbeResult::fail("HTTP 503 in 41 ms (expected 2xx)"));
    }

    #[test]
    fn expected_statuses_are_exact() {
        assert!(judge(&gate(&[404]), &answer(404, "", 1), None).pass);
        let r = judge(&gate(&[200, 204]), &answer(201, "", 1), None);
        assert_eq!(r.detail, "HTTP 201 in 1 ms (expected 200 or 204)");
    }

    #[test]
    fn body_and_latency_are_judged_after_status() {
        let r = judge(&gate(&[]), &answer(200, "degraded", 5), Some("ok"));
        assert!(!r.pass);
        assert!(r.detail.contains("does not contain \"ok\""), "{}", r.detail);
        let mut g = gate(&[]);
        g.max_latency = Some(Duration::from_millis(100));
        let r = judge(&g, &answer(200, "ok", 250), Some("ok"));
        assert_eq!(
            r.detail,
            "HTTP 200 in 250 ms, slower than max_latency 100ms"
        );
        assert!(judge(&g, &answer(200, "ok", 50), Some("ok")).pass);
    }
}
