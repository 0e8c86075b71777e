//! Regression tests for engine bugs found in review, named after what broke.

use std::time::{Duration, Instant};

use crate::common::code;
use crate::common::http::Blackhole;
use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::process::{signal, wait_until, SIGINT, SIGTERM};

const P0_GATE: &str = "severity = \"P1\"\nfailures = 2";

#[test]
fn a_gate_tripping_after_its_region_was_healthy_fails_the_stage() {
    let mut p = exec_project(&THREE_STAGES.replace(P0_GATE, "severity = \"P0\""));
    p.env("SLOW_REGIONS", "nrt");
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // lhr is healthy while nrt still deploys; then lhr's health goes bad.
    wait_until("lhr to pass its gate", || {
        p.kind("gate")
            .iter()
            .any(|g| g["region"] == "lhr" && g["result"] == "pass")
    });
    p.write("state/lhr.bad", "v2");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::FAILED), "{stderr}");
    assert_eq!(p.live("lhr"), "v1");
    assert_eq!(p.live("nrt"), "v1");
    assert_eq!(p.kind("deploy").pop().unwrap()["status"], "rolled_back");
}

#[test]
fn probes_cut_short_by_a_signal_are_not_gate_failures() {
    let mut p = exec_project(&THREE_STAGES.replace(P0_GATE, "severity = \"P0\""));
    p.env("HEALTH_SLEEP", "4");
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the canary deploys", || {
        p.calls().len() >= 2 && p.live("lhr") == "v2" && p.live("nrt") == "v2"
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::SIGINT),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tripped: Vec<_> = p
        .kind("gate")
        .into_iter()
        .filter(|g| g["result"] != "pass")
        .collect();
    assert!(
        tripped.is_empty(),
        "cancelled probes recorded as failures: {tripped:?}"
    );
    assert!(
        !p.audit()
            .iter()
            .any(|a| a["title"].as_str().unwrap_or("").contains("tripped")),
        "false P0 page: {:?}",
        p.audit()
    );
}

#[test]
fn a_dead_webhook_never_delays_the_rollback() {
    // A webhook that accepts connections and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", blackhole.local_addr().unwrap());
    let _hold = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in blackhole.incoming().flatten() {
            conns.push(c);
        }
    });
    let mut p = exec_project(&format!(
        "{THREE_STAGES}\n[notify.slack]\nwebhook_env = \"TEST_SLACK_URL\"\nmin_priority = \"P3\"\n"
    ));
    p.env("TEST_SLACK_URL", &url)
        .env("FAIL_GATE", "lhr")
        .env("SHIPGATE_HTTP_TIMEOUT_MS", "1500")
        .env("SHIPGATE_RETRY_BASE_MS", "1");
    let start = Instant::now();
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the rollback", || {
        p.calls().iter().any(|c| c.starts_with("rollback lhr"))
    });
    let to_rollback = start.elapsed();
    assert!(
        to_rollback < Duration::from_secs(4),
        "the rollback waited for the webhook: {to_rollback:?}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::FAILED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every notification is still an audit record, with its failure.
    let audit = p.audit();
    assert!(audit.len() >= 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|a| a["failed"].as_array().is_some_and(|f| !f.is_empty())),
        "{audit:?}"
    );
}

/// The scratch pipeline with a Slack sink (every priority) and an events sink that accept
/// connections and never answer; each HTTP attempt times out after `timeout_ms`.
fn dead_sinks_project(timeout_ms: u64) -> (crate::common::Project, [Blackhole; 2]) {
    let events = Blackhole::start();
    let slack = Blackhole::start();
    let mut p = exec_project(&format!(
        "{THREE_STAGES}
[notify.slack]
webhook_env = \"TEST_SLACK_URL\"
min_priority = \"P3\"

[events]
url_env = \"TEST_EVENTS_URL\"
format = \"plain\"
"
    ));
    p.env("TEST_SLACK_URL", &format!("{}/hook", slack.url))
        .env("TEST_EVENTS_URL", &format!("{}/events", events.url))
        .env("SHIPGATE_HTTP_TIMEOUT_MS", &timeout_ms.to_string())
        .env("SHIPGATE_RETRY_BASE_MS", "1");
    (p, [events, slack])
}

/// QA: with `[events]` and Slack pointed at a receiver that never answers, the start event was
/// delivered before stage 1 (45 s with the defaults), and the queued deliveries ran one after
/// another after the outcome was printed (minutes).
#[test]
fn dead_event_and_webhook_sinks_delay_neither_the_first_stage_nor_each_other() {
    // Each delivery gives up after 4 attempts of 2 s: about 8 s.
    let (p, _sinks) = dead_sinks_project(2000);
    let give_up = Duration::from_secs(8);
    let start = Instant::now();
    let child = p
        .command(&["deploy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first region's deploy", || {
        p.calls().iter().any(|c| c.starts_with("deploy lhr"))
    });
    let to_first_deploy = start.elapsed();
    // The start event is recorded only once its delivery has given up: not yet.
    assert!(
        p.kind("event").is_empty(),
        "stage 1 waited for the start event: {:?}",
        p.kind("event")
    );
    assert!(
        to_first_deploy < give_up,
        "stage 1 waited for the start event: {to_first_deploy:?}"
    );
    let out = child.wait_with_output().unwrap();
    let total = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::SUCCESS), "{stderr}");

    // 4 notifications and 2 events, each about 8 s: 48 s one after another.
    assert!(
        total < Duration::from_secs(30),
        "deliveries ran one after another: {total:?}\n{stderr}"
    );
    // The tail waits for the last deliveries, and says so once, after the outcome.
    let waiting: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("waiting for "))
        .collect();
    assert_eq!(waiting.len(), 1, "{stderr}");
    assert!(
        waiting[0].contains("to be delivered (up to ") && waiting[0].contains("event(s)"),
        "{stderr}"
    );
    // The verdict and its warnings are the answer, on stdout; the wait is said on stderr.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("deploy success"), "the verdict: {stdout}");
    let stderr = format!("{stderr}{stdout}");
    assert!(stderr.contains("start event not delivered"), "{stderr}");
    assert!(stderr.contains("success event not delivered"), "{stderr}");

    // Nothing is lost: both events in history, every notification in the audit trail, in
    // the order they were sent, each with its failure.
    let recorded = p.kind("event");
    let types: Vec<&str> = recorded
        .iter()
        .map(|e| e["event"]["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["start", "success"], "{recorded:?}");
    for e in &recorded {
        assert_eq!(e["delivered"], false, "{e}");
        assert_eq!(e["attempts"], 4, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains("no answer within 2s"),
            "{e}"
        );
    }
    let audit = p.audit();
    let titles: Vec<&str> = audit.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 4, "{audit:?}");
    assert!(titles[0].starts_with("deploy started"), "{titles:?}");
    assert!(titles[1].starts_with("stage canary promoted"), "{titles:?}");
    assert!(
        titles[2].starts_with("stage primary promoted"),
        "{titles:?}"
    );
    assert!(titles[3].starts_with("deployed demo v2"), "{titles:?}");
    for a in &audit {
        assert_eq!(a["delivered"], serde_json::json!([]), "{a}");
        assert_eq!(a["failed"][0]["sink"], "slack", "{a}");
        assert!(
            a["failed"][0]["error"]
                .as_str()
                .unwrap()
                .contains("no answer within 2s"),
            "{a}"
        );
    }
}

#[test]
fn a_signal_while_waiting_for_the_lock_exits_at_once() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "10");
    let mut holder = p.command(&["deploy", "--stage", "canary"]).spawn().unwrap();
    wait_until("the first deploy", || {
        p.read(".shipgate/history.jsonl").contains("\"started\"")
    });
    let waiter = p
        .command(&["deploy", "--stage", "canary", "--lock-wait", "60s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let start = Instant::now();
    signal(waiter.id(), SIGTERM);
    let out = waiter.wait_with_output().unwrap();
    // The holder runs for 10 s more: a waiter that ignored the signal would take that long.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(code::SIGTERM),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_manual_rollback_that_finishes_after_a_signal_is_not_a_failure() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    p.env("ROLLBACK_SLEEP", "2");
    let child = p
        .command(&["rollback", "--stage", "canary", "--yes"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the rollback", || {
        p.calls().iter().any(|c| c.starts_with("rollback"))
    });
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::SIGINT), "{stderr}");
    assert!(!stderr.contains("rollback failed"), "{stderr}");
    assert_eq!(p.kind("rollback").pop().unwrap()["status"], "success");
    assert!(
        !p.audit().iter().any(|a| a["priority"] == "P0"),
        "{:?}",
        p.audit()
    );
}

#[test]
fn exec_without_a_current_command_deploys_and_rolls_back_from_history() {
    let config = THREE_STAGES.replace("current = [\"./current.sh\", \"{region}\"]\n", "");
    assert_ne!(config, THREE_STAGES);
    let mut p = exec_project(&config);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("FAIL_GATE", "ewr")
        .env("BAD_VERSION", "v3");
    p.run(&["deploy"]).expect(code::FAILED);
    assert_eq!(
        p.live("lhr"),
        "v2",
        "rolled back to the version history recorded"
    );
    assert_eq!(p.live("ewr"), "v2");
}

#[test]
fn a_first_deploy_that_fails_keeps_its_known_version_and_exits_3() {
    let mut p = exec_project(THREE_STAGES);
    for r in ["lhr", "nrt"] {
        std::fs::remove_file(p.path().join("state").join(r)).unwrap();
    }
    p.env("FAIL_GATE", "lhr");
    let run = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    assert!(
        run.stderr.contains("nothing ran here before"),
        "{}",
        run.stderr
    );
    assert!(
        !p.calls().iter().any(|c| c.starts_with("rollback")),
        "{:?}",
        p.calls()
    );
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["lhr"]["version"], "v2", "{status}");
    let stage = p.kind("stage").pop().unwrap();
    assert_eq!(
        stage["status"], "failed",
        "a stage whose rollback failed is not rolled_back: {stage}"
    );
}

#[test]
fn a_region_rolled_back_by_rollback_region_is_not_rolled_back_twice() {
    let config = THREE_STAGES.replacen(
        "on_failure = \"rollback\"",
        "on_failure = \"rollback-region\"",
        1,
    );
    let mut p = exec_project(&config);
    p.env("FAIL_GATE", "lhr,ewr");
    p.run(&["deploy"]).expect(code::FAILED);
    let lhr_rollbacks = p
        .calls()
        .iter()
        .filter(|c| c.starts_with("rollback lhr"))
        .count();
    assert_eq!(lhr_rollbacks, 1, "{:?}", p.calls());
    assert_eq!(p.live("nrt"), "v1");
    assert_eq!(p.live("ewr"), "v1");
}

/// A signal while the finished deploy waits for slow deliveries (Ctrl-C, or the CI runner
/// cancelling before its SIGKILL) ends the wait at once; what was still being delivered is
/// recorded as not delivered, so no notification or event goes unrecorded. The lock is free
/// before that wait.
#[test]
fn a_signal_during_the_final_delivery_wait_records_the_rest_and_exits() {
    // Each delivery would take about 4 × 10 s to give up.
    let (p, _sinks) = dead_sinks_project(10_000);
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the deploy's outcome", || {
        p.read(".shipgate/history.jsonl")
            .contains("\"status\":\"success\"")
    });
    // The run is over: the lock is already free for the next deploy.
    wait_until("the lock to be free", || {
        p.run(&["lock", "status"]).stdout.contains("not held")
    });
    let signalled = Instant::now();
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "the wait went on after the signal: {:?}\n{stderr}",
        signalled.elapsed()
    );
    assert_eq!(out.status.code(), Some(code::SUCCESS), "{stderr}");
    assert!(stderr.contains("the run is over"), "{stderr}");
    assert!(stderr.contains("recorded as not delivered"), "{stderr}");
    // Nothing unrecorded: 4 notifications, 2 events, all failed, in order.
    let audit = p.audit();
    assert_eq!(audit.len(), 4, "{audit:?}");
    assert!(
        audit.iter().all(|a| a["delivered"] == serde_json::json!([])
            && a["failed"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("interrupted"))),
        "{audit:?}"
    );
    let recorded = p.kind("event");
    let types: Vec<&str> = recorded
        .iter()
        .map(|e| e["event"]["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["start", "success"], "{recorded:?}");
    assert!(recorded.iter().all(|e| e["delivered"] == false));
    p.run(&["history", "verify"]).expect(code::SUCCESS);
}
