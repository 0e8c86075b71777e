//! Gates that read real monitoring (issue 15 item 5): `alertmanager` against a real
//! Alertmanager on loopback, `json` against a loopback HTTP server.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shipgate::config::placeholder::Vars;
use shipgate::config::Gate;
use shipgate::exec::Cancel;
use shipgate::gates::{probe, ProbeCtx, ProbeResult};

use crate::common::alertmanager::{alertmanager_bin, Alertmanager};
use crate::common::code;
use crate::common::http::{Reply, Server};
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::process::wait_for;

/// Parses `[gate.g]` with `body` in a minimal pipeline, or returns the config error.
fn try_gate(body: &str) -> Result<Gate, String> {
    let text = format!(
        "[app]\nname = \"web\"\n\n[target]\nadapter = \"exec\"\n\n[target.exec]\ndeploy = [\"true\"]\n\n\
         [[stage]]\nname = \"canary\"\nregions = [\"lhr\"]\ngates = [\"g\"]\n\n[gate.g]\n{body}\n"
    );
    shipgate::config::parse(Path::new("pipeline.toml"), &text, None)
        .map(|c| c.gates["g"].clone())
        .map_err(|e| e.render(false))
}

fn gate(body: &str) -> Gate {
    try_gate(body).unwrap_or_else(|e| panic!("config does not parse: {e}"))
}

fn run(gate: &Gate, region: &str) -> ProbeResult {
    let cancel = Cancel::new();
    let ctx = ProbeCtx::new(".".into(), &cancel);
    let vars = Vars::new()
        .with("app", "web")
        .with("version", "v2")
        .with("region", region)
        .with("stage", "canary");
    probe(gate, &vars, &ctx)
}

const MATCHERS: &str = r#"matchers = ['region="{region}"', 'severity=~"critical|page"']"#;

/// A critical alert for lhr posted to a real Alertmanager trips the gate in lhr only: nrt
/// (with only a warning, which the matchers leave out) passes. As a preflight gate, the same
/// alert blocks a deploy before anything changes.
#[test]
fn a_firing_alert_trips_the_alertmanager_gate_for_its_region_only() {
    let Some(bin) = alertmanager_bin() else {
        if std::env::var("SHIPGATE_SKIP_ALERTMANAGER").as_deref() == Ok("1") {
            return;
        }
        panic!("alertmanager is not installed (apt-get install prometheus-alertmanager), or set SHIPGATE_SKIP_ALERTMANAGER=1");
    };
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(&bin, dir.path());
    let g = gate(&format!(
        "type = \"alertmanager\"\nurl = \"{}\"\n{MATCHERS}\nseverity = \"P0\"",
        am.url
    ));
    let before = run(&g, "lhr");
    assert!(before.pass, "{}", before.detail);
    am.post_alerts(&json!([
        {"labels": {"alertname": "HighErrorRate", "region": "lhr", "severity": "critical"}},
        {"labels": {"alertname": "DiskFilling", "region": "nrt", "severity": "warning"}}
    ]));
    let tripped = wait_for("the lhr alert fires", Duration::from_secs(20), |last| {
        let r = run(&g, "lhr");
        *last = r.detail.clone();
        (!r.pass).then_some(r)
    });
    assert!(!tripped.config_fault, "{tripped:?}");
    assert!(
        tripped.detail.starts_with(r#"1 alert(s) firing matching region="lhr", severity=~"critical|page": "HighErrorRate"{"#),
        "{}",
        tripped.detail
    );
    assert!(
        tripped.detail.contains(r#"severity="critical""#),
        "{}",
        tripped.detail
    );
    let nrt = run(&g, "nrt");
    assert!(nrt.pass, "a warning is not a page: {}", nrt.detail);
    let ewr = run(&g, "ewr");
    assert!(ewr.pass, "{}", ewr.detail);

    // A preflight on it: lhr is in an incident, so nothing is deployed.
    let p = exec_project(&format!(
        "{}[[stage]]\nname = \"canary\"\nregions = [\"lhr\", \"nrt\"]\npreflight = [\"alerts\"]\n\n\
         [gate.alerts]\ntype = \"alertmanager\"\nurl = \"{}\"\n{MATCHERS}\nseverity = \"P0\"\n",
        exec_header(),
        am.url
    ));
    let d = p.run(&["deploy", "--version", "v2"]);
    assert_eq!(d.code, code::BLOCKED, "{}", d.stderr);
    assert!(
        d.stderr
            .contains("preflight gate `alerts` tripped in lhr (running v1): 1 alert(s) firing"),
        "{}",
        d.stderr
    );
    assert!(!d.stderr.contains("tripped in nrt"), "{}", d.stderr);
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v1".into(), "v1".into()));
}

/// A matcher Alertmanager could not parse (here a regex that does not compile) is a config
/// error at its line and column, and a gate without matchers (any alert anywhere) is refused.
#[test]
fn matchers_are_checked_at_load_with_their_line_and_column() {
    let e = try_gate(
        "type = \"alertmanager\"\nurl = \"http://am:9093\"\nmatchers = ['severity=~\"(critical\"']",
    )
    .unwrap_err();
    assert!(
        e.contains("pipeline.toml:18:13: matcher `severity=~\"(critical\"` has an invalid regex"),
        "{e}"
    );
    let e = try_gate("type = \"alertmanager\"\nurl = \"http://am:9093\"").unwrap_err();
    assert!(e.contains("alertmanager gate `g` has no `matchers`"), "{e}");
}

/// The json gate against a loopback server: the value at the path is compared, per region.
#[test]
fn the_json_gate_tests_the_body_at_a_jsonpath() {
    let server = Server::start(|req| {
        let db = if req.path.contains("region=lhr") {
            "degraded"
        } else {
            "ok"
        };
        Reply::new(
            200,
            &format!(r#"{{"checks":{{"db":{{"status":"{db}","lag_seconds":4}}}}}}"#),
        )
        .header("Content-Type", "application/json")
    });
    let g = gate(&format!(
        "type = \"json\"\nurl = \"{}/health?region={{region}}\"\npath = \"$.checks.db.status\"\nequals = \"ok\"",
        server.url
    ));
    let r = run(&g, "nrt");
    assert!(r.pass, "{}", r.detail);
    assert!(
        r.detail.ends_with(r#", $.checks.db.status = "ok""#),
        "{}",
        r.detail
    );
    let r = run(&g, "lhr");
    assert!(!r.pass);
    assert!(
        r.detail
            .ends_with(r#"$.checks.db.status = "degraded" (expected "ok")"#),
        "{}",
        r.detail
    );
    let lag = gate(&format!(
        "type = \"json\"\nurl = \"{}/health\"\npath = \"$.checks.db.lag_seconds\"\nmax = 2.0",
        server.url
    ));
    let r = run(&lag, "nrt");
    assert!(
        !r.pass && r.detail.ends_with("$.checks.db.lag_seconds = 4 > max 2"),
        "{}",
        r.detail
    );

    let e = try_gate(
        "type = \"json\"\nurl = \"http://x/health\"\npath = \"$.checks[\"\nequals = \"ok\"",
    )
    .unwrap_err();
    assert!(
        e.contains("pipeline.toml:18:8: invalid JSONPath `$.checks[`"),
        "{e}"
    );
    let e = try_gate("type = \"json\"\nurl = \"http://x/health\"\npath = \"$.a\"").unwrap_err();
    assert!(e.contains("has neither `equals` nor `min`/`max`"), "{e}");
}
