//! PromQL checked before anything changes (issue 15 item 4): parsed by `validate` and by
//! `deploy` before the lock, with file:line:col and the parser's message; confirmed by the
//! server's `/api/v1/format_query` when it answers.

use crate::common::code;
use crate::common::http::Server;
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::prometheus::{prometheus_bin, start_prometheus};

/// A pipeline whose canary is judged by a prometheus gate at `url` with `query`.
fn prometheus_pipeline(url: &str, query: &str) -> String {
    format!(
        "{}[[stage]]\nname = \"canary\"\nregions = [\"lhr\", \"nrt\"]\ngates = [\"errors\"]\n\n\
         [gate.errors]\ntype = \"prometheus\"\nurl = \"{url}\"\nquery = '{query}'\n\
         max = 0.05\ninterval = \"100ms\"\nfailures = 2\n",
        exec_header()
    )
}

/// The issue's defect: a PromQL syntax error passed `validate`; `deploy` then changed every
/// region, the gate tripped on Prometheus's `bad_data`, the rollback's verification tripped
/// on the same typo, and the run ended `rollback_failed` (exit 3) although every region was
/// back. Now both commands refuse it with exit 2, naming the line, and nothing changes.
#[test]
fn a_promql_typo_passed_validate_and_deploy_ended_rollback_failed() {
    // The server answers like Prometheus does to the typo, should shipgate ever ask it.
    let prom = Server::fixed(
        400,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:59: parse error: unclosed left parenthesis"}"#,
    );
    let typo = r#"sum(rate(http_requests_total{code=~"5..",region="{region}"}[1m])"#;
    let p = exec_project(&prometheus_pipeline(&prom.url, typo));

    let v = p.run(&["validate"]).expect(code::USAGE);
    let query_line = p
        .read("pipeline.toml")
        .lines()
        .position(|l| l.starts_with("query = "))
        .unwrap()
        + 1;
    assert!(
        v.stderr.contains(&format!(
            "pipeline.toml:{query_line}:9: invalid PromQL in gate `errors`"
        )),
        "{}",
        v.stderr
    );
    assert!(
        v.stderr.contains("unclosed"),
        "the parser's message: {}",
        v.stderr
    );

    let d = p.run(&["deploy", "--version", "v2"]).expect(code::USAGE);
    assert!(
        d.stderr.contains("invalid PromQL in gate `errors`"),
        "{}",
        d.stderr
    );
    assert!(
        !p.path().join("state/calls.log").exists(),
        "nothing may run: {:?}",
        p.calls()
    );
    assert_eq!(p.live("lhr"), "v1");
    assert_eq!(p.live("nrt"), "v1");
    assert!(
        !p.path().join(".shipgate/history.jsonl").exists(),
        "nothing recorded: {:?}",
        p.history()
    );
    assert!(
        prom.requests().is_empty(),
        "the typo never reaches the server"
    );
}

/// The server's own parser has the last word before the lock: a real Prometheus refuses a
/// function the parser shipgate carries knows (`sort_by_label`: unknown before Prometheus
/// 2.49, behind a feature flag since), so the deploy is exit 2 with nothing changed and the
/// server's message shown. A query it accepts goes through to a deploy.
#[test]
fn a_query_the_server_refuses_in_format_query_changes_nothing() {
    let Some(bin) = prometheus_bin("the format_query check") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&bin, dir.path(), None);
    let newer = r#"sort_by_label(sum by (region) (rate(http_requests_total{region="{region}"}[1m])), "region")"#;
    let p = exec_project(&prometheus_pipeline(&prom.url, newer));
    p.run(&["validate"]).expect(code::SUCCESS);
    let d = p.run(&["deploy", "--version", "v2"]).expect(code::USAGE);
    assert!(
        d.stderr.contains("gate `errors` (query, region lhr): ")
            && d.stderr.contains("refuses the query"),
        "{}",
        d.stderr
    );
    assert!(
        d.stderr.contains("sort_by_label"),
        "the server's message: {}",
        d.stderr
    );
    assert!(
        !p.path().join("state/calls.log").exists(),
        "{:?}",
        p.calls()
    );
    assert!(!p.path().join(".shipgate/history.jsonl").exists());

    let ok = exec_project(&prometheus_pipeline(
        &prom.url,
        r#"sum(rate(http_requests_total{region="{region}"}[1m])) or vector(0)"#,
    ));
    let d = ok.run(&["deploy", "--version", "v2"]);
    assert_eq!(d.code, code::SUCCESS, "{}", d.stderr);
    assert_eq!(ok.live("lhr"), "v2");
}

/// An unreachable server is no reason to refuse a deploy before it starts (the gates judge
/// it later): the check is skipped with a note.
#[test]
fn an_unreachable_server_skips_the_format_query_check() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = exec_project(&prometheus_pipeline(
        &format!("http://127.0.0.1:{port}"),
        r#"sum(rate(http_requests_total{region="{region}"}[1m]))"#,
    ));
    let d = p.run(&["deploy", "--version", "v2", "--dry-run"]);
    assert_eq!(d.code, code::SUCCESS, "{}", d.stderr);
    assert!(
        d.stderr.contains("cannot confirm the queries with"),
        "{}",
        d.stderr
    );
    let v = p.run(&["validate"]).expect(code::SUCCESS);
    assert!(!v.stderr.contains("invalid PromQL"), "{}", v.stderr);
}

/// A gate that breaks during the deploy (here a real Prometheus behind a wrong path prefix:
/// every query is a 404, which no version of the app can change) is a configuration failure:
/// the deploy stops and returns every changed region, even under `on_failure = "continue"`;
/// the rollback is not "verified" by the broken gate (rolled back, unverified: exit 1, not the
/// `rollback_failed` exit 3 of the issue), and the outcome names the gate, not the regions.
#[test]
fn a_gate_broken_during_the_deploy_is_named_and_the_rollback_is_unverified_not_failed() {
    let Some(bin) = prometheus_bin("the format_query check") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&bin, dir.path(), None);
    let config = prometheus_pipeline(
        &format!("{}/wrong-prefix", prom.url),
        r#"sum(rate(http_requests_total{region="{region}"}[1m])) or vector(0)"#,
    )
    .replace(
        "gates = [\"errors\"]",
        "gates = [\"errors\"]\non_failure = \"continue\"",
    );
    let p = exec_project(&config);
    let d = p.run(&["deploy", "--version", "v2", "--format", "json"]);
    assert_eq!(d.code, code::FAILED, "{}", d.stderr);
    let result = d.json();
    assert_eq!(result["status"], "rolled_back", "{result:#}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("gate `errors` is misconfigured: ")
            && message.contains("HTTP 404")
            && message.contains("the regions were not judged"),
        "{message}"
    );
    assert!(message.contains("unverified in lhr, nrt"), "{message}");
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v1".into(), "v1".into()));
    let rollback = p.kind("rollback");
    assert_eq!(rollback.len(), 1, "{rollback:?}");
    assert_eq!(rollback[0]["status"], "success", "{:#}", rollback[0]);
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "rolled_back", "{last:#}");
    assert_ne!(last["needs_human"], true, "{last:#}");
}
