//! `shipgate deploy` end to end on the exec adapter: stages, policies, exit codes, records.

use std::time::{Duration, Instant};

use crate::common::pipeline::{exec_project, REGIONS, THREE_STAGES};
use crate::common::process::{signal, wait_until, SIGINT};
use crate::common::{code, Project};

fn deploy_ids(p: &Project) -> Vec<String> {
    p.kind("deploy")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn happy_path_reaches_every_region() {
    let p = exec_project(THREE_STAGES);
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    for r in REGIONS {
        assert_eq!(p.live(r), "v2", "{r}\n{}", run.stderr);
    }
    assert_eq!(deploy_ids(&p), vec!["started", "success"]);
    let stages: Vec<_> = p
        .kind("stage")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Each stage says when its deploy commands start (so a killed deploy names its regions),
    // then how it ended.
    assert_eq!(
        stages,
        vec![
            ("canary".into(), "started".into()),
            ("canary".into(), "success".into()),
            ("primary".into(), "started".into()),
            ("primary".into(), "success".into()),
            ("full".into(), "started".into()),
            ("full".into(), "success".into())
        ]
    );
    let started = &p.kind("deploy")[0];
    assert_eq!(started["previous_versions"]["lhr"], "v1");
    assert_eq!(started["version"], "v2");
    assert_eq!(started["trigger"], "ci");
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["fra"]["version"], "v2");
    assert_eq!(status["last_deploy"]["status"], "success");
    // Deploy commands receive the SHIPGATE_* environment.
    assert!(
        p.calls()
            .iter()
            .any(|c| c.starts_with("deploy lhr v2 stage=canary prev=v1 id=")),
        "{:?}",
        p.calls()
    );
    // Every gate record names its gate and region.
    assert!(p
        .kind("gate")
        .iter()
        .any(|g| g["gate"] == "health" && g["region"] == "ewr" && g["result"] == "pass"));
}

#[test]
fn canary_gate_trip_rolls_back_the_canary_and_never_touches_primary() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "lhr");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert_eq!(p.live("lhr"), "v1");
    assert_eq!(p.live("nrt"), "v1");
    assert_eq!(p.live("ewr"), "v1");
    assert!(
        !p.calls().iter().any(|c| c.contains("ewr")),
        "ewr was touched: {:?}",
        p.calls()
    );
    assert_eq!(deploy_ids(&p), vec!["started", "rolled_back"]);
    let rb = &p.kind("rollback")[0];
    assert_eq!(rb["status"], "success");
    assert_eq!(rb["automatic"], true);
    assert_eq!(rb["to_version"]["lhr"], "v1");
    assert!(run.stderr.contains("gate health tripped"), "{}", run.stderr);
    let tripped: Vec<_> = p
        .kind("gate")
        .into_iter()
        .filter(|g| g["result"] == "tripped")
        .collect();
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0]["region"], "lhr");
    assert_eq!(tripped[0]["consecutive_failures"], 2);
}

#[test]
fn primary_trip_rolls_back_every_changed_region() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "ewr");
    p.run(&["deploy"]).expect(code::FAILED);
    for r in ["lhr", "nrt", "ewr"] {
        assert_eq!(p.live(r), "v1", "{r}");
    }
    assert!(
        !p.calls()
            .iter()
            .any(|c| c.contains(" ord ") || c.contains(" fra ")),
        "{:?}",
        p.calls()
    );
    let rb = &p.kind("rollback")[0];
    let mut regions: Vec<String> = rb["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    regions.sort();
    assert_eq!(regions, vec!["ewr", "lhr", "nrt"]);
}

#[test]
fn full_stage_failure_under_continue_is_partial() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "fra");
    let run = p.run(&["deploy"]).expect(code::PARTIAL);
    assert_eq!(p.live("ord"), "v2");
    assert_eq!(
        p.live("fra"),
        "v2",
        "continue leaves the failed region as it is"
    );
    assert_eq!(p.live("lhr"), "v2");
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "partial");
    assert_eq!(last["failed_regions"], serde_json::json!(["fra"]));
    assert!(p.kind("rollback").is_empty());
    assert!(run.stderr.contains("partial"), "{}", run.stderr);
    assert!(
        p.audit()
            .iter()
            .any(|a| a["priority"] == "P1" && a["title"].as_str().unwrap().contains("partial")),
        "no P1 audit: {:?}",
        p.audit()
    );
}

#[test]
fn allow_partial_exits_zero() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "fra");
    p.run(&["deploy", "--allow-partial"]).expect(code::SUCCESS);
    assert_eq!(p.kind("deploy").pop().unwrap()["status"], "partial");
}

#[test]
fn failed_rollback_exits_3_and_names_the_regions() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "ewr").env("FAIL_ROLLBACK", "nrt");
    let run = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    assert_eq!(p.live("lhr"), "v1");
    assert_eq!(p.live("nrt"), "v2");
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "rollback_failed");
    assert_eq!(last["mixed_regions"], serde_json::json!(["nrt"]));
    assert!(run.stderr.contains("nrt"), "{}", run.stderr);
    assert!(
        run.stderr.contains("rollback of nrt exploded"),
        "stderr tail of the failed command: {}",
        run.stderr
    );
    assert!(
        p.audit()
            .iter()
            .any(|a| a["priority"] == "P0" && a["message"].as_str().unwrap_or("").contains("nrt")),
        "no P0 audit naming nrt: {:?}",
        p.audit()
    );
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["nrt"]["status"], "rollback_failed");
}

#[test]
fn deploy_command_failure_fails_the_stage() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_DEPLOY", "nrt");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr.contains("deploy of nrt exploded"),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("lhr"), "v1");
    assert_eq!(p.live("nrt"), "v1");
}

#[test]
fn rollback_region_returns_only_the_failed_region_and_continues() {
    let p0 = THREE_STAGES.replace("name = \"canary\"\nregions = [\"lhr\", \"nrt\"]\ngates = [\"health\"]\non_failure = \"rollback\"", "name = \"canary\"\nregions = [\"lhr\", \"nrt\"]\ngates = [\"health\"]\non_failure = \"rollback-region\"");
    assert_ne!(p0, THREE_STAGES);
    let mut p = exec_project(&p0);
    p.env("FAIL_GATE", "nrt");
    p.run(&["deploy"]).expect(code::PARTIAL);
    assert_eq!(p.live("nrt"), "v1");
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(
        p.live("ewr"),
        "v2",
        "the deploy continues after rollback-region"
    );
    assert_eq!(p.live("fra"), "v2");
}

#[test]
fn rollback_stage_keeps_earlier_stages() {
    let config = THREE_STAGES.replace("name = \"primary\"\nregions = [\"ewr\"]\ngates = [\"health\"]\non_failure = \"rollback\"", "name = \"primary\"\nregions = [\"ewr\"]\ngates = [\"health\"]\non_failure = \"rollback-stage\"");
    assert_ne!(config, THREE_STAGES);
    let mut p = exec_project(&config);
    p.env("FAIL_GATE", "ewr");
    p.run(&["deploy"]).expect(code::FAILED);
    assert_eq!(p.live("ewr"), "v1");
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(
        p.live("ord"),
        "v1",
        "later stages never start after a rolled-back stage"
    );
}

#[test]
fn stage_timeout_names_gate_region_and_last_probe() {
    let config = THREE_STAGES
        .replace("timeout = \"30s\"", "timeout = \"1s\"")
        .replace("failures = 2", "failures = 1000");
    let mut p = exec_project(&config);
    p.env("FAIL_GATE", "lhr");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr
            .contains("stage canary timed out after 1s before lhr was healthy"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("gate health: last probe"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("HTTP 503"),
        "the last probe's detail: {}",
        run.stderr
    );
}

#[test]
fn regions_of_a_stage_deploy_in_parallel() {
    let config = THREE_STAGES.replace(
        "regions = [\"ord\", \"fra\"]",
        "regions = [\"ord\", \"fra\", \"sin\", \"bom\"]",
    );
    let mut p = exec_project(&config);
    p.env("DEPLOY_SLEEP", "1");
    let start = Instant::now();
    let run = p
        .run(&["deploy", "--stage", "full", "--format", "json"])
        .expect(code::SUCCESS);
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_millis(2500),
        "4 regions of 1 s each took {elapsed:?}"
    );
    let v = run.json();
    assert_eq!(v["stages"].as_array().unwrap().len(), 1);
    assert_eq!(v["stages"][0]["regions"].as_array().unwrap().len(), 4);
    assert_eq!(p.live("lhr"), "v1", "--stage runs only that stage");
}

#[test]
fn max_parallel_one_deploys_one_region_at_a_time() {
    let config = THREE_STAGES.replace(
        "on_failure = \"continue\"",
        "on_failure = \"continue\"\nmax_parallel = 1",
    );
    let mut p = exec_project(&config);
    p.env("DEPLOY_SLEEP", "1");
    let start = Instant::now();
    p.run(&["deploy", "--stage", "full"]).expect(code::SUCCESS);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "two 1 s deploys one at a time took {:?}",
        start.elapsed()
    );
}

#[test]
fn unknown_stage_is_a_usage_error() {
    let p = exec_project(THREE_STAGES);
    let run = p.run(&["deploy", "--stage", "canry"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("did you mean `canary`?"),
        "{}",
        run.stderr
    );
    assert!(!p.state_dir().exists());
}

#[test]
fn dry_run_prints_exact_commands_and_changes_nothing() {
    let p = exec_project(THREE_STAGES);
    let run = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("$ ./deploy.sh lhr v2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("on failure: $ ./rollback.sh lhr v1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("gate health [P1, trips after 2] ewr: run ./health.sh ewr"),
        "{}",
        run.stdout
    );
    assert!(!p.state_dir().exists(), "dry run wrote state");
    assert!(p.calls().is_empty());
    let json = p
        .run(&["deploy", "--dry-run", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(
        json["stages"][1]["commands"][0],
        serde_json::json!(["./deploy.sh", "ewr", "v2"])
    );
}

#[test]
fn bad_version_is_refused_before_anything_changes() {
    let p = exec_project(THREE_STAGES);
    let run = p
        .run(&["deploy", "--version", "1.0;rm -rf /"])
        .expect(code::USAGE);
    assert!(run.stderr.contains("invalid version"), "{}", run.stderr);
    assert!(!p.state_dir().exists());
    assert!(p.calls().is_empty());
}

#[test]
fn json_result_document() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "fra");
    let run = p.run(&["deploy", "--format", "json"]).expect(code::PARTIAL);
    let v = run.json();
    assert_eq!(v["ok"], false, "every JSON result has `ok`");
    assert_eq!(v["status"], "partial");
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["version"], "v2");
    assert_eq!(v["previous_versions"]["ewr"], "v1");
    let full = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "full")
        .unwrap();
    let fra = full["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "fra")
        .unwrap();
    assert_eq!(fra["status"], "failed");
    assert_eq!(fra["gates"]["health"], "tripped");
}

#[test]
fn github_actions_annotations_summary_and_outputs() {
    let mut p = exec_project(THREE_STAGES);
    let out = p.path().join("gh-output");
    let summary = p.path().join("gh-summary.md");
    p.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", out.to_str().unwrap())
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .env("GITHUB_ACTOR", "octocat")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "org/repo")
        .env("GITHUB_RUN_ID", "42")
        .env("GITHUB_SHA", "0123456789abcdef")
        .env("FAIL_GATE", "fra");
    let run = p.run(&["deploy"]).expect(code::PARTIAL);
    // Workflow commands go to stderr (the runner reads both streams); stdout is the answer.
    assert!(run.stdout.contains("deploy partial"), "{}", run.stdout);
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("::")),
        "{}",
        run.stdout
    );
    assert_eq!(run.stderr.matches("::group::").count(), 3, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("::endgroup::").count(),
        3,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("::error title=gate health tripped in fra::"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("::warning::"), "{}", run.stderr);
    let outputs = std::fs::read_to_string(&out).unwrap();
    for line in [
        "version=v2",
        "previous_version=v1",
        "status=partial",
        "exit_code=4",
    ] {
        assert!(
            outputs.lines().any(|l| l == line),
            "{line} missing in {outputs}"
        );
    }
    assert!(outputs.contains("deploy_id="));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("| Stage | Region | Before | Now runs | Outcome | Duration |"),
        "{md}"
    );
    assert!(md.contains("| full | fra | v1 | v2 | failed |"), "{md}");
    // A failed (here: partial) deploy's summary also tells its story and what to run next.
    assert!(md.contains("## Deploy `"), "{md}");
    assert!(
        md.contains("gate health [P1] in fra on v2: tripped"),
        "{md}"
    );
    assert!(
        md.contains("**Next:** `shipgate rollback --region fra`"),
        "{md}"
    );
    let started = &p.kind("deploy")[0];
    assert_eq!(started["actor"], "octocat");
    assert_eq!(started["trigger"], "github-actions");
    assert_eq!(
        started["run_url"],
        "https://github.com/org/repo/actions/runs/42"
    );
    assert_eq!(started["commit"], "0123456789abcdef");
}

#[test]
fn github_actions_masks_secrets() {
    let mut p = exec_project(&format!(
        "{THREE_STAGES}\n[notify.slack]\nwebhook_env = \"TEST_SLACK_URL\"\n"
    ));
    p.env("GITHUB_ACTIONS", "true")
        .env("TEST_SLACK_URL", "http://127.0.0.1:9/very-secret-hook");
    let run = p
        .run(&["--format", "json", "deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    assert!(
        run.stderr
            .contains("::add-mask::http://127.0.0.1:9/very-secret-hook"),
        "{}",
        run.stderr
    );
    // stdout is exactly the JSON result, even under GitHub Actions.
    assert_eq!(run.json()["status"], "success", "{}", run.stdout);
    assert!(!run.stdout.contains("very-secret-hook"), "{}", run.stdout);
    assert!(!p.read(".shipgate/audit.jsonl").contains("very-secret-hook"));
}

/// `shipgate deploy 2>&1 | tee log` whose `tee` died first (Ctrl-C reaches the whole pipeline):
/// every line shipgate prints then fails with EPIPE. The deploy must go on and record its end,
/// not panic half-way (exit 101) with regions changed and no record.
#[test]
fn a_closed_stderr_and_stdout_never_stop_a_deploy_or_a_rollback() {
    let mut p = exec_project(THREE_STAGES);
    p.env("GITHUB_ACTIONS", "true");
    for (args, code) in [
        (vec!["deploy"], code::SUCCESS),
        (vec!["--format", "json", "rollback", "--yes"], code::SUCCESS),
    ] {
        let mut child = p
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read ends before shipgate prints anything.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{args:?}");
    }
    let statuses: Vec<String> = p
        .kind("deploy")
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["started", "success"]);
    assert_eq!(p.kind("rollback")[0]["status"], "success");
    assert_eq!(p.live("lhr"), "v1");
}

#[test]
fn a_second_deploy_is_refused_while_one_runs() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "3");
    let mut first = p
        .command(&["deploy", "--stage", "canary"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&p);
    let run = p.run(&["deploy", "--stage", "canary"]).expect(code::LOCKED);
    assert!(
        run.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--lock-wait"), "{}", run.stderr);
    // `--format json` still prints one document saying what happened.
    let run = p
        .run(&["--format", "json", "deploy", "--stage", "canary"])
        .expect(code::LOCKED);
    let doc = run.json();
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["exit_code"], code::LOCKED, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("pid {}", first.id()))),
        "{doc}"
    );
    // With --lock-wait it waits for the first to finish, then runs.
    let waited = p
        .run(&["deploy", "--stage", "canary", "--lock-wait", "30s"])
        .expect(code::SUCCESS);
    assert!(first.wait().unwrap().success());
    assert_eq!(
        p.kind("deploy")
            .iter()
            .filter(|d| d["status"] == "success")
            .count(),
        2,
        "{}",
        waited.stderr
    );
}

#[test]
fn a_sigkilled_holder_frees_the_lock() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "20");
    let mut first = p.command(&["deploy", "--stage", "canary"]).spawn().unwrap();
    wait_for_lock(&p);
    first.kill().unwrap();
    first.wait().unwrap();
    let mut p2 = p;
    p2.env("DEPLOY_SLEEP", "0");
    p2.run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    // The killed deploy is visible as interrupted: a started record with no final one.
    let statuses: Vec<String> = p2
        .kind("deploy")
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, vec!["started", "started", "success"]);
    // A later finished deploy makes the interrupted one history, not the current state.
    let status = p2
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(status["interrupted"], serde_json::json!([]), "{status}");
}

#[test]
fn sigterm_mid_stage_rolls_back_and_exits_143() {
    interrupted_mid_stage(15, code::SIGTERM, "SIGTERM");
}

/// A closed terminal or a dropped SSH session: rolled back like SIGTERM, not killed outright
/// while the platform commands carry on in their own process groups.
#[test]
fn sighup_mid_stage_rolls_back_and_exits_129() {
    interrupted_mid_stage(1, code::SIGHUP, "SIGHUP");
}

fn interrupted_mid_stage(sig: i32, exit: i32, name: &str) {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "1");
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the canary regions have been deployed and the primary started.
    wait_until("the primary stage to start", || {
        p.calls().iter().any(|c| c.starts_with("deploy ewr"))
    });
    signal(child.id(), sig);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit), "{stderr}");
    for r in ["lhr", "nrt", "ewr"] {
        assert_eq!(p.live(r), "v1", "{r} not rolled back\n{stderr}");
    }
    let statuses: Vec<String> = p
        .kind("deploy")
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        vec!["started", "cancelling", "cancelled"],
        "{stderr}"
    );
    assert_eq!(
        p.kind("deploy")[1]["reason"],
        format!("received {name}"),
        "{stderr}"
    );
    assert_eq!(p.kind("rollback")[0]["status"], "success");
    assert!(
        !p.state_dir().join("lock").exists()
            || std::fs::read_to_string(p.state_dir().join("lock"))
                .unwrap_or_default()
                .trim()
                .is_empty()
            || p.run(&["lock", "status"]).code == 0
    );
}

#[test]
fn a_second_signal_abandons_the_rollback_and_exits_130() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "1").env("ROLLBACK_SLEEP", "30");
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the primary stage to start", || {
        p.calls().iter().any(|c| c.starts_with("deploy ewr"))
    });
    signal(child.id(), SIGINT);
    wait_until("the rollback to start", || {
        p.calls().iter().any(|c| c.starts_with("rollback"))
    });
    let started = Instant::now();
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::SIGINT), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "abandoning took {:?}",
        started.elapsed()
    );
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "cancelled", "{stderr}");
    let mixed: Vec<&str> = last["mixed_regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !mixed.is_empty(),
        "regions left mixed must be listed: {last}"
    );
    // The lock is free again.
    let lock = p
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS);
    assert_eq!(lock.json()["held"], false, "{}", lock.stdout);
}

/// Waits until a deploy holds the lock (its deploy `started` record is written).
fn wait_for_lock(p: &Project) {
    wait_until("the first deploy to start", || {
        p.read(".shipgate/history.jsonl").contains("\"started\"")
    });
}

#[test]
fn events_and_notifications_never_change_the_outcome() {
    // A Slack sink that is down: the deploy still succeeds; the audit says what failed.
    let mut p = exec_project(&format!(
        "{THREE_STAGES}\n[notify.slack]\nwebhook_env = \"TEST_SLACK_URL\"\nmin_priority = \"P3\"\n"
    ));
    p.env("TEST_SLACK_URL", "http://127.0.0.1:9/hook")
        .env("SHIPGATE_RETRY_BASE_MS", "1");
    p.run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    let audit = p.audit();
    assert!(audit.iter().any(|a| a["priority"] == "P3" && a["failed"].as_array().is_some_and(|f| !f.is_empty())), "{audit:?}");
}

#[test]
fn deploy_delivers_and_records_its_start_and_success_events() {
    let server = crate::common::http::Server::fixed(200, "");
    let mut p = exec_project(&format!(
        "{THREE_STAGES}\n[events]\nurl_env = \"TEST_EVENTS_URL\"\nformat = \"plain\"\n"
    ));
    p.env("TEST_EVENTS_URL", &format!("{}/events", server.url));
    let run = p
        .run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    // Deliveries that get an answer end before anyone is told to wait for them.
    assert!(!run.stderr.contains("waiting for"), "{}", run.stderr);
    let mut sent: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["event_type"].as_str().unwrap().to_string()
        })
        .collect();
    sent.sort();
    assert_eq!(sent, ["start", "success"]);
    let deploy_id = p.kind("deploy")[0]["deploy_id"].clone();
    let recorded = p.kind("event");
    let types: Vec<&str> = recorded
        .iter()
        .map(|e| e["event"]["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["start", "success"], "{recorded:?}");
    for e in &recorded {
        assert_eq!(e["delivered"], true, "{e}");
        assert_eq!(e["attempts"], 1, "{e}");
        assert_eq!(e["deploy_id"], deploy_id, "{e}");
    }
}

/// The part of stderr after the progress lines: the summary table and the verdict.
fn summary(stderr: &str) -> String {
    let start = stderr.find("\nSTAGE ").map(|i| i + 1).unwrap_or(0);
    stderr[start..].to_string()
}

fn snapshot_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"[0-9A-HJKMNP-TV-Z]{26}", "[ULID]"),
        (r"\b\d+\.\d+s\b", "[DUR]"),
        (r"\b\d+m\d\ds\b", "[DUR]"),
        (r"\b\d+ ms\b", "[MS]"),
    ]
}

#[test]
fn human_summary_of_a_partial_deploy() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "fra");
    let run = p.run(&["deploy"]).expect(code::PARTIAL);
    insta::with_settings!({filters => snapshot_filters()}, {
        insta::assert_snapshot!(summary(&run.stdout));
    });
}

#[test]
fn human_summary_of_a_rolled_back_deploy() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "ewr");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    insta::with_settings!({filters => snapshot_filters()}, {
        insta::assert_snapshot!(summary(&run.stdout));
    });
}

#[test]
fn github_outputs_are_written_on_an_early_error() {
    let mut p = exec_project(THREE_STAGES);
    let out = p.path().join("gh-output");
    p.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", out.to_str().unwrap());
    p.run(&["deploy", "--version", "bad version"])
        .expect(code::USAGE);
    let outputs = std::fs::read_to_string(&out).unwrap();
    assert!(outputs.lines().any(|l| l == "status=error"), "{outputs}");
    assert!(outputs.lines().any(|l| l == "exit_code=2"), "{outputs}");
}

#[test]
fn quiet_prints_only_the_verdict() {
    let mut p = exec_project(THREE_STAGES);
    // Warnings (no rollback target anywhere) are not errors: quiet leaves them out.
    p.env("EMPTY_CURRENT", "1");
    let run = p.run(&["deploy", "-q"]).expect(code::SUCCESS);
    assert_eq!(run.stderr, "", "quiet prints errors and the verdict only");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(
        lines[0].starts_with("deploy success: v2 runs on lhr, nrt, ewr, ord, fra (exit 0"),
        "{}",
        run.stdout
    );
}

/// Without a `current` command nothing can say what a region runs after its deploy command
/// failed: it is not claimed to run the new version (the summary says `?`, the record keeps
/// what it ran before), so the next rollback still knows where to go.
#[test]
fn a_failed_deploy_command_without_current_is_not_recorded_as_the_new_version() {
    let mut p =
        exec_project(&THREE_STAGES.replace("current = [\"./current.sh\", \"{region}\"]\n", ""));
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3").env("FAIL_DEPLOY", "ord");
    let doc = p
        .run(&["--format", "json", "deploy"])
        .expect(code::PARTIAL)
        .json();
    let ord = doc["stages"][2]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "ord")
        .unwrap()
        .clone();
    assert_eq!(ord["status"], "failed", "{doc}");
    assert_eq!(ord["version"], serde_json::Value::Null, "{doc}");
    assert_eq!(
        doc["message"], "ord failed, the other regions run v3",
        "{doc}"
    );
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["ord"]["version"], "v2", "{status}");
    assert_eq!(status["regions"]["ord"]["status"], "failed", "{status}");
    assert_eq!(status["regions"]["fra"]["version"], "v3", "{status}");
}
