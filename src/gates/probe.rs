//! One probe of one gate: dispatch to the probe of its type, and the shape of every detail.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::placeholder::Vars;
use crate::config::{Gate, GateKind};
use crate::exec::Cancel;

use super::{alertmanager, command, dns, http, json, judge, prometheus, tcp};

/// The outcome of one probe: pass or fail, and a one-line human detail
/// (`HTTP 503 in 41 ms`, `error rate 0.083 > max 0.05 {region="lhr"}`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProbeResult {
    pub pass: bool,
    pub detail: String,
    /// Neither a pass nor a failure: too little data to judge (a judge gate below
    /// `min_samples`). The gate watcher counts it as neither.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inconclusive: bool,
    /// The failure cannot depend on the version (a bad query, a 4xx from the monitoring
    /// server, its host does not resolve): the gate is broken, the region was not judged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_fault: bool,
}

impl ProbeResult {
    /// A passing result; the detail is made one line and redacted.
    pub fn pass(detail: impl AsRef<str>) -> Self {
        ProbeResult {
            pass: true,
            detail: one_line(detail.as_ref()),
            ..Default::default()
        }
    }
    /// A failing result; the detail is made one line and redacted.
    pub fn fail(detail: impl AsRef<str>) -> Self {
        ProbeResult {
            pass: false,
            detail: one_line(detail.as_ref()),
            ..Default::default()
        }
    }
    /// An inconclusive result (`pass` is false, but it is no failure); the detail is made one
    /// line and redacted.
    pub fn inconclusive(detail: impl AsRef<str>) -> Self {
        ProbeResult {
            pass: false,
            detail: one_line(detail.as_ref()),
            inconclusive: true,
            ..Default::default()
        }
    }
    /// A failure of the gate itself, not of the region (see [`ProbeResult::config_fault`]).
    pub fn broken(detail: impl AsRef<str>) -> Self {
        ProbeResult {
            pass: false,
            detail: one_line(detail.as_ref()),
            config_fault: true,
            ..Default::default()
        }
    }
}

/// What a probe needs besides the gate.
pub struct ProbeCtx<'a> {
    /// Command gates run here (the config file's directory).
    pub cwd: PathBuf,
    pub cancel: &'a Cancel,
    /// Judge gates: the regions of the stages after the probed region's (the `later-stages`
    /// baseline).
    pub later_regions: Vec<String>,
    /// Judge gates: when the probed region's deploy finished (its window starts there);
    /// `None` outside a deploy.
    pub deployed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Judge gates: the end of the window; `None` is now (`judge backtest` replays the past).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> ProbeCtx<'a> {
    /// A context for probes outside a deploy: no deploy time, evaluated now.
    pub fn new(cwd: PathBuf, cancel: &'a Cancel) -> Self {
        ProbeCtx {
            cwd,
            cancel,
            later_regions: Vec::new(),
            deployed_at: None,
            at: None,
        }
    }
}

/// Probes `gate` once, its templates rendered with `vars`, bounded by `gate.timeout`. Never
/// panics, whatever the server answers.
pub fn probe(gate: &Gate, vars: &Vars, ctx: &ProbeCtx<'_>) -> ProbeResult {
    if ctx.cancel.is_cancelled() {
        return ProbeResult::fail("not probed: cancelled");
    }
    match &gate.kind {
        GateKind::Http(h) => http::probe(h, gate.timeout, vars),
        GateKind::Dns(d) => dns::probe(d, gate.timeout, vars),
        GateKind::Tcp(t) => tcp::probe(t, gate.timeout, vars),
        GateKind::Prometheus(p) => prometheus::probe(p, gate.timeout, vars),
        GateKind::Command(c) => command::probe(c, gate.timeout, vars, ctx),
        GateKind::Judge(j) => judge::probe(j, gate.timeout, vars, ctx),
        GateKind::Alertmanager(a) => alertmanager::probe(a, gate.timeout, vars),
        GateKind::Json(j) => json::probe(j, gate.timeout, vars),
    }
}

/// Longest detail kept: a detail is one line of a log, a history record and a chat message.
const MAX_DETAIL_CHARS: usize = 300;

/// Makes `text` one redacted line: control characters and runs of whitespace become one
/// space, and it is cut at [`MAX_DETAIL_CHARS`] with an ellipsis.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_DETAIL_CHARS + 4));
    let mut last_space = false;
    for c in crate::redact::redact(text).chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        out.push(c);
    }
    let out = out.trim();
    if out.chars().count() > MAX_DETAIL_CHARS {
        let cut: String = out.chars().take(MAX_DETAIL_CHARS).collect();
        format!("{cut}…")
    } else {
        out.to_string()
    }
}

/// `41 ms`, `2.4 s`: how long something took, as a person reads it.
pub(crate) fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A configured duration as it is written in `pipeline.toml` (`2s`, `1m 30s`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_one_line_and_bounded() {
        assert_eq!(one_line("a\n  b\r\n\tc "), "a b c");
        let long = "x".repeat(1000);
        let d = one_line(&long);
        assert_eq!(d.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(d.ends_with('…'));
    }

    #[test]
    fn elapsed_reads_naturally() {
        assert_eq!(fmt_elapsed(Duration::from_millis(41)), "41 ms");
        assert_eq!(fmt_elapsed(Duration::from_millis(12_345)), "12.3 s");
    }

    #[test]
    fn a_cancelled_probe_fails_without_io() {
        let cancel = Cancel::new();
        cancel.cancel();
        let gate = Gate {
            name: "db".into(),
            kind: GateKind::Tcp(crate::config::TcpGate {
                address: "127.0.0.1:1".into(),
            }),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            delay: Duration::ZERO,
            severity: crate::config::Severity::P0,
            failures: 1,
        };
        let ctx = ProbeCtx::new(PathBuf::from("."), &cancel);
        let r = probe(&gate, &Vars::new(), &ctx);
        assert!(!r.pass);
        assert!(r.detail.contains("cancelled"), "{}", r.detail);
    }
}
