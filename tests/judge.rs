//! The judge gate (issue 15) against a real Prometheus serving deterministic series backfilled
//! with promtool: a canary 50 % worse trips, an equal one passes, sparse errors on the canary
//! against a clean baseline trip (Kayenta passes them), too few samples are inconclusive as
//! `on_inconclusive` says, and `judge backtest` scores a history.
//!
//! Series are constant in time over [now − 20m, now + 20m] (Prometheus serves backfilled
//! blocks a little ahead of the clock too), so a deploy run now reads them through its real
//! clock; the backtest and the sparse-errors probe use fixed windows in the past.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::common::code;
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::prometheus::{backfill, prometheus_bin, start_prometheus, PrometheusGuard};

const ERRORS: &str = r#"sum(increase(http_requests_total{code="500",region="{region}"}[15s]))"#;
const REQUESTS: &str = r#"sum(increase(http_requests_total{region="{region}"}[15s]))"#;

/// Per-second traffic of one region over a time range: requests and the errors among them.
#[derive(Clone, Copy)]
struct Traffic {
    requests: f64,
    errors: f64,
}

/// OpenMetrics for `http_requests_total{region, code}` of each region, one point a second
/// over [from, to]; `traffic(region, t)` gives the per-second rates at `t`.
fn openmetrics(
    regions: &[&str],
    from: i64,
    to: i64,
    traffic: impl Fn(&str, i64) -> Traffic,
) -> String {
    let mut out = String::from("# TYPE http_requests counter\n");
    for region in regions {
        for code in ["200", "500"] {
            let mut total = 0.0;
            for t in from..=to {
                out.push_str(&format!(
                    "http_requests_total{{code=\"{code}\",region=\"{region}\"}} {total} {t}\n"
                ));
                let r = traffic(region, t);
                total += if code == "500" {
                    r.errors
                } else {
                    r.requests - r.errors
                };
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Prometheus serving `regions`' series, or `None` when the suite is told to skip it.
fn prometheus_with(
    dir: &Path,
    regions: &[&str],
    from: i64,
    to: i64,
    traffic: impl Fn(&str, i64) -> Traffic,
) -> Option<PrometheusGuard> {
    let bin = prometheus_bin("the judge tests")?;
    backfill(dir, &openmetrics(regions, from, to, traffic));
    Some(start_prometheus(&bin, dir, None))
}

/// Constant traffic around now: lhr (the canary) `canary`, ewr (the baseline) `baseline`.
fn prometheus_now(dir: &Path, canary: Traffic, baseline: Traffic) -> Option<PrometheusGuard> {
    let now = Utc::now().timestamp();
    prometheus_with(dir, &["lhr", "ewr"], now - 1200, now + 1200, move |r, _| {
        if r == "lhr" {
            canary
        } else {
            baseline
        }
    })
}

/// A canary stage (lhr) judged against the later stage (ewr), on the exec adapter.
fn pipeline(url: &str, timeout: &str, extra: &str) -> String {
    format!(
        "{}[[stage]]\nname = \"canary\"\nregions = [\"lhr\"]\ngates = [\"judge\"]\n\
         timeout = \"{timeout}\"\nverify_rollback = false\n\n\
         [[stage]]\nname = \"main\"\nregions = [\"ewr\"]\n\n\
         [gate.judge]\ntype = \"judge\"\nurl = \"{url}\"\nmethod = \"rate\"\n\
         errors = '{ERRORS}'\nrequests = '{REQUESTS}'\nbaseline = \"later-stages\"\n\
         window = \"10m\"\nstep = \"15s\"\nmax_ratio = 1.2\nconfidence = 0.95\n\
         min_samples = 50\ninterval = \"200ms\"\nseverity = \"P0\"\n{extra}",
        exec_header()
    )
}

fn traffic(requests: f64, errors: f64) -> Traffic {
    Traffic { requests, errors }
}

/// The detail of the last `gate` record of the judge in lhr.
fn last_gate_detail(p: &crate::common::Project) -> (String, String) {
    let g = p
        .kind("gate")
        .into_iter()
        .rfind(|r| r["region"] == "lhr" && r["gate"] == "judge")
        .expect("a gate record of the judge in lhr");
    (
        g["result"].as_str().unwrap_or_default().to_string(),
        g["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_canary_50_percent_worse_than_the_later_stage_trips_the_judge() {
    let dir = tempfile::tempdir().unwrap();
    // 1.5 % errors on the canary, 1 % on the baseline, 2,000 requests a second each.
    let Some(prom) = prometheus_now(dir.path(), traffic(2000.0, 30.0), traffic(2000.0, 20.0))
    else {
        return;
    };
    let p = exec_project(&pipeline(&prom.url, "20s", ""));
    let run = p.run(&["deploy", "--version", "v2"]).expect(code::FAILED);
    assert_eq!(p.live("lhr"), "v1", "rolled back\n{}", run.stderr);
    assert_eq!(p.live("ewr"), "v1", "the later stage was never deployed");
    let (result, detail) = last_gate_detail(&p);
    assert_eq!(result, "tripped", "{detail}");
    // n, the rates, the ratio, the p-value and the verdict, on one line.
    assert!(detail.starts_with("rate: canary "), "{detail}");
    assert!(detail.contains("(1.5%) vs baseline "), "{detail}");
    assert!(detail.contains("(1%), ratio 1.5 (max 1.2), p="), "{detail}");
    assert!(
        detail.ends_with("< 0.05: canary higher beyond max_ratio 1.2"),
        "{detail}"
    );
    let story = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    assert!(
        story.contains("gate judge [P0] in lhr on v2: tripped (1/1) — rate: canary "),
        "{story}"
    );
}

#[test]
fn a_canary_equal_to_the_later_stage_passes_the_judge() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus_now(dir.path(), traffic(2000.0, 20.0), traffic(2000.0, 20.0))
    else {
        return;
    };
    let p = exec_project(&pipeline(&prom.url, "20s", ""));
    let run = p.run(&["deploy", "--version", "v2"]).expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v2", "{}", run.stderr);
    assert_eq!(p.live("ewr"), "v2");
    let (result, detail) = last_gate_detail(&p);
    assert_eq!(result, "pass", "{detail}");
    assert!(detail.contains("ratio 1 (max 1.2)"), "{detail}");
    assert!(detail.contains(">= 0.05: within max_ratio 1.2"), "{detail}");
}

/// lhr serves half a request a second: under `min_samples` for as long as the stage runs.
fn too_few_samples(
    mode: &str,
    expect: i32,
) -> (
    crate::common::Project,
    crate::common::Run,
    PrometheusGuard,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let prom = prometheus_now(dir.path(), traffic(0.5, 0.0), traffic(2000.0, 20.0))
        .expect("prometheus (checked by the caller)");
    let p = exec_project(&pipeline(
        &prom.url,
        "3s",
        &format!("on_inconclusive = \"{mode}\"\n"),
    ));
    let run = p.run(&["deploy", "--version", "v2"]).expect(expect);
    (p, run, prom, dir)
}

#[test]
fn too_few_samples_with_on_inconclusive_wait_fails_at_the_stage_timeout_saying_why() {
    if prometheus_bin("the judge tests").is_none() {
        return;
    }
    let (p, run, _prom, _dir) = too_few_samples("wait", code::FAILED);
    assert_eq!(p.live("lhr"), "v1", "rolled back");
    let stage = p
        .kind("stage")
        .into_iter()
        .rfind(|r| r["stage"] == "canary" && r["status"] != "started")
        .expect("the canary's stage record");
    let error = stage["regions_detail"]["lhr"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("stage canary timed out after 3s before lhr was healthy (gate judge: judge inconclusive for "),
        "{error}\n{}",
        run.stderr
    );
    assert!(
        error.contains(" canary requests < min_samples 50 (canary "),
        "{error}"
    );
    // Recorded once as inconclusive, never as a failure (a P0 gate trips on one failure).
    let results: Vec<String> = p
        .kind("gate")
        .iter()
        .filter(|r| r["region"] == "lhr")
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results, vec!["inconclusive"], "{}", run.stderr);
}

#[test]
fn too_few_samples_with_on_inconclusive_pass_passes_at_once() {
    if prometheus_bin("the judge tests").is_none() {
        return;
    }
    let (p, _run, _prom, _dir) = too_few_samples("pass", code::SUCCESS);
    assert_eq!(p.live("lhr"), "v2");
    let (result, detail) = last_gate_detail(&p);
    assert_eq!(result, "pass");
    assert!(detail.starts_with("inconclusive: "), "{detail}");
    assert!(detail.ends_with("; on_inconclusive = pass"), "{detail}");
}

#[test]
fn too_few_samples_with_on_inconclusive_fail_trips_at_once() {
    if prometheus_bin("the judge tests").is_none() {
        return;
    }
    let (p, _run, _prom, _dir) = too_few_samples("fail", code::FAILED);
    assert_eq!(p.live("lhr"), "v1");
    let (result, detail) = last_gate_detail(&p);
    assert_eq!(result, "tripped");
    assert!(
        detail.contains(" canary requests < min_samples 50"),
        "{detail}"
    );
    assert!(detail.ends_with("; on_inconclusive = fail"), "{detail}");
}

/// The judge gate of [`pipeline`], parsed as `shipgate` parses it.
fn judge_gate(url: &str, extra: &str) -> shipgate::config::Config {
    shipgate::config::parse(
        Path::new("pipeline.toml"),
        &pipeline(url, "20s", extra),
        None,
    )
    .unwrap_or_else(|e| panic!("config does not parse: {}", e.render(false)))
}

#[test]
fn sparse_errors_on_the_canary_against_a_clean_baseline_trip_the_judge() {
    // Kayenta's reported miss: 0 errors on the baseline, 12 on the canary over 5,000 requests
    // each in the window — two "similar" near-zero rates to a test on the rates, 12 of 12
    // errors on one side to the count test.
    let dir = tempfile::tempdir().unwrap();
    let end = (Utc::now().timestamp() / 60) * 60 - 3600;
    let start = end - 600;
    let Some(prom) = prometheus_with(dir.path(), &["lhr", "ewr"], start - 60, end + 60, |r, _| {
        traffic(5000.0 / 600.0, if r == "lhr" { 12.0 / 600.0 } else { 0.0 })
    }) else {
        return;
    };
    let config = judge_gate(&prom.url, "");
    let gate = &config.gates["judge"];
    let cancel = shipgate::exec::Cancel::new();
    let mut ctx = shipgate::gates::ProbeCtx::new(".".into(), &cancel);
    ctx.later_regions = config.later_regions("lhr");
    ctx.deployed_at = DateTime::<Utc>::from_timestamp(start, 0);
    ctx.at = DateTime::<Utc>::from_timestamp(end, 0);
    let vars = shipgate::config::placeholder::Vars::new().with("region", "lhr");
    let r = shipgate::gates::probe(gate, &vars, &ctx);
    assert!(!r.pass && !r.inconclusive, "{}", r.detail);
    assert!(r.detail.starts_with("rate: canary 12/5000 errors (0.24%) vs baseline 0/5000 (0%), ratio +Inf (max 1.2), p=0.0007 < 0.05"), "{}", r.detail);
}

/// `records` as `history.jsonl` lines in the ledger's chained format: each with `schema`,
/// `id`, `ts` and `prev`, the SHA-256 of the line before (zeros for the first).
fn chained_history(records: &[(i64, serde_json::Value)]) -> String {
    use sha2::Digest;
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, (t, body)) in records.iter().enumerate() {
        let mut line = serde_json::json!({
            "schema": 1,
            "id": format!("01JBACKTEST{i:015}"),
            "ts": rfc3339(*t),
            "prev": prev,
        });
        for (k, v) in body.as_object().unwrap() {
            line[k] = v.clone();
        }
        let text = serde_json::to_string(&line).unwrap();
        prev = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The records of one deploy of the canary stage over [start, end]: a trip at `trip` when it
/// was rolled back.
fn deploy_records(
    id: &str,
    status: &str,
    start: i64,
    end: i64,
    trip: Option<i64>,
) -> Vec<(i64, serde_json::Value)> {
    use serde_json::json;
    let region_end = match status {
        "success" => "success",
        "rolled_back" => "rolled_back",
        _ => "failed",
    };
    let mut out = vec![
        (
            start,
            json!({"kind": "deploy", "deploy_id": id, "app": "demo", "version": "v2",
                   "status": "started", "stages": ["canary", "main"], "start_time": rfc3339(start)}),
        ),
        (
            start,
            json!({"kind": "stage", "deploy_id": id, "stage": "canary", "version": "v2",
                   "regions": ["lhr"], "status": "started", "start_time": rfc3339(start),
                   "regions_detail": {"lhr": {"status": "deploying", "previous_version": "v1"}}}),
        ),
    ];
    if let Some(t) = trip {
        out.push((
            t,
            json!({"kind": "gate", "deploy_id": id, "stage": "canary", "region": "lhr",
                   "gate": "errors", "severity": "P0", "result": "tripped",
                   "detail": "HTTP 503", "consecutive_failures": 1}),
        ));
    }
    out.push((
        end,
        json!({"kind": "stage", "deploy_id": id, "stage": "canary", "version": "v2",
               "regions": ["lhr"], "status": if status == "success" { "success" } else { status },
               "start_time": rfc3339(start), "end_time": rfc3339(end),
               "regions_detail": {"lhr": {"status": region_end, "previous_version": "v1"}}}),
    ));
    out.push((
        end,
        json!({"kind": "deploy", "deploy_id": id, "app": "demo", "version": "v2",
               "status": status, "stages": ["canary", "main"], "start_time": rfc3339(start),
               "end_time": rfc3339(end)}),
    ));
    out
}

#[test]
fn judge_backtest_counts_the_rollbacks_it_would_have_caught_and_the_healthy_deploys_it_would_have_failed(
) {
    // Five deploys in 10-minute slots from t0 (two hours ago), one before --since. The canary
    // is 50 % worse in the slots of d2 (rolled back: caught) and d4 (healthy: a false
    // failure), equal in d1 (healthy: passed) and d3 (rolled back for another reason:
    // missed); d5's deploy failed (replayed, not scored).
    let t0 = (Utc::now().timestamp() / 60) * 60 - 7200;
    let m = 60;
    let worse = |t: i64| (t0 + 450..t0 + 1050).contains(&t) || (t0 + 1650..t0 + 2250).contains(&t);
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = prometheus_with(dir.path(), &["lhr", "ewr"], t0 - 300, t0 + 3000, |r, t| {
        if r == "lhr" && worse(t) {
            traffic(2000.0, 30.0)
        } else {
            traffic(2000.0, 20.0)
        }
    }) else {
        return;
    };
    let p = exec_project(&pipeline(&prom.url, "20s", ""));
    let mut records = deploy_records(
        "d0-before-since",
        "rolled_back",
        t0 - 40 * m,
        t0 - 35 * m,
        Some(t0 - 37 * m),
    );
    records.extend(deploy_records(
        "d1-healthy-equal",
        "success",
        t0,
        t0 + 5 * m,
        None,
    ));
    records.extend(deploy_records(
        "d2-rolled-back-worse",
        "rolled_back",
        t0 + 10 * m,
        t0 + 15 * m,
        Some(t0 + 13 * m),
    ));
    records.extend(deploy_records(
        "d3-rolled-back-equal",
        "rolled_back",
        t0 + 20 * m,
        t0 + 25 * m,
        Some(t0 + 23 * m),
    ));
    records.extend(deploy_records(
        "d4-healthy-worse",
        "success",
        t0 + 30 * m,
        t0 + 35 * m,
        None,
    ));
    records.extend(deploy_records(
        "d5-failed",
        "failed",
        t0 + 40 * m,
        t0 + 45 * m,
        None,
    ));
    p.write(".shipgate/history.jsonl", &chained_history(&records));
    p.run(&["history", "verify"]).expect(code::SUCCESS);

    let out = p
        .run(&["judge", "backtest", "judge", "--since", "150m"])
        .expect(code::SUCCESS)
        .stdout;
    assert!(
        out.contains("judge `judge` replayed over 5 deploy(s) since "),
        "{out}"
    );
    assert!(!out.contains("d0-before-since"), "{out}");
    let row = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("d1-healthy-equal"), "d1-healthy-equal v2 success pass");
    assert_eq!(
        row("d2-rolled-back-worse"),
        "d2-rolled-back-worse v2 rolled_back fail"
    );
    assert_eq!(
        row("d3-rolled-back-equal"),
        "d3-rolled-back-equal v2 rolled_back pass"
    );
    assert_eq!(row("d4-healthy-worse"), "d4-healthy-worse v2 success fail");
    assert_eq!(row("d5-failed"), "d5-failed v2 failed pass");
    assert!(
        out.contains(
            "caught 1 of 2 recorded rollback(s); would have failed 1 of 2 healthy deploy(s); \
             1 not scored (neither rolled back nor healthy)"
        ),
        "{out}"
    );

    let json = p
        .run(&[
            "--format", "json", "judge", "backtest", "judge", "--since", "150m",
        ])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(json["score"]["rollbacks"], 2, "{json}");
    assert_eq!(json["score"]["caught"], 1);
    assert_eq!(json["score"]["healthy"], 2);
    assert_eq!(json["score"]["false_failures"], 1);
    assert_eq!(json["score"]["not_scored"], 1);
    let d2 = &json["deploys"][1];
    assert_eq!(d2["deploy_id"], "d2-rolled-back-worse");
    // Judged up to the trip, not to the end of its stage.
    assert_eq!(
        d2["regions"][0]["start"],
        rfc3339(t0 + 10 * m).replace(".000Z", "Z")
    );
    assert_eq!(
        d2["regions"][0]["end"],
        rfc3339(t0 + 13 * m).replace(".000Z", "Z")
    );
    assert!(
        d2["regions"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("ratio 1.5 (max 1.2)"),
        "{d2}"
    );
}

#[test]
fn judge_backtest_refuses_a_gate_that_is_not_a_judge_or_used_by_no_stage() {
    let p = exec_project(&pipeline("http://127.0.0.1:1", "20s", ""));
    let run = p.run(&["judge", "backtest", "judg"]).expect(code::USAGE);
    assert!(run.stderr.contains("unknown gate `judg`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `judge`?"),
        "{}",
        run.stderr
    );
    let p = exec_project(&format!(
        "{}[gate.health]\ntype = \"command\"\nrun = [\"true\"]\n",
        pipeline("http://127.0.0.1:1", "20s", "")
    ));
    let run = p.run(&["judge", "backtest", "health"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("gate `health` is a command gate, not a judge"),
        "{}",
        run.stderr
    );
    let p = exec_project(
        &pipeline("http://127.0.0.1:1", "20s", "").replace("gates = [\"judge\"]\n", ""),
    );
    let run = p.run(&["judge", "backtest", "judge"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("no stage uses gate `judge`"),
        "{}",
        run.stderr
    );
}

#[test]
fn judge_fields_out_of_range_are_refused_with_their_place_in_the_file() {
    let p = exec_project(
        &pipeline(
            "http://127.0.0.1:1",
            "20s",
            "direction = \"up\"\non_inconclusive = \"maybe\"\n",
        )
        .replace("confidence = 0.95", "confidence = 1.5")
        .replace("max_ratio = 1.2", "max_ratio = 0.8")
        .replace("baseline = \"later-stages\"", "baseline = \"later-stage\"")
        .replace("step = \"15s\"", "step = \"20m\""),
    );
    let err = p.run(&["validate"]).expect(code::USAGE).stderr;
    for needle in [
        "`confidence` must be between 0 and 1 (exclusive), not 1.5",
        "`max_ratio` must be at least 1, not 0.8",
        "invalid baseline `later-stage`",
        "did you mean `later-stages`?",
        "`step` (20m) is longer than `window` (10m)",
        "invalid direction `up`",
        "invalid on_inconclusive `maybe`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains("pipeline.toml:"), "{err}");
    assert!(
        !p.path().join(".shipgate").exists() || p.history().is_empty(),
        "nothing recorded"
    );

    // The method decides the queries; each must select the region.
    let p = exec_project(
        &pipeline("http://127.0.0.1:1", "20s", "")
            .replace("method = \"rate\"", "method = \"mann-whitney\""),
    );
    let err = p.run(&["validate"]).expect(code::USAGE).stderr;
    assert!(
        err.contains("`errors` is not used by method = \"mann-whitney\""),
        "{err}"
    );
    assert!(err.contains("`[gate.judge]` has no `query`"), "{err}");
    let p = exec_project(
        &pipeline("http://127.0.0.1:1", "20s", "").replace(",region=\"{region}\"}[15s]", "}[15s]"),
    );
    let err = p.run(&["validate"]).expect(code::USAGE).stderr;
    assert!(
        err.contains("judge `errors` has no `{region}`: the canary and the baseline would read the same series"),
        "{err}"
    );
}

#[test]
fn a_judge_on_the_last_stage_needs_a_baseline_other_than_later_stages() {
    let config = pipeline("http://127.0.0.1:1", "20s", "")
        .replace("[[stage]]\nname = \"main\"\nregions = [\"ewr\"]\n", "");
    let p = exec_project(&config);
    let err = p.run(&["validate"]).expect(code::USAGE).stderr;
    assert!(
        err.contains(
            "judge gate `judge` compares with later stages, but `canary` is the last stage"
        ),
        "{err}"
    );
    // A region of its own stage is no baseline: it deploys too.
    let p = exec_project(
        &pipeline("http://127.0.0.1:1", "20s", "")
            .replace("baseline = \"later-stages\"", "baseline = [\"lhr\"]"),
    );
    let err = p.run(&["validate"]).expect(code::USAGE).stderr;
    assert!(
        err.contains("cannot use baseline region `lhr` is a region of `canary` itself"),
        "{err}"
    );
    // Itself before its deploy, or a later region, is fine.
    for baseline in ["\"self-before\"", "[\"ewr\"]"] {
        let p = exec_project(&config.replace(
            "baseline = \"later-stages\"",
            &format!("baseline = {baseline}"),
        ));
        if baseline == "[\"ewr\"]" {
            // ewr is in no stage of this pipeline.
            let err = p.run(&["validate"]).expect(code::USAGE).stderr;
            assert!(
                err.contains("`ewr` is not a region of the pipeline"),
                "{err}"
            );
        } else {
            p.run(&["validate"]).expect(code::SUCCESS);
        }
    }
}

/// A judge's queries are PromQL too: a typo in one is refused by `validate` and `deploy` with
/// its place in the file, before anything changes.
#[test]
fn a_promql_typo_in_a_judge_query_is_refused_before_anything_changes() {
    let typo = REQUESTS.replace("[15s]))", "[15s])");
    let p = exec_project(&pipeline("http://127.0.0.1:9", "30s", "").replace(REQUESTS, &typo));
    let line = p
        .read("pipeline.toml")
        .lines()
        .position(|l| l.starts_with("requests = "))
        .unwrap()
        + 1;
    for args in [&["validate"][..], &["deploy", "--version", "v2"][..]] {
        let run = p.run(args).expect(code::USAGE);
        assert!(
            run.stderr.contains(&format!("pipeline.toml:{line}:"))
                && run
                    .stderr
                    .contains("invalid PromQL in `requests` of gate `judge`"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(p.calls().is_empty(), "nothing ran: {:?}", p.calls());
    assert_eq!(p.live("lhr"), "v1");
}

/// A judge whose server refuses its requests (a wrong path: HTTP 404) is a broken gate: the
/// deploy names the gate as misconfigured, returns the region, and its rollback is not
/// "verified" by it.
#[test]
fn a_judge_the_server_refuses_is_a_broken_gate_not_an_unhealthy_region() {
    let refusing = crate::common::http::Server::fixed(404, "404 page not found\n");
    let p = exec_project(&pipeline(&refusing.url, "30s", ""));
    let d = p.run(&["deploy", "--version", "v2", "--format", "json"]);
    assert_eq!(d.code, code::FAILED, "{}", d.stderr);
    let result = d.json();
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("gate `judge` is misconfigured") && message.contains("HTTP 404"),
        "{result:#}"
    );
    assert_eq!(result["status"], "rolled_back", "{result:#}");
    assert_eq!(p.live("lhr"), "v1");
    let last = p.kind("deploy").pop().unwrap();
    assert_ne!(last["needs_human"], true, "{last:#}");
}
